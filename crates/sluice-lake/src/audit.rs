//! Reading a table for `sluice verify`: opened as it is (never created), its committed offsets,
//! and a check that every file the log references exists and has a readable Parquet footer.

use std::collections::HashMap;

use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::file::metadata::ParquetMetaDataReader;
use deltalake::{DeltaTable, DeltaTableError};
use futures::stream::{self, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::LakeError;
use crate::writer::app_id;

/// Footers read at once.
const PARALLEL_READS: usize = 16;

/// A table opened read-only for auditing.
pub struct AuditedTable {
    name: String,
    uri: String,
    table: DeltaTable,
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
    /// Opens an existing table; a location without a Delta log is an error.
    pub async fn open(
        name: &str,
        uri: &str,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, LakeError> {
        let (url, table) = crate::table::open_existing(name, uri, storage_options).await?;
        Ok(Self {
            name: name.into(),
            uri: url.to_string(),
            table,
        })
    }

    /// The table's location.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The table's Delta version.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// The last offset of `topic`/`partition` the table's log records as committed.
    pub async fn committed_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LakeError> {
        let snapshot = self
            .table
            .snapshot()
            .map_err(|source| self.error("read", source))?;
        snapshot
            .transaction_version(
                self.table.log_store().as_ref(),
                app_id(&self.name, topic, partition),
            )
            .await
            .map_err(|source| self.error("read committed offsets of", source))
    }

    /// Reads the footer of every file the current version references; returns how many files
    /// there are and the ones that failed.
    pub async fn check_files(&self) -> Result<(usize, Vec<BadFile>), LakeError> {
        let snapshot = self
            .table
            .snapshot()
            .map_err(|source| self.error("read", source))?;
        let paths: Vec<_> = snapshot
            .log_data()
            .into_iter()
            .map(|add| add.object_store_path())
            .collect();
        let store = self.table.log_store().object_store(None);
        let bad: Vec<BadFile> = stream::iter(paths.iter().cloned())
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
            .await;
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
        let retention = chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
        let (_, metrics) = self
            .table
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
