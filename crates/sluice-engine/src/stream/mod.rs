//! `sluice stream`: one member of a consumer group running a pipeline file.
//!
//! The loop: take a batch of records → apply rebalances (drop revoked lanes) → per partition,
//! admit records in offset order → per partition, on every core ([`cores`]): decode them into
//! Arrow in one pass, run the windows and rules, send the side records, and append the rows
//! to each table's buffer in that lane → commit every table whose flush limit (rows, bytes,
//! latency) is reached, as one Delta commit carrying each lane's last offset, on a task of
//! its own while the loop goes on ([`commits`]). Progress lives in the lake; Kafka's
//! committed offsets follow it for lag metrics only.

mod batch;
mod commits;
mod cores;
mod emit;
/// Tables, producer and lanes opened from the lake and the side topics.
mod opening;
mod watchdog;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sluice_core::Decoder;
use sluice_core::config::Pipeline;
use sluice_kafka::ClientOptions;
use sluice_kafka::consumer::GroupConsumer;
use sluice_kafka::side::SideProducer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::events::{Buffered, Metrics, OverMemoryBudget, PartitionLag, Summary};
use crate::job::Job;
use crate::lanes::Lane;
use crate::output::{Held, Lands, Output};
use crate::registry::SchemaRegistry;
use opening::{PrefetchedMarks, connect_side_producer, lane_for, open_outputs};
use watchdog::GroupWatch;

/// How long nothing may arrive before the loop checks for partitions that are behind their log
/// end yet deliver nothing (and moves their consumer), when not draining (draining checks at
/// every idle wait).
const STUCK_CHECK_AFTER: Duration = Duration::from_secs(5);

/// How long the loop waits for records before checking flush deadlines and shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// How long the loop waits for records at most while a commit is in flight, so that its end
/// is seen soon (the table's next commit waits for it).
const IN_FLIGHT_WAIT: Duration = Duration::from_millis(10);

/// How a stream process runs.
pub struct StreamOptions {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// The Kafka cluster.
    pub client: ClientOptions,
    /// Storage options for the lake.
    pub storage_options: HashMap<String, String>,
    /// Exit once every assigned partition is committed up to its end (for batch-style runs
    /// and tests), instead of waiting for more.
    pub until_caught_up: bool,
    /// This member's static name in the group (`group.instance.id`), if any.
    pub instance_id: Option<String>,
    /// When cancelled, behave as `until_caught_up` from then on: `sluice up` drains this way
    /// after its generator stops.
    pub drain: CancellationToken,
    /// Buffered bytes over all tables and partitions; past it, the table holding the most is
    /// committed first, whatever its own flush limits say.
    pub memory_budget: u64,
    /// Where what the process observes is counted (served on `/metrics` by the caller).
    pub metrics: Arc<Metrics>,
    /// How long draining and committing may take once `shutdown` fires; past it, `run`
    /// returns without committing (progress lives in the lake, so nothing is lost or doubled:
    /// a restart resumes from the last commit).
    pub shutdown_timeout: Duration,
}

/// A table being written, and the lanes that hold what it has pending.
struct Routed {
    output: Output,
    /// The topic whose lanes hold its rows: the stream's, or a repartitioned window's
    /// internal topic.
    topic: String,
    /// Its position among that topic's tables (or windows): its buffer (or window state) in
    /// each lane.
    slot: usize,
    /// For a repartitioned window: where its events are forwarded from.
    fed_by: Option<FedBy>,
    /// Its commit running on a task of its own, if any.
    in_flight: Option<commits::InFlight>,
}

/// Where a repartitioned window's events come from.
#[derive(Debug, Clone)]
struct FedBy {
    /// The stream's topic.
    topic: String,
    /// The window's position among the stream's forwards: how far each of its lanes forwarded
    /// is committed with the window table.
    forward: usize,
    /// The stream topic's partition count.
    partitions: i32,
}

