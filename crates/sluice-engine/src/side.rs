//! What a partition's batch sends to side topics: each undecodable record to the stream's
//! dead-letter topic (original bytes and headers, plus the reason), and one JSON alert per
//! event and matching rule.
//!
//! Side records of a batch are ordered by source offset, then ordinal, before they are sent:
//! a side partition must receive a source partition's records in that order for the tail scan
//! ([`sluice_kafka::side::last_marks`]) to be exact.

use std::collections::HashMap;

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::json::LineDelimitedWriter;
use chrono::{DateTime, SecondsFormat};
use sluice_core::DecodedBatch;
use sluice_core::config::{Pipeline, Stream, Window};
use sluice_core::expressions::Predicate;
use sluice_core::schema::OFFSET_COLUMN;
use sluice_kafka::side::{SideKind, SideMark, SideRecord};

/// Header of a dead-lettered record: why it was refused.
pub const ERROR_HEADER: &str = "sluice.error";
/// Header of a late event: the window it missed.
pub const LATE_HEADER: &str = "sluice.late.window";
/// Header of a dead-lettered record: when (RFC 3339).
pub const TIME_HEADER: &str = "sluice.time";
/// Header of a dead-lettered record: the stream that refused it.
pub const STREAM_HEADER: &str = "sluice.stream";
/// Header of a dead letter whose payload was cut to [`DEAD_LETTER_MAX_PAYLOAD`]: the original
/// size in bytes.
pub const ORIGINAL_SIZE_HEADER: &str = "sluice.original_size";

/// The most payload bytes a dead letter keeps. Brokers refuse records over about 1 MiB by
/// default (`message.max.bytes`), and a dead letter that cannot be sent would stop the stream;
/// a record larger than this (such as one refused for its size) keeps its first bytes.
pub const DEAD_LETTER_MAX_PAYLOAD: usize = 512 * 1024;

/// An alert rule as the stream runs it.
struct Rule {
    name: String,
    when: Predicate,
    topic: String,
    /// Its position among the rules of its stream that write to the same topic.
    ordinal: u32,
}

/// Which of a stream's windows run on the stream's own records, and so send their late events
/// from its side outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowsHere {
    /// Every window (`sluice load`: no Kafka, repartitioning happens in place).
    All,
    /// Those not repartitioned (`sluice stream`: a window grouped by other columns runs on its
    /// repartition topic's lanes, whose side outputs are [`SideOutputs::of_repartitioned`]).
    NotRepartitioned,
}

/// Where a window's late events go.
struct LateOutput {
    window: String,
    topic: String,
    /// Its position among the stream's side outputs writing to the same topic.
    ordinal: u32,
}

/// The side outputs of one stream.
pub struct SideOutputs {
    stream: String,
    dead_letter_topic: Option<String>,
    rules: Vec<Rule>,
    /// Where the late events of each window run here go, for the windows that have a late
    /// topic.
    late: Vec<LateOutput>,
    /// The key field's column, which alerts name as their key.
    key_column: Option<usize>,
    /// How many leading columns are the stream's own fields (the event in an alert).
    field_count: usize,
    event_time_column: usize,
}

/// A source record as Kafka delivered it, for the dead-letter topic.
pub struct Original<'a> {
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value.
    pub payload: Option<&'a [u8]>,
    /// Its headers.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Its timestamp (epoch ms).
    pub timestamp: Option<i64>,
}

/// What a side record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DeadLetter,
    Late,
    /// Raised by the rule at this position.
    Alert(usize),
}

/// What one partition's batch sends.
#[derive(Default)]
pub struct SideBatch {
    /// Records to send, in order.
    pub records: Vec<SideRecord>,
    /// How many of them are dead letters.
    pub dead_letters: u64,
    /// How many are alerts, per rule that raised any.
    pub alerts: Vec<(String, u64)>,
}

