//! The metrics behind the events: names, label sets, the registry, the run's summary and the
//! health the HTTP endpoints report. Only the events (`super`) move them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Records read from a source (a Kafka topic, or a load's files), by `topic`.
pub const RECORDS_READ: &str = "sluice_records_read";
/// Payload bytes read, by `topic`.
pub const BYTES_READ: &str = "sluice_read_bytes";
/// Rows committed to a table, by `table`.
pub const ROWS_LANDED: &str = "sluice_rows_landed";
/// Parquet bytes committed to a table, by `table`.
pub const BYTES_LANDED: &str = "sluice_landed_bytes";
/// Records that did not fit the stream's schema, by `topic` and `reason`.
pub const RECORDS_REFUSED: &str = "sluice_records_refused";
/// Refused records sent to the stream's dead-letter topic, by `topic`.
pub const DEAD_LETTERS: &str = "sluice_dead_letters";
/// Events behind a closed window, by `window`.
pub const LATE_EVENTS: &str = "sluice_late_events";
/// Alerts sent, by `rule`.
pub const ALERTS: &str = "sluice_alerts";
/// Events forwarded to a window's repartition topic, by `window`.
pub const REPARTITIONED: &str = "sluice_repartitioned_events";
/// Commits, by `table` and `outcome` (`committed`, or `fenced`: another member had taken
/// the partitions).
pub const COMMITS: &str = "sluice_commits";
/// Commit attempts that failed on a transient error and were retried, by `table`.
pub const COMMIT_RETRIES: &str = "sluice_commit_retries";
/// Failed lookups of a writer schema in a stream's Schema Registry (each retried; the
/// partitions wait meanwhile), by `topic`.
pub const REGISTRY_ERRORS: &str = "sluice_registry_errors";
/// Seconds a commit took (writing its files included), by `table`.
pub const COMMIT_SECONDS: &str = "sluice_commit_duration_seconds";
/// Files written per commit, by `table`.
pub const COMMIT_FILES: &str = "sluice_commit_files";
/// Parquet bytes written per commit, by `table`.
pub const COMMIT_BYTES: &str = "sluice_commit_bytes";
/// Records in a partition not yet in every table it feeds: the log end minus the lake's
/// committed position, by `topic` and `partition`.
pub const CONSUMER_LAG: &str = "sluice_consumer_lag";
/// Now minus the newest event time committed to a table, by `table`.
pub const FRESHNESS: &str = "sluice_table_freshness_seconds";
/// Now minus the newest event time committed from a source partition.
pub const PARTITION_FRESHNESS: &str = "sluice_partition_freshness_seconds";
/// Now minus the table's last commit by this process, by `table`.
pub const SINCE_COMMIT: &str = "sluice_table_since_last_commit_seconds";
/// A window's watermark (event time, seconds since the epoch), by `window`.
pub const WATERMARK: &str = "sluice_window_watermark_seconds";
/// Partitions this member holds.
pub const ASSIGNED_PARTITIONS: &str = "sluice_assigned_partitions";
/// Rebalances applied, by `change` (`assigned`, `revoked`).
pub const REBALANCES: &str = "sluice_rebalances";
/// Partition lanes opened from the lake's offsets.
pub const LANES_OPENED: &str = "sluice_lanes_opened";
/// Partition lanes dropped with their buffers, by `why` (`revoked`, `fenced`).
pub const LANES_DROPPED: &str = "sluice_lanes_dropped";
/// Bytes buffered over all tables and partitions.
pub const BUFFERED_BYTES: &str = "sluice_buffered_bytes";
/// Bytes of open windows' state (partial aggregates, or rows) over all windows and partitions.
pub const WINDOW_STATE_BYTES: &str = "sluice_window_state_bytes";
/// The memory budget for buffers and open windows, in bytes.
pub const MEMORY_BUDGET: &str = "sluice_memory_budget_bytes";
/// Commits made early because the buffers went over the memory budget, by `table`.
pub const BUDGET_COMMITS: &str = "sluice_memory_budget_commits";
/// Seconds from a source record's receipt (its batch handed over by the consumer) to Kafka's
/// acknowledgement of a side record it gave, by kind (`alert`, `dead_letter`, `late`,
/// `forward`): sluice's own latency plus the broker's produce round trip.
pub const RECEIVED_TO_ACKNOWLEDGED: &str = "sluice_received_to_acknowledged_seconds";
/// Seconds from a source record's receipt to a side record it gave being handed to the
/// producer, by kind: sluice's own part of [`RECEIVED_TO_ACKNOWLEDGED`], without the produce
/// round trip.
pub const RECEIVED_TO_SENT: &str = "sluice_received_to_sent_seconds";
/// Seconds from the receipt of the oldest row (or progress) a commit lands to the end of that
/// commit, by table.
pub const RECEIVED_TO_COMMITTED: &str = "sluice_received_to_committed_seconds";

