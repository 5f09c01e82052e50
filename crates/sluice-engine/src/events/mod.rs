//! What the engine observes, in one place. Each event is a type whose `emit` writes its log
//! line and moves its metrics together (Vector's internal events), so the log, the metrics
//! on `/metrics` and the summary a run prints never drift apart. Metric names are the
//! constants of [`metrics`] (re-exported here); dashboards and alert rules (`deploy/`) use only
//! these.
//!
//! Emitting never blocks on a scrape: counters and gauges are atomics, and the few values that
//! need the clock (freshness) are computed when a scrape renders them.

mod metrics;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use sluice_core::decode::Rejected;
use sluice_kafka::side::SideKind;
use tracing::{debug, info, warn};

pub use metrics::*;
use metrics::{
    ChangeLabel, CommitLabels, KindLabel, Landed, PartitionLabels, RefusedLabels, RuleLabel,
    TableLabel, TopicLabel, WhyLabel, WindowLabel,
};

/// One thing the engine observed.
pub trait Event {
    /// Logs it and moves its metrics.
    fn emit(self, metrics: &Metrics);
}

/// Records read from a source in one batch.
pub struct RecordsRead<'a> {
    /// The topic (or a load's source name).
    pub topic: &'a str,
    /// How many.
    pub records: usize,
    /// Their payload bytes.
    pub bytes: usize,
    /// Of them, how many the tables held already and were skipped.
    pub already_landed: usize,
}

impl Event for RecordsRead<'_> {
    fn emit(self, metrics: &Metrics) {
        let label = TopicLabel {
            topic: self.topic.to_string(),
        };
        metrics
            .records_read
            .get_or_create(&label)
            .inc_by(self.records as u64);
        metrics
            .bytes_read
            .get_or_create(&label)
            .inc_by(self.bytes as u64);
        metrics.count(|s| {
            s.records += self.records as u64;
            s.already_landed += self.already_landed as u64;
        });
    }
}

/// Records of one partition's batch that did not fit the stream's schema.
pub struct RecordsRefused<'a> {
    /// Their topic.
    pub topic: &'a str,
    /// Each record's partition, offset and why.
    pub refused: &'a [Rejected],
    /// The dead-letter topic they go to, if the stream has one.
    pub dead_letter_topic: Option<&'a str>,
}

impl Event for RecordsRefused<'_> {
    fn emit(self, metrics: &Metrics) {
        // Most batches refuse nothing: no label, lock or log for them.
        if self.refused.is_empty() {
            return;
        }
        let message = match self.dead_letter_topic {
            Some(_) => {
                "Sent a record that does not fit the stream's schema to the dead-letter topic."
            }
            None => "Skipped a record that does not fit the stream's schema.",
        };
        for refused in self.refused {
            warn!(topic = self.topic, partition = refused.partition, offset = refused.offset, reason = %refused.reason, "{message}");
            let labels = RefusedLabels {
                topic: self.topic.to_string(),
                reason: refused.kind.label(),
            };
            metrics.refused.get_or_create(&labels).inc();
        }
        metrics.count(|s| s.rejected += self.refused.len() as u64);
    }
}

/// Dead letters sent (records a dead-letter topic did not hold yet).
pub struct DeadLettersSent<'a> {
    /// The source topic.
    pub topic: &'a str,
    /// How many.
    pub count: u64,
}

impl Event for DeadLettersSent<'_> {
    fn emit(self, metrics: &Metrics) {
        // Counted even when zero: the series exists from the first batch, so that `rate()`
        // sees its first increase (a counter that appears at 5 has no rate).
        let label = TopicLabel {
            topic: self.topic.to_string(),
        };
        metrics
            .dead_letters
            .get_or_create(&label)
            .inc_by(self.count);
        metrics.count(|s| s.dead_lettered += self.count);
    }
}

/// Events of one partition's batch behind a closed window.
pub struct LateEvents<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The window.
    pub window: &'a str,
    /// The late events' offsets, in order.
    pub offsets: &'a [i64],
}

impl Event for LateEvents<'_> {
    fn emit(self, metrics: &Metrics) {
        let Some(first) = self.offsets.first() else {
            return;
        };
        warn!(
            topic = self.topic,
            partition = self.partition,
            window = self.window,
            late = self.offsets.len(),
            first,
            "Events arrived after their windows closed."
        );
        let label = WindowLabel {
            window: self.window.to_string(),
        };
        metrics
            .late
            .get_or_create(&label)
            .inc_by(self.offsets.len() as u64);
        metrics.count(|s| s.late += self.offsets.len() as u64);
    }
}

