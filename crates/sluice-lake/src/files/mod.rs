//! Plain Parquet, CSV and JSON Lines tables: objects under Hive-style `date=/hour=` paths that
//! engines without a table format read as they are (Athena through a Glue crawler, Redshift
//! Spectrum, external tables), landed exactly once.
//!
//! Such readers see every object under the table, so an object must never appear before its
//! commit, nor twice. A commit:
//! 1. writes each new object under `_sluice/staging/` (readers skip names starting with `_`,
//!    as Hive, Athena and DataFusion do);
//! 2. writes log entry `n` (`log`) with a conditional put: the commit point. The entry lists
//!    the objects and the progress of every source partition; a writer that finds entry `n`
//!    taken reads it, and is fenced if it moved a partition this commit continues;
//! 3. publishes the objects: each is put under its final name,
//!    `date=…/hour=…/part-{n:020}-{k:03}{ext}`, with a conditional put (a name is never
//!    written twice), then its staged copy is deleted.
//!
//! A crash before 2 leaves only staged objects, which no commit names (`verify --repair`
//! removes them). A crash between 2 and 3 leaves a commit whose objects are not all in place:
//! the next writer to open the table, or to read that entry, puts them from their staged
//! copies, and anyone may, since the copies are identical and a second put of a name is
//! refused. Each entry records up to where every commit is known to be published, so a
//! restart checks only the commits after that.

mod columns;
mod compact;
mod encode;
pub mod log;
mod publish;
mod read;

pub use read::{FilesTable, Listing};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::util::display::array_value_to_string;
use async_trait::async_trait;
use deltalake::DeltaTableError;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_core::config::FileFormat;
use url::Url;

use self::encode::ObjectEncoder;
use self::log::{Entry, LoggedObject, SourceProgress, TableInfo, progress_key};
use self::publish::removed_by;
use crate::location::{object_store_at, table_url};
use crate::partitioning::split_by_partition;
use crate::table::WRITER;
use crate::{Commit, LakeError, PartitionProgress, Sink};

/// Where objects wait for their commit, under the table.
pub(crate) const STAGING_DIR: &str = "_sluice/staging";

/// A plain-files table opened for writing.
pub struct FilesSink {
    name: String,
    url: Url,
    store: Arc<dyn ObjectStore>,
    format: FileFormat,
    info: TableInfo,
    partition_by: Vec<String>,
    /// The columns in the objects: the table's without the partition columns.
    object_schema: SchemaRef,
    /// The latest log entry this writer has read or written.
    latest: Entry,
    /// Commits of this writer whose objects may not all be published yet.
    unpublished: BTreeSet<u64>,
    /// Objects being encoded for the next commit, by partition path. Behind a mutex only to
    /// make the sink `Sync`; reached through `&mut self` alone.
    pending: Mutex<Vec<(String, ObjectEncoder)>>,
}

/// An object of a commit, encoded.
struct Encoded {
    logged: LoggedObject,
    /// Its columns.
    columns: SchemaRef,
    bytes: bytes::Bytes,
}