impl SideOutputs {
    /// The side outputs `pipeline` gives `stream`, with the late events of the windows `here`.
    pub fn of(pipeline: &Pipeline, stream: &Stream, here: WindowsHere) -> Self {
        let mut per_topic: HashMap<String, u32> = HashMap::new();
        let rules = pipeline
            .alerts
            .iter()
            .filter(|alert| alert.from == stream.name)
            .map(|alert| {
                let next = per_topic.entry(alert.topic.clone()).or_default();
                let ordinal = *next;
                *next += 1;
                Rule {
                    name: alert.name.clone(),
                    when: alert.when.clone(),
                    topic: alert.topic.clone(),
                    ordinal,
                }
            })
            .collect();
        let late = pipeline
            .windows
            .iter()
            .filter(|window| {
                window.from == stream.name
                    && (here == WindowsHere::All || window.repartition_topic.is_none())
            })
            .filter_map(|window| {
                let topic = window.late_topic.clone()?;
                let next = per_topic.entry(topic.clone()).or_default();
                let ordinal = *next;
                *next += 1;
                Some(LateOutput {
                    window: window.name.clone(),
                    ordinal,
                    topic,
                })
            })
            .collect();
        let fields = stream.schema.fields();
        Self {
            stream: stream.name.clone(),
            dead_letter_topic: stream.dead_letter_topic.clone(),
            rules,
            late,
            key_column: stream
                .key
                .as_ref()
                .and_then(|key| fields.iter().position(|f| &f.name == key)),
            field_count: fields.len(),
            event_time_column: stream.schema.event_time_index(),
        }
    }

    /// The side outputs of a repartition topic's lanes: the late events of its window.
    pub fn of_repartitioned(stream: &Stream, window: &Window) -> Self {
        let late = window.late_topic.clone().map(|topic| LateOutput {
            window: window.name.clone(),
            topic,
            ordinal: 0,
        });
        let fields = stream.schema.fields();
        Self {
            stream: stream.name.clone(),
            dead_letter_topic: None,
            rules: Vec::new(),
            late: late.into_iter().collect(),
            key_column: None,
            field_count: fields.len(),
            event_time_column: stream.schema.event_time_index(),
        }
    }