/// A topic being read: how to decode it and what happens to each partition's batch.
struct Source {
    decoder: Decoder,
    /// Where its records' writer schemas are looked up, if they name them.
    registry: Option<SchemaRegistry>,
    job: Job,
    /// A repartition topic: each record names its source partition in its headers.
    reads_origins: bool,
}

/// Runs until `shutdown` fires (then commits what is buffered, within
/// [`StreamOptions::shutdown_timeout`]) or, with `until_caught_up`, until everything assigned
/// is in the lake.
pub async fn run(options: StreamOptions, shutdown: CancellationToken) -> Result<Summary> {
    let limit = options.shutdown_timeout;
    let out_of_time = async {
        shutdown.cancelled().await;
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        ran = run_until_done(options, shutdown.clone()) => ran,
        () = out_of_time => {
            warn!(?limit, "Shutdown timeout passed: exiting without committing; a restart resumes from the lake's offsets.");
            anyhow::bail!("draining took longer than the shutdown timeout ({limit:?}): buffered rows were not committed, and a restart resumes from the last commit")
        }
    }
}

/// [`run`] without the bound on shutdown.
async fn run_until_done(options: StreamOptions, shutdown: CancellationToken) -> Result<Summary> {
    let (outputs, sources) = open_outputs(&options).await?;
    let side_producer = connect_side_producer(&options.client, &sources, &options.metrics).await?;
    let topics: Vec<String> = sources.keys().cloned().collect();
    let (client, group) = (options.client.clone(), options.pipeline.kafka.group.clone());
    let instance_id = options.instance_id.clone();
    let consumer = tokio::task::spawn_blocking(move || {
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        GroupConsumer::join(&client, &group, instance_id.as_deref(), &topics)
    })
    .await??;
    info!(group = %options.pipeline.kafka.group, brokers = %options.client.brokers, "Joined the consumer group.");
    let mut state = State {
        consumer,
        client: options.client.clone(),
        outputs,
        sources,
        side_producer,
        prefetched_marks: HashMap::new(),
        lanes: HashMap::new(),
        assigned: HashMap::new(),
        metrics: options.metrics.clone(),
        memory_budget: options.memory_budget,
        watch: GroupWatch::new(),
    };
    let mut idle_since = Instant::now();
    let mut waited_for_silence = false;
    loop {
        let wait = state.next_wait();
        let took = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            took = state.process_batch(wait) => took?,
        };
        state.advance_watermarks().await?;
        let draining = options.until_caught_up || options.drain.is_cancelled();
        state.flush_due(draining && took == 0).await?;
        state.watch_group().await?;
        state.observe_lag();
        state.metrics.turned();
        if took > 0 {
            idle_since = Instant::now();
        } else if draining || idle_since.elapsed() >= STUCK_CHECK_AFTER {
            idle_since = Instant::now();
            if state.caught_up().await? && draining {
                // A run that ends when caught up still closes the windows a partition with
                // nothing to send holds back, as a running stream does after the idle timeout
                // (up to it later); a drain on Ctrl-C does not wait.
                if options.until_caught_up && state.windows_held_by_silence() {
                    if !waited_for_silence {
                        info!(
                            "Caught up; waiting for partitions that sent nothing to reach the windows' idle timeout."
                        );
                        waited_for_silence = true;
                    }
                    continue;
                }
                if waited_for_silence {
                    // The wait may have ended after this turn moved the watermarks.
                    state.advance_watermarks().await?;
                }
                info!("Caught up with every assigned partition.");
                break;
            }
        }
    }
    state.flush_due(true).await?;
    Ok(state.metrics.summary())
}

