//! The log of a plain-files table: one small JSON object per commit under `_sluice/log/`,
//! named by its sequence number and written with a conditional put (`If-None-Match: *`), so
//! that of two writers only one can make commit `n`. Each entry holds the whole progress of
//! the table (every source partition's last offset and marks), so the latest entry alone says
//! where every partition resumes: a restart lists this table's log prefix, not the bucket.
//! Entry 0 is written when the table is created and says what the table is (format, columns).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};

use deltalake::DeltaTableError;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::evolution::SchemaChange;

/// Where the log's entries live, under the table.
pub(crate) const LOG_DIR: &str = "_sluice/log";

/// One commit of a plain-files table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Its place in the log: commit `n` follows commit `n - 1`.
    pub seq: u64,
    /// What the table is.
    pub table: TableInfo,
    /// Every source partition's progress after this commit, by `topic/partition`.
    pub progress: BTreeMap<String, SourceProgress>,
    /// The objects this commit added.
    pub objects: Vec<LoggedObject>,
    /// The objects this commit removed (a compaction's), deleted once its objects are in
    /// place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// How many objects the table holds after this commit.
    pub total_objects: u64,
    /// Every commit up to this one is known to have its objects in place (a commit's objects
    /// are copied to their names after the entry is written; see the module docs of `files`).
    pub published_through: Option<u64>,
    /// When the commit was made, in ms since the epoch.
    pub committed_at_ms: i64,
}

/// What a plain-files table is, recorded in every entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableInfo {
    /// `sluice`: only tables sluice created are written.
    pub writer: String,
    /// `parquet`, `csv` or `jsonl`.
    pub format: String,
    /// How objects are compressed: `zstd`, `snappy`, `gzip` or `none`.
    pub compression: String,
    /// The ending of object names, such as `.csv.gz`.
    pub extension: String,
    /// The columns in the objects, as (name, Arrow type): only ever appended to, so an
    /// object's columns are the first ones of the table's (one written before a column was
    /// added lacks it, which readers take as null).
    pub columns: Vec<(String, String)>,
    /// The partition columns, in path order.
    pub partition_by: Vec<String>,
    /// The columns the table gained, oldest change first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<SchemaChange>,
}

impl TableInfo {
    /// The columns as Arrow fields, nullable.
    pub fn fields(&self) -> Result<Vec<Field>, String> {
        (self.columns.iter())
            .map(|(name, ty)| {
                DataType::from_str(ty)
                    .map(|ty| Field::new(name, ty, true))
                    .map_err(|err| {
                        format!(
                            "column {name} has type {ty:?} in the log, which is not an Arrow \
                             type: {err}"
                        )
                    })
            })
            .collect()
    }
}

/// A source partition's progress in a table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct SourceProgress {
    /// The last offset the table holds.
    pub offset: i64,
    /// Named numbers recorded with it (a window's replay offset and watermarks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marks: BTreeMap<String, i64>,
}

/// An object a commit added.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoggedObject {
    /// Its name under the table, such as `date=2026-12-03/hour=9/part-…-000.parquet`.
    pub path: String,
    /// Where it was written before the commit, under `_sluice/staging/`.
    pub staged: String,
    /// Rows it holds.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// The objects the table holds after `entries` (the whole log, in order): every one added and
/// not removed since, in the order they were added.
pub fn live_objects(entries: &[Entry]) -> Vec<LoggedObject> {
    let removed: std::collections::HashSet<&str> = (entries.iter())
        .flat_map(|entry| entry.removed.iter().map(String::as_str))
        .collect();
    (entries.iter())
        .flat_map(|entry| &entry.objects)
        .filter(|object| !removed.contains(object.path.as_str()))
        .cloned()
        .collect()
}

/// The key of a source partition in [`Entry::progress`].
pub fn progress_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The object holding entry `seq`.
pub(crate) fn entry_path(seq: u64) -> Path {
    Path::from(format!("{LOG_DIR}/{seq:020}.json"))
}

/// The entries after `after` (all of them for `None`), in order.
pub(crate) async fn entries_after(
    store: &Arc<dyn ObjectStore>,
    after: Option<u64>,
) -> Result<Vec<Entry>, DeltaTableError> {
    let prefix = Path::from(LOG_DIR);
    let listed = match after {
        Some(seq) => store.list_with_offset(Some(&prefix), &entry_path(seq)),
        None => store.list(Some(&prefix)),
    };
    let mut paths: Vec<Path> = listed
        .map_ok(|meta| meta.location)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .filter(|path| path.extension() == Some("json"))
        .collect();
    paths.sort();
    let mut entries = Vec::with_capacity(paths.len());
    for path in paths {
        entries.push(read_entry(store, &path).await?);
    }
    Ok(entries)
}

/// The latest entry, if the table has a log.
pub(crate) async fn latest_entry(
    store: &Arc<dyn ObjectStore>,
) -> Result<Option<Entry>, DeltaTableError> {
    let prefix = Path::from(LOG_DIR);
    let latest = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .try_fold(None::<Path>, |latest, path| async move {
            let json = path.extension() == Some("json");
            Ok(match latest {
                Some(latest) if !json || latest > path => Some(latest),
                _ if json => Some(path),
                latest => latest,
            })
        })
        .await?;
    match latest {
        Some(path) => Ok(Some(read_entry(store, &path).await?)),
        None => Ok(None),
    }
}

/// Entry `seq`, if it exists.
pub(crate) async fn entry_at(
    store: &Arc<dyn ObjectStore>,
    seq: u64,
) -> Result<Option<Entry>, DeltaTableError> {
    match read_entry(store, &entry_path(seq)).await {
        Ok(entry) => Ok(Some(entry)),
        Err(DeltaTableError::ObjectStore {
            source: object_store::Error::NotFound { .. },
        }) => Ok(None),
        Err(err) => Err(err),
    }
}

async fn read_entry(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Entry, DeltaTableError> {
    let bytes = store.get(path).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|err| {
        DeltaTableError::generic(format!("log entry {path} is not a sluice log entry: {err}"))
    })
}

/// Writes `entry` unless its sequence number is taken: `Ok(false)` when another commit has it.
/// The entry is read back before it counts as written: a store whose conditional put is not
/// atomic (s3s-fs checks and writes without a lock) can let two racing puts succeed, and the
/// one read back is the one that stands. AWS S3, MinIO and R2 refuse the second put; there the
/// read only costs a GET.
pub(crate) async fn create_entry(
    store: &Arc<dyn ObjectStore>,
    entry: &Entry,
) -> Result<bool, DeltaTableError> {
    let json = serde_json::to_vec_pretty(entry)
        .map_err(|err| DeltaTableError::generic(format!("cannot encode a log entry: {err}")))?;
    let created = store
        .put_opts(
            &entry_path(entry.seq),
            PutPayload::from(json),
            PutOptions::from(PutMode::Create),
        )
        .await;
    match created {
        Ok(_) => Ok(read_entry(store, &entry_path(entry.seq)).await? == *entry),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}
