//! A table the engine writes, as both drivers hold it: its [`Sink`], what lands in it (a
//! stream's rows or a window's results), its flush policy and when that policy makes it due
//! ([`Held::due`]), and one commit step ([`Committer::commit`]: retries, the events it emits),
//! which can run on a task of its own. The one place that picks a sink for a table (a
//! stream's or a window's): Delta, Iceberg, or plain files for `format = "parquet" | "csv" |
//! "jsonl"`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use sluice_core::config::{Catalog, FlushPolicy, Table, TableFormat, Window};
use sluice_core::windows::{WINDOW_END, WINDOW_START};
use sluice_iceberg::{IcebergSink, IcebergTable};
use sluice_lake::{Commit, DeltaSink, FilesSink, LakeError, LakeTable, PartitionProgress, Sink};

use crate::events::{CommitRetried, Committed, Metrics, TableKind};
use crate::lanes::TableBuffer;
use crate::windows::{CLOSE_US, MAX_EVENT_US, REPLAY_FROM, REPLAY_MAX_US, WindowLane, WindowMarks};

/// How long a failing store is retried before a commit gives up (and the process exits
/// non-zero, to be restarted from the lake's offsets). Below librdkafka's max.poll.interval.ms
/// (5 min), so retrying does not cost a stream its group membership.
pub const COMMIT_RETRY_LIMIT: Duration = Duration::from_secs(120);

/// What lands in an output.
pub enum Lands {
    /// A stream's rows (after the table's filter).
    Rows,
    /// A window's results.
    Windows(Box<Window>),
}

/// A table's sink, shared with the commit that may be running on another task: whoever locks
/// it while that commit runs waits for the commit to end.
pub type SharedSink = Arc<tokio::sync::Mutex<Box<dyn Sink>>>;

/// A table being written.
pub struct Output {
    /// Where its commits go.
    pub sink: SharedSink,
    /// The table's name.
    name: String,
    /// What lands in it.
    pub lands: Lands,
    /// When it commits.
    pub flush: FlushPolicy,
    /// The column holding each row's event time (for freshness).
    pub event_time: String,
}

impl Output {
    /// Opens (or creates) a stream's table, whose rows have `schema`, with their event time
    /// in `event_time`.
    pub async fn table(
        config: &Table,
        storage_options: &HashMap<String, String>,
        schema: &SchemaRef,
        event_time: &str,
    ) -> Result<Self> {
        let stored = Stored {
            name: &config.name,
            uri: &config.uri,
            format: config.format,
            catalog: config.catalog.as_ref(),
            partition_by: &config.partition_by,
        };
        Ok(Self::new(
            stored.open(storage_options, schema, event_time).await?,
            Lands::Rows,
            config.flush,
            event_time.to_string(),
        ))
    }

