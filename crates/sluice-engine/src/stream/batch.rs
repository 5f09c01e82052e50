//! Reading one batch: rebalances applied (revoked lanes dropped), then per partition the
//! records admitted in offset order, decoded into Arrow once, fed to the windows (which find
//! the late events), their side records sent (dead letters, alerts, late copies, forwards to
//! repartition topics) and the rows appended to each table's buffer: the stream's
//! [`Job`](crate::job::Job) does all but the reading and the sending.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use sluice_core::RawRecord;
use sluice_core::config::defaults;
use sluice_kafka::consumer::{Consumed, RebalanceEvent};
use sluice_kafka::side::{ORDINAL, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC};
use tracing::info;

use crate::events::{PartitionsAssigned, PartitionsRevoked, RecordsRead};
use crate::operators::Batch;

use super::opening::{by_topic, lane_for, side_marks};
use super::{State, refresh_tables};
use crate::lanes::Admit;
use crate::repartition::origin_partition;
use crate::side::Original;

impl State {
    /// Reads one batch and buffers its rows; returns how many records arrived.
    pub(super) async fn process_batch(&mut self, wait: Duration) -> Result<usize> {
        let messages = self
            .consumer
            .recv_batch(defaults::DECODE_BATCH_RECORDS, wait)
            .await?;
        // The records' receipt: what the latency metrics count from.
        let now = Instant::now();
        for event in self.consumer.take_events() {
            match event {
                RebalanceEvent::Assigned(partitions) => {
                    self.assigned
                        .extend(partitions.iter().map(|p| (p.clone(), now)));
                    self.metrics.emit(PartitionsAssigned {
                        partitions: &partitions,
                        holding: self.assigned.len(),
                    });
                    for (topic, partitions) in by_topic(&partitions) {
                        let marks =
                            side_marks(&self.client, &self.sources, topic, &partitions).await?;
                        self.prefetched_marks.extend(marks);
                    }
                    // The previous owner may have committed since the tables were last read:
                    // lanes must start from the lake as it is now.
                    refresh_tables(&mut self.outputs, None).await?;
                }
                RebalanceEvent::Revoked(partitions) => {
                    let mut lanes = 0;
                    for partition in &partitions {
                        self.assigned.remove(partition);
                        lanes += usize::from(self.lanes.remove(partition).is_some());
                        self.prefetched_marks.remove(partition);
                    }
                    self.metrics.emit(PartitionsRevoked {
                        partitions: &partitions,
                        holding: self.assigned.len(),
                        lanes,
                    });
                }
            }
        }
        let mut by_partition: BTreeMap<(&str, i32), Vec<&Consumed<'_>>> = BTreeMap::new();
        for message in &messages {
            by_partition
                .entry((message.topic(), message.partition()))
                .or_default()
                .push(message);
        }
        let ingested_at_us = chrono::Utc::now().timestamp_micros();
        for ((topic, partition), records) in by_partition {
            let key = (topic.to_string(), partition);
            if !self.assigned.contains_key(&key) {
                continue;
            }
            let lane = lane_for(
                &mut self.lanes,
                &self.outputs,
                &self.sources,
                (&self.client, &mut self.prefetched_marks),
                key,
                &self.metrics,
            )
            .await?;
            self.metrics.emit(RecordsRead {
                topic,
                records: records.len(),
                bytes: records
                    .iter()
                    .map(|r| r.payload().map_or(0, <[u8]>::len))
                    .sum(),
                already_landed: 0,
            });
            lane.begin_batch();
            let mut taken = Vec::with_capacity(records.len());
            for message in &records {
                let offset = message.offset();
                match lane.admit(offset) {
                    Admit::Take => taken.push(RawRecord {
                        payload: message.payload(),
                        partition,
                        offset,
                    }),
                    Admit::Skip => {}
                    Admit::SeekTo(next) => {
                        info!(
                            topic,
                            partition,
                            from = offset,
                            to = next,
                            "Seeking back to the lake's position."
                        );
                        tokio::task::block_in_place(|| {
                            self.consumer.seek(topic, partition, Some(next))
                        })?;
                    }
                }
            }
            let Some(last_offset) = taken.last().map(|r| r.offset) else {
                continue;
            };
            let source = &self.sources[topic];
            let decoded = source.decoder.decode(topic, &taken, ingested_at_us);
            let origins = source
                .reads_origins
                .then(|| origins_of(&records, &decoded.batch))
                .transpose()?;
            let first = records[0].offset();
            let original = |offset: i64| {
                let message = records
                    .get(usize::try_from(offset - first).ok()?)
                    .filter(|m| m.offset() == offset)
                    .or_else(|| records.iter().find(|m| m.offset() == offset))?;
                Some(original_of(message))
            };
            let batch = Batch {
                topic,
                partition,
                decoded: &decoded,
                origins: origins.as_deref(),
                last_offset,
                now,
                original: &original,
            };
            let out = source.job.process(&batch, lane, &self.metrics)?;
            if out.side.records.is_empty() && out.forwarded.is_empty() {
                continue;
            }
            let producer = self
                .side_producer
                .as_ref()
                .context("side records to send but no side topics")?;
            tokio::task::block_in_place(|| {
                (out.side.records.iter())
                    .chain(&out.forwarded)
                    .try_for_each(|record| producer.send(record, Some(now)))
            })?;
            for record in &out.side.records {
                lane.side_marks.insert(record.topic.clone(), record.mark);
            }
        }
        Ok(messages.len())
    }
}

/// A consumed record as the dead-letter topic keeps it.
fn original_of<'a>(message: &'a Consumed<'_>) -> Original<'a> {
    Original {
        key: message.key(),
        payload: message.payload(),
        headers: message
            .headers()
            .filter(|(key, _)| *key != ORDINAL)
            .map(|(key, value)| (origin_name(key), value.unwrap_or_default()))
            .collect(),
        timestamp: message.timestamp_ms(),
    }
}

/// The name a header of a consumed record keeps in a side copy: a record from a repartition
/// topic names its source in `sluice.source.*`, which the copy needs for its own source, so
/// those become `sluice.origin.*`.
fn origin_name(key: &str) -> &str {
    match key {
        SOURCE_TOPIC => "sluice.origin.topic",
        SOURCE_PARTITION => "sluice.origin.partition",
        SOURCE_OFFSET => "sluice.origin.offset",
        other => other,
    }
}

/// Per row of `decoded`, the source partition its record from a repartition topic names.
fn origins_of(records: &[&Consumed<'_>], decoded: &RecordBatch) -> Result<Vec<i32>> {
    use arrow::array::AsArray;
    let by_offset: HashMap<i64, &Consumed<'_>> = records.iter().map(|m| (m.offset(), *m)).collect();
    let offsets = decoded
        .column_by_name(sluice_core::schema::OFFSET_COLUMN)
        .context("decoded rows carry _offset")?
        .as_primitive::<arrow::datatypes::Int64Type>();
    offsets
        .values()
        .iter()
        .map(|offset| {
            let message = by_offset.get(offset).context("a decoded row's record")?;
            origin_partition(message).with_context(|| {
                format!(
                    "record {}/{}@{offset} of a repartition topic names no source partition",
                    message.topic(),
                    message.partition()
                )
            })
        })
        .collect()
}
