//! Repartitioning (docs/DESIGN.md, "Windows"): a window whose `group_by` is not the stream's
//! key reads its events from an internal topic keyed by `group_by`, so that all events of a key
//! meet in one partition whichever process reads it.
//!
//! The stream's lanes forward each decoded event there — its original bytes, keyed by the
//! `group_by` values, to the partition the key's CRC-32 picks — through the side-output
//! protocol: a source partition's records reach each repartition partition in offset order,
//! and a lane that opens sends nothing at or below the last mark each partition holds from it.
//! How far each source partition was forwarded is committed with the window table.
//!
//! The repartition topic's lanes read the source partition of each record from its headers:
//! their watermark is the lowest over the source partitions (each partition's newest event time
//! seen less the lateness), so one source partition read ahead of another does not make the
//! other's events late.

use std::collections::HashMap;

use anyhow::{Context, Result};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow::util::display::array_value_to_string;
use sluice_core::schema::OFFSET_COLUMN;
use sluice_kafka::consumer::Consumed;
use sluice_kafka::side::{SOURCE_PARTITION, SideMark, SideProducer, SideRecord};

use crate::side::Original;

/// Where a stream's events go for one repartitioned window.
pub struct Forward {
    /// The window (its index among the process's window outputs).
    pub window: usize,
    /// The repartition topic.
    pub topic: String,
    /// The window's `group_by` columns, whose values key the records.
    pub key_columns: Vec<String>,
}

impl Forward {
    /// The records forwarding the rows of `decoded` (from `source`: topic and partition),
    /// leaving out what `sent` (per repartition partition, the last mark sent from this source
    /// partition) says is there already; `sent` moves past what is returned.
    pub fn records<'a>(
        &self,
        (topic, partition): (&str, i32),
        decoded: &RecordBatch,
        producer: &SideProducer,
        original: impl Fn(i64) -> Option<Original<'a>>,
        sent: &mut HashMap<(String, i32), SideMark>,
    ) -> Result<Vec<SideRecord>> {
        let offsets = decoded
            .column_by_name(OFFSET_COLUMN)
            .context("decoded rows carry _offset")?
            .as_primitive::<Int64Type>();
        let keys = self
            .key_columns
            .iter()
            .map(|name| decoded.column_by_name(name).context("rows carry the keys"))
            .collect::<Result<Vec<_>>>()?;
        let mut records = Vec::new();
        for row in 0..decoded.num_rows() {
            let offset = offsets.value(row);
            let values = keys
                .iter()
                .map(|column| {
                    Ok((column.is_valid(row))
                        .then(|| array_value_to_string(column, row))
                        .transpose()?)
                })
                .collect::<Result<Vec<Option<String>>>>()?;
            let key = serde_json::to_vec(&values)?;
            let target = producer.keyed_partition(&self.topic, &key);
            let mark = SideMark { offset, ordinal: 0 };
            let at = (self.topic.clone(), target);
            if sent.get(&at).is_some_and(|last| mark <= *last) {
                continue;
            }
            let source = original(offset)
                .with_context(|| format!("record {topic}/{partition}@{offset} not in the batch"))?;
            sent.insert(at, mark);
            records.push(SideRecord {
                topic: self.topic.clone(),
                source_topic: topic.to_string(),
                source_partition: partition,
                mark,
                key: Some(key),
                payload: source.payload.unwrap_or_default().to_vec(),
                headers: Vec::new(),
                timestamp: source.timestamp,
                partition: Some(target),
            });
        }
        Ok(records)
    }
}

/// The source partition a repartitioned record names in its headers.
pub fn origin_partition(message: &Consumed<'_>) -> Option<i32> {
    std::str::from_utf8(message.header(SOURCE_PARTITION)?)
        .ok()?
        .parse()
        .ok()
}
