//! `sluice compact`: rewrites a table's small files into files of a target size, per date/hour
//! partition, in one Delta commit whose actions carry `dataChange = false` (delta-rs's bin-packing
//! optimize). Readers see the same rows before and after; streaming readers skip the commit.
//!
//! Safe while `sluice stream` runs: the compaction neither reads nor writes `txn` actions, and a
//! commit that changes no data is checked at snapshot isolation, so appends committed meanwhile
//! do not conflict with it (delta-rs retries the commit on top of them). Files it replaced stay in
//! storage, as tombstones, until a vacuum past the retention period.
//!
//! A plain-files table is compacted through its own log instead (`files::compact`).

use std::collections::HashMap;
use std::num::NonZeroU64;

use deltalake::DeltaTableError;

use crate::table::open_existing;
use crate::writer::writer_properties;
use crate::{FilesSink, LakeError};

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compaction {
    /// Files replaced.
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
    /// Bytes of the replaced files.
    pub bytes_removed: u64,
    /// Bytes of the new files.
    pub bytes_added: u64,
    /// Date/hour partitions with at least one file rewritten.
    pub partitions: u64,
    /// The table's version afterwards.
    pub version: Option<u64>,
    /// Iceberg tables with `--retain`: snapshots expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots_expired: Option<u64>,
    /// Iceberg tables with `--retain`: files removed that no kept snapshot reaches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_expired: Option<u64>,
}

/// Compacts the table `name` at `uri` (which must exist) into files of about `target_size`
/// bytes; in a plain-files table, only objects committed at least `min_age` ago.
pub async fn compact(
    name: &str,
    uri: &str,
    storage_options: &HashMap<String, String>,
    target_size: NonZeroU64,
    min_age: std::time::Duration,
) -> Result<Compaction, LakeError> {
    let table = match open_existing(name, uri, storage_options).await {
        Err(LakeError::Access {
            source: DeltaTableError::NotATable(_),
            ..
        }) if let Some(mut files) =
            FilesSink::open_existing(name, uri, storage_options).await? =>
        {
            return files.compact(target_size.get(), min_age).await;
        }
        opened => opened?.1,
    };
    let failed = |source| LakeError::Compact {
        table: name.into(),
        source,
    };
    let schema = table.snapshot().map_err(failed)?.snapshot().arrow_schema();
    let (table, metrics) = table
        .optimize()
        .with_target_size(target_size)
        .with_writer_properties(writer_properties(&schema))
        .await
        .map_err(failed)?;
    Ok(Compaction {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        bytes_removed: metrics.files_removed.total_size.max(0) as u64,
        bytes_added: metrics.files_added.total_size.max(0) as u64,
        partitions: metrics.partitions_optimized,
        version: table.version(),
        snapshots_expired: None,
        files_expired: None,
    })
}