    /// Where undecodable records go, if anywhere.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        self.dead_letter_topic.as_deref()
    }

    /// Every side topic, once each.
    pub fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.dead_letter_topic.iter().map(String::as_str).collect();
        topics.extend(self.rules.iter().map(|r| r.topic.as_str()));
        topics.extend(self.late.iter().map(|l| l.topic.as_str()));
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// The side records of one partition's decoded batch, skipping what `marks` says was
    /// sent already. `late` names each window with late events and their offsets.
    pub fn records<'a>(
        &self,
        (topic, partition): (&str, i32),
        decoded: &DecodedBatch,
        late: &[(String, Vec<i64>)],
        original: impl Fn(i64) -> Option<Original<'a>>,
        marks: &HashMap<String, SideMark>,
    ) -> Result<SideBatch> {
        let mut records: Vec<(SideRecord, Kind)> = Vec::new();
        let source_of = |offset: i64| {
            original(offset)
                .with_context(|| format!("record {topic}/{partition}@{offset} not in the batch"))
        };
        if let Some(dlq) = &self.dead_letter_topic {
            for rejected in &decoded.rejected {
                let mark = SideMark {
                    offset: rejected.offset,
                    ordinal: 0,
                };
                let why = (ERROR_HEADER, rejected.reason.clone());
                let record = self.copy_of(
                    (SideKind::DeadLetter, dlq),
                    (topic, partition, mark),
                    source_of(mark.offset)?,
                    why,
                );
                records.push((record, Kind::DeadLetter));
            }
        }
        for (window, offsets) in late {
            let Some(output) = self.late.iter().find(|l| l.window == *window) else {
                continue;
            };
            for &offset in offsets {
                let mark = SideMark {
                    offset,
                    ordinal: output.ordinal,
                };
                let why = (LATE_HEADER, output.window.clone());
                let record = self.copy_of(
                    (SideKind::Late, &output.topic),
                    (topic, partition, mark),
                    source_of(offset)?,
                    why,
                );
                records.push((record, Kind::Late));
            }
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let matched = rule
                .when
                .matches(&decoded.batch)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("alert rule {}", rule.name))?;
            if matched.true_count() == 0 {
                continue;
            }
            let rows = filter_record_batch(&decoded.batch, &matched)?;
            for (offset, payload) in self.alerts(rule, topic, partition, &rows)? {
                let key = original(offset).and_then(|o| o.key.map(<[u8]>::to_vec));
                records.push((
                    SideRecord {
                        kind: SideKind::Alert,
                        topic: rule.topic.clone(),
                        source_topic: topic.to_string(),
                        source_partition: partition,
                        mark: SideMark {
                            offset,
                            ordinal: rule.ordinal,
                        },
                        key,
                        payload,
                        headers: Vec::new(),
                        timestamp: None,
                        partition: None,
                    },
                    Kind::Alert(index),
                ));
            }
        }
        records.retain(|(r, _)| marks.get(&r.topic).is_none_or(|sent| r.mark > *sent));
        records.sort_by_key(|(r, _)| r.mark);
        let count = |kind: Kind| records.iter().filter(|(_, k)| *k == kind).count() as u64;
        Ok(SideBatch {
            dead_letters: count(Kind::DeadLetter),
            alerts: (self.rules.iter().enumerate())
                .map(|(index, rule)| (rule.name.clone(), count(Kind::Alert(index))))
                .filter(|(_, count)| *count > 0)
                .collect(),
            records: records.into_iter().map(|(r, _)| r).collect(),
        })
    }

    /// A copy of a source record (key, bytes, headers) for a side topic, with `why` and the
    /// stream and time as headers.
    fn copy_of(
        &self,
        (kind, side_topic): (SideKind, &str),
        (topic, partition, mark): (&str, i32, SideMark),
        source: Original<'_>,
        why: (&str, String),
    ) -> SideRecord {
        let mut headers: Vec<(String, Vec<u8>)> = source
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        let payload = source.payload.unwrap_or_default();
        if payload.len() > DEAD_LETTER_MAX_PAYLOAD {
            headers.push((
                ORIGINAL_SIZE_HEADER.to_string(),
                payload.len().to_string().into_bytes(),
            ));
        }
        headers.extend([
            (why.0.to_string(), why.1.into_bytes()),
            (STREAM_HEADER.to_string(), self.stream.clone().into_bytes()),
            (
                TIME_HEADER.to_string(),
                chrono::Utc::now()
                    .to_rfc3339_opts(SecondsFormat::Millis, true)
                    .into_bytes(),
            ),
        ]);
        SideRecord {
            kind,
            topic: side_topic.to_string(),
            source_topic: topic.to_string(),
            source_partition: partition,
            mark,
            key: source.key.map(<[u8]>::to_vec),
            payload: payload[..payload.len().min(DEAD_LETTER_MAX_PAYLOAD)].to_vec(),
            headers,
            timestamp: source.timestamp,
            partition: None,
        }
    }

    /// One JSON alert per row of `rows` (the events that matched `rule`), with its offset.
    fn alerts(
        &self,
        rule: &Rule,
        topic: &str,
        partition: i32,
        rows: &RecordBatch,
    ) -> Result<Vec<(i64, Vec<u8>)>> {
        let events = rows.project(&(0..self.field_count).collect::<Vec<_>>())?;
        let mut lines = Vec::new();
        {
            let mut writer = LineDelimitedWriter::new(&mut lines);
            writer.write(&events)?;
            writer.finish()?;
        }
        let offsets = rows
            .column_by_name(OFFSET_COLUMN)
            .context("decoded rows carry _offset")?
            .as_primitive::<Int64Type>();
        let times = rows
            .column(self.event_time_column)
            .as_primitive::<TimestampMicrosecondType>();
        let keys = self.key_column.map(|c| rows.column(c));
        let mut alerts = Vec::with_capacity(rows.num_rows());
        for (row, event) in lines
            .split(|b| *b == b'\n')
            .take(rows.num_rows())
            .enumerate()
        {
            let offset = offsets.value(row);
            let event_time = DateTime::from_timestamp_micros(times.value(row))
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            let key = keys
                .filter(|k| k.is_valid(row))
                .map(|k| arrow::util::display::array_value_to_string(k, row))
                .transpose()?;
            let head = serde_json::json!({
                "id": format!("{topic}/{partition}/{offset}/{}", rule.name),
                "rule": rule.name,
                "stream": self.stream,
                "key": key,
                "event_time": event_time,
                "source": {"topic": topic, "partition": partition, "offset": offset},
            });
            let mut alert = serde_json::to_vec(&head)?;
            // `head` is an object: replace its closing brace with the event.
            alert.pop();
            alert.extend_from_slice(b",\"event\":");
            alert.extend_from_slice(event);
            alert.push(b'}');
            alerts.push((offset, alert));
        }
        Ok(alerts)
    }
}
