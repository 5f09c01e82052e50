//! Committing rows to a lake table together with the Kafka offsets they came from.
//!
//! One commit = the new Parquet files + one `txn` action per source partition whose version is
//! the last offset included (app id `sluice:<table>:<topic>:<partition>`). Because progress
//! lives in the same atomic commit as the data, a restart resumes exactly after the last
//! committed offset. A commit that finds a partition already advanced by someone else is
//! refused (the writer lost the partition), and Delta's conflict checker refuses a concurrent
//! commit carrying the same app id.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use delta_kernel::expressions::Scalar;
use deltalake::DeltaTableError;
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::transaction::{
    CommitBuilder, CommitConflictError, CommitProperties, TransactionError,
};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, WriteMode};
use indexmap::IndexMap;

use crate::evolution::{WritingSchema, conform};
use crate::partitioning::{partition_numbers, rows_of_partition};
use crate::{LakeError, LakeTable};

/// A commit made: the table version and the files it added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The new table version.
    pub version: u64,
    /// Data files added.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// How far one source partition got in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProgress {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// The offset the writer resumed after: what it believes is committed now.
    pub previous: Option<i64>,
    /// The last offset included in this commit.
    pub last_offset: i64,
    /// Further named numbers to record with the offset, each as its own `txn` (a window
    /// table's replay offset and watermark).
    pub marks: Vec<(&'static str, i64)>,
}

impl PartitionProgress {
    /// Refuses to commit this progress to `table`, which records `found` for the partition,
    /// unless it continues from there: another writer committed the partition meanwhile.
    pub(crate) fn check_continues(&self, table: &str, found: Option<i64>) -> Result<(), LakeError> {
        if found == self.previous {
            return Ok(());
        }
        Err(LakeError::Fenced {
            table: table.to_string(),
            topic: self.topic.clone(),
            partition: self.partition,
            expected: self.previous,
            found,
        })
    }
}

/// The Delta `txn` app id that records a source partition's progress in a table.
pub fn app_id(table: &str, topic: &str, partition: i32) -> String {
    // ':' appears neither in SQL names nor in Kafka topic names, so ids cannot collide.
    format!("sluice:{table}:{topic}:{partition}")
}

/// The `txn` app id of a named mark recorded with a source partition's progress.
pub fn mark_app_id(table: &str, topic: &str, partition: i32, mark: &str) -> String {
    format!("{}:{mark}", app_id(table, topic, partition))
}

impl LakeTable {
    /// The value of a named mark of `topic`/`partition` in this table, if any.
    pub async fn committed_mark(
        &self,
        topic: &str,
        partition: i32,
        mark: &str,
    ) -> Result<Option<i64>, LakeError> {
        self.snapshot()
            .transaction_version(
                self.table.log_store().as_ref(),
                mark_app_id(&self.name, topic, partition, mark),
            )
            .await
            .map_err(self.access_error("read committed marks of"))
    }

    /// The last offset of `topic`/`partition` committed to this table, if any.
    pub async fn committed_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LakeError> {
        self.snapshot()
            .transaction_version(
                self.table.log_store().as_ref(),
                app_id(&self.name, topic, partition),
            )
            .await
            .map_err(self.access_error("read committed offsets of"))
    }

    /// Writes `batches` as Parquet files and commits them with `progress` in one Delta commit;
    /// returns the new table version and what it added. On error nothing is committed. Batches given by value
    /// are dropped as soon as they are written, so the commit holds less and less of them.
    pub async fn commit(
        &mut self,
        batches: impl Into<Vec<RecordBatch>>,
        progress: &[PartitionProgress],
    ) -> Result<Commit, LakeError> {
        let batches = batches.into();
        self.check_progress(progress).await?;
        let writing = self.writing_schema(&batches)?;
        let adds = self.write_by_partition(batches, &writing).await?;
        self.commit_files(adds, progress, &writing).await
    }

    /// Writes `batches` as new files with `writing`'s columns, one date/hour partition at a
    /// time; returns their `add` actions. Each batch is dropped as soon as the rows of the last
    /// partition it holds are written.
    pub(crate) async fn write_by_partition(
        &self,
        batches: Vec<RecordBatch>,
        writing: &WritingSchema,
    ) -> Result<Vec<Add>, LakeError> {
        let write = &self.write_error();
        // One partition at a time: one Parquet writer open (see `partitioning`). The writer is
        // told each partition's values, so it does not split the rows again. A batch is
        // released as soon as the rows of the last partition it holds are written.
        let partitions =
            partition_numbers(&batches, &self.partition_by).map_err(|e| write(e.into()))?;
        let properties = writer_properties(&writing.schema);
        let mut batches: Vec<Option<RecordBatch>> = batches.into_iter().map(Some).collect();
        let mut adds = Vec::new();
        for (number, &(batch, row)) in partitions.firsts.iter().enumerate() {
            let number = number as u32;
            let first = batches[batch]
                .as_ref()
                .expect("held until its partitions are written");
            let values = partition_values(first, row, &self.partition_by).map_err(write)?;
            let mut writer = self
                .file_writer(writing)
                .map_err(write)?
                .with_writer_properties(properties.clone());
            for (index, held) in batches.iter_mut().enumerate() {
                let Some(batch) = held else { continue };
                let rows = rows_of_partition(batch, &partitions.numbers[index], number)
                    .map_err(|e| write(e.into()))?;
                if let Some(rows) = rows {
                    let rows =
                        conform(&rows, &writing.schema).map_err(|e| self.rows_mismatch(e))?;
                    writer
                        .write_partition(rows, &values, WriteMode::Default)
                        .await
                        .map_err(write)?;
                }
                if partitions.last_needed_by[index].is_none_or(|last| last <= number) {
                    *held = None;
                }
            }
            adds.extend(writer.flush().await.map_err(write)?);
        }
        Ok(adds)
    }

