//! Reading a table for `sluice verify`: opened as it is (never created), its committed offsets,
//! and a check that every file the log references exists and has a readable Parquet footer.
//! A plain-files table is checked against its own log: every object it names is there at its
//! size, and nothing else is under the table where readers look.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::file::metadata::ParquetMetaDataReader;
use deltalake::{DeltaTable, DeltaTableError};
use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::LakeError;
use crate::files::FilesTable;
use crate::files::log::{Entry, progress_key};
use crate::table::{Existing, open_for_reading};
use crate::writer::app_id;

/// Footers read at once.
const PARALLEL_READS: usize = 16;

/// A table opened read-only for auditing.
pub struct AuditedTable {
    name: String,
    uri: String,
    table: Audited,
}

enum Audited {
    Delta(DeltaTable),
    Files {
        table: FilesTable,
        /// Its log, whole.
        entries: Vec<Entry>,
    },
}

/// A referenced file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadFile {
    /// Path relative to the table root.
    pub path: String,
    /// What went wrong.
    pub error: String,
}

impl AuditedTable {
    /// Opens an existing table: a Delta table, or a plain-files table when there is no Delta
    /// log; a location with neither is an error.
    pub async fn open(
        name: &str,
        uri: &str,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, LakeError> {
        let (uri, table) = match open_for_reading(name, uri, storage_options).await? {
            Existing::Files(table) => {
                let entries = table.entries().await?;
                let uri = table.url().to_string();
                let table = *table;
                (uri, Audited::Files { table, entries })
            }
            Existing::Delta(url, table) => (url.to_string(), Audited::Delta(table)),
        };
        Ok(Self {
            name: name.into(),
            uri,
            table,
        })
    }

    /// The table's location.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The table's Delta version, or its latest commit for plain files.
    pub fn version(&self) -> Option<u64> {
        match &self.table {
            Audited::Delta(table) => table.version(),
            Audited::Files { table, .. } => Some(table.latest.seq),
        }
    }

    /// The last offset of `topic`/`partition` the table's log records as committed.
    pub async fn committed_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LakeError> {
        let table = match &self.table {
            Audited::Delta(table) => table,
            Audited::Files { table, .. } => {
                return Ok((table.latest.progress)
                    .get(&progress_key(topic, partition))
                    .map(|state| state.offset));
            }
        };
        let snapshot = table
            .snapshot()
            .map_err(|source| self.error("read", source))?;
        snapshot
            .transaction_version(
                table.log_store().as_ref(),
                app_id(&self.name, topic, partition),
            )
            .await
            .map_err(|source| self.error("read committed offsets of", source))
    }

    /// Reads the footer of every file the current version references; returns how many files
    /// there are and the ones that failed.
    pub async fn check_files(&self) -> Result<(usize, Vec<BadFile>), LakeError> {
        let table = match &self.table {
            Audited::Delta(table) => table,
            Audited::Files { table, entries } => return check_objects(table, entries).await,
        };
        let snapshot = table
            .snapshot()
            .map_err(|source| self.error("read", source))?;
        let paths: Vec<_> = snapshot
            .log_data()
            .into_iter()
            .map(|add| add.object_store_path())
            .collect();
        let store = table.log_store().object_store(None);
        let bad = read_footers(store, &paths).await;
        Ok((paths.len(), bad))
    }

    /// Data files under the table that no version references (written by a commit that never
    /// happened: a crash between upload and commit, a failed attempt) and are older than
    /// `min_age`; with `delete`, they are removed. Younger files are left alone: they may belong
    /// to a commit in flight. Uses delta-rs's vacuum in full mode, which also removes files that
    /// commits removed longer than `min_age` ago (time travel to before then ends).
    pub async fn uncommitted_files(
        &self,
        min_age: std::time::Duration,
        delete: bool,
    ) -> Result<Vec<String>, LakeError> {
        let table = match &self.table {
            Audited::Delta(table) => table,
            Audited::Files { table, entries } => {
                let listing = table.listing(entries, min_age).await?;
                let leftovers: Vec<String> = listing
                    .leftover_staged
                    .into_iter()
                    .map(|(path, _)| path)
                    .collect();
                if delete {
                    table.delete(&leftovers).await?;
                }
                return Ok(leftovers);
            }
        };
        let retention = chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
        let (_, metrics) = table
            .clone()
            .vacuum()
            .with_mode(VacuumMode::Full)
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_dry_run(!delete)
            .await
            .map_err(|source| {
                self.error(
                    if delete {
                        "remove uncommitted files of"
                    } else {
                        "list uncommitted files of"
                    },
                    source,
                )
            })?;
        Ok(metrics.files_deleted)
    }

    fn error(&self, action: &'static str, source: DeltaTableError) -> LakeError {
        LakeError::Access {
            table: self.name.clone(),
            uri: self.uri.clone(),
            action,
            source,
        }
    }
}

/// The footers of `paths` that cannot be read, read [`PARALLEL_READS`] at a time.
pub async fn read_footers(store: Arc<dyn ObjectStore>, paths: &[Path]) -> Vec<BadFile> {
    stream::iter(paths.iter().cloned())
        .map(|path| {
            let store = store.clone();
            async move {
                read_footer(store.as_ref(), &path)
                    .await
                    .err()
                    .map(|error| BadFile {
                        path: path.to_string(),
                        error,
                    })
            }
        })
        .buffer_unordered(PARALLEL_READS)
        .filter_map(|bad| async move { bad })
        .collect()
        .await
}

/// A plain-files table's objects against its log: a named object that is missing (or not at
/// its size) or an object no commit names (readers see it) is bad; Parquet footers are read.
async fn check_objects(
    table: &FilesTable,
    entries: &[Entry],
) -> Result<(usize, Vec<BadFile>), LakeError> {
    let listing = table.listing(entries, std::time::Duration::MAX).await?;
    let mut bad: Vec<BadFile> = (listing.missing.into_iter())
        .map(|path| BadFile {
            path,
            error: "named by a commit but missing, or not at the size the log records".into(),
        })
        .chain(listing.unexpected.into_iter().map(|path| BadFile {
            path,
            error: "no commit names it, yet readers of the table see it".into(),
        }))
        .collect();
    if table.latest.table.format == "parquet" {
        let paths: Vec<Path> = (listing.committed.iter())
            .map(|(path, _)| Path::from(path.as_str()))
            .collect();
        bad.extend(read_footers(table.store.clone(), &paths).await);
    }
    Ok((listing.committed.len(), bad))
}

/// Reads and decodes a Parquet footer: the last 8 bytes give its length and the PAR1 magic.
async fn read_footer(store: &dyn ObjectStore, path: &Path) -> Result<(), String> {
    let size = store.head(path).await.map_err(|err| err.to_string())?.size;
    if size < 12 {
        return Err(format!("{size} bytes is too small for a Parquet file"));
    }
    let tail = store
        .get_range(path, size - 8..size)
        .await
        .map_err(|err| err.to_string())?;
    if &tail[4..] != b"PAR1" {
        return Err("no PAR1 magic at the end: not a complete Parquet file".into());
    }
    let footer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    if footer_len + 12 > size {
        return Err(format!(
            "footer length {footer_len} exceeds the file size {size}"
        ));
    }
    let footer = store
        .get_range(path, size - 8 - footer_len..size - 8)
        .await
        .map_err(|err| err.to_string())?;
    ParquetMetaDataReader::decode_metadata(&footer)
        .map(|_| ())
        .map_err(|err| err.to_string())
}
