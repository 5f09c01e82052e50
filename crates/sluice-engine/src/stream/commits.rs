//! Commits on a task of their own, so that reading, decoding, windows and side outputs go on
//! while a table's Parquet files are written and its commit is made.
//!
//! A table has at most one commit in flight. Starting one takes what every lane has pending
//! for the table, once every side record sent so far is acknowledged (a commit must not cover
//! source offsets whose dead letters or alerts could still be lost); the lanes go on buffering
//! behind it. Its result is applied on the loop ([`State::collect_commits`]): the lanes'
//! committed offsets move only then, so the next commit of the table, which cannot start
//! before, names the right previous offsets. A refused (fenced) commit reopens its lanes from
//! the lake, dropping what they buffered since. Whoever needs the table's sink meanwhile
//! (opening a lane, reading the table again) waits for the commit on the sink's lock.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use sluice_kafka::side::SideProducer;
use sluice_lake::{Commit, LakeError, PartitionProgress};
use tokio::task::JoinHandle;
use tracing::warn;

use super::opening::lane_for;
use super::{State, refresh_tables};
use crate::events::{CommitFenced, LanesFenced};
use crate::lanes::{Lane, Pending};
use crate::output::{COMMIT_RETRY_LIMIT, Held, Landed, Lands};

/// A table's commit running on a task of its own; dropping it aborts the task (a commit is
/// atomic, so an aborted one commits nothing or everything).
pub(super) struct InFlight {
    task: JoinHandle<Result<Commit, LakeError>>,
    /// Each partition's progress it carries.
    progress: Vec<PartitionProgress>,
    /// What it lands, still in memory until it ends.
    pub(super) held: Held,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    /// Starts committing one table's (or window table's) pending progress from every lane on a
    /// task of its own. Does nothing while the table's previous commit is in flight.
    pub(super) async fn commit(&mut self, index: usize) -> Result<()> {
        if self.outputs[index].in_flight.is_some() {
            return Ok(());
        }
        let held = self.held(&self.outputs[index]);
        let (batches, progress) = match self.outputs[index].output.lands {
            Lands::Rows => self.gather_rows(index),
            Lands::Windows(_) => self.gather_windows(index),
        };
        if progress.is_empty() {
            return Ok(());
        }
        if let Some(producer) = &self.side_producer {
            flush_side_outputs(producer).await?;
        }
        let routed = &mut self.outputs[index];
        let landed = Landed::batches(&routed.output, &batches, held.since);
        let committer = routed.output.committer();
        let (metrics, carried) = (self.metrics.clone(), progress.clone());
        let task =
            tokio::spawn(
                async move { (committer.commit(&batches, &carried, landed, &metrics)).await },
            );
        routed.in_flight = Some(InFlight {
            task,
            progress,
            held,
        });
        Ok(())
    }

    /// Applies the result of every commit that has ended; with `wait`, of every commit in
    /// flight, waiting for them.
    pub(super) async fn collect_commits(&mut self, wait: bool) -> Result<()> {
        for index in 0..self.outputs.len() {
            let ended = (self.outputs[index].in_flight.as_ref())
                .is_some_and(|in_flight| wait || in_flight.task.is_finished());
            if ended {
                self.settle(index).await?;
            }
        }
        Ok(())
    }

    /// Waits for a table's commit in flight, if any, and applies its result.
    pub(super) async fn settle(&mut self, index: usize) -> Result<()> {
        let Some(mut in_flight) = self.outputs[index].in_flight.take() else {
            return Ok(());
        };
        let ended = (&mut in_flight.task).await;
        let progress = std::mem::take(&mut in_flight.progress);
        let name = self.outputs[index].output.name().to_string();
        match ended.with_context(|| format!("the commit task of table {name}"))? {
            Ok(_) => {
                self.committed(index, &progress);
                Ok(())
            }
            Err(err) if err.is_fenced() => {
                let error = anyhow::Error::new(err);
                self.metrics.emit(CommitFenced {
                    table: &name,
                    error: &error,
                });
                let topic = self.outputs[index].topic.clone();
                self.reopen_lanes(&topic, &progress).await
            }
            Err(err) => Err(err).with_context(|| {
                format!("committing {} rows to table {name}", in_flight.held.rows)
            }),
        }
    }

    /// What a table's rows commit takes from each lane of its topic.
    fn gather_rows(&mut self, index: usize) -> (Vec<RecordBatch>, Vec<PartitionProgress>) {
        let routed = &self.outputs[index];
        let (topic, slot) = (routed.topic.clone(), routed.slot);
        self.gather(&topic, |lane| lane.tables[slot].take_pending())
    }