struct State {
    consumer: GroupConsumer,
    client: ClientOptions,
    /// Every table and window table, tables first; those of one topic in slot order.
    outputs: Vec<Routed>,
    sources: BTreeMap<String, Source>,
    side_producer: Option<SideProducer>,
    prefetched_marks: PrefetchedMarks,
    lanes: HashMap<(String, i32), Lane>,
    /// Assigned partitions and when they were assigned.
    assigned: HashMap<(String, i32), Instant>,
    metrics: Arc<Metrics>,
    memory_budget: u64,
    watch: GroupWatch,
}

impl State {
    /// How long to wait for records: until the earliest moment the latency limit of a table
    /// with no commit in flight is reached (one in flight cannot commit again before it ends),
    /// at most [`IDLE_WAIT`] ([`IN_FLIGHT_WAIT`] while a commit is in flight).
    fn next_wait(&self) -> Duration {
        let most = if self.outputs.iter().any(|r| r.in_flight.is_some()) {
            IN_FLIGHT_WAIT
        } else {
            IDLE_WAIT
        };
        let deadline = self
            .outputs
            .iter()
            .filter(|routed| routed.in_flight.is_none())
            .filter_map(|routed| self.held(routed).deadline(&routed.output.flush))
            .min();
        deadline.map_or(most, |due| {
            due.saturating_duration_since(Instant::now()).min(most)
        })
    }

    /// The lanes of `topic`.
    fn lanes_of<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Lane> + 'a {
        self.lanes
            .iter()
            .filter(move |((t, _), _)| t == topic)
            .map(|(_, lane)| lane)
    }

    /// What a table holds over every lane: buffered rows, or emitted windows and how far
    /// events were forwarded to its repartition topic (not what its commit in flight holds).
    fn held(&self, routed: &Routed) -> Held {
        let slot = routed.slot;
        let own = self
            .lanes_of(&routed.topic)
            .map(|lane| match routed.output.lands {
                Lands::Rows => Held::of_table(&lane.tables[slot]),
                Lands::Windows(_) => Held::of_window(&lane.windows[slot]),
            });
        let forwarded = routed.fed_by.iter().flat_map(|fed| {
            self.lanes_of(&fed.topic)
                .map(|lane| Held::of_table(&lane.forwards[fed.forward]))
        });
        own.chain(forwarded).fold(Held::default(), Held::plus)
    }

    /// Applies the commits that ended, starts committing each table whose limits are reached
    /// (with `all`, every table with pending progress, and waits for those commits), then,
    /// while the buffers, commits in flight and open windows together exceed the memory budget,
    /// commits the largest buffer and waits for it.
    async fn flush_due(&mut self, all: bool) -> Result<()> {
        self.collect_commits(all).await?;
        for index in 0..self.outputs.len() {
            let routed = &self.outputs[index];
            if self.held(routed).due(&routed.output.flush, all) {
                self.commit(index).await?;
            }
        }
        self.collect_commits(all).await?;
        loop {
            let held: Vec<Held> = self.outputs.iter().map(|r| self.held(r)).collect();
            let buffered: Vec<u64> = self
                .outputs
                .iter()
                .zip(&held)
                .map(|(routed, held)| {
                    held.bytes + routed.in_flight.as_ref().map_or(0, |f| f.held.bytes)
                })
                .collect();
            let window_state = held.iter().map(|h| h.state_bytes).sum();
            self.metrics.emit(Buffered {
                bytes: buffered.iter().sum(),
                window_state,
                budget: self.memory_budget,
            });
            let Some(largest) = largest_over_budget(&buffered, window_state, self.memory_budget)
            else {
                break;
            };
            self.metrics.emit(OverMemoryBudget {
                table: self.outputs[largest].output.name(),
                bytes: buffered[largest],
            });
            self.commit(largest).await?;
            self.settle(largest).await?;
        }
        Ok(())
    }

    /// Sets each held partition's lag from the log end the consumer last heard of and the
    /// position every table fed by it has committed.
    fn observe_lag(&self) {
        let ends = self.consumer.log_ends();
        for (key, lane) in &self.lanes {
            if let Some(&log_end) = ends.get(key) {
                self.metrics.emit(PartitionLag {
                    topic: &key.0,
                    partition: key.1,
                    log_end,
                    committed_next: lane.committed_next(),
                });
            }
        }
    }

    /// Whether every assigned partition is committed up to its current end. Called when an
    /// idle wait brought nothing: a partition still behind its end is parked, and its consumer
    /// is moved (see [`Lane::nudge`]).
    async fn caught_up(&mut self) -> Result<bool> {
        if self.assigned.is_empty()
            || self
                .outputs
                .iter()
                .any(|routed| routed.in_flight.is_some() || self.held(routed).since.is_some())
        {
            return Ok(false);
        }
        let assigned: Vec<(String, i32)> = self.assigned.keys().cloned().collect();
        let ranges = match tokio::task::block_in_place(|| {
            sluice_kafka::admin::log_ranges(&self.client, &assigned)
        }) {
            Ok(ranges) => ranges,
            Err(err) => {
                // The broker may be restarting; the consumer reconnects by itself.
                warn!(error = %format!("{:#}", anyhow::Error::new(err)), "Could not read the partitions' ends; will retry.");
                return Ok(false);
            }
        };
        let mut caught_up = true;
        for key in assigned {
            let range = ranges[&key];
            let lane = lane_for(
                &mut self.lanes,
                &self.outputs,
                &self.sources,
                (&self.client, &mut self.prefetched_marks),
                key.clone(),
                &self.metrics,
            )
            .await?;
            // Offsets below the log start are gone (retention): nothing to wait for there.
            if lane.next_offset().max(range.start) >= range.end {
                lane.reached_the_end();
                continue;
            }
            caught_up = false;
            let Some(to) = lane.nudge(Instant::now()) else {
                continue;
            };
            info!(topic = %key.0, partition = key.1, to, end = range.end, "Behind the log end with nothing arriving; moving the consumer.");
            let moved = tokio::task::block_in_place(|| self.consumer.seek(&key.0, key.1, Some(to)));
            if let Err(err) = moved {
                warn!(error = %format!("{:#}", anyhow::Error::new(err)), "Could not move the consumer; will retry.");
            }
        }
        Ok(caught_up)
    }
}

