//! `[kafka.options]`: librdkafka settings passed through to every client, except the ones
//! sluice's guarantees rest on. Those are refused by name, with the reason, when the file is
//! read: `[kafka.options]` is applied after sluice's own settings, so a key here would
//! otherwise win silently (an `enable.auto.commit=true` or `acks=1` voids exactly-once).

use super::Problems;
use crate::settings::Settings;

/// What a guarded key is refused with: why sluice sets it itself.
const PROGRESS: &str = "sluice keeps each partition's progress in the lake's commits and moves \
                        Kafka's committed offsets itself, after a lake commit (for lag only)";
const IDEMPOTENT: &str = "every sluice producer is idempotent with acks=all, so that a retried \
                          send never writes a record twice and an acknowledged record survives \
                          a broker's loss";

/// librdkafka settings a pipeline may not set, and why. Aliases are listed too: librdkafka
/// accepts either name.
pub const GUARDED_OPTIONS: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "set [kafka].brokers (or --brokers, SLUICE_BROKERS) instead",
    ),
    (
        "metadata.broker.list",
        "set [kafka].brokers (or --brokers, SLUICE_BROKERS) instead",
    ),
    ("group.id", "set [kafka].group instead"),
    (
        "group.instance.id",
        "give each member its own name with `sluice stream --instance-id`",
    ),
    ("enable.auto.commit", PROGRESS),
    ("auto.commit.enable", PROGRESS),
    ("enable.auto.offset.store", PROGRESS),
    (
        "auto.offset.reset",
        "a partition the lake holds nothing of is read from its start; any other reset point \
         would skip records",
    ),
    (
        "enable.partition.eof",
        "sluice sets it per client (the stream and verify read to the end differently)",
    ),
    (
        "partition.assignment.strategy",
        "the stream member keeps its lanes across rebalances with cooperative-sticky's \
         incremental assignments; an eager strategy revokes every partition on each rebalance",
    ),
    (
        "isolation.level",
        "read_committed: records of aborted transactions must never land in the lake",
    ),
    ("enable.idempotence", IDEMPOTENT),
    ("acks", IDEMPOTENT),
    ("request.required.acks", IDEMPOTENT),
    ("max.in.flight.requests.per.connection", IDEMPOTENT),
    ("max.in.flight", IDEMPOTENT),
    ("retries", IDEMPOTENT),
    ("message.send.max.retries", IDEMPOTENT),
    (
        "transactional.id",
        "sluice does not produce in transactions: exactly-once lives in the lake's commits",
    ),
    (
        "message.timeout.ms",
        "sluice sets it per producer: the gateway's has none, so no record it spooled is ever \
         dropped",
    ),
    (
        "delivery.timeout.ms",
        "sluice sets it per producer: the gateway's has none, so no record it spooled is ever \
         dropped",
    ),
    (
        "statistics.interval.ms",
        "the consumer-lag metrics come from librdkafka's statistics every 5 s",
    ),
];

/// Why `key` may not be set in `[kafka.options]`, if it may not.
pub fn guarded(key: &str) -> Option<&'static str> {
    GUARDED_OPTIONS
        .iter()
        .find(|(guarded, _)| key.trim().eq_ignore_ascii_case(guarded))
        .map(|(_, why)| *why)
}

/// Adds a problem for each guarded key of `options`.
pub(super) fn validate_options(options: &Settings, problems: &mut Problems) {
    for key in options.keys() {
        if let Some(why) = guarded(key) {
            problems.add(
                format!("kafka.options.\"{key}\""),
                format!("sluice sets {key} itself and it may not be overridden: {why}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guarded_key_is_refused_by_name_and_tuning_passes() {
        let mut options = Settings::default();
        for (key, _) in GUARDED_OPTIONS {
            options.insert(*key, "x");
        }
        options.insert("fetch.max.bytes", "1048576");
        options.insert("client.id", "me");
        let mut problems = Problems::default();
        validate_options(&options, &mut problems);
        assert_eq!(problems.0.len(), GUARDED_OPTIONS.len());
        for ((key, why), problem) in GUARDED_OPTIONS.iter().zip(sorted(&problems)) {
            assert_eq!(problem.0, format!("kafka.options.\"{key}\""));
            assert!(problem.1.contains(why), "{problem:?}");
        }
    }

    #[test]
    fn case_and_spaces_do_not_slip_past() {
        assert!(guarded("Enable.Auto.Commit").is_some());
        assert!(guarded(" acks ").is_some());
        assert!(guarded("fetch.min.bytes").is_none());
    }

    /// The problems in [`GUARDED_OPTIONS`] order.
    fn sorted(problems: &Problems) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = problems
            .0
            .iter()
            .map(|p| (p.field.clone(), p.message.clone()))
            .collect();
        let order = |field: &str| {
            GUARDED_OPTIONS
                .iter()
                .position(|(key, _)| field == format!("kafka.options.\"{key}\""))
        };
        found.sort_by_key(|(field, _)| order(field));
        found
    }
}
