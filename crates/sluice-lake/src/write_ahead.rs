//! Rows written to a table's Parquet files as they arrive, committed later in one Delta commit.
//!
//! [`LakeTable::commit`] takes a commit's rows at once, so a writer holds them as Arrow until
//! then: the stream must, because a lane whose Kafka partition is revoked drops its rows
//! uncommitted. A writer that cannot lose its source (`sluice load`) instead encodes rows as
//! they come ([`LakeTable::write_ahead`]) and holds only open files: encoded, compressed
//! columns (sensor-1M's million rows are 10.6 MB of Parquet; a load of them peaked at 102 MiB
//! against 189 MiB holding rows, BENCHMARKS.md). Nothing is visible to readers until
//! [`LakeTable::commit_written`]; files of a load that fails before it are never committed
//! (and an in-progress multipart upload is aborted when its writer is dropped).
//!
//! Every open file keeps a zstd context and a dictionary interner per column (`partitioning`),
//! so at most [`OPEN_PARTITIONS`] date/hour partitions have a file open: the one written
//! longest ago is closed when another one opens. Rows of a partition whose file was closed
//! are then held as Arrow and written at the commit, one partition at a time as
//! [`LakeTable::commit`] does: input in event-time order (a backfill of days) closes each
//! hour's file as the next hours arrive and holds only late events, while input that keeps
//! returning to many hours holds about what `commit` would, and never makes more than two
//! files per partition and commit.

use arrow::array::RecordBatch;
use delta_kernel::expressions::Scalar;
use deltalake::kernel::Add;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use indexmap::IndexMap;

use crate::evolution::{WritingSchema, conform};
use crate::partitioning::split_by_partition;
use crate::writer::{Commit, PartitionProgress, partition_values, writer_properties};
use crate::{LakeError, LakeTable};

/// The most date/hour partitions with a file open at once.
pub const OPEN_PARTITIONS: usize = 8;

/// Files written ahead of their commit, and how many rows they hold.
#[derive(Default)]
pub struct WrittenFiles {
    /// Partitions with a file open, the one written longest ago first.
    open: Vec<OpenPartition>,
    /// Files closed already, to be committed with the open ones.
    closed: Vec<Add>,
    /// The partitions of those files.
    closed_partitions: Vec<IndexMap<String, Scalar>>,
    /// Rows of closed partitions that came later: written at the commit.
    held: Vec<RecordBatch>,
    rows: usize,
    /// The columns the files have: decided by the first rows (see `evolution`).
    writing: Option<WritingSchema>,
}

struct OpenPartition {
    values: IndexMap<String, Scalar>,
    writer: RecordBatchWriter,
}

impl WrittenFiles {
    /// Rows written since the last commit.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Partitions with a file open now.
    pub fn open_partitions(&self) -> usize {
        self.open.len()
    }

    /// Rows held as Arrow until the commit (see the module docs).
    pub fn held_rows(&self) -> usize {
        self.held.iter().map(RecordBatch::num_rows).sum()
    }
}

impl LakeTable {
    /// Writes `batch` to new files of this table in `files`; they are committed by
    /// [`Self::commit_written`]. On error `files` must be dropped: what it held is lost.
    pub async fn write_ahead(
        &self,
        files: &mut WrittenFiles,
        batch: &RecordBatch,
    ) -> Result<(), LakeError> {
        let write = &self.write_error();
        if files.writing.is_none() {
            files.writing = Some(self.writing_schema(std::slice::from_ref(batch))?);
        }
        let partitions =
            split_by_partition(batch, &self.partition_by).map_err(|e| write(e.into()))?;
        for (row, rows) in partitions {
            let values = partition_values(batch, row, &self.partition_by).map_err(write)?;
            if files.closed_partitions.contains(&values) {
                files.held.push(rows);
                continue;
            }
            let writing = files.writing.as_ref().expect("decided above");
            let rows = conform(&rows, &writing.schema).map_err(|e| self.rows_mismatch(e))?;
            let open = self.open_partition(files, values).await?;
            open.writer
                .write_partition(rows, &open.values, WriteMode::Default)
                .await
                .map_err(write)?;
        }
        files.rows += batch.num_rows();
        Ok(())
    }

    /// The open file of the partition with `values` (not a closed one), now the one written
    /// last: opened if needed, after closing the one written longest ago when
    /// [`OPEN_PARTITIONS`] are open.
    async fn open_partition<'f>(
        &self,
        files: &'f mut WrittenFiles,
        values: IndexMap<String, Scalar>,
    ) -> Result<&'f mut OpenPartition, LakeError> {
        let write = &self.write_error();
        // Found before the match: a borrow of the open files must not live across its awaits.
        let found = files.open.iter().position(|open| open.values == values);
        let open = match found {
            Some(index) => files.open.remove(index),
            None => {
                if files.open.len() >= OPEN_PARTITIONS {
                    let mut oldest = files.open.remove(0);
                    files
                        .closed
                        .extend(oldest.writer.flush().await.map_err(write)?);
                    files.closed_partitions.push(oldest.values);
                }
                let writing = files.writing.as_ref().expect("decided before a file opens");
                let writer = self
                    .file_writer(writing)
                    .map_err(write)?
                    .with_writer_properties(writer_properties(&writing.schema));
                OpenPartition { values, writer }
            }
        };
        files.open.push(open);
        Ok(files.open.last_mut().expect("pushed"))
    }

    /// Closes the files of `files` and commits them with `progress` in one Delta commit;
    /// returns the new table version and what it added. On error nothing is committed.
    pub async fn commit_written(
        &mut self,
        files: WrittenFiles,
        progress: &[PartitionProgress],
    ) -> Result<Commit, LakeError> {
        let WrittenFiles {
            open,
            mut closed,
            held,
            writing,
            ..
        } = files;
        let writing = match writing {
            Some(writing) => writing,
            None => self.writing_schema(&[])?,
        };
        for mut open in open {
            closed.extend(open.writer.flush().await.map_err(self.write_error())?);
        }
        closed.extend(self.write_by_partition(held, &writing).await?);
        self.check_progress(progress).await?;
        self.commit_files(closed, progress, &writing).await
    }
}