/// Alerts of one rule sent.
pub struct AlertsSent<'a> {
    /// The rule.
    pub rule: &'a str,
    /// How many.
    pub count: u64,
}

impl Event for AlertsSent<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(rule = self.rule, count = self.count, "Alerts sent.");
        let label = RuleLabel {
            rule: self.rule.to_string(),
        };
        metrics.alerts.get_or_create(&label).inc_by(self.count);
        metrics.count(|s| s.alerts += self.count);
    }
}

/// A side record acknowledged by Kafka.
pub struct SideAcknowledged {
    /// What it is.
    pub kind: SideKind,
    /// Since its source record was received.
    pub after: Duration,
}

impl Event for SideAcknowledged {
    fn emit(self, metrics: &Metrics) {
        let label = KindLabel {
            kind: self.kind.label(),
        };
        metrics
            .received_to_acknowledged
            .get_or_create(&label)
            .observe(self.after.as_secs_f64());
    }
}

/// A side record handed to the producer.
pub struct SideSent {
    /// What it is.
    pub kind: SideKind,
    /// Since its source record was received.
    pub after: Duration,
}

impl Event for SideSent {
    fn emit(self, metrics: &Metrics) {
        let label = KindLabel {
            kind: self.kind.label(),
        };
        metrics
            .received_to_sent
            .get_or_create(&label)
            .observe(self.after.as_secs_f64());
    }
}

/// Events forwarded to a window's repartition topic.
pub struct EventsForwarded<'a> {
    /// The window.
    pub window: &'a str,
    /// How many.
    pub count: u64,
}

impl Event for EventsForwarded<'_> {
    fn emit(self, metrics: &Metrics) {
        // Counted even when zero: the series exists from the first batch, so that `rate()`
        // sees its first increase (a counter that appears at 5 has no rate).
        let label = WindowLabel {
            window: self.window.to_string(),
        };
        metrics
            .repartitioned
            .get_or_create(&label)
            .inc_by(self.count);
        metrics.count(|s| s.forwarded += self.count);
    }
}

/// What a table holds: a stream's rows, or a window's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A stream's rows.
    Rows,
    /// A window's results.
    Windows,
}

/// A commit made.
pub struct Committed<'a> {
    /// The table.
    pub table: &'a str,
    /// What it holds.
    pub kind: TableKind,
    /// The table version it made.
    pub version: u64,
    /// Rows committed.
    pub rows: usize,
    /// Files written.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Source partitions it covers.
    pub partitions: usize,
    /// How far it took the source, for a single-source run (a load's line number).
    pub to_line: Option<i64>,
    /// How long it took, files included.
    pub took: Duration,
    /// The newest event time among its rows (UTC microseconds).
    pub newest_event_us: Option<i64>,
    /// The newest event time among its rows per source (topic, partition), UTC microseconds.
    pub newest_by_partition: &'a [(&'a str, i32, i64)],
    /// Since the oldest row (or progress) it lands was received, when known.
    pub since_received: Option<Duration>,
}

impl Event for Committed<'_> {
    fn emit(self, metrics: &Metrics) {
        let Committed {
            table,
            version,
            rows,
            partitions,
            ..
        } = self;
        let took_ms = self.took.as_millis() as u64;
        match self.to_line {
            Some(to_line) => info!(table, version, rows, to_line, took_ms, "Committed."),
            None => info!(table, version, rows, partitions, took_ms, "Committed."),
        }
        let label = TableLabel {
            table: table.to_string(),
        };
        metrics
            .rows_landed
            .get_or_create(&label)
            .inc_by(rows as u64);
        metrics
            .bytes_landed
            .get_or_create(&label)
            .inc_by(self.bytes);
        let outcome = CommitLabels {
            table: table.to_string(),
            outcome: "committed",
        };
        metrics.commits.get_or_create(&outcome).inc();
        metrics
            .commit_seconds
            .get_or_create(&label)
            .observe(self.took.as_secs_f64());
        metrics
            .commit_files
            .get_or_create(&label)
            .observe(self.files as f64);
        metrics
            .commit_bytes
            .get_or_create(&label)
            .observe(self.bytes as f64);
        if let Some(waited) = self.since_received {
            metrics
                .received_to_committed
                .get_or_create(&label)
                .observe(waited.as_secs_f64());
        }
        metrics.commits_failing.store(false, Ordering::Relaxed);
        let mut landed = metrics.landed.lock().expect("no panics");
        let entry = landed.entry(table.to_string()).or_insert(Landed {
            at: SystemTime::now(),
            newest_event_us: None,
        });
        entry.at = SystemTime::now();
        entry.newest_event_us = entry.newest_event_us.max(self.newest_event_us);
        drop(landed);
        // Only partitions still held: a commit in flight when its partitions were revoked
        // must not bring their series back.
        let mut partitions = metrics.partition_landed.lock().expect("no panics");
        for &(topic, partition, us) in self.newest_by_partition {
            if let Some(newest) = partitions.get_mut(&(topic.to_string(), partition)) {
                *newest = (*newest).max(Some(us));
            }
        }
        drop(partitions);
        metrics.count(|s| {
            s.commits += 1;
            match self.kind {
                TableKind::Rows => s.rows += rows as u64,
                TableKind::Windows => s.windows += rows as u64,
            }
        });
    }
}

