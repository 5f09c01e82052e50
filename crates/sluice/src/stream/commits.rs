//! Table commits running on another worker while the loop reads on, so that writing Parquet
//! and committing to Delta do not hold back consumption (and the alerts raised from it).
//!
//! Each table has at most one commit in flight, so its commits land in order. The loop
//! settles a table's commit — takes the table back and marks its lanes committed — before the
//! table's next commit, as soon as it finishes, before a lane is opened (lanes read the
//! tables), at a rebalance, and before the process exits. Side outputs are flushed before a
//! commit starts, as before: a commit never covers offsets whose dead letters or alerts could
//! still be lost.

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use sluice_lake::{LakeError, LakeTable, PartitionProgress};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{State, Target, commit_with_retries, flush_side_outputs};

/// A table and its commit in flight, if any.
pub(super) struct Committer {
    /// `None` while a commit has it.
    table: Option<LakeTable>,
    in_flight: Option<InFlight>,
}

/// A commit running on another worker: the table comes back with the result.
struct InFlight {
    task: JoinHandle<(LakeTable, Result<u64, LakeError>)>,
    progress: Vec<PartitionProgress>,
    rows: usize,
    /// Buffered bytes it took from the lanes (still held until it lands).
    bytes: u64,
}

/// A commit that has run.
struct Landed {
    progress: Vec<PartitionProgress>,
    rows: usize,
    result: Result<u64, LakeError>,
}

impl Committer {
    pub(super) fn new(table: LakeTable) -> Self {
        Self {
            table: Some(table),
            in_flight: None,
        }
    }

    /// The table; only between commits (the loop settles a commit before reading its table).
    pub(super) fn table(&self) -> &LakeTable {
        self.table
            .as_ref()
            .expect("a table's commit is settled before the table is read")
    }

    /// Like [`Self::table`], to refresh it.
    pub(super) fn table_mut(&mut self) -> &mut LakeTable {
        self.table
            .as_mut()
            .expect("a table's commit is settled before the table is read")
    }

    pub(super) fn is_committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether a commit is in flight and has finished running.
    fn has_finished(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|in_flight| in_flight.task.is_finished())
    }

    /// Buffered bytes held by the commit in flight.
    pub(super) fn in_flight_bytes(&self) -> u64 {
        self.in_flight
            .as_ref()
            .map_or(0, |in_flight| in_flight.bytes)
    }

    fn start(&mut self, batches: Vec<RecordBatch>, progress: Vec<PartitionProgress>, bytes: u64) {
        let mut table = self
            .table
            .take()
            .expect("the previous commit is settled before the next starts");
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        let covered = progress.clone();
        let task = tokio::spawn(async move {
            let result = commit_with_retries(&mut table, &batches, &covered).await;
            (table, result)
        });
        self.in_flight = Some(InFlight {
            task,
            progress,
            rows,
            bytes,
        });
    }

    /// Waits for the commit in flight, if any, and takes the table back.
    async fn finish(&mut self) -> Result<Option<Landed>> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(None);
        };
        let (table, result) = in_flight
            .task
            .await
            .context("a table commit failed to run")?;
        self.table = Some(table);
        Ok(Some(Landed {
            progress: in_flight.progress,
            rows: in_flight.rows,
            result,
        }))
    }
}

impl State {
    fn committer(&mut self, target: Target) -> &mut Committer {
        match target {
            Target::Table(i) => &mut self.outputs[i].committer,
            Target::Window(i) => &mut self.windows[i].committer,
        }
    }

    /// Every table with a commit in flight.
    fn committing(&self, finished_only: bool) -> Vec<Target> {
        let busy = |c: &Committer| {
            if finished_only {
                c.has_finished()
            } else {
                c.is_committing()
            }
        };
        let tables = (0..self.outputs.len())
            .filter(|&i| busy(&self.outputs[i].committer))
            .map(Target::Table);
        let windows = (0..self.windows.len())
            .filter(|&i| busy(&self.windows[i].committer))
            .map(Target::Window);
        tables.chain(windows).collect()
    }

