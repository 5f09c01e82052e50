//! The seam every table format plugs into (RisingWave's sink writer: write, then commit with
//! the source progress it covers). A sink keeps its exactly-once progress inside its own
//! commits: `commit` makes rows and progress visible together or not at all, and refuses
//! progress that does not continue from what the table records ([`LakeError::Fenced`]: another
//! writer moved it). A restarted or newly assigned writer asks the sink where it left each
//! source partition. Delta is the first sink ([`DeltaSink`]: `txn` actions in the commit); an
//! Iceberg table or plain files are further implementations.

use std::sync::Mutex;

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::{Commit, LakeError, LakeTable, PartitionProgress, WrittenFiles};

/// A table that lands rows exactly once.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The table's name.
    fn name(&self) -> &str;

    /// Where the table lives and its version, for logs.
    fn describe(&self) -> String;

    /// The last offset of a source partition that the table holds, from its commits.
    async fn committed(&self, source: &str, partition: i32) -> Result<Option<i64>, LakeError>;

    /// A number recorded under `mark` for a source partition at its last commit (a window's
    /// replay offset and watermarks).
    async fn committed_mark(
        &self,
        source: &str,
        partition: i32,
        mark: &str,
    ) -> Result<Option<i64>, LakeError>;

    /// Writes rows ahead of their commit, for a writer that cannot lose its source (a load):
    /// nothing is visible until [`Self::commit`]. After a failed commit they are gone, so such
    /// a commit must not be tried again as if they were there.
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError>;

    /// Whether rows written ahead ([`Self::write`]) wait for the next commit.
    fn has_written_ahead(&self) -> bool;

    /// Commits what was written and `batches` with `progress`, atomically. On error nothing is
    /// committed; [`LakeError::is_fenced`] and [`LakeError::is_transient`] say what to do.
    async fn commit(
        &mut self,
        batches: &[RecordBatch],
        progress: &[PartitionProgress],
    ) -> Result<Commit, LakeError>;

    /// Reads the table again at its latest version (after another writer may have committed).
    async fn refresh(&mut self) -> Result<(), LakeError>;
}

/// A Delta table: progress in `txn` actions of each commit.
pub struct DeltaSink {
    table: LakeTable,
    /// Behind a mutex only to make the sink `Sync` (open multipart uploads are not); it is
    /// reached through `&mut self` alone, so it is never locked.
    written: Mutex<WrittenFiles>,
}

impl DeltaSink {
    /// A sink writing `table`.
    pub fn new(table: LakeTable) -> Self {
        Self {
            table,
            written: Mutex::default(),
        }
    }

    fn written(&mut self) -> &mut WrittenFiles {
        self.written
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Sink for DeltaSink {
    fn name(&self) -> &str {
        self.table.name()
    }

    fn describe(&self) -> String {
        format!(
            "Delta table {} at version {:?}",
            self.table.url(),
            self.table.version()
        )
    }

    async fn committed(&self, source: &str, partition: i32) -> Result<Option<i64>, LakeError> {
        self.table.committed_offset(source, partition).await
    }

    async fn committed_mark(
        &self,
        source: &str,
        partition: i32,
        mark: &str,
    ) -> Result<Option<i64>, LakeError> {
        self.table.committed_mark(source, partition, mark).await
    }

    fn has_written_ahead(&self) -> bool {
        (self.written.lock())
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .rows()
            > 0
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        let mut files = std::mem::take(self.written());
        let written = self.table.write_ahead(&mut files, batch).await;
        // After an error what the files held is lost (`write_ahead`'s contract): start over.
        *self.written() = if written.is_ok() {
            files
        } else {
            WrittenFiles::default()
        };
        written
    }

    async fn commit(
        &mut self,
        batches: &[RecordBatch],
        progress: &[PartitionProgress],
    ) -> Result<Commit, LakeError> {
        if self.written().rows() == 0 {
            return self.table.commit(batches, progress).await;
        }
        for batch in batches {
            self.write(batch).await?;
        }
        let written = std::mem::take(self.written());
        self.table.commit_written(written, progress).await
    }

    async fn refresh(&mut self) -> Result<(), LakeError> {
        self.table.refresh().await
    }
}
