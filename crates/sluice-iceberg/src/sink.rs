//! An Iceberg table as a [`Sink`]: the same exactly-once contract as a Delta table.
//!
//! A commit is one fast-append snapshot whose summary carries the progress of every source
//! partition the table holds ([`crate::progress`]). It is planned on the table state whose
//! progress it was checked against, and the catalog commit asserts that state (`main` at that
//! snapshot; [`PinnedCatalog`]). When another member committed meanwhile (other partitions of
//! the same table), the sink reloads, checks its partitions again, and commits on the new
//! state with the same data files; when a partition it commits moved, it is fenced.
//!
//! Rows with columns the table lacks (a newer writer added a field, or the stream's schema
//! file did) first add them to the table, optional, in a schema change committed on its own
//! (no rows, no progress), recorded in the table property [`HISTORY_PROPERTY`]; the data files
//! then carry the new columns' field ids. Data files written before hold no such column, which
//! Iceberg readers take as null.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use iceberg::spec::{DataFile, Transform, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use sluice_core::config::Catalog as CatalogConfig;
use sluice_core::schema::{DATE_COLUMN, HOUR_COLUMN};
use sluice_lake::evolution::{HISTORY_PROPERTY, SchemaChange, history_with};
use sluice_lake::location::table_url;
use sluice_lake::table::{WRITER, WRITER_PROPERTY};
use sluice_lake::{Commit, LakeError, PartitionProgress, Sink};

use crate::catalog::{PinnedCatalog, connect, ensure_namespace, is_conflict};
use crate::data_files::{DataFileWriter, Partitioning};
use crate::failed;
use crate::progress::Progress;
use crate::schema::{columns_lacking, iceberg_schema, iceberg_type_of, with_field_ids};
use crate::storage::store_of;

/// How many times a commit is planned again on a table other members moved before giving up
/// (transiently: the engine retries later).
const REBASES: usize = 20;

/// An Iceberg table opened for writing.
pub struct IcebergSink {
    name: String,
    catalog: Arc<dyn Catalog>,
    /// The table state commits are checked against and planned on.
    table: Table,
    /// The progress `table` records.
    progress: Progress,
    partitioning: Partitioning,
    writer: DataFileWriter,
    /// Data files written ahead of the next commit ([`Sink::write`]).
    written: Vec<DataFile>,
}

/// What an Iceberg table is: where, registered where, with which columns and partitions.
pub struct IcebergTable<'a> {
    /// Its name, also its name in the catalog's namespace.
    pub name: &'a str,
    /// Its location.
    pub uri: &'a str,
    /// The catalog it is registered in.
    pub catalog: &'a CatalogConfig,
    /// Its rows' columns.
    pub schema: &'a SchemaRef,
    /// The event-time column, which partitions derive from.
    pub event_time: &'a str,
    /// `date` and/or `hour`: day and hour transforms of the event time.
    pub partition_by: &'a [String],
}

impl IcebergSink {
    /// Opens the table, creating and registering it when the catalog does not have it. An
    /// existing table must be one sluice created, with the stream's partitions and columns;
    /// those of the stream it lacks are added to it.
    pub async fn open_or_create(
        table: IcebergTable<'_>,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, LakeError> {
        let name = table.name;
        let failed_to = |action: &str| failed(name, action);
        let catalog = connect(table.catalog, storage_options)
            .await
            .map_err(failed_to(&format!("reach catalog {}", table.catalog.name)))?;
        let namespace = NamespaceIdent::new(table.catalog.namespace.clone());
        ensure_namespace(catalog.as_ref(), &namespace)
            .await
            .map_err(failed_to("create the catalog's namespace"))?;
        let ident = TableIdent::new(namespace.clone(), name.to_string());
        let loaded = match catalog
            .table_exists(&ident)
            .await
            .map_err(failed_to("look it up"))?
        {
            true => catalog
                .load_table(&ident)
                .await
                .map_err(failed_to("load it"))?,
            false => create(catalog.as_ref(), &namespace, &table).await?,
        };
        let stream = table.schema;
        let mut sink = Self::open(table, catalog, loaded, storage_options)?;
        let lacking = columns_lacking(stream, sink.table.metadata().current_schema());
        sink.add_columns(&lacking).await?;
        Ok(sink)
    }

