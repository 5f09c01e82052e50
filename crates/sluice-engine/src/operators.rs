//! The processing steps a stream's decoded rows go through, each behind one small trait
//! (Arroyo's `ArrowOperator`): windows (find the late events), side outputs (dead letters,
//! alerts, late copies), tables (filter, then buffer in the lane) and forwards to repartition
//! topics ([`ForwardStep`](crate::repartition::ForwardStep)). A [`Job`](crate::job::Job) runs
//! them in that order over each partition's batch; an operator keeps its per-partition
//! state in the [`Lane`] it is given, so one operator serves every partition of its stream.

use std::time::Instant;

use anyhow::{Context, Result};
use arrow::compute::filter_record_batch;
use sluice_core::DecodedBatch;
use sluice_core::config::Window;
use sluice_core::expressions::Predicate;

use crate::events::{LateEvents, Metrics};
use crate::lanes::Lane;
use crate::side::{Original, SideBatch, SideOutputs};
use sluice_kafka::side::SideRecord;

/// One partition's decoded batch, as every operator sees it.
pub struct Batch<'a> {
    /// The topic (or a load's source name).
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The rows, and the records that did not fit.
    pub decoded: &'a DecodedBatch,
    /// For a repartition topic: per row, the source partition its record names.
    pub origins: Option<&'a [i32]>,
    /// The last offset the batch covers (records refused or skipped included).
    pub last_offset: i64,
    /// When the batch arrived.
    pub now: Instant,
    /// The source record at an offset, as the dead-letter topic keeps it.
    pub original: &'a dyn Fn(i64) -> Option<Original<'a>>,
}

/// What operators hand on: late events for the side outputs, records for the driver to send.
#[derive(Default)]
pub struct Out {
    /// Per window with late events in this batch, their offsets.
    pub late: Vec<(String, Vec<i64>)>,
    /// Side records to send (dead letters, alerts, late copies), and their counts.
    pub side: SideBatch,
    /// Events forwarded to repartition topics.
    pub forwarded: Vec<SideRecord>,
}

/// One processing step.
pub trait Operator: Send + Sync {
    /// Processes one partition's batch: updates `lane`'s state for it and adds to `out`.
    fn process(
        &self,
        batch: &Batch<'_>,
        lane: &mut Lane,
        out: &mut Out,
        metrics: &Metrics,
    ) -> Result<()>;
}

/// A window aggregation: feeds the rows to the lane's window state, which reports the events
/// behind windows already closed.
pub struct WindowStep {
    /// The window.
    pub config: Window,
    /// Its position among the stream's windows (its state in each lane).
    pub slot: usize,
}

impl Operator for WindowStep {
    fn process(
        &self,
        batch: &Batch<'_>,
        lane: &mut Lane,
        out: &mut Out,
        metrics: &Metrics,
    ) -> Result<()> {
        let offsets = lane.windows[self.slot].ingest(
            &self.config.aggregation,
            (&batch.decoded.batch, batch.origins),
            batch.last_offset,
            batch.now,
        )?;
        if !offsets.is_empty() {
            metrics.emit(LateEvents {
                topic: batch.topic,
                partition: batch.partition,
                window: &self.config.name,
                offsets: &offsets,
            });
            out.late.push((self.config.name.clone(), offsets));
        }
        Ok(())
    }
}

/// Dead letters, alerts and late copies, each once per source record: what the lane's side
/// marks say was sent already is left out.
pub struct SideStep(pub SideOutputs);

impl Operator for SideStep {
    fn process(
        &self,
        batch: &Batch<'_>,
        lane: &mut Lane,
        out: &mut Out,
        _metrics: &Metrics,
    ) -> Result<()> {
        out.side = self.0.records(
            (batch.topic, batch.partition),
            batch.decoded,
            &out.late,
            batch.original,
            &lane.side_marks,
        )?;
        Ok(())
    }
}

/// A table: the rows its filter keeps, with the columns newer writer versions added, buffered
/// in the lane until the table commits.
pub struct TableStep {
    /// The table.
    pub name: String,
    /// Which rows it keeps (all without one).
    pub filter: Option<Predicate>,
    /// Its position among the stream's tables (its buffer in each lane).
    pub slot: usize,
}

impl Operator for TableStep {
    fn process(
        &self,
        batch: &Batch<'_>,
        lane: &mut Lane,
        _out: &mut Out,
        _metrics: &Metrics,
    ) -> Result<()> {
        let rows = &batch.decoded.with_added();
        let kept = match &self.filter {
            None => rows.clone(),
            Some(filter) => {
                let keep = filter
                    .matches(rows)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("filter of table {}", self.name))?;
                filter_record_batch(rows, &keep)?
            }
        };
        lane.append(self.slot, &kept, batch.last_offset, batch.now);
        Ok(())
    }
}