/// A commit refused because another member committed the partitions meanwhile.
pub struct CommitFenced<'a> {
    /// The table.
    pub table: &'a str,
    /// The refusal, with its causes.
    pub error: &'a anyhow::Error,
}

impl Event for CommitFenced<'_> {
    fn emit(self, metrics: &Metrics) {
        warn!(table = self.table, error = %format!("{:#}", self.error), "Another member committed these partitions; dropping their buffers.");
        let outcome = CommitLabels {
            table: self.table.to_string(),
            outcome: "fenced",
        };
        metrics.commits.get_or_create(&outcome).inc();
        metrics.count(|s| s.fenced += 1);
    }
}

/// A commit attempt failed on a transient error and will be tried again.
pub struct CommitRetried<'a> {
    /// The table.
    pub table: &'a str,
    /// The failure, with its causes.
    pub error: &'a anyhow::Error,
    /// When the next attempt comes.
    pub retry_in: Duration,
}

impl Event for CommitRetried<'_> {
    fn emit(self, metrics: &Metrics) {
        warn!(table = self.table, error = %format!("{:#}", self.error), retry_in = ?self.retry_in, "Commit failed; retrying.");
        let label = TableLabel {
            table: self.table.to_string(),
        };
        metrics.commit_retries.get_or_create(&label).inc();
        metrics.commits_failing.store(true, Ordering::Relaxed);
    }
}

/// A stream's Schema Registry could not give a writer schema; the lookup is tried again and
/// the records wait (they are never refused for it).
pub struct RegistryUnavailable<'a> {
    /// The stream's topic.
    pub topic: &'a str,
    /// The schema id looked up.
    pub id: u32,
    /// The failure, with its causes.
    pub error: &'a anyhow::Error,
    /// When the next attempt comes.
    pub retry_in: Duration,
}

impl Event for RegistryUnavailable<'_> {
    fn emit(self, metrics: &Metrics) {
        warn!(topic = self.topic, schema_id = self.id, error = %format!("{:#}", self.error), retry_in = ?self.retry_in, "The Schema Registry did not give a writer schema; its records wait (nothing is skipped).");
        let label = TopicLabel {
            topic: self.topic.to_string(),
        };
        metrics.registry_errors.get_or_create(&label).inc();
    }
}

/// Partitions this member was given.
pub struct PartitionsAssigned<'a> {
    /// (topic, partition) pairs.
    pub partitions: &'a [(String, i32)],
    /// How many it holds now.
    pub holding: usize,
}

impl Event for PartitionsAssigned<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(partitions = ?self.partitions, "Partitions assigned.");
        metrics.assigned.set(self.holding as i64);
        let mut newest = metrics.partition_landed.lock().expect("no panics");
        for key in self.partitions {
            newest.entry(key.clone()).or_insert(None);
        }
        drop(newest);
        let change = ChangeLabel { change: "assigned" };
        metrics.rebalances.get_or_create(&change).inc();
    }
}

/// Partitions taken from this member; their buffers are dropped.
pub struct PartitionsRevoked<'a> {
    /// (topic, partition) pairs.
    pub partitions: &'a [(String, i32)],
    /// How many it holds now.
    pub holding: usize,
    /// How many of them had a lane open.
    pub lanes: usize,
}