    /// Opens (or creates) a window table, partitioned by its windows' start.
    pub async fn window(
        config: &Window,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self> {
        let stored = Stored {
            name: &config.name,
            uri: &config.uri,
            format: config.format,
            catalog: config.catalog.as_ref(),
            partition_by: &config.partition_by,
        };
        let schema = config.aggregation.output_schema();
        Ok(Self::new(
            stored.open(storage_options, schema, WINDOW_START).await?,
            Lands::Windows(Box::new(config.clone())),
            config.flush,
            WINDOW_END.to_string(),
        ))
    }

    /// An output landing in `sink`.
    fn new(sink: Box<dyn Sink>, lands: Lands, flush: FlushPolicy, event_time: String) -> Self {
        Self {
            name: sink.name().to_string(),
            sink: Arc::new(tokio::sync::Mutex::new(sink)),
            lands,
            flush,
            event_time,
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the table lives and its version, for logs.
    pub async fn describe(&self) -> String {
        self.sink.lock().await.describe()
    }

    /// The window, for a window table.
    pub fn window_config(&self) -> Option<&Window> {
        match &self.lands {
            Lands::Rows => None,
            Lands::Windows(config) => Some(config),
        }
    }

    /// What it holds, as the metrics name it.
    pub fn kind(&self) -> TableKind {
        match self.lands {
            Lands::Rows => TableKind::Rows,
            Lands::Windows(_) => TableKind::Windows,
        }
    }

    /// What commits to the table, apart from the output: for a commit on a task of its own.
    pub fn committer(&self) -> Committer {
        Committer {
            sink: self.sink.clone(),
            table: self.name.clone(),
            kind: self.kind(),
        }
    }

    /// Commits here and now: [`Committer::commit`].
    pub async fn commit(
        &self,
        batches: &[RecordBatch],
        progress: &[PartitionProgress],
        landed: Landed,
        metrics: &Metrics,
    ) -> Result<Commit, LakeError> {
        self.committer()
            .commit(batches, progress, landed, metrics)
            .await
    }
}

/// Where and how a table (a stream's or a window's) is stored.
struct Stored<'a> {
    name: &'a str,
    uri: &'a str,
    format: TableFormat,
    catalog: Option<&'a Catalog>,
    partition_by: &'a [String],
}

impl Stored<'_> {
    /// The table's sink, the table opened or created with `schema`; its date and hour
    /// partitions derive from the timestamp column `partition_time`.
    async fn open(
        &self,
        storage_options: &HashMap<String, String>,
        schema: &SchemaRef,
        partition_time: &str,
    ) -> Result<Box<dyn Sink>> {
        Ok(match self.format {
            TableFormat::Delta => Box::new(DeltaSink::new(
                LakeTable::open_or_create(
                    self.name,
                    self.uri,
                    storage_options,
                    schema,
                    self.partition_by,
                )
                .await?,
            )),
            TableFormat::Iceberg => Box::new(
                IcebergSink::open_or_create(
                    IcebergTable {
                        name: self.name,
                        uri: self.uri,
                        catalog: self
                            .catalog
                            .expect("an Iceberg table has its catalog (checked with the file)"),
                        schema,
                        event_time: partition_time,
                        partition_by: self.partition_by,
                    },
                    storage_options,
                )
                .await?,
            ),
            TableFormat::Files(format) => Box::new(
                FilesSink::open_or_create(
                    self.name,
                    self.uri,
                    storage_options,
                    schema,
                    self.partition_by,
                    format,
                )
                .await?,
            ),
        })
    }
}

/// One table's commit step, holding what it needs of the table's [`Output`].
pub struct Committer {
    sink: SharedSink,
    table: String,
    kind: TableKind,
}

impl Committer {
    /// Commits `batches` (and, for a writer that wrote ahead, the files written since the last
    /// commit) with `progress`, retrying a failing store with exponential backoff for up to
    /// [`COMMIT_RETRY_LIMIT`]; a success is emitted as [`Committed`], with `landed` saying what
    /// it lands. Every attempt writes its files before its commit, so nothing is committed
    /// before it is durable; files of a failed attempt stay unreferenced. A commit of rows
    /// written ahead is tried once: they are gone with a failed attempt, and another would
    /// commit the progress without them (the load stops; run again, it resumes from the
    /// table's last commit). Holds the sink throughout.
    pub async fn commit(
        &self,
        batches: &[RecordBatch],
        progress: &[PartitionProgress],
        landed: Landed,
        metrics: &Metrics,
    ) -> Result<Commit, LakeError> {
        let mut sink = self.sink.lock().await;
        let retries = !sink.has_written_ahead();
        let first_try = Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            let started = Instant::now();
            match sink.commit(batches, progress).await {
                Err(err)
                    if retries
                        && err.is_transient()
                        && first_try.elapsed() < COMMIT_RETRY_LIMIT =>
                {
                    metrics.emit(CommitRetried {
                        table: &self.table,
                        error: &anyhow::Error::new(err),
                        retry_in: delay,
                    });
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
                Err(err) => return Err(err),
                Ok(commit) => {
                    let partitions: Vec<(&str, i32, i64)> = (progress.iter())
                        .filter_map(|p| {
                            let newest = landed.newest_by_partition.iter();
                            let (_, us) = newest.clone().find(|(q, _)| *q == p.partition)?;
                            Some((p.topic.as_str(), p.partition, *us))
                        })
                        .collect();
                    metrics.emit(Committed {
                        table: &self.table,
                        kind: self.kind,
                        version: commit.version,
                        rows: landed.rows,
                        files: commit.files,
                        bytes: commit.bytes,
                        partitions: progress.len(),
                        to_line: landed.to_line,
                        took: started.elapsed(),
                        newest_event_us: landed.newest_event_us,
                        newest_by_partition: &partitions,
                        since_received: landed.received.map(|at| at.elapsed()),
                    });
                    return Ok(commit);
                }
            }
        }
    }
}

/// What a commit lands, for its event.
#[derive(Debug, Clone)]
pub struct Landed {
    /// Rows in all (written ahead included).
    pub rows: usize,
    /// The newest event time among them (UTC microseconds).
    pub newest_event_us: Option<i64>,
    /// The newest event time among them per source partition (UTC microseconds), for rows
    /// that carry their partition.
    pub newest_by_partition: Vec<(i32, i64)>,
    /// How far it takes a single-source run (a load's line number).
    pub to_line: Option<i64>,
    /// When the oldest row (or progress) it lands was received, for a stream.
    pub received: Option<Instant>,
}

impl Landed {
    /// What committing `batches` of `output` lands, the oldest received at `received`.
    pub fn batches(output: &Output, batches: &[RecordBatch], received: Option<Instant>) -> Self {
        Self {
            rows: batches.iter().map(RecordBatch::num_rows).sum(),
            newest_event_us: newest_timestamp_us(batches, &output.event_time),
            newest_by_partition: newest_by_partition(batches, &output.event_time),
            to_line: None,
            received,
        }
    }
}

/// What an output holds that is not committed yet, over one or more lanes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    /// Rows buffered (or emitted windows).
    pub rows: usize,
    /// Their bytes (Arrow memory; a window's results are not counted).
    pub bytes: u64,
    /// Bytes of open windows' state: in the memory budget, but no commit frees them.
    pub state_bytes: u64,
    /// When the oldest uncommitted progress arrived; `None` when there is none.
    pub since: Option<Instant>,
}