/// How long the loop may make no progress before liveness fails: above the longest a commit
/// or a side-topic read retries (120 s each), so a retrying member is not killed for it.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TopicLabel {
    pub(super) topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TableLabel {
    pub(super) table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WindowLabel {
    pub(super) window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RuleLabel {
    pub(super) rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RefusedLabels {
    pub(super) topic: String,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CommitLabels {
    pub(super) table: String,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PartitionLabels {
    pub(super) topic: String,
    pub(super) partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ChangeLabel {
    pub(super) change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WhyLabel {
    pub(super) why: &'static str,
}

pub(super) type Counters<L> = Family<L, Counter>;
pub(super) type Seconds<L> = Family<L, Gauge<f64, AtomicU64>>;
pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a run did, as it prints it at its end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Records read (for a load: lines, blank ones and ones already landed included).
    pub records: u64,
    /// Of those, records skipped because the tables held them already (a load's re-run).
    pub already_landed: u64,
    /// Rows committed to tables (summed over tables).
    pub rows: u64,
    /// Records refused because they did not fit the schema.
    pub rejected: u64,
    /// Of those, records sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Alerts sent.
    pub alerts: u64,
    /// Events that arrived after their windows closed.
    pub late: u64,
    /// Window rows committed.
    pub windows: u64,
    /// Events sent to repartition topics.
    pub forwarded: u64,
    /// Commits made.
    pub commits: u64,
    /// Commits refused because another member had taken over the partitions.
    pub fenced: u64,
}

/// When a table last committed, and the newest event time it committed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Landed {
    pub(super) at: SystemTime,
    pub(super) newest_event_us: Option<i64>,
}

/// Every metric of a stream or load process, and its health. Shared (`Arc`) between the loop
/// that emits and the server that renders.
pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) records_read: Counters<TopicLabel>,
    pub(super) bytes_read: Counters<TopicLabel>,
    pub(super) rows_landed: Counters<TableLabel>,
    pub(super) bytes_landed: Counters<TableLabel>,
    pub(super) refused: Counters<RefusedLabels>,
    pub(super) dead_letters: Counters<TopicLabel>,
    pub(super) late: Counters<WindowLabel>,
    pub(super) alerts: Counters<RuleLabel>,
    pub(super) repartitioned: Counters<WindowLabel>,
    pub(super) commits: Counters<CommitLabels>,
    pub(super) commit_retries: Counters<TableLabel>,
    pub(super) registry_errors: Counters<TopicLabel>,
    pub(super) commit_seconds: Histograms<TableLabel>,
    pub(super) commit_files: Histograms<TableLabel>,
    pub(super) commit_bytes: Histograms<TableLabel>,
    pub(super) lag: Family<PartitionLabels, Gauge>,
    pub(super) freshness: Seconds<TableLabel>,
    pub(super) partition_freshness: Seconds<PartitionLabels>,
    pub(super) since_commit: Seconds<TableLabel>,
    pub(super) watermark: Seconds<WindowLabel>,
    pub(super) assigned: Gauge,
    pub(super) rebalances: Counters<ChangeLabel>,
    pub(super) lanes_opened: Counter,
    pub(super) lanes_dropped: Counters<WhyLabel>,
    pub(super) buffered_bytes: Gauge,
    pub(super) window_state_bytes: Gauge,
    pub(super) memory_budget: Gauge,
    pub(super) budget_commits: Counters<TableLabel>,
    pub(super) received_to_acknowledged: Histograms<KindLabel>,
    pub(super) received_to_sent: Histograms<KindLabel>,
    pub(super) received_to_committed: Histograms<TableLabel>,
    pub(super) landed: Mutex<HashMap<String, Landed>>,
    /// The newest event time committed from each (topic, partition) this member holds, once
    /// one was (assigned partitions have an entry, so a late commit of a revoked one adds
    /// none).
    pub(super) partition_landed: Mutex<HashMap<(String, i32), Option<i64>>>,
    pub(super) summary: Mutex<Summary>,
    pub(super) started: Instant,
    /// Milliseconds after `started` of the loop's last turn.
    pub(super) last_turn_ms: AtomicI64,
    pub(super) commits_failing: AtomicBool,
    /// Whether open windows alone held more than the memory budget when last told (warned
    /// once per crossing).
    pub(super) window_state_over_budget: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        macro_rules! registered {
            ($name:expr, $help:expr, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
        }
        fn histograms<L: Clone + std::hash::Hash + Eq>(
            buckets: fn() -> Histogram,
        ) -> Histograms<L> {
            Histograms::new_with_constructor(buckets)
        }
        Self {
            records_read: registered!(RECORDS_READ, "Records read, by topic", Counters::default()),
            bytes_read: registered!(
                BYTES_READ,
                "Payload bytes read, by topic",
                Counters::default()
            ),
            rows_landed: registered!(ROWS_LANDED, "Rows committed, by table", Counters::default()),
            bytes_landed: registered!(
                BYTES_LANDED,
                "Parquet bytes committed, by table",
                Counters::default()
            ),
            refused: registered!(
                RECORDS_REFUSED,
                "Records that did not fit the schema, by topic and reason",
                Counters::default()
            ),
            dead_letters: registered!(
                DEAD_LETTERS,
                "Refused records sent to the dead-letter topic, by topic",
                Counters::default()
            ),
            late: registered!(
                LATE_EVENTS,
                "Events behind a closed window, by window",
                Counters::default()
            ),
            alerts: registered!(ALERTS, "Alerts sent, by rule", Counters::default()),
            repartitioned: registered!(
                REPARTITIONED,
                "Events forwarded to a repartition topic, by window",
                Counters::default()
            ),
            commits: registered!(
                COMMITS,
                "Commits, by table and outcome (committed, fenced)",
                Counters::default()
            ),
            commit_retries: registered!(
                COMMIT_RETRIES,
                "Commit attempts retried after a transient failure, by table",
                Counters::default()
            ),
            registry_errors: registered!(
                REGISTRY_ERRORS,
                "Failed writer-schema lookups in a stream's Schema Registry, retried, by topic",
                Counters::default()
            ),
            commit_seconds: registered!(
                COMMIT_SECONDS,
                "Seconds a commit took, files included, by table",
                histograms(|| Histogram::new(exponential_buckets(0.005, 2.0, 14)))
            ),
            commit_files: registered!(
                COMMIT_FILES,
                "Files written per commit, by table",
                histograms(|| Histogram::new(exponential_buckets(1.0, 2.0, 10)))
            ),
            commit_bytes: registered!(
                COMMIT_BYTES,
                "Parquet bytes written per commit, by table",
                histograms(|| Histogram::new(exponential_buckets(4096.0, 4.0, 10)))
            ),
            lag: registered!(
                CONSUMER_LAG,
                "Log end minus the lake's committed position, by topic and partition",
                Family::default()
            ),
            freshness: registered!(
                FRESHNESS,
                "Now minus the newest event time committed, by table",
                Seconds::default()
            ),
            partition_freshness: registered!(
                PARTITION_FRESHNESS,
                "Now minus the newest event time committed from a source partition, by topic and partition",
                Seconds::default()
            ),
            since_commit: registered!(
                SINCE_COMMIT,
                "Now minus this process's last commit, by table",
                Seconds::default()
            ),
            watermark: registered!(
                WATERMARK,
                "A window's watermark in event time (seconds since the epoch), by window",
                Seconds::default()
            ),
            assigned: registered!(
                ASSIGNED_PARTITIONS,
                "Partitions this member holds",
                Gauge::default()
            ),
            rebalances: registered!(
                REBALANCES,
                "Rebalances applied, by change (assigned, revoked)",
                Counters::default()
            ),
            lanes_opened: registered!(
                LANES_OPENED,
                "Partition lanes opened from the lake's offsets",
                Counter::default()
            ),
            lanes_dropped: registered!(
                LANES_DROPPED,
                "Partition lanes dropped with their buffers, by why (revoked, fenced)",
                Counters::default()
            ),
            buffered_bytes: registered!(
                BUFFERED_BYTES,
                "Bytes buffered over all tables and partitions",
                Gauge::default()
            ),
            window_state_bytes: registered!(
                WINDOW_STATE_BYTES,
                "Bytes of open windows' state over all windows and partitions",
                Gauge::default()
            ),
            memory_budget: registered!(
                MEMORY_BUDGET,
                "The memory budget for buffers and open windows, in bytes",
                Gauge::default()
            ),
            budget_commits: registered!(
                BUDGET_COMMITS,
                "Commits made early because buffers went over the memory budget, by table",
                Counters::default()
            ),
            received_to_acknowledged: registered!(
                RECEIVED_TO_ACKNOWLEDGED,
                "Seconds from a source record's receipt to Kafka's acknowledgement of a side record it gave, by kind (alert, dead_letter, late, forward)",
                histograms(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)))
            ),
            received_to_sent: registered!(
                RECEIVED_TO_SENT,
                "Seconds from a source record's receipt to a side record it gave being handed to the producer, by kind",
                histograms(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)))
            ),
            received_to_committed: registered!(
                RECEIVED_TO_COMMITTED,
                "Seconds from the receipt of the oldest row a commit lands to the commit's end, by table",
                histograms(|| Histogram::new(exponential_buckets(0.005, 2.0, 14)))
            ),
            registry,
            landed: Mutex::default(),
            partition_landed: Mutex::default(),
            summary: Mutex::default(),
            started: Instant::now(),
            last_turn_ms: AtomicI64::new(0),
            commits_failing: AtomicBool::new(false),
            window_state_over_budget: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// A new set, shared.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Emits `event`: its log line and its metrics.
    pub fn emit(&self, event: impl super::Event) {
        event.emit(self);
    }

    /// What the run did so far.
    pub fn summary(&self) -> Summary {
        *self
            .summary
            .lock()
            .expect("no panics while holding the lock")
    }

    pub(super) fn count(&self, add: impl FnOnce(&mut Summary)) {
        add(&mut self
            .summary
            .lock()
            .expect("no panics while holding the lock"));
    }

    /// The loop made a turn (read, even nothing, and flushed what was due).
    pub fn turned(&self) {
        let ms = self.started.elapsed().as_millis() as i64;
        self.last_turn_ms.store(ms, Ordering::Relaxed);
    }

    /// Liveness: the loop turned within [`LIVENESS_LIMIT`].
    pub fn live(&self) -> bool {
        let last = Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed) as u64);
        self.started.elapsed().saturating_sub(last) < LIVENESS_LIMIT
    }

    /// Readiness: the member holds partitions and its commits are not failing.
    pub fn ready(&self) -> bool {
        self.assigned.get() > 0 && !self.commits_failing.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the clock-relative gauges computed now.
    pub fn render(&self) -> String {
        let now = SystemTime::now();
        for (table, landed) in self.landed.lock().expect("no panics").iter() {
            let label = TableLabel {
                table: table.clone(),
            };
            let since = now.duration_since(landed.at).unwrap_or_default();
            self.since_commit
                .get_or_create(&label)
                .set(since.as_secs_f64());
            if let Some(newest) = landed.newest_event_us {
                let age = micros_since_epoch(now) - newest;
                self.freshness.get_or_create(&label).set(age as f64 / 1e6);
            }
        }
        let partitions = self.partition_landed.lock().expect("no panics");
        for ((topic, partition), newest) in partitions.iter() {
            let Some(newest) = newest else {
                continue;
            };
            let labels = PartitionLabels {
                topic: topic.clone(),
                partition: *partition,
            };
            let age = micros_since_epoch(now) - newest;
            (self.partition_freshness.get_or_create(&labels)).set(age as f64 / 1e6);
        }
        drop(partitions);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

pub(super) fn micros_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}