    /// The sink of `loaded`, writing the stream's columns but those the table lacks (which
    /// the caller adds).
    fn open(
        table: IcebergTable<'_>,
        catalog: Arc<dyn Catalog>,
        loaded: Table,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, LakeError> {
        let name = table.name.to_string();
        let metadata = loaded.metadata();
        let location = metadata.location().trim_end_matches('/').to_string();
        if metadata
            .properties()
            .get(WRITER_PROPERTY)
            .map(String::as_str)
            != Some(WRITER)
        {
            return Err(LakeError::Foreign {
                table: name,
                uri: location,
                found: format!(
                    "{WRITER_PROPERTY} is {:?}",
                    metadata.properties().get(WRITER_PROPERTY)
                ),
            });
        }
        let lacking = columns_lacking(table.schema, metadata.current_schema());
        let columns = Schema::new_with_metadata(
            (table.schema.fields().iter())
                .filter(|field| !lacking.contains(field))
                .cloned()
                .collect::<Vec<_>>(),
            table.schema.metadata().clone(),
        );
        let schema =
            with_field_ids(&columns, metadata.current_schema()).map_err(|differences| {
                LakeError::SchemaMismatch {
                    table: name.clone(),
                    uri: location.clone(),
                    differences,
                }
            })?;
        let partitioning = partitioning(&table, &schema, &loaded).map_err(|difference| {
            LakeError::SchemaMismatch {
                table: name.clone(),
                uri: location.clone(),
                differences: format!("\n  - {difference}"),
            }
        })?;
        let progress =
            Progress::of(metadata).map_err(|reason| failed(&name, "read its progress")(reason))?;
        let data_location = format!("{location}/data");
        let (store, data_path) = store_of(&data_location, storage_options)
            .map_err(|err| failed(&name, "reach its storage")(err))?;
        Ok(Self {
            writer: DataFileWriter {
                store,
                data_path,
                data_location,
                schema,
            },
            name,
            catalog,
            table: loaded,
            progress,
            partitioning,
            written: Vec::new(),
        })
    }

    /// The table state the next commit builds on.
    pub fn table(&self) -> &Table {
        &self.table
    }

    async fn reload(&mut self) -> Result<(), LakeError> {
        let table = self
            .catalog
            .load_table(self.table.identifier())
            .await
            .map_err(failed(&self.name, "reload it"))?;
        self.progress =
            Progress::of(table.metadata()).map_err(failed(&self.name, "read its progress"))?;
        self.table = table;
        Ok(())
    }

    /// Adds `added` to the columns rows are written with; first to the table's, optional, in a
    /// schema change of its own where it lacks them (another member may have added them
    /// already: their ids are then taken from it).
    async fn add_columns(&mut self, added: &[FieldRef]) -> Result<(), LakeError> {
        if added.is_empty() {
            return Ok(());
        }
        let mut rebases = 0;
        loop {
            let lacking: Vec<&FieldRef> = (added.iter())
                .filter(|field| {
                    (self.table.metadata().current_schema().as_struct())
                        .field_by_name(field.name())
                        .is_none()
                })
                .collect();
            if lacking.is_empty() {
                break;
            }
            match self.try_add_columns(&lacking).await? {
                Some(table) => self.table = table,
                None if rebases < REBASES => {
                    rebases += 1;
                    self.reload().await?;
                }
                None => {
                    return Err(failed(&self.name, "add columns")(format!(
                        "the table moved under {REBASES} attempts in a row"
                    )));
                }
            }
        }
        // The columns rows are written with: the stream's, then those newer writers added.
        let written = &self.writer.schema;
        let columns = Schema::new_with_metadata(
            (written.fields().iter().cloned())
                .chain(added.iter().cloned())
                .collect::<Vec<_>>(),
            written.metadata().clone(),
        );
        self.writer.schema = with_field_ids(&columns, self.table.metadata().current_schema())
            .map_err(|differences| LakeError::SchemaMismatch {
                table: self.name.clone(),
                uri: self.table.metadata().location().to_string(),
                differences,
            })?;
        Ok(())
    }

    /// Commits the schema change adding `lacking` on the current state: `Ok(None)` when
    /// another writer moved the table meanwhile.
    async fn try_add_columns(&self, lacking: &[&FieldRef]) -> Result<Option<Table>, LakeError> {
        let transaction = Transaction::new(&self.table);
        let mut update = transaction.update_schema();
        for field in lacking {
            // A column Iceberg cannot hold: retrying would not help.
            let ty = iceberg_type_of(field).map_err(|reason| LakeError::SchemaMismatch {
                table: self.name.clone(),
                uri: self.table.metadata().location().to_string(),
                differences: format!("\n  - {reason}"),
            })?;
            update = update.add_column(AddColumn::optional(field.name(), ty));
        }
        let change = SchemaChange::adding(lacking.iter().copied());
        let history = history_with(self.table.metadata().properties(), change);
        let plan = || failed::<iceberg::Error>(&self.name, "plan adding columns");
        let transaction = update.apply(transaction).map_err(plan())?;
        let transaction = (transaction.update_table_properties())
            .set(HISTORY_PROPERTY.to_string(), history)
            .apply(transaction)
            .map_err(plan())?;
        self.commit_on_base(transaction, "commit adding columns")
            .await
    }

    /// Commits `transaction` on the state it was planned on: `Ok(None)` when another writer
    /// moved the table meanwhile; `failing` says what failed otherwise.
    async fn commit_on_base(
        &self,
        transaction: Transaction,
        failing: &str,
    ) -> Result<Option<Table>, LakeError> {
        let pinned = PinnedCatalog {
            inner: self.catalog.as_ref(),
            base: &self.table,
        };
        match transaction.commit(&pinned).await {
            Ok(table) => Ok(Some(table)),
            Err(err) if is_conflict(&err) => Ok(None),
            Err(err) => Err(failed(&self.name, failing)(err)),
        }
    }

    /// Writes `batches` as data files, one per partition, with the columns they carry that the
    /// table lacks added to it first.
    async fn write_files(&mut self, batches: &[RecordBatch]) -> Result<Vec<DataFile>, LakeError> {
        let mut added: Vec<FieldRef> = Vec::new();
        for field in batches.iter().flat_map(|batch| batch.schema_ref().fields()) {
            let known = self.writer.schema.field_with_name(field.name()).is_ok()
                || added.iter().any(|a| a.name() == field.name());
            if !known {
                added.push(Arc::new(field.as_ref().clone().with_nullable(true)));
            }
        }
        self.add_columns(&added).await?;
        let parts = self
            .partitioning
            .split(batches)
            .map_err(failed(&self.name, "split rows by partition"))?;
        let mut files = Vec::with_capacity(parts.len());
        for (key, rows) in parts {
            let file = self
                .writer
                .write(&self.partitioning, &key, &rows)
                .await
                .map_err(|reason| LakeError::Format {
                    table: self.name.clone(),
                    action: "write a data file (nothing committed)".to_string(),
                    transient: true,
                    source: reason.into(),
                })?;
            files.push(file);
        }
        Ok(files)
    }

    /// Commits `files` with `moves` on the current state: `Ok(None)` when another writer moved
    /// the table meanwhile (plan again on its new state).
    async fn try_commit(
        &self,
        files: &[DataFile],
        moves: &[PartitionProgress],
    ) -> Result<Option<Table>, LakeError> {
        for moved in moves {
            let found = self
                .progress
                .get(&moved.topic, moved.partition)
                .map(|r| r.offset);
            if found != moved.previous {
                return Err(LakeError::Fenced {
                    table: self.name.clone(),
                    topic: moved.topic.clone(),
                    partition: moved.partition,
                    expected: moved.previous,
                    found,
                });
            }
        }
        let transaction = Transaction::new(&self.table);
        let append = transaction
            .fast_append()
            .with_check_duplicate(false)
            .set_snapshot_properties(self.progress.advanced(moves).summary())
            .add_data_files(files.iter().cloned());
        let transaction = append
            .apply(transaction)
            .map_err(failed(&self.name, "plan the commit"))?;
        self.commit_on_base(transaction, "commit (its data files stay unreferenced)")
            .await
    }
}

/// Creates and registers the table: sluice's marker, the stream's columns, day/hour partitions
/// of the event time. Another member creating it at the same moment wins; its table is used.
async fn create(
    catalog: &dyn Catalog,
    namespace: &NamespaceIdent,
    table: &IcebergTable<'_>,
) -> Result<Table, LakeError> {
    let failed_to = |action: &str| failed::<iceberg::Error>(table.name, action);
    let schema =
        iceberg_schema(table.schema).map_err(failed(table.name, "map its columns to Iceberg"))?;
    let source = schema
        .field_by_name(table.event_time)
        .map(|field| field.id)
        .ok_or_else(|| {
            failed(table.name, "find its event-time column")(format!(
                "no column {}",
                table.event_time
            ))
        })?;
    let mut spec = UnboundPartitionSpec::builder();
    for transform in transforms(table.partition_by) {
        spec = spec
            .add_partition_field(
                source,
                partition_field(table.event_time, transform),
                transform,
            )
            .map_err(failed_to("partition it"))?;
    }
    let location = table_url(table.name, table.uri)?;
    let creation = TableCreation::builder()
        .name(table.name.to_string())
        .location(location.as_str().trim_end_matches('/').to_string())
        .schema(schema)
        .partition_spec(spec.build())
        .properties([(WRITER_PROPERTY.to_string(), WRITER.to_string())])
        .build();
    let ident = TableIdent::new(namespace.clone(), table.name.to_string());
    match catalog.create_table(namespace, creation).await {
        Ok(created) => Ok(created),
        Err(err) => match catalog.table_exists(&ident).await {
            Ok(true) => catalog
                .load_table(&ident)
                .await
                .map_err(failed_to("load it")),
            _ => Err(failed_to("create it in the catalog")(err)),
        },
    }
}

/// The Iceberg partition transforms of `partition_by`: `hour(ts)` when it has `hour` (an
/// hour is within one day, and Iceberg refuses a day and an hour of one column as redundant;
/// engines prune by day through the hour), else `day(ts)` when it has `date`.
fn transforms(partition_by: &[String]) -> Vec<Transform> {
    let has = |column: &str| partition_by.iter().any(|c| c == column);
    match (has(DATE_COLUMN), has(HOUR_COLUMN)) {
        (_, true) => vec![Transform::Hour],
        (true, false) => vec![Transform::Day],
        (false, false) => Vec::new(),
    }
}

/// The name of a partition field: `ts_day`, `ts_hour`.
fn partition_field(event_time: &str, transform: Transform) -> String {
    let suffix = match transform {
        Transform::Day => "day",
        _ => "hour",
    };
    format!("{event_time}_{suffix}")
}

/// The table's partitioning, which must be the one the pipeline asks for.
fn partitioning(
    table: &IcebergTable<'_>,
    schema: &Schema,
    loaded: &Table,
) -> Result<Partitioning, String> {
    let metadata = loaded.metadata();
    let spec = metadata.default_partition_spec();
    let source = metadata
        .current_schema()
        .field_by_name(table.event_time)
        .map(|f| f.id);
    let wanted = transforms(table.partition_by);
    let found: Vec<Transform> = spec.fields().iter().map(|f| f.transform).collect();
    if found != wanted || spec.fields().iter().any(|f| Some(f.source_id) != source) {
        return Err(format!(
            "the table is partitioned by {}, the pipeline asks for {}",
            describe_spec(spec.fields().iter().map(|f| f.name.as_str())),
            describe_spec(
                wanted
                    .iter()
                    .map(|t| partition_field(table.event_time, *t))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str)
            ),
        ));
    }
    schema
        .index_of(table.event_time)
        .map_err(|_| format!("no event-time column {}", table.event_time))?;
    Partitioning::new(spec, table.event_time)
}

