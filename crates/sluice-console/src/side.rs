//! The latest records of the pipeline's side topics: dead letters with the reason each was
//! refused, alerts with their rule, late events with their window. Each partition's last
//! [`PER_PARTITION`] records are read (through the tail reader, which copes with a broker that
//! serves fetches from batch starts), newest first over the topic. Blocking: run it off the
//! async workers.

use std::collections::BTreeMap;

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use serde::Serialize;
use sluice_core::Pipeline;
use sluice_engine::side::{ERROR_HEADER, LATE_HEADER};
use sluice_kafka::tail::{Read, read_to_ends};
use sluice_kafka::{ClientOptions, KafkaError, admin};

/// Records read from the end of each partition.
const PER_PARTITION: i64 = 200;

/// Records answered, newest first.
const KEPT: usize = 200;

/// Payload bytes shown of a record.
const PAYLOAD_SHOWN: usize = 4096;

/// Which side topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SideKind {
    DeadLetters,
    Alerts,
    Late,
}

impl SideKind {
    /// The kind a page path names.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "dead_letters" => Some(Self::DeadLetters),
            "alerts" => Some(Self::Alerts),
            "late" => Some(Self::Late),
            _ => None,
        }
    }

    /// The pipeline's topics of this kind.
    pub(crate) fn topics(self, pipeline: &Pipeline) -> Vec<String> {
        let mut topics: Vec<String> = match self {
            Self::DeadLetters => (pipeline.streams.iter())
                .filter_map(|s| s.dead_letter_topic.clone())
                .collect(),
            Self::Alerts => pipeline.alerts.iter().map(|a| a.topic.clone()).collect(),
            Self::Late => (pipeline.windows.iter())
                .filter_map(|w| w.late_topic.clone())
                .collect(),
        };
        topics.sort();
        topics.dedup();
        topics
    }
}

/// One side record as the page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SideRecord {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<String>,
    headers: BTreeMap<String, String>,
    reason: Option<String>,
    rule: Option<String>,
    payload: String,
}

/// The latest records of `topics`, newest first. Blocking.
pub(crate) fn latest(
    client: &ClientOptions,
    kind: SideKind,
    topics: &[String],
) -> Result<Vec<SideRecord>, KafkaError> {
    let mut records = Vec::new();
    for topic in topics {
        let described = admin::describe_topic(client, topic, None)?;
        let keys: Vec<(String, i32)> = (described.partitions.iter())
            .map(|p| (topic.clone(), p.id))
            .collect();
        let ranges = admin::log_ranges(client, &keys)?;
        let reads: Vec<Read> = (ranges.iter())
            .map(|((_, partition), range)| Read {
                partition: *partition,
                from: (range.end - PER_PARTITION).max(range.start),
                range: *range,
            })
            .collect();
        read_to_ends(client, topic, &reads, |message| {
            records.push(record(kind, message));
        })?;
    }
    // A partition read again from further back shows some records twice.
    records.sort_by(|a, b| {
        (b.timestamp_ms, &b.topic, b.partition, b.offset).cmp(&(
            a.timestamp_ms,
            &a.topic,
            a.partition,
            a.offset,
        ))
    });
    records.dedup_by(|a, b| (&a.topic, a.partition, a.offset) == (&b.topic, b.partition, b.offset));
    records.truncate(KEPT);
    Ok(records)
}

fn record(kind: SideKind, message: &BorrowedMessage<'_>) -> SideRecord {
    let headers: BTreeMap<String, String> = message.headers().map_or_else(BTreeMap::new, |h| {
        (h.iter())
            .map(|header| {
                let value = header
                    .value
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                (header.key.to_string(), value.into_owned())
            })
            .collect()
    });
    let payload = message.payload().unwrap_or_default();
    let shown = String::from_utf8_lossy(&payload[..payload.len().min(PAYLOAD_SHOWN)]).into_owned();
    let rule = match kind {
        SideKind::Alerts => serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|alert| alert["rule"].as_str().map(str::to_string)),
        _ => None,
    };
    let reason = match kind {
        SideKind::DeadLetters => headers.get(ERROR_HEADER).cloned(),
        SideKind::Late => headers
            .get(LATE_HEADER)
            .map(|w| format!("late for window {w}")),
        SideKind::Alerts => rule.as_ref().map(|rule| format!("rule {rule}")),
    };
    SideRecord {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        reason,
        rule,
        payload: shown,
    }
}