impl Event for PartitionsRevoked<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(partitions = ?self.partitions, "Partitions revoked; dropping their buffers.");
        metrics.assigned.set(self.holding as i64);
        let change = ChangeLabel { change: "revoked" };
        metrics.rebalances.get_or_create(&change).inc();
        let why = WhyLabel { why: "revoked" };
        metrics
            .lanes_dropped
            .get_or_create(&why)
            .inc_by(self.lanes as u64);
        let mut newest = metrics.partition_landed.lock().expect("no panics");
        for (topic, partition) in self.partitions {
            let labels = PartitionLabels {
                topic: topic.clone(),
                partition: *partition,
            };
            metrics.lag.remove(&labels);
            metrics.partition_freshness.remove(&labels);
            newest.remove(&(topic.clone(), *partition));
        }
    }
}

/// A partition's lane opened from what the lake holds.
pub struct LaneOpened<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset it reads from.
    pub next: i64,
    /// What each table holds of it.
    pub committed: &'a [Option<i64>],
    /// What the side topics hold from it.
    pub side: &'a dyn std::fmt::Debug,
}

impl Event for LaneOpened<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(topic = self.topic, partition = self.partition, next = self.next, committed = ?self.committed, side = ?self.side, "Lane opened from the lake's offsets.");
        metrics.lanes_opened.inc();
    }
}

/// Lanes dropped after a refused commit, to be opened again from the lake.
pub struct LanesFenced {
    /// How many.
    pub lanes: usize,
}

impl Event for LanesFenced {
    fn emit(self, metrics: &Metrics) {
        let why = WhyLabel { why: "fenced" };
        metrics
            .lanes_dropped
            .get_or_create(&why)
            .inc_by(self.lanes as u64);
    }
}

/// The buffers went over the memory budget: the largest table commits early.
pub struct OverMemoryBudget<'a> {
    /// The table that commits.
    pub table: &'a str,
    /// Its buffered bytes.
    pub bytes: u64,
}

impl Event for OverMemoryBudget<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(
            table = self.table,
            bytes = self.bytes,
            "Over the memory budget; committing the largest buffer."
        );
        let label = TableLabel {
            table: self.table.to_string(),
        };
        metrics.budget_commits.get_or_create(&label).inc();
    }
}

/// How much is buffered now, against the budget.
pub struct Buffered {
    /// Bytes buffered over all tables and partitions.
    pub bytes: u64,
    /// Bytes of open windows' state over all windows and partitions.
    pub window_state: u64,
    /// The budget.
    pub budget: u64,
}

impl Event for Buffered {
    fn emit(self, metrics: &Metrics) {
        metrics.buffered_bytes.set(self.bytes as i64);
        metrics.window_state_bytes.set(self.window_state as i64);
        metrics.memory_budget.set(self.budget as i64);
        let over = self.window_state > self.budget;
        let was_over = metrics
            .window_state_over_budget
            .swap(over, Ordering::Relaxed);
        if over && !was_over {
            warn!(
                window_state = self.window_state,
                budget = self.budget,
                "Open windows alone hold more than the memory budget: every table will commit as soon as it buffers rows. Raise --memory-budget, or shorten the windows or their lateness."
            );
        }
    }
}

/// A window's watermark moved.
pub struct WatermarkMoved<'a> {
    /// The window.
    pub window: &'a str,
    /// Its watermark (UTC microseconds).
    pub watermark_us: i64,
}

impl Event for WatermarkMoved<'_> {
    fn emit(self, metrics: &Metrics) {
        let label = WindowLabel {
            window: self.window.to_string(),
        };
        metrics
            .watermark
            .get_or_create(&label)
            .set(self.watermark_us as f64 / 1e6);
    }
}

/// How far a partition's log runs ahead of what the lake holds of it.
pub struct PartitionLag<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The log end (the next offset to be written).
    pub log_end: i64,
    /// The next offset every table fed by the partition still needs.
    pub committed_next: i64,
}