impl FilesSink {
    /// Opens the table at `uri`, creating its log if there is none. An existing table must be
    /// one sluice created, with this format and partitions, and the columns it shares with the
    /// pipeline of the same types; the pipeline's columns it lacks are added. Commits that an
    /// earlier writer made but did not finish publishing are published.
    pub async fn open_or_create(
        name: &str,
        uri: &str,
        storage_options: &HashMap<String, String>,
        schema: &SchemaRef,
        partition_by: &[String],
        format: FileFormat,
    ) -> Result<Self, LakeError> {
        let url = table_url(name, uri)?;
        let store = object_store_at(&url, storage_options).map_err(access(name, &url, "open"))?;
        let object_schema = Arc::new(Schema::new(
            (schema.fields().iter())
                .filter(|field| !partition_by.contains(field.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let info = TableInfo {
            writer: WRITER.to_string(),
            format: format.kind.name().to_string(),
            compression: format.compression.name().to_string(),
            extension: format.extension(),
            columns: (object_schema.fields().iter())
                .map(|field| (field.name().clone(), field.data_type().to_string()))
                .collect(),
            partition_by: partition_by.to_vec(),
            changes: Vec::new(),
        };
        let latest =
            match log::latest_entry(&store)
                .await
                .map_err(access(name, &url, "read the log of"))?
            {
                Some(latest) => latest,
                None => create_log(&store, &info)
                    .await
                    .map_err(access(name, &url, "create"))?,
            };
        let mut sink = Self {
            name: name.to_string(),
            url,
            store,
            format,
            info,
            partition_by: partition_by.to_vec(),
            object_schema,
            latest,
            unpublished: BTreeSet::new(),
            pending: Mutex::default(),
        };
        sink.check_table()?;
        let (logged, ours) = (sink.latest.table.clone(), sink.object_schema.clone());
        sink.adopt_columns(&logged, ours.fields())?;
        sink.publish_unfinished().await?;
        Ok(sink)
    }

    /// Refuses a table that sluice did not create or whose layout is not the pipeline's.
    fn check_table(&self) -> Result<(), LakeError> {
        let found = &self.latest.table;
        if found.writer != WRITER {
            return Err(LakeError::Foreign {
                table: self.name.clone(),
                uri: self.url.to_string(),
                found: format!("its log's writer is {:?}", found.writer),
            });
        }
        let mut differences = String::new();
        let holds = |info: &TableInfo| {
            format!(
                "{} objects ({} compression, {})",
                info.format, info.compression, info.extension
            )
        };
        if holds(found) != holds(&self.info) {
            differences.push_str(&format!(
                "\n  - the table holds {}, the pipeline writes {}",
                holds(found),
                holds(&self.info)
            ));
        }
        if found.partition_by != self.info.partition_by {
            differences.push_str(&format!(
                "\n  - the table is partitioned by {:?}, the pipeline by {:?}",
                found.partition_by, self.info.partition_by
            ));
        }
        LakeError::schema_mismatch(&self.name, &self.url, differences)
    }

    /// Reads the entries other writers made since the latest one this writer knows, making
    /// sure their objects are in place; returns the objects they removed.
    async fn read_new_entries(&mut self) -> Result<Vec<String>, LakeError> {
        let entries = log::entries_after(&self.store, Some(self.latest.seq))
            .await
            .map_err(self.access_error("refresh"))?;
        let gone = removed_by(&entries);
        for entry in &entries {
            self.ensure_published(entry, &gone).await?;
        }
        let removed = gone.into_iter().map(String::from).collect();
        if let Some(last) = entries.into_iter().last() {
            // Another writer's entry vouches for every commit up to its `published_through`.
            let through = last.published_through;
            self.unpublished
                .retain(|seq| through.is_none_or(|t| *seq > t));
            let ours = self.object_schema.clone();
            self.adopt_columns(&last.table, ours.fields())?;
            self.latest = last;
        }
        Ok(removed)
    }

    /// Refuses a compaction of objects that another one removed meanwhile.
    fn check_still_present(&self, removing: &[String], gone: &[String]) -> Result<(), LakeError> {
        match removing.iter().find(|path| gone.contains(path)) {
            None => Ok(()),
            Some(path) => Err(LakeError::Compact {
                table: self.name.clone(),
                source: DeltaTableError::generic(format!(
                    "another compaction replaced {path} meanwhile; nothing committed"
                )),
            }),
        }
    }

    /// Refuses `progress` that does not continue from the latest entry.
    fn check_progress(&self, progress: &[PartitionProgress]) -> Result<(), LakeError> {
        for p in progress {
            let found = (self.latest.progress)
                .get(&progress_key(&p.topic, p.partition))
                .map(|state| state.offset);
            p.check_continues(&self.name, found)?;
        }
        Ok(())
    }

    fn pending(&mut self) -> &mut Vec<(String, ObjectEncoder)> {
        self.pending
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encodes `batch` into the pending objects of its date/hour partitions, adding the
    /// columns it has that the table lacks.
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        let added = self.new_columns(&batch.schema());
        if !added.is_empty() {
            let info = self.info.clone();
            self.adopt_columns(&info, &added)?;
        }
        let write = self.write_error();
        let partitions =
            split_by_partition(batch, &self.partition_by).map_err(|e| write(e.into()))?;
        for (row, rows) in partitions {
            let path = self
                .partition_path(batch, row)
                .map_err(|e| write(e.into()))?;
            let rows = rows
                .project(&self.object_columns(&rows.schema()))
                .map_err(|e| write(e.into()))?;
            let (format, schema) = (self.format, self.object_schema.clone());
            let pending = self.pending();
            let index = match (pending.iter())
                .position(|(open, encoder)| *open == path && *encoder.schema() == schema)
            {
                Some(index) => index,
                None => {
                    let encoder =
                        ObjectEncoder::new(format, &schema).map_err(|e| write(e.into()))?;
                    pending.push((path, encoder));
                    pending.len() - 1
                }
            };
            pending[index].1.write(&rows).map_err(|e| write(e.into()))?;
        }
        Ok(())
    }

    /// The indexes of the columns of `schema` that objects hold (all but the partition
    /// columns).
    fn object_columns(&self, schema: &Schema) -> Vec<usize> {
        (0..schema.fields().len())
            .filter(|&index| !self.partition_by.contains(schema.field(index).name()))
            .collect()
    }

    /// `date=…/hour=…` of `row`.
    fn partition_path(
        &self,
        batch: &RecordBatch,
        row: usize,
    ) -> Result<String, arrow::error::ArrowError> {
        let parts = self.partition_by.iter().map(|column| {
            let values = batch.column_by_name(column).ok_or_else(|| {
                arrow::error::ArrowError::SchemaError(format!("no partition column {column}"))
            })?;
            Ok(format!("{column}={}", array_value_to_string(values, row)?))
        });
        Ok(parts
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?
            .join("/"))
    }

    /// Finishes `encoders` (by partition path) and writes them under `_sluice/staging/`.
    async fn stage(
        &self,
        encoders: Vec<(String, ObjectEncoder)>,
    ) -> Result<Vec<Encoded>, LakeError> {
        let write = self.write_error();
        let attempt = uuid::Uuid::new_v4();
        let mut staged = Vec::new();
        for (index, (partition, encoder)) in encoders.into_iter().enumerate() {
            let rows = encoder.rows() as u64;
            let columns = encoder.schema().clone();
            let bytes = encoder.finish().map_err(|e| write(e.into()))?;
            let logged = LoggedObject {
                path: partition,
                // No table extension: a reader listing by extension must not take it.
                staged: format!("{STAGING_DIR}/{attempt}-{index:03}.staged"),
                rows,
                bytes: bytes.len() as u64,
            };
            staged.push(Encoded {
                logged,
                columns,
                bytes: bytes.into(),
            });
        }
        for object in &staged {
            let put = (self.store)
                .put(
                    &Path::from(object.logged.staged.as_str()),
                    PutPayload::from(object.bytes.clone()),
                )
                .await;
            if let Err(err) = put {
                self.forget(&staged).await;
                return Err(write(err.into()));
            }
        }
        Ok(staged)
    }

    /// Deletes the staged copies of objects no commit names.
    async fn forget(&self, staged: &[Encoded]) {
        for object in staged {
            self.forget_staged(&Path::from(object.logged.staged.as_str()))
                .await;
        }
    }

    /// The entry after the latest one: adding `objects` with `progress`, removing `removed`.
    fn next_entry(
        &self,
        objects: &[Encoded],
        progress: &[PartitionProgress],
        removed: &[String],
    ) -> Entry {
        let seq = self.latest.seq + 1;
        let mut state = self.latest.progress.clone();
        for p in progress {
            state.insert(
                progress_key(&p.topic, p.partition),
                SourceProgress {
                    offset: p.last_offset,
                    marks: (p.marks.iter())
                        .map(|(mark, value)| (mark.to_string(), *value))
                        .collect(),
                },
            );
        }
        let objects: Vec<LoggedObject> = objects
            .iter()
            .enumerate()
            .map(|(index, object)| LoggedObject {
                path: format!(
                    "{}part-{seq:020}-{index:03}{}",
                    match object.logged.path.as_str() {
                        "" => String::new(),
                        partition => format!("{partition}/"),
                    },
                    self.info.extension
                ),
                ..object.logged.clone()
            })
            .collect();
        Entry {
            seq,
            table: self.info.clone(),
            progress: state,
            total_objects: (self.latest.total_objects + objects.len() as u64)
                .saturating_sub(removed.len() as u64),
            objects,
            removed: removed.to_vec(),
            published_through: Some(self.unpublished.first().map_or(seq - 1, |first| first - 1)),
            committed_at_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Writes the log entry of a commit of the staged `objects` (removing `removed`), after
    /// whatever other writers committed meanwhile, unless they moved a partition of `progress`
    /// (fenced) or removed one of `removed`. On an error that leaves the entry unwritten the
    /// staged objects are deleted; when it cannot be told whether the entry was written, they
    /// stay (a later reader of the log publishes them if it was; `verify --repair` removes them
    /// if not).
    async fn commit_entry(
        &mut self,
        objects: &[Encoded],
        progress: &[PartitionProgress],
        removed: &[String],
    ) -> Result<Entry, LakeError> {
        loop {
            let entry = self.next_entry(objects, progress, removed);
            let created = log::create_entry(&self.store, &entry).await;
            let failed = |source| LakeError::Commit {
                table: self.name.clone(),
                source,
            };
            let retry = match created {
                Ok(true) => return Ok(entry),
                Ok(false) => self.read_new_entries().await,
                // The put may have been applied before it failed: the log says.
                Err(err) => match log::entry_at(&self.store, entry.seq).await {
                    Ok(Some(found)) if found == entry => return Ok(entry),
                    Ok(Some(_)) => self.read_new_entries().await,
                    Ok(None) => Err(failed(err)),
                    Err(_) => return Err(failed(err)),
                },
            };
            let checked = retry
                .and_then(|gone| self.check_still_present(removed, &gone))
                .and_then(|()| self.check_progress(progress))
                .and_then(|()| self.check_csv_columns(objects.iter().map(|o| &o.columns)));
            if let Err(err) = checked {
                self.forget(objects).await;
                return Err(err);
            }
        }
    }

    fn write_error(&self) -> impl Fn(DeltaTableError) -> LakeError + use<> {
        let table = self.name.clone();
        move |source| LakeError::Write {
            table: table.clone(),
            source,
        }
    }

    fn access_error(&self, action: &'static str) -> impl Fn(DeltaTableError) -> LakeError + use<> {
        access(&self.name, &self.url, action)
    }
}

#[async_trait]
impl Sink for FilesSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "{} table {} at commit {}",
            self.info.format, self.url, self.latest.seq
        )
    }

    async fn committed(&self, source: &str, partition: i32) -> Result<Option<i64>, LakeError> {
        Ok((self.latest.progress)
            .get(&progress_key(source, partition))
            .map(|state| state.offset))
    }

    async fn committed_mark(
        &self,
        source: &str,
        partition: i32,
        mark: &str,
    ) -> Result<Option<i64>, LakeError> {
        Ok((self.latest.progress)
            .get(&progress_key(source, partition))
            .and_then(|state| state.marks.get(mark).copied()))
    }

    fn has_written_ahead(&self) -> bool {
        (self.pending.lock())
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|(_, encoder)| encoder.rows() > 0)
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        let encoded = self.encode(batch);
        if encoded.is_err() {
            self.pending().clear();
        }
        encoded
    }

    async fn commit(
        &mut self,
        batches: &[RecordBatch],
        progress: &[PartitionProgress],
    ) -> Result<Commit, LakeError> {
        for batch in batches {
            self.write(batch).await?;
        }
        let prepared = async {
            self.retry_unpublished().await?;
            self.read_new_entries().await?;
            self.check_progress(progress)
        };
        if let Err(err) = prepared.await {
            self.pending().clear();
            return Err(err);
        }
        let encoders = std::mem::take(self.pending());
        self.check_csv_columns(encoders.iter().map(|(_, encoder)| encoder.schema()))?;
        let objects = self.stage(encoders).await?;
        let entry = self.commit_entry(&objects, progress, &[]).await?;
        Ok(self.publish_commit(entry, objects).await)
    }

    async fn refresh(&mut self) -> Result<(), LakeError> {
        self.read_new_entries().await.map(drop)
    }
}

/// Writes entry 0, which says what the table is; another writer's entry 0 is used instead.
async fn create_log(
    store: &Arc<dyn ObjectStore>,
    info: &TableInfo,
) -> Result<Entry, DeltaTableError> {
    let first = Entry {
        seq: 0,
        table: info.clone(),
        progress: BTreeMap::new(),
        objects: Vec::new(),
        removed: Vec::new(),
        total_objects: 0,
        published_through: Some(0),
        committed_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    if log::create_entry(store, &first).await? {
        return Ok(first);
    }
    log::latest_entry(store)
        .await?
        .ok_or_else(|| DeltaTableError::generic("the log's entry 0 exists but cannot be listed"))
}

fn access(
    table: &str,
    url: &Url,
    action: &'static str,
) -> impl Fn(DeltaTableError) -> LakeError + use<> {
    let (table, uri) = (table.to_string(), url.to_string());
    move |source| LakeError::Access {
        table: table.clone(),
        uri: uri.clone(),
        action,
        source,
    }
}