    /// What a window table's commit takes: the emitted windows and marks of every lane, and
    /// for a repartitioned window how far the stream's lanes forwarded its events.
    fn gather_windows(&mut self, index: usize) -> (Vec<RecordBatch>, Vec<PartitionProgress>) {
        let routed = &self.outputs[index];
        let (topic, slot, fed_by) = (routed.topic.clone(), routed.slot, routed.fed_by.clone());
        let (batches, mut progress) = self.gather(&topic, |lane| lane.windows[slot].take_pending());
        if let Some(fed) = &fed_by {
            let (_, forwarded) =
                self.gather(&fed.topic, |lane| lane.forwards[fed.forward].take_pending());
            progress.extend(forwarded);
        }
        (batches, progress)
    }

    /// What `take` takes from each lane of `topic`: the rows and each partition's progress.
    fn gather(
        &mut self,
        topic: &str,
        mut take: impl FnMut(&mut Lane) -> Option<Pending>,
    ) -> (Vec<RecordBatch>, Vec<PartitionProgress>) {
        let mut batches = Vec::new();
        let mut progress = Vec::new();
        for ((_, partition), lane) in self.lanes.iter_mut().filter(|((t, _), _)| t == topic) {
            if let Some(pending) = take(lane) {
                batches.extend(pending.batches);
                progress.push(PartitionProgress {
                    topic: topic.to_string(),
                    partition: *partition,
                    previous: pending.previous,
                    last_offset: pending.last_offset,
                    marks: pending.marks,
                });
            }
        }
        (batches, progress)
    }

    /// Moves the committed offsets of the lanes a commit of table `index` covered (those
    /// still held) and, for a rows table, the consumer group's positions (lag metrics only).
    fn committed(&mut self, index: usize, progress: &[PartitionProgress]) {
        let routed = &self.outputs[index];
        let (slot, fed_by) = (routed.slot, routed.fed_by.as_ref());
        let rows = matches!(routed.output.lands, Lands::Rows);
        let mut positions = Vec::new();
        for p in progress {
            let Some(lane) = self.lanes.get_mut(&(p.topic.clone(), p.partition)) else {
                continue;
            };
            match fed_by {
                Some(fed) if fed.topic == p.topic => {
                    lane.forwards[fed.forward].committed = Some(p.last_offset);
                }
                _ if rows => {
                    lane.tables[slot].committed = Some(p.last_offset);
                    let next = lane
                        .tables
                        .iter()
                        .map(|t| t.committed.map_or(0, |c| c + 1))
                        .min()
                        .unwrap_or(0);
                    positions.push((p.topic.clone(), p.partition, next));
                }
                _ => lane.windows[slot].committed = Some(p.last_offset),
            }
        }
        if positions.is_empty() {
            return;
        }
        // Lag metrics only: a failure here loses nothing.
        if let Err(err) = self.consumer.commit_positions(&positions) {
            warn!(error = %format!("{err:#}"), "Could not record positions in the consumer group.");
        }
    }

    /// After a refused commit: drops the lanes of the partitions it covered and, for those still
    /// assigned, opens them again from the lake as the other member left it and moves the
    /// consumer there (it may have read past that point already, or not yet reached it).
    async fn reopen_lanes(&mut self, topic: &str, progress: &[PartitionProgress]) -> Result<()> {
        refresh_tables(&mut self.outputs, Some(topic)).await?;
        let dropped = progress
            .iter()
            .filter(|p| self.lanes.contains_key(&(p.topic.clone(), p.partition)))
            .count();
        self.metrics.emit(LanesFenced { lanes: dropped });
        for p in progress {
            let key = (p.topic.clone(), p.partition);
            self.lanes.remove(&key);
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
            let next = lane.next_offset();
            match tokio::task::block_in_place(|| {
                self.consumer.seek(&p.topic, p.partition, Some(next))
            }) {
                Ok(()) => lane.sought(),
                // The partition may be on its way out (a rebalance under way; seen under a
                // frozen member's session timeout): the lane finds its place as after an
                // assignment, from the records that arrive (`Lane::admit`) or, when none do,
                // by moving the consumer (`Lane::nudge`).
                Err(err) => warn!(
                    topic = %p.topic,
                    partition = p.partition,
                    to = next,
                    error = %format!("{:#}", anyhow::Error::new(err)),
                    "Could not move the consumer to the lake's position; the lane will."
                ),
            }
        }
        Ok(())
    }
}

/// Waits until every dead letter and alert sent so far is acknowledged, for up to
/// [`COMMIT_RETRY_LIMIT`]: a commit must not cover source offsets whose side records could
/// still be lost.
async fn flush_side_outputs(producer: &SideProducer) -> Result<()> {
    let started = Instant::now();
    loop {
        let flushed = tokio::task::block_in_place(|| producer.flush(Duration::from_secs(5)));
        match flushed {
            Ok(()) => return Ok(()),
            Err(err) if started.elapsed() < COMMIT_RETRY_LIMIT && producer.in_flight() > 0 => {
                warn!(in_flight = producer.in_flight(), error = %format!("{:#}", anyhow::Error::new(err)), "Side outputs not yet acknowledged; waiting before the commit.");
            }
            Err(err) => return Err(err).context("sending dead letters and alerts"),
        }
    }
}