fn describe_spec<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.is_empty() {
        true => "nothing".to_string(),
        false => names.join(", "),
    }
}

#[async_trait]
impl Sink for IcebergSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn describe(&self) -> String {
        format!(
            "Iceberg table {} at {} (snapshot {:?})",
            self.table.identifier(),
            self.table.metadata().location(),
            self.table.metadata().current_snapshot_id()
        )
    }

    async fn committed(&self, source: &str, partition: i32) -> Result<Option<i64>, LakeError> {
        Ok(self.progress.get(source, partition).map(|r| r.offset))
    }

    async fn committed_mark(
        &self,
        source: &str,
        partition: i32,
        mark: &str,
    ) -> Result<Option<i64>, LakeError> {
        Ok(self
            .progress
            .get(source, partition)
            .and_then(|r| r.marks.get(mark).copied()))
    }

    fn has_written_ahead(&self) -> bool {
        !self.written.is_empty()
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), LakeError> {
        let files = self.write_files(std::slice::from_ref(batch)).await;
        match files {
            Ok(files) => {
                self.written.extend(files);
                Ok(())
            }
            Err(err) => {
                self.written.clear();
                Err(err)
            }
        }
    }

    async fn commit(
        &mut self,
        batches: &[RecordBatch],
        progress: &[PartitionProgress],
    ) -> Result<Commit, LakeError> {
        let mut files = std::mem::take(&mut self.written);
        files.extend(self.write_files(batches).await?);
        for _ in 0..REBASES {
            let attempt = match self.try_commit(&files, progress).await {
                Err(err) if !err.is_fenced() => {
                    // Planning on a state that expiry removed the files of fails: it is retried
                    // on the table's current state; on the same state, the error stands.
                    let planned_on = self.table.metadata_location().map(String::from);
                    self.reload().await?;
                    if self.table.metadata_location().map(String::from) == planned_on {
                        return Err(err);
                    }
                    continue;
                }
                attempt => attempt?,
            };
            if let Some(table) = attempt {
                self.progress = self.progress.advanced(progress);
                let version = table
                    .metadata()
                    .current_snapshot()
                    .map_or(0, |s| s.sequence_number().max(0) as u64);
                self.table = table;
                return Ok(Commit {
                    version,
                    files: files.len(),
                    bytes: files.iter().map(DataFile::file_size_in_bytes).sum(),
                });
            }
            self.reload().await?;
        }
        Err(failed(&self.name, "commit")(format!(
            "the table moved under {REBASES} attempts in a row"
        )))
    }

    async fn refresh(&mut self) -> Result<(), LakeError> {
        self.reload().await
    }
}