    /// Whether any table has a commit in flight.
    pub(super) fn is_committing(&self) -> bool {
        self.outputs.iter().any(|o| o.committer.is_committing())
            || self.windows.iter().any(|w| w.committer.is_committing())
    }

    /// Flushes the side outputs, then starts committing `batches` with `progress` to `target`,
    /// whose previous commit must be settled.
    pub(super) async fn start_commit(
        &mut self,
        target: Target,
        batches: Vec<RecordBatch>,
        progress: Vec<PartitionProgress>,
        bytes: u64,
    ) -> Result<()> {
        if progress.is_empty() {
            return Ok(());
        }
        if let Some(producer) = &self.side_producer {
            flush_side_outputs(producer).await?;
        }
        self.committer(target).start(batches, progress, bytes);
        Ok(())
    }

    /// Settles every commit in flight.
    pub(super) async fn settle_all(&mut self) -> Result<()> {
        let targets = self.committing(false);
        self.settle(targets).await
    }

    /// Settles the commits that have finished, without waiting for the others.
    pub(super) async fn settle_finished(&mut self) -> Result<()> {
        let targets = self.committing(true);
        self.settle(targets).await
    }

    /// Waits for the commits in flight to `targets` and applies what they did: lanes marked
    /// committed, or, when another member had taken the partitions, their lanes reopened
    /// from the lake (after every other commit in flight is settled too, since reopening
    /// reads the tables). A commit that failed for good stops the stream.
    pub(super) async fn settle(&mut self, mut targets: Vec<Target>) -> Result<()> {
        let mut fenced = Vec::new();
        while let Some(target) = targets.pop() {
            let Some(landed) = self.committer(target).finish().await? else {
                continue;
            };
            let (name, topic) = match target {
                Target::Table(i) => (&self.outputs[i].config.name, &self.outputs[i].topic),
                Target::Window(i) => (&self.windows[i].config.name, &self.windows[i].topic),
            };
            match landed.result {
                Ok(version) => {
                    info!(table = %name, version, rows = landed.rows, partitions = landed.progress.len(), "Committed.");
                    self.summary.commits += 1;
                    self.landed(target, &landed.progress, landed.rows);
                }
                Err(err) if err.is_fenced() => {
                    warn!(table = %name, error = %format!("{:#}", anyhow::Error::new(err)), "Another member committed these partitions; dropping their buffers.");
                    self.summary.fenced += 1;
                    fenced.push((topic.clone(), landed.progress));
                    targets = self.committing(false);
                }
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("committing {} rows to table {name}", landed.rows)
                    });
                }
            }
        }
        for (topic, progress) in fenced {
            self.reopen_lanes(&topic, &progress).await?;
        }
        Ok(())
    }

    /// Marks the lanes a landed commit covered as committed up to its offsets.
    fn landed(&mut self, target: Target, progress: &[PartitionProgress], rows: usize) {
        match target {
            Target::Table(index) => {
                self.summary.rows += rows as u64;
                let slot = self.outputs[index].slot;
                let mut positions = Vec::new();
                for p in progress {
                    if let Some(lane) = self.lanes.get_mut(&(p.topic.clone(), p.partition)) {
                        lane.tables[slot].committed = Some(p.last_offset);
                        let next = lane
                            .tables
                            .iter()
                            .map(|t| t.committed.map_or(0, |c| c + 1))
                            .min()
                            .unwrap_or(0);
                        positions.push((p.topic.clone(), p.partition, next));
                    }
                }
                // Lag metrics only: a failure here loses nothing.
                if let Err(err) = self.consumer.commit_positions(&positions) {
                    warn!(error = %format!("{err:#}"), "Could not record positions in the consumer group.");
                }
            }
            Target::Window(index) => {
                self.summary.windows += rows as u64;
                let output = &self.windows[index];
                for p in progress {
                    if let Some(lane) = self.lanes.get_mut(&(p.topic.clone(), p.partition)) {
                        match &output.fed_by {
                            Some((stream_topic, forward, _)) if *stream_topic == p.topic => {
                                lane.forwards[*forward].committed = Some(p.last_offset);
                            }
                            _ => lane.windows[output.slot].committed = Some(p.last_offset),
                        }
                    }
                }
            }
        }
    }
}
