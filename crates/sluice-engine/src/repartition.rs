//! Repartitioning (docs/DESIGN.md, "Windows"): a window whose `group_by` is not the stream's
//! key reads its events from an internal topic keyed by `group_by`, so that all events of a key
//! meet in one partition whichever process reads it.
//!
//! The stream's job forwards each decoded event there ([`ForwardStep`]): its original bytes,
//! keyed by the `group_by` values, to the partition the key's CRC-32 picks, through the
//! side-output protocol: a source partition's records reach each repartition partition in offset order,
//! and a lane that opens sends nothing at or below the last mark each partition holds from it.
//! How far each source partition was forwarded is committed with the window table.
//!
//! The repartition topic's lanes read the source partition of each record from its headers:
//! their watermark is the lowest over the source partitions (each partition's newest event time
//! seen less the lateness), so one source partition read ahead of another does not make the
//! other's events late.

use anyhow::{Context, Result};
use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow::util::display::array_value_to_string;
use sluice_core::schema::OFFSET_COLUMN;
use sluice_kafka::consumer::Consumed;
use sluice_kafka::side::{SOURCE_PARTITION, SideKind, SideMark, SideRecord, keyed_partition};

use crate::events::{EventsForwarded, Metrics};
use crate::lanes::Lane;
use crate::operators::{Batch, Operator, Out};

/// Forwards a stream's events for one repartitioned window: an operator of the stream's job.
pub struct ForwardStep {
    /// The window.
    pub window: String,
    /// The repartition topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// The window's `group_by` columns, whose values key the records.
    pub key_columns: Vec<String>,
    /// Its position among the stream's forwards (how far each lane forwarded).
    pub slot: usize,
}

impl Operator for ForwardStep {
    /// Adds the records forwarding the batch's rows to `out`, leaving out what the lane's
    /// forward marks (per repartition partition, the last mark sent from this partition) say
    /// is there already, and moves the marks past them.
    fn process(
        &self,
        batch: &Batch<'_>,
        lane: &mut Lane,
        out: &mut Out,
        metrics: &Metrics,
    ) -> Result<()> {
        if lane.forwards[self.slot]
            .committed
            .is_some_and(|c| batch.last_offset <= c)
        {
            return Ok(());
        }
        let rows = &batch.decoded.batch;
        let offsets = rows
            .column_by_name(OFFSET_COLUMN)
            .context("decoded rows carry _offset")?
            .as_primitive::<Int64Type>();
        let keys = self
            .key_columns
            .iter()
            .map(|name| rows.column_by_name(name).context("rows carry the keys"))
            .collect::<Result<Vec<_>>>()?;
        let before = out.forwarded.len();
        for row in 0..rows.num_rows() {
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
            let target = keyed_partition(&key, self.partitions);
            let mark = SideMark { offset, ordinal: 0 };
            let at = (self.topic.clone(), target);
            if lane.forwarded.get(&at).is_some_and(|last| mark <= *last) {
                continue;
            }
            let source = (batch.original)(offset).with_context(|| {
                format!(
                    "record {}/{}@{offset} not in the batch",
                    batch.topic, batch.partition
                )
            })?;
            lane.forwarded.insert(at, mark);
            out.forwarded.push(SideRecord {
                kind: SideKind::Forward,
                topic: self.topic.clone(),
                source_topic: batch.topic.to_string(),
                source_partition: batch.partition,
                mark,
                key: Some(key),
                payload: source.payload.unwrap_or_default().to_vec(),
                headers: Vec::new(),
                timestamp: source.timestamp,
                partition: Some(target),
            });
        }
        metrics.emit(EventsForwarded {
            window: &self.window,
            count: (out.forwarded.len() - before) as u64,
        });
        lane.forwards[self.slot].progressed(batch.last_offset, batch.now);
        Ok(())
    }
}

/// The source partition a repartitioned record names in its headers.
pub fn origin_partition(message: &Consumed<'_>) -> Option<i32> {
    std::str::from_utf8(message.header(SOURCE_PARTITION)?)
        .ok()?
        .parse()
        .ok()
}