impl Held {
    /// What a table's buffer in one lane holds.
    pub fn of_table(buffer: &TableBuffer) -> Self {
        Self {
            rows: buffer.rows(),
            bytes: buffer.bytes() as u64,
            state_bytes: 0,
            since: buffer.since().filter(|_| buffer.has_pending()),
        }
    }

    /// What a window's state in one lane holds.
    pub fn of_window(window: &WindowLane) -> Self {
        Self {
            rows: window.pending_rows(),
            bytes: 0,
            state_bytes: window.state_bytes() as u64,
            since: window.since().filter(|_| window.has_pending()),
        }
    }

    /// Both together.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            rows: self.rows + other.rows,
            bytes: self.bytes + other.bytes,
            state_bytes: self.state_bytes + other.state_bytes,
            since: match (self.since, other.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// When `flush`'s latency limit is reached, if anything is held.
    pub fn deadline(&self, flush: &FlushPolicy) -> Option<Instant> {
        Some(self.since? + flush.max_latency)
    }

    /// Whether an output holding this is due a commit under `flush`: anything held is, when
    /// `all`; otherwise once a row, byte or latency limit is reached.
    pub fn due(&self, flush: &FlushPolicy, all: bool) -> bool {
        self.since.is_some_and(|since| {
            all || self.rows >= flush.max_rows
                || self.bytes >= flush.max_bytes
                || since.elapsed() >= flush.max_latency
        })
    }
}

/// Where a window table left a partition.
pub async fn window_marks_of(
    table: &dyn Sink,
    (topic, partition): &(String, i32),
) -> Result<WindowMarks> {
    Ok(WindowMarks {
        committed: table.committed(topic, *partition).await?,
        replay_from: table.committed_mark(topic, *partition, REPLAY_FROM).await?,
        replay_max_us: table
            .committed_mark(topic, *partition, REPLAY_MAX_US)
            .await?,
        close_us: table.committed_mark(topic, *partition, CLOSE_US).await?,
        max_event_us: table
            .committed_mark(topic, *partition, MAX_EVENT_US)
            .await?,
    })
}

/// The newest value of the timestamp column `column` among `batches` (UTC microseconds), or
/// `None` when no batch has such a column or every value is null.
pub fn newest_timestamp_us(batches: &[RecordBatch], column: &str) -> Option<i64> {
    batches
        .iter()
        .filter_map(|batch| {
            let values = batch.column_by_name(column)?;
            let values = values.as_primitive_opt::<TimestampMicrosecondType>()?;
            arrow::compute::max(values)
        })
        .max()
}

/// The newest value of the timestamp `column` per source partition (the `_partition`
/// column) in `batches`; empty when they have no such columns.
pub fn newest_by_partition(batches: &[RecordBatch], column: &str) -> Vec<(i32, i64)> {
    let mut newest: Vec<(i32, i64)> = Vec::new();
    for batch in batches {
        let partitions = batch.column_by_name(sluice_core::schema::PARTITION_COLUMN);
        let partitions = partitions.and_then(|p| p.as_primitive_opt::<Int32Type>());
        let times = batch.column_by_name(column);
        let times = times.and_then(|t| t.as_primitive_opt::<TimestampMicrosecondType>());
        let (Some(partitions), Some(times)) = (partitions, times) else {
            continue;
        };
        for (partition, time) in partitions.iter().zip(times.iter()) {
            let (Some(partition), Some(time)) = (partition, time) else {
                continue;
            };
            match newest.iter_mut().find(|(q, _)| *q == partition) {
                Some((_, us)) => *us = (*us).max(time),
                None => newest.push((partition, time)),
            }
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn flush(max_rows: usize, max_bytes: u64, max_latency: Duration) -> FlushPolicy {
        FlushPolicy {
            max_rows,
            max_bytes,
            max_latency,
        }
    }

    #[test]
    fn nothing_held_is_never_due() {
        let nothing = Held::default();
        assert!(!nothing.due(&flush(0, 0, Duration::ZERO), true));
        assert_eq!(nothing.deadline(&flush(1, 1, Duration::ZERO)), None);
    }

    #[test]
    fn any_limit_reached_makes_it_due() {
        let long = Duration::from_secs(3600);
        // Open windows' state is no reason to commit: a commit does not free it.
        let held = Held {
            rows: 10,
            bytes: 100,
            state_bytes: 1 << 30,
            since: Some(Instant::now()),
        };
        assert!(!held.due(&flush(11, 101, long), false));
        assert!(held.due(&flush(11, 101, long), true));
        assert!(held.due(&flush(10, 101, long), false));
        assert!(held.due(&flush(11, 100, long), false));
        assert!(held.due(&flush(11, 101, Duration::ZERO), false));
    }

    #[test]
    fn together_the_oldest_progress_counts() {
        let now = Instant::now();
        let earlier = now - Duration::from_secs(5);
        let a = Held {
            rows: 1,
            bytes: 2,
            state_bytes: 5,
            since: Some(now),
        };
        let b = Held {
            rows: 3,
            bytes: 4,
            state_bytes: 6,
            since: Some(earlier),
        };
        let both = a.plus(b).plus(Held::default());
        assert_eq!(
            (both.rows, both.bytes, both.state_bytes, both.since),
            (4, 6, 11, Some(earlier))
        );
    }

    #[test]
    fn the_newest_event_time_is_found_per_source_partition() {
        use arrow::array::{Int32Array, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("_partition", DataType::Int32, true),
        ]));
        let batch = |times: Vec<Option<i64>>, partitions: Vec<i32>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(times)),
                    Arc::new(Int32Array::from(partitions)),
                ],
            )
            .unwrap()
        };
        let batches = [
            batch(vec![Some(5), Some(9), None], vec![0, 1, 1]),
            batch(vec![Some(7), Some(3)], vec![0, 1]),
        ];
        assert_eq!(newest_by_partition(&batches, "ts"), vec![(0, 7), (1, 9)]);
        assert_eq!(newest_by_partition(&batches, "other"), vec![]);
    }
}