/// The table to commit when the buffers and `unfreed` bytes (open windows) together exceed
/// `budget`: the one holding the most, if any holds something.
fn largest_over_budget(buffered: &[u64], unfreed: u64, budget: u64) -> Option<usize> {
    if buffered.iter().sum::<u64>() + unfreed <= budget {
        return None;
    }
    (0..buffered.len())
        .filter(|&i| buffered[i] > 0)
        .max_by_key(|&i| buffered[i])
}

/// Re-reads the tables whose lanes are `topic`'s (every table when `None`) at their latest
/// version.
async fn refresh_tables(outputs: &mut [Routed], topic: Option<&str>) -> Result<()> {
    for routed in outputs {
        if topic.is_none_or(|t| t == routed.topic) {
            let output = &mut routed.output;
            let read = output.sink.lock().await.refresh().await;
            read.with_context(|| format!("reading table {}", output.name()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::largest_over_budget;

    #[test]
    fn over_the_budget_the_largest_buffer_goes_first() {
        assert_eq!(largest_over_budget(&[10, 20, 30], 0, 60), None);
        assert_eq!(largest_over_budget(&[10, 40, 30], 0, 60), Some(1));
        assert_eq!(largest_over_budget(&[0, 0, 61], 0, 60), Some(2));
        assert_eq!(largest_over_budget(&[], 0, 0), None);
    }

    #[test]
    fn open_windows_count_in_the_budget_but_only_buffers_are_committed() {
        assert_eq!(largest_over_budget(&[10, 20], 30, 60), None);
        assert_eq!(largest_over_budget(&[10, 20], 31, 60), Some(1));
        assert_eq!(largest_over_budget(&[0, 0], 100, 60), None);
    }
}