    /// Refreshes the snapshot and refuses `progress` that does not continue from what the
    /// table records: another writer committed those source partitions meanwhile.
    pub(crate) async fn check_progress(
        &mut self,
        progress: &[PartitionProgress],
    ) -> Result<(), LakeError> {
        self.refresh().await?;
        for p in progress {
            let found = self.committed_offset(&p.topic, p.partition).await?;
            p.check_continues(&self.name, found)?;
        }
        Ok(())
    }

    /// Commits the written files `adds` with `progress` in one Delta commit, with the schema
    /// change when `writing` adds columns; returns the new table version and what it added.
    pub(crate) async fn commit_files(
        &mut self,
        adds: Vec<Add>,
        progress: &[PartitionProgress],
        writing: &WritingSchema,
    ) -> Result<Commit, LakeError> {
        let files = adds.len();
        let bytes = adds.iter().map(|add| add.size.max(0) as u64).sum();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let txns = progress
            .iter()
            .flat_map(|p| {
                let offset = (app_id(&self.name, &p.topic, p.partition), p.last_offset);
                let marks = p.marks.iter().map(|(mark, value)| {
                    (mark_app_id(&self.name, &p.topic, p.partition, mark), *value)
                });
                std::iter::once(offset).chain(marks)
            })
            .map(|(id, version)| Transaction::new_with_last_update(id, version, Some(now_ms)))
            .collect();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: (!self.partition_by.is_empty()).then(|| self.partition_by.clone()),
            predicate: None,
        };
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        if !writing.added.is_empty() {
            actions.push(self.schema_change(writing)?);
        }
        let finalized =
            CommitBuilder::from(CommitProperties::default().with_application_transactions(txns))
                .with_actions(actions)
                .build(Some(self.snapshot()), self.table.log_store(), operation)
                .await
                .map_err(|source| commit_error(&self.name, source))?;
        let version = finalized.version();
        self.refresh().await?;
        Ok(Commit {
            version,
            files,
            bytes,
        })
    }

    /// Brings the snapshot up to the table's latest version (other writers may have committed).
    pub async fn refresh(&mut self) -> Result<(), LakeError> {
        self.table
            .update_state()
            .await
            .map_err(self.access_error("refresh"))
    }
}

/// The values of the partition columns `columns` at `row` of `batch`, as Delta records them.
pub(crate) fn partition_values(
    batch: &RecordBatch,
    row: usize,
    columns: &[String],
) -> Result<IndexMap<String, Scalar>, DeltaTableError> {
    columns
        .iter()
        .map(|name| {
            let value = batch
                .column_by_name(name)
                .and_then(|column| Scalar::from_array(column, row))
                .ok_or_else(|| {
                    DeltaTableError::generic(format!("no value of partition column {name}"))
                })?;
            Ok((name.clone(), value))
        })
        .collect()
}

/// A commit conflict over the same `txn` app ids means another writer took the partitions.
fn commit_error(table: &str, source: DeltaTableError) -> LakeError {
    let table = table.to_string();
    match source {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction),
        } => LakeError::ConcurrentCommit { table, source },
        source => LakeError::Commit { table, source },
    }
}

/// The most dictionary bytes a fixed-width column (numbers, times, dates) keeps before its
/// column chunk falls back to plain values: 8,192 distinct 8-byte values. Readings, times and
/// offsets are mostly distinct; interning them into the default 1 MiB dictionary only to fall
/// back cost about 8 % of a load's CPU, and plain values compress better under zstd
/// (sensor-1M: 14.0 → 10.7 MB, BENCHMARKS.md).
const FIXED_WIDTH_DICTIONARY_LIMIT: usize = 64 * 1024;

/// The same for strings (each stored with a 4-byte length): a dictionary of names or codes
/// (a few thousand short ones) stays whole, while a mostly distinct column (100,000 device
/// ids of 12 bytes, about 72,000 of them in a row group) falls back after 16,384 values
/// rather than after interning 65,536 into parquet's 1 MiB default: sensor-10M used about 5%
/// less CPU and wrote 3% less (BENCHMARKS.md). The cost: a column of more than about 4,000
/// distinct values of 64 bytes (URLs, user agents) now falls back within a row group too,
/// and readers lose its dictionary there.
const STRING_DICTIONARY_LIMIT: usize = 256 * 1024;

/// Parquet settings of data files with these columns: zstd for size, row groups sized for
/// scans, small dictionaries for fixed-width columns and bounded ones for strings.
pub fn writer_properties(schema: &Schema) -> WriterProperties {
    schema
        .fields()
        .iter()
        .filter(|field| field.data_type().is_primitive())
        .fold(WriterProperties::builder(), |builder, field| {
            builder.set_column_dictionary_page_size_limit(
                ColumnPath::from(field.name().as_str()),
                FIXED_WIDTH_DICTIONARY_LIMIT,
            )
        })
        .set_dictionary_page_size_limit(STRING_DICTIONARY_LIMIT)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
}
