//! The lake: Delta tables (or plain files) on object storage, written so that every commit carries the Kafka
//! offsets it covers.
//!
//! # Layout
//! - [`audit`]: reading a table back for `sluice verify`: offsets and file footers.
//! - [`compact`]: rewriting small files into target-size ones without changing the data.
//! - [`evolution`]: tables that gain the columns their rows bring, in the commit that brings them.
//! - [`files`]: plain Parquet, CSV and JSON Lines tables, committed through a log of their own.
//! - [`location`]: table URIs (s3://, file://, local paths) and storage options.
//! - [`table`]: opening or creating a table, refusing one whose schema is not the pipeline's.
//! - `partitioning`: a commit's rows split by date/hour, written one partition at a time.
//! - [`writer`]: Parquet files plus one Delta commit holding a `txn` action per source partition
//!   (the kafka-delta-ingest protocol): the lake, not Kafka, records how far each partition got.
//! - [`write_ahead`]: rows encoded into files as they arrive and committed later, for a writer
//!   that cannot lose its source (`sluice load`): no rows held between commits.
//! - [`sink`]: the `Sink` trait the engine writes through, and the Delta sink.

pub mod audit;
pub mod compact;
pub mod evolution;
pub mod files;
pub mod location;
mod partitioning;
pub mod sink;
pub mod table;
pub mod write_ahead;
pub mod writer;

pub use files::FilesSink;
pub use sink::{DeltaSink, Sink};
pub use table::LakeTable;
pub use write_ahead::WrittenFiles;
pub use writer::{Commit, PartitionProgress, app_id};

/// What went wrong in the lake, with the table it happened to.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The table URI cannot be used.
    #[error("table {table}: invalid location {uri:?}: {reason}")]
    InvalidLocation {
        /// Table name.
        table: String,
        /// The URI as configured.
        uri: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Opening, reading or creating the table failed.
    #[error("table {table} at {uri}: cannot {action}")]
    Access {
        /// Table name.
        table: String,
        /// Where it lives.
        uri: String,
        /// What was attempted.
        action: &'static str,
        /// The cause.
        source: deltalake::DeltaTableError,
    },
    /// The table exists but its columns are not the pipeline's: never written over.
    #[error(
        "table {table} at {uri} exists with a different schema; refusing to write to it:{differences}"
    )]
    SchemaMismatch {
        /// Table name.
        table: String,
        /// Where it lives.
        uri: String,
        /// One line per difference.
        differences: String,
    },
    /// The table exists but sluice did not create it: never written to.
    #[error(
        "table {table} at {uri} was not created by sluice ({found}); another pipeline writes it, refusing to write to it"
    )]
    Foreign {
        /// Table name.
        table: String,
        /// Where it lives.
        uri: String,
        /// What the table's properties say instead.
        found: String,
    },
    /// Writing data files failed; nothing was committed.
    #[error("table {table}: writing data files failed (nothing committed)")]
    Write {
        /// Table name.
        table: String,
        /// The cause.
        source: deltalake::DeltaTableError,
    },
    /// Another writer already committed offsets of a partition this writer meant to commit.
    #[error(
        "table {table}: {topic}/{partition} was committed up to offset {found:?} by another writer, expected {expected:?}; commit refused"
    )]
    Fenced {
        /// Table name.
        table: String,
        /// Source topic.
        topic: String,
        /// Source partition.
        partition: i32,
        /// The offset this writer started from.
        expected: Option<i64>,
        /// The offset found in the table.
        found: Option<i64>,
    },
    /// A concurrent commit carried offsets of the same partitions (Delta's conflict checker
    /// compares `txn` app ids): this writer lost them.
    #[error("table {table}: a concurrent commit took over the same partitions; commit refused")]
    ConcurrentCommit {
        /// Table name.
        table: String,
        /// The conflict as delta-rs reported it.
        source: deltalake::DeltaTableError,
    },
    /// Compacting the table failed; nothing was committed.
    #[error("table {table}: compaction failed (nothing committed)")]
    Compact {
        /// Table name.
        table: String,
        /// The cause.
        source: deltalake::DeltaTableError,
    },
    /// The lake's location could not be listed for its tables.
    #[error("cannot list the tables of the lake at {lake}")]
    List {
        /// The lake as given.
        lake: String,
        /// The cause.
        source: deltalake::DeltaTableError,
    },
    /// A commit of a plain-files table names an object that is not there, nor its staged
    /// copy: not retried, since nothing can bring it back.
    #[error(
        "table {table}: commit {commit} names {path}, which is missing, and so is its staged copy"
    )]
    LostObject {
        /// Table name.
        table: String,
        /// The commit (log entry) naming it.
        commit: u64,
        /// The object's path under the table.
        path: String,
    },
    /// A table in another format (Iceberg) or its catalog failed; nothing was committed.
    #[error("table {table}: cannot {action}")]
    Format {
        /// Table name.
        table: String,
        /// What was attempted.
        action: String,
        /// Whether retrying later may succeed (the catalog or the store did not answer).
        transient: bool,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Delta commit failed; its data files are not referenced.
    #[error("table {table}: commit failed (its data files stay unreferenced)")]
    Commit {
        /// Table name.
        table: String,
        /// The cause.
        source: deltalake::DeltaTableError,
    },
}

impl LakeError {
    /// Whether the location holds no table yet (neither a Delta log nor a plain-files log,
    /// when it came from [`table::open_for_reading`]).
    pub fn is_not_created(&self) -> bool {
        matches!(
            self,
            Self::Access {
                source: deltalake::DeltaTableError::NotATable(_),
                ..
            }
        )
    }

    /// `Ok` when `differences` (one line each) is empty, else the table's schema mismatch.
    pub(crate) fn schema_mismatch(
        table: &str,
        uri: &url::Url,
        differences: String,
    ) -> Result<(), Self> {
        if differences.is_empty() {
            return Ok(());
        }
        Err(Self::SchemaMismatch {
            table: table.to_string(),
            uri: uri.to_string(),
            differences,
        })
    }

    /// Whether the partitions of the failed commit now belong to another writer: drop the
    /// buffers and resume from the lake, do not retry.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. } | Self::ConcurrentCommit { .. })
    }

    /// Whether retrying later may succeed (the store or network failed), as opposed to a
    /// problem that a retry would only repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Format { transient, .. } => *transient,
            _ => matches!(
                self,
                Self::Write { .. } | Self::Commit { .. } | Self::Access { .. }
            ),
        }
    }
}
