//! What the engine observes, in one place. Each event is a type whose `emit` writes its log
//! line and moves its metrics together (Vector's internal events), so the log, the metrics
//! on `/metrics` and the summary a run prints never drift apart. Metric names are the
//! constants below; dashboards and alert rules (`deploy/`) use only these.
//!
//! Emitting never blocks on a scrape: counters and gauges are atomics, and the few values that
//! need the clock (freshness) are computed when a scrape renders them.

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
use sluice_core::decode::Rejected;
use tracing::{debug, info, warn};

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
/// The memory budget for buffers, in bytes.
pub const MEMORY_BUDGET: &str = "sluice_memory_budget_bytes";
/// Commits made early because the buffers went over the memory budget, by `table`.
pub const BUDGET_COMMITS: &str = "sluice_memory_budget_commits";

/// How long the loop may make no progress before liveness fails: above the longest a commit
/// or a side-topic read retries (120 s each), so a retrying member is not killed for it.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabel {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabel {
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    topic: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    table: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabel {
    change: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhyLabel {
    why: &'static str,
}

type Counters<L> = Family<L, Counter>;
type Seconds<L> = Family<L, Gauge<f64, AtomicU64>>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

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
struct Landed {
    at: SystemTime,
    newest_event_us: Option<i64>,
}

/// Every metric of a stream or load process, and its health. Shared (`Arc`) between the loop
/// that emits and the server that renders.
pub struct Metrics {
    registry: Registry,
    records_read: Counters<TopicLabel>,
    bytes_read: Counters<TopicLabel>,
    rows_landed: Counters<TableLabel>,
    bytes_landed: Counters<TableLabel>,
    refused: Counters<RefusedLabels>,
    dead_letters: Counters<TopicLabel>,
    late: Counters<WindowLabel>,
    alerts: Counters<RuleLabel>,
    repartitioned: Counters<WindowLabel>,
    commits: Counters<CommitLabels>,
    commit_retries: Counters<TableLabel>,
    commit_seconds: Histograms<TableLabel>,
    commit_files: Histograms<TableLabel>,
    commit_bytes: Histograms<TableLabel>,
    lag: Family<PartitionLabels, Gauge>,
    freshness: Seconds<TableLabel>,
    since_commit: Seconds<TableLabel>,
    watermark: Seconds<WindowLabel>,
    assigned: Gauge,
    rebalances: Counters<ChangeLabel>,
    lanes_opened: Counter,
    lanes_dropped: Counters<WhyLabel>,
    buffered_bytes: Gauge,
    memory_budget: Gauge,
    budget_commits: Counters<TableLabel>,
    landed: Mutex<HashMap<String, Landed>>,
    summary: Mutex<Summary>,
    started: Instant,
    /// Milliseconds after `started` of the loop's last turn.
    last_turn_ms: AtomicI64,
    commits_failing: AtomicBool,
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
        let histograms = |buckets: fn() -> Histogram| Histograms::new_with_constructor(buckets);
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
            memory_budget: registered!(
                MEMORY_BUDGET,
                "The memory budget for buffers, in bytes",
                Gauge::default()
            ),
            budget_commits: registered!(
                BUDGET_COMMITS,
                "Commits made early because buffers went over the memory budget, by table",
                Counters::default()
            ),
            registry,
            landed: Mutex::default(),
            summary: Mutex::default(),
            started: Instant::now(),
            last_turn_ms: AtomicI64::new(0),
            commits_failing: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// A new set, shared.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Emits `event`: its log line and its metrics.
    pub fn emit(&self, event: impl Event) {
        event.emit(self);
    }

    /// What the run did so far.
    pub fn summary(&self) -> Summary {
        *self
            .summary
            .lock()
            .expect("no panics while holding the lock")
    }

    fn count(&self, add: impl FnOnce(&mut Summary)) {
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
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

fn micros_since_epoch(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

/// One thing the engine observed.
pub trait Event {
    /// Logs it and moves its metrics.
    fn emit(self, metrics: &Metrics);
}

/// Records read from a source in one batch.
pub struct RecordsRead<'a> {
    /// The topic (or a load's source name).
    pub topic: &'a str,
    /// How many.
    pub records: usize,
    /// Their payload bytes.
    pub bytes: usize,
    /// Of them, how many the tables held already and were skipped.
    pub already_landed: usize,
}

impl Event for RecordsRead<'_> {
    fn emit(self, metrics: &Metrics) {
        let label = TopicLabel {
            topic: self.topic.to_string(),
        };
        metrics
            .records_read
            .get_or_create(&label)
            .inc_by(self.records as u64);
        metrics
            .bytes_read
            .get_or_create(&label)
            .inc_by(self.bytes as u64);
        metrics.count(|s| {
            s.records += self.records as u64;
            s.already_landed += self.already_landed as u64;
        });
    }
}

/// Records of one partition's batch that did not fit the stream's schema.
pub struct RecordsRefused<'a> {
    /// Their topic.
    pub topic: &'a str,
    /// Each record's partition, offset and why.
    pub refused: &'a [Rejected],
    /// The dead-letter topic they go to, if the stream has one.
    pub dead_letter_topic: Option<&'a str>,
}

impl Event for RecordsRefused<'_> {
    fn emit(self, metrics: &Metrics) {
        let message = match self.dead_letter_topic {
            Some(_) => {
                "Sent a record that does not fit the stream's schema to the dead-letter topic."
            }
            None => "Skipped a record that does not fit the stream's schema.",
        };
        for refused in self.refused {
            warn!(topic = self.topic, partition = refused.partition, offset = refused.offset, reason = %refused.reason, "{message}");
            let labels = RefusedLabels {
                topic: self.topic.to_string(),
                reason: refused.kind.label(),
            };
            metrics.refused.get_or_create(&labels).inc();
        }
        metrics.count(|s| s.rejected += self.refused.len() as u64);
    }
}

