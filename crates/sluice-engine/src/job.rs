//! A stream's job: what happens to one partition's decoded batch, whatever the records came
//! from. The drivers (`stream` over Kafka, `load` over files) decode, hand the batch to
//! [`Job::process`] with the partition's [`Lane`], and carry out what comes back: the side
//! records and forwards to send. Commits stay with the drivers and the tables.

use anyhow::Result;
use sluice_core::config::{Table, Window};

use crate::events::{AlertsSent, DeadLettersSent, Metrics, RecordsRefused};
use crate::lanes::Lane;
use crate::operators::{Batch, Operator, Out, SideStep, TableStep, WindowStep};
use crate::repartition::ForwardStep;
use crate::side::SideOutputs;

/// The operators of one stream (or of one repartition topic), run in this order: windows
/// (which find the late events), side outputs (which copy them), tables, forwards to
/// repartition topics.
pub struct Job {
    windows: Vec<WindowStep>,
    side: SideStep,
    tables: Vec<TableStep>,
    forwards: Vec<ForwardStep>,
}

impl Job {
    /// A job with `side` outputs and no tables or windows yet.
    pub fn new(side: SideOutputs) -> Self {
        Self {
            windows: Vec::new(),
            side: SideStep(side),
            tables: Vec::new(),
            forwards: Vec::new(),
        }
    }

    /// Adds a table; returns its slot (its buffer in each lane).
    pub fn add_table(&mut self, config: &Table) -> usize {
        self.tables.push(TableStep {
            name: config.name.clone(),
            filter: config.filter.clone(),
            slot: self.tables.len(),
        });
        self.tables.len() - 1
    }

    /// Adds a window; returns its slot (its state in each lane).
    pub fn add_window(&mut self, config: &Window) -> usize {
        self.windows.push(WindowStep {
            config: config.clone(),
            slot: self.windows.len(),
        });
        self.windows.len() - 1
    }

    /// Adds a forward of every event to `window`'s repartition `topic` (of `partitions`),
    /// keyed by the window's `group_by`; returns its slot (how far each lane forwarded).
    pub fn add_forward(&mut self, window: &Window, topic: &str, partitions: i32) -> usize {
        self.forwards.push(ForwardStep {
            window: window.name.clone(),
            topic: topic.to_string(),
            partitions,
            key_columns: window.group_by.clone(),
            slot: self.forwards.len(),
        });
        self.forwards.len() - 1
    }

    /// The repartition topics it forwards to.
    pub fn forward_topics(&self) -> impl Iterator<Item = &str> {
        self.forwards.iter().map(|f| f.topic.as_str())
    }

    /// Its dead-letter, alert and late outputs.
    pub fn side(&self) -> &SideOutputs {
        &self.side.0
    }

    fn operators(&self) -> impl Iterator<Item = &dyn Operator> {
        let windows = self.windows.iter().map(|w| w as &dyn Operator);
        let tables = self.tables.iter().map(|t| t as &dyn Operator);
        let forwards = self.forwards.iter().map(|f| f as &dyn Operator);
        windows
            .chain([&self.side as &dyn Operator])
            .chain(tables)
            .chain(forwards)
    }

    /// Runs every operator over one partition's batch; returns the records to send.
    pub fn process(&self, batch: &Batch<'_>, lane: &mut Lane, metrics: &Metrics) -> Result<Out> {
        metrics.emit(RecordsRefused {
            topic: batch.topic,
            refused: &batch.decoded.rejected,
            dead_letter_topic: self.side().dead_letter_topic(),
        });
        let mut out = Out::default();
        for operator in self.operators() {
            operator.process(batch, lane, &mut out, metrics)?;
        }
        metrics.emit(DeadLettersSent {
            topic: batch.topic,
            count: out.side.dead_letters,
        });
        for (rule, count) in &out.side.alerts {
            metrics.emit(AlertsSent {
                rule,
                count: *count,
            });
        }
        Ok(out)
    }
}