impl Event for PartitionLag<'_> {
    fn emit(self, metrics: &Metrics) {
        let labels = PartitionLabels {
            topic: self.topic.to_string(),
            partition: self.partition,
        };
        let lag = (self.log_end - self.committed_next).max(0);
        metrics.lag.get_or_create(&labels).set(lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_counts_rows_and_sets_freshness_against_the_clock() {
        let metrics = Metrics::default();
        let hour_ago = micros_since_epoch(SystemTime::now()) - 3_600_000_000;
        metrics.emit(PartitionsAssigned {
            partitions: &[("readings".to_string(), 2)],
            holding: 1,
        });
        metrics.emit(Committed {
            table: "readings",
            kind: TableKind::Rows,
            version: 3,
            rows: 10,
            files: 2,
            bytes: 5000,
            partitions: 1,
            to_line: None,
            took: Duration::from_millis(40),
            newest_event_us: Some(hour_ago),
            // Partition 3 is not held (revoked while this commit ran): no series for it.
            newest_by_partition: &[
                ("readings", 2, hour_ago - 60_000_000),
                ("readings", 3, hour_ago),
            ],
            since_received: Some(Duration::from_millis(1500)),
        });
        let text = metrics.render();
        assert!(
            text.contains("sluice_rows_landed_total{table=\"readings\"} 10"),
            "{text}"
        );
        let freshness = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_table_freshness_seconds{table=\"readings\"} "))
            .expect("freshness exported");
        let freshness: f64 = freshness.parse().unwrap();
        assert!((3600.0..3610.0).contains(&freshness), "{freshness}");
        let partition = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "sluice_partition_freshness_seconds{topic=\"readings\",partition=\"2\"} ",
                )
            })
            .expect("partition freshness exported");
        let partition: f64 = partition.parse().unwrap();
        assert!((3660.0..3670.0).contains(&partition), "{partition}");
        assert!(!text.contains("partition=\"3\""), "{text}");
        metrics.emit(PartitionsRevoked {
            partitions: &[("readings".to_string(), 2)],
            holding: 0,
            lanes: 1,
        });
        let text = metrics.render();
        assert!(
            !text.contains("sluice_partition_freshness_seconds{"),
            "{text}"
        );
        assert_eq!(metrics.summary().rows, 10);
        assert_eq!(metrics.summary().commits, 1);
        assert!(
            text.contains(
                "sluice_received_to_committed_seconds_bucket{le=\"2.56\",table=\"readings\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_side_record_is_timed_by_kind_when_sent_and_when_acknowledged() {
        let metrics = Metrics::default();
        metrics.emit(SideAcknowledged {
            kind: SideKind::Alert,
            after: Duration::from_millis(3),
        });
        let text = metrics.render();
        for line in [
            "sluice_received_to_acknowledged_seconds_count{kind=\"alert\"} 1",
            "sluice_received_to_acknowledged_seconds_bucket{le=\"0.002\",kind=\"alert\"} 0",
            "sluice_received_to_acknowledged_seconds_bucket{le=\"0.004\",kind=\"alert\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        assert!(!text.contains("sluice_received_to_sent_seconds_count{kind=\"alert\"} 1"));
        metrics.emit(SideSent {
            kind: SideKind::Alert,
            after: Duration::from_micros(700),
        });
        let text = metrics.render();
        for line in [
            "sluice_received_to_sent_seconds_count{kind=\"alert\"} 1",
            "sluice_received_to_sent_seconds_bucket{le=\"0.0005\",kind=\"alert\"} 0",
            "sluice_received_to_sent_seconds_bucket{le=\"0.001\",kind=\"alert\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }

    #[test]
    fn open_windows_alone_over_the_budget_are_noticed_once_per_crossing() {
        let metrics = Metrics::default();
        let told = |window_state| {
            metrics.emit(Buffered {
                bytes: 10,
                window_state,
                budget: 100,
            });
            metrics.window_state_over_budget.load(Ordering::Relaxed)
        };
        assert!(!told(100), "at the budget is not over it");
        assert!(told(101));
        assert!(told(150), "still over: no second warning");
        assert!(!told(99));
        assert!(told(101), "over again");
        assert!(metrics.render().contains("sluice_window_state_bytes 101"));
    }

    #[test]
    fn readiness_needs_partitions_and_commits_that_succeed() {
        let metrics = Metrics::default();
        assert!(!metrics.ready());
        let partitions = [("t".to_string(), 0)];
        metrics.emit(PartitionsAssigned {
            partitions: &partitions,
            holding: 1,
        });
        assert!(metrics.ready());
        let error = anyhow::anyhow!("store down");
        metrics.emit(CommitRetried {
            table: "readings",
            error: &error,
            retry_in: Duration::from_millis(250),
        });
        assert!(!metrics.ready());
        assert!(metrics.live());
    }
}