#[cfg(test)]
mod written_ahead {
    use std::collections::HashMap;

    use arrow::array::{Date32Array, Int32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use sluice_core::config::{FileCompression, FileFormat, FileKind};
    use sluice_lake::files::FilesTable;

    use super::*;

    fn rows(offsets: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_offset", DataType::Int64, true),
            Field::new("date", DataType::Date32, true),
            Field::new("hour", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(offsets.to_vec())),
                Arc::new(Date32Array::from(vec![20_790; offsets.len()])),
                Arc::new(Int32Array::from(vec![9; offsets.len()])),
            ],
        )
        .unwrap()
    }

    /// A load writes rows ahead of their commit; a commit that fails loses them (the sink's
    /// contract). Retrying it would commit the progress without them: the commit must fail
    /// instead, so that the load stops and a rerun resumes from the table's last commit.
    #[tokio::test]
    async fn a_failed_commit_of_rows_written_ahead_is_not_retried_without_them() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().display().to_string();
        let partition_by = ["date".to_string(), "hour".to_string()];
        let format = FileFormat {
            kind: FileKind::Jsonl,
            compression: FileCompression::None,
        };
        let sink = FilesSink::open_or_create(
            "t",
            &uri,
            &HashMap::new(),
            &rows(&[]).schema(),
            &partition_by,
            format,
        )
        .await
        .unwrap();
        let shared: SharedSink = Arc::new(tokio::sync::Mutex::new(Box::new(sink)));
        shared.lock().await.write(&rows(&[0, 1, 2])).await.unwrap();
        // The store refuses the commit's puts for a moment: the staging directory is a file.
        let staging = dir.path().join("_sluice/staging");
        std::fs::write(&staging, b"").unwrap();
        let unblock = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            std::fs::remove_file(staging).unwrap();
        });
        let committer = Committer {
            sink: shared.clone(),
            table: "t".into(),
            kind: TableKind::Rows,
        };
        let landed = Landed {
            rows: 3,
            newest_event_us: None,
            newest_by_partition: Vec::new(),
            to_line: Some(2),
            received: None,
        };
        let progress = PartitionProgress {
            topic: "file:events.ndjson".into(),
            partition: 0,
            previous: None,
            last_offset: 2,
            marks: Vec::new(),
        };
        let result = committer
            .commit(&[], &[progress], landed, &Metrics::default())
            .await;
        unblock.await.unwrap();
        let table = FilesTable::open("t", &uri, &HashMap::new())
            .await
            .unwrap()
            .unwrap();
        let committed = table
            .latest
            .progress
            .get("file:events.ndjson/0")
            .map(|p| p.offset);
        let objects = table.latest.total_objects;
        assert!(
            result.is_err(),
            "committed {committed:?} with {objects} objects"
        );
        assert_eq!((committed, objects), (None, 0));
    }
}