/// Dead letters sent (records a dead-letter topic did not hold yet).
pub struct DeadLettersSent<'a> {
    /// The source topic.
    pub topic: &'a str,
    /// How many.
    pub count: u64,
}

impl Event for DeadLettersSent<'_> {
    fn emit(self, metrics: &Metrics) {
        let label = TopicLabel {
            topic: self.topic.to_string(),
        };
        metrics
            .dead_letters
            .get_or_create(&label)
            .inc_by(self.count);
        metrics.count(|s| s.dead_lettered += self.count);
    }
}

/// Events of one partition's batch behind a closed window.
pub struct LateEvents<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The window.
    pub window: &'a str,
    /// The late events' offsets, in order.
    pub offsets: &'a [i64],
}

impl Event for LateEvents<'_> {
    fn emit(self, metrics: &Metrics) {
        let Some(first) = self.offsets.first() else {
            return;
        };
        warn!(
            topic = self.topic,
            partition = self.partition,
            window = self.window,
            late = self.offsets.len(),
            first,
            "Events arrived after their windows closed."
        );
        let label = WindowLabel {
            window: self.window.to_string(),
        };
        metrics
            .late
            .get_or_create(&label)
            .inc_by(self.offsets.len() as u64);
        metrics.count(|s| s.late += self.offsets.len() as u64);
    }
}

/// Alerts of one rule sent.
pub struct AlertsSent<'a> {
    /// The rule.
    pub rule: &'a str,
    /// How many.
    pub count: u64,
}

impl Event for AlertsSent<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(rule = self.rule, count = self.count, "Alerts sent.");
        let label = RuleLabel {
            rule: self.rule.to_string(),
        };
        metrics.alerts.get_or_create(&label).inc_by(self.count);
        metrics.count(|s| s.alerts += self.count);
    }
}

/// Events forwarded to a window's repartition topic.
pub struct EventsForwarded<'a> {
    /// The window.
    pub window: &'a str,
    /// How many.
    pub count: u64,
}

impl Event for EventsForwarded<'_> {
    fn emit(self, metrics: &Metrics) {
        let label = WindowLabel {
            window: self.window.to_string(),
        };
        metrics
            .repartitioned
            .get_or_create(&label)
            .inc_by(self.count);
        metrics.count(|s| s.forwarded += self.count);
    }
}

/// What a table holds: a stream's rows, or a window's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A stream's rows.
    Rows,
    /// A window's results.
    Windows,
}

/// A commit made.
pub struct Committed<'a> {
    /// The table.
    pub table: &'a str,
    /// What it holds.
    pub kind: TableKind,
    /// The table version it made.
    pub version: u64,
    /// Rows committed.
    pub rows: usize,
    /// Files written.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Source partitions it covers.
    pub partitions: usize,
    /// How far it took the source, for a single-source run (a load's line number).
    pub to_line: Option<i64>,
    /// How long it took, files included.
    pub took: Duration,
    /// The newest event time among its rows (UTC microseconds).
    pub newest_event_us: Option<i64>,
}

impl Event for Committed<'_> {
    fn emit(self, metrics: &Metrics) {
        let Committed {
            table,
            version,
            rows,
            partitions,
            ..
        } = self;
        match self.to_line {
            Some(to_line) => info!(table, version, rows, to_line, "Committed."),
            None => info!(table, version, rows, partitions, "Committed."),
        }
        let label = TableLabel {
            table: table.to_string(),
        };
        metrics
            .rows_landed
            .get_or_create(&label)
            .inc_by(rows as u64);
        metrics
            .bytes_landed
            .get_or_create(&label)
            .inc_by(self.bytes);
        let outcome = CommitLabels {
            table: table.to_string(),
            outcome: "committed",
        };
        metrics.commits.get_or_create(&outcome).inc();
        metrics
            .commit_seconds
            .get_or_create(&label)
            .observe(self.took.as_secs_f64());
        metrics
            .commit_files
            .get_or_create(&label)
            .observe(self.files as f64);
        metrics
            .commit_bytes
            .get_or_create(&label)
            .observe(self.bytes as f64);
        metrics.commits_failing.store(false, Ordering::Relaxed);
        let mut landed = metrics.landed.lock().expect("no panics");
        let entry = landed.entry(table.to_string()).or_insert(Landed {
            at: SystemTime::now(),
            newest_event_us: None,
        });
        entry.at = SystemTime::now();
        entry.newest_event_us = entry.newest_event_us.max(self.newest_event_us);
        drop(landed);
        metrics.count(|s| {
            s.commits += 1;
            match self.kind {
                TableKind::Rows => s.rows += rows as u64,
                TableKind::Windows => s.windows += rows as u64,
            }
        });
    }
}

/// A commit refused because another member committed the partitions meanwhile.
pub struct CommitFenced<'a> {
    /// The table.
    pub table: &'a str,
    /// The refusal, with its causes.
    pub error: &'a anyhow::Error,
}

impl Event for CommitFenced<'_> {
    fn emit(self, metrics: &Metrics) {
        warn!(table = self.table, error = %format!("{:#}", self.error), "Another member committed these partitions; dropping their buffers.");
        let outcome = CommitLabels {
            table: self.table.to_string(),
            outcome: "fenced",
        };
        metrics.commits.get_or_create(&outcome).inc();
        metrics.count(|s| s.fenced += 1);
    }
}

/// A commit attempt failed on a transient error and will be tried again.
pub struct CommitRetried<'a> {
    /// The table.
    pub table: &'a str,
    /// The failure, with its causes.
    pub error: &'a anyhow::Error,
    /// When the next attempt comes.
    pub retry_in: Duration,
}

impl Event for CommitRetried<'_> {
    fn emit(self, metrics: &Metrics) {
        warn!(table = self.table, error = %format!("{:#}", self.error), retry_in = ?self.retry_in, "Commit failed; retrying.");
        let label = TableLabel {
            table: self.table.to_string(),
        };
        metrics.commit_retries.get_or_create(&label).inc();
        metrics.commits_failing.store(true, Ordering::Relaxed);
    }
}

/// Partitions this member was given.
pub struct PartitionsAssigned<'a> {
    /// (topic, partition) pairs.
    pub partitions: &'a [(String, i32)],
    /// How many it holds now.
    pub holding: usize,
}

impl Event for PartitionsAssigned<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(partitions = ?self.partitions, "Partitions assigned.");
        metrics.assigned.set(self.holding as i64);
        let change = ChangeLabel { change: "assigned" };
        metrics.rebalances.get_or_create(&change).inc();
    }
}

/// Partitions taken from this member; their buffers are dropped.
pub struct PartitionsRevoked<'a> {
    /// (topic, partition) pairs.
    pub partitions: &'a [(String, i32)],
    /// How many it holds now.
    pub holding: usize,
    /// How many of them had a lane open.
    pub lanes: usize,
}

impl Event for PartitionsRevoked<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(partitions = ?self.partitions, "Partitions revoked; dropping their buffers.");
        metrics.assigned.set(self.holding as i64);
        let change = ChangeLabel { change: "revoked" };
        metrics.rebalances.get_or_create(&change).inc();
        let why = WhyLabel { why: "revoked" };
        metrics
            .lanes_dropped
            .get_or_create(&why)
            .inc_by(self.lanes as u64);
        for (topic, partition) in self.partitions {
            metrics.lag.remove(&PartitionLabels {
                topic: topic.clone(),
                partition: *partition,
            });
        }
    }
}

/// A partition's lane opened from what the lake holds.
pub struct LaneOpened<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The offset it reads from.
    pub next: i64,
    /// What each table holds of it.
    pub committed: &'a [Option<i64>],
    /// What the side topics hold from it.
    pub side: &'a dyn std::fmt::Debug,
}

impl Event for LaneOpened<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(topic = self.topic, partition = self.partition, next = self.next, committed = ?self.committed, side = ?self.side, "Lane opened from the lake's offsets.");
        metrics.lanes_opened.inc();
    }
}

/// Lanes dropped after a refused commit, to be opened again from the lake.
pub struct LanesFenced {
    /// How many.
    pub lanes: usize,
}

impl Event for LanesFenced {
    fn emit(self, metrics: &Metrics) {
        let why = WhyLabel { why: "fenced" };
        metrics
            .lanes_dropped
            .get_or_create(&why)
            .inc_by(self.lanes as u64);
    }
}

/// The buffers went over the memory budget: the largest table commits early.
pub struct OverMemoryBudget<'a> {
    /// The table that commits.
    pub table: &'a str,
    /// Its buffered bytes.
    pub bytes: u64,
}

impl Event for OverMemoryBudget<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(
            table = self.table,
            bytes = self.bytes,
            "Over the memory budget; committing the largest buffer."
        );
        let label = TableLabel {
            table: self.table.to_string(),
        };
        metrics.budget_commits.get_or_create(&label).inc();
    }
}

/// How much is buffered now, against the budget.
pub struct Buffered {
    /// Bytes buffered over all tables and partitions.
    pub bytes: u64,
    /// The budget.
    pub budget: u64,
}

impl Event for Buffered {
    fn emit(self, metrics: &Metrics) {
        metrics.buffered_bytes.set(self.bytes as i64);
        metrics.memory_budget.set(self.budget as i64);
    }
}

/// A window's watermark moved.
pub struct WatermarkMoved<'a> {
    /// The window.
    pub window: &'a str,
    /// Its watermark (UTC microseconds).
    pub watermark_us: i64,
}

impl Event for WatermarkMoved<'_> {
    fn emit(self, metrics: &Metrics) {
        let label = WindowLabel {
            window: self.window.to_string(),
        };
        metrics
            .watermark
            .get_or_create(&label)
            .set(self.watermark_us as f64 / 1e6);
    }
}

/// How far a partition's log runs ahead of what the lake holds of it.
pub struct PartitionLag<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The log end (the next offset to be written).
    pub log_end: i64,
    /// The next offset every table fed by the partition still needs.
    pub committed_next: i64,
}

impl Event for PartitionLag<'_> {
    fn emit(self, metrics: &Metrics) {
        let labels = PartitionLabels {
            topic: self.topic.to_string(),
            partition: self.partition,
        };
        let lag = (self.log_end - self.committed_next).max(0);
        metrics.lag.get_or_create(&labels).set(lag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_counts_rows_and_sets_freshness_against_the_clock() {
        let metrics = Metrics::default();
        let hour_ago = micros_since_epoch(SystemTime::now()) - 3_600_000_000;
        metrics.emit(Committed {
            table: "readings",
            kind: TableKind::Rows,
            version: 3,
            rows: 10,
            files: 2,
            bytes: 5000,
            partitions: 1,
            to_line: None,
            took: Duration::from_millis(40),
            newest_event_us: Some(hour_ago),
        });
        let text = metrics.render();
        assert!(
            text.contains("sluice_rows_landed_total{table=\"readings\"} 10"),
            "{text}"
        );
        let freshness = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_table_freshness_seconds{table=\"readings\"} "))
            .expect("freshness exported");
        let freshness: f64 = freshness.parse().unwrap();
        assert!((3600.0..3610.0).contains(&freshness), "{freshness}");
        assert_eq!(metrics.summary().rows, 10);
        assert_eq!(metrics.summary().commits, 1);
    }

    #[test]
    fn readiness_needs_partitions_and_commits_that_succeed() {
        let metrics = Metrics::default();
        assert!(!metrics.ready());
        let partitions = [("t".to_string(), 0)];
        metrics.emit(PartitionsAssigned {
            partitions: &partitions,
            holding: 1,
        });
        assert!(metrics.ready());
        let error = anyhow::anyhow!("store down");
        metrics.emit(CommitRetried {
            table: "readings",
            error: &error,
            retry_in: Duration::from_millis(250),
        });
        assert!(!metrics.ready());
        assert!(metrics.live());
    }
}
