//! Opening a lake table: create it on first use, and refuse one that is not ours to write.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use deltalake::kernel::StructType;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use crate::LakeError;
use crate::files::FilesTable;
use crate::location::table_url;

/// A Delta table of the lake, opened for writing; holds the snapshot commits build on.
#[derive(Debug)]
pub struct LakeTable {
    pub(crate) name: String,
    pub(crate) url: Url,
    pub(crate) table: DeltaTable,
    pub(crate) partition_by: Vec<String>,
    /// How the table was reached, for writers of files with columns it lacks yet.
    pub(crate) storage_options: HashMap<String, String>,
}

/// The table property that marks a table as written by sluice (set when sluice creates it).
pub const WRITER_PROPERTY: &str = "sluice.writer";
/// The value of [`WRITER_PROPERTY`] in the tables sluice creates.
pub const WRITER: &str = "sluice";

impl LakeTable {
    /// Opens the table at `uri`, creating it with `schema` and `partition_by` if it does not
    /// exist. An existing table must be one sluice created ([`WRITER_PROPERTY`]) with exactly
    /// these columns and partitions.
    pub async fn open_or_create(
        name: &str,
        uri: &str,
        storage_options: &HashMap<String, String>,
        schema: &SchemaRef,
        partition_by: &[String],
    ) -> Result<Self, LakeError> {
        let url = table_url(name, uri)?;
        let access = |action: &'static str| {
            let (table, uri) = (name.to_string(), url.to_string());
            move |source: DeltaTableError| LakeError::Access {
                table,
                uri,
                action,
                source,
            }
        };
        let table =
            DeltaTable::try_from_url_with_storage_options(url.clone(), storage_options.clone())
                .await
                .map_err(access("open"))?;
        let table = if table.version().is_some() {
            table
        } else {
            let columns: StructType = schema
                .as_ref()
                .try_into_kernel()
                .map_err(|err| access("map the schema to Delta")(err.into()))?;
            let created = table
                .create()
                .with_table_name(name)
                .with_columns(columns.fields().cloned())
                .with_partition_columns(partition_by.iter().cloned())
                .with_configuration([(WRITER_PROPERTY, Some(WRITER))])
                .with_raise_if_key_not_exists(false)
                .with_save_mode(SaveMode::Ignore)
                .await;
            match created {
                Ok(table) => table,
                // Another process may have created it at the same moment: use theirs.
                Err(err) => {
                    deltalake::open_table_with_storage_options(url.clone(), storage_options.clone())
                        .await
                        .map_err(|_| access("create")(err))?
                }
            }
        };
        let lake_table = Self {
            name: name.into(),
            url,
            table,
            partition_by: partition_by.to_vec(),
            storage_options: storage_options.clone(),
        };
        lake_table.check_owner()?;
        lake_table.check_layout(schema)?;
        Ok(lake_table)
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's location.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The Delta version the next commit builds on.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// The current snapshot; it exists once the table is opened or created.
    pub(crate) fn snapshot(&self) -> &deltalake::table::state::DeltaTableState {
        self.table
            .snapshot()
            .expect("an opened table has a snapshot")
    }
    /// The error of writing this table's files, for `map_err`.
    pub(crate) fn write_error(&self) -> impl Fn(DeltaTableError) -> LakeError + use<> {
        let table = self.name.clone();
        move |source| LakeError::Write {
            table: table.clone(),
            source,
        }
    }

    /// Maps a delta-rs error of `action` to one naming this table.
    pub(crate) fn access_error(
        &self,
        action: &'static str,
    ) -> impl FnOnce(DeltaTableError) -> LakeError + use<> {
        let (table, uri) = (self.name.clone(), self.url.to_string());
        move |source| LakeError::Access {
            table,
            uri,
            action,
            source,
        }
    }

    /// Refuses a table that sluice did not create: another pipeline writes it, and appending
    /// rows (with offsets of our own) would mix two writers' data and progress.
    fn check_owner(&self) -> Result<(), LakeError> {
        let configuration = self.snapshot().metadata().configuration();
        match configuration.get(WRITER_PROPERTY).map(String::as_str) {
            Some(WRITER) => Ok(()),
            found => Err(LakeError::Foreign {
                table: self.name.clone(),
                uri: self.url.to_string(),
                found: found.map_or_else(
                    || format!("its Delta log has no {WRITER_PROPERTY} property"),
                    |other| format!("its {WRITER_PROPERTY} is {other:?}"),
                ),
            }),
        }
    }

    /// Refuses a table whose columns or partitions differ from the pipeline's. Columns may
    /// differ only by being added (`evolution`): a nullable column the table lacks is added
    /// at the first commit that writes it, and a nullable column the pipeline does not write
    /// is null in its rows.
    fn check_layout(&self, schema: &SchemaRef) -> Result<(), LakeError> {
        let existing = self.snapshot().schema();
        let mut differences = String::new();
        for field in schema.fields() {
            match existing.field(field.name()) {
                None if !field.is_nullable() => differences.push_str(&format!(
                    "\n  - column {} is missing from the table, and required (a column can \
                     be added only as optional)",
                    field.name()
                )),
                None => {}
                Some(found) => {
                    let expected: Result<deltalake::kernel::DataType, _> =
                        field.data_type().try_into_kernel();
                    if expected.as_ref().ok() != Some(found.data_type()) {
                        differences.push_str(&format!(
                            "\n  - column {} is {} in the table, the pipeline writes {}",
                            field.name(),
                            found.data_type(),
                            field.data_type()
                        ));
                    }
                }
            }
        }
        for found in existing.fields() {
            if schema.field_with_name(found.name()).is_err() && !found.is_nullable() {
                differences.push_str(&format!(
                    "\n  - the table has a required column {} the pipeline does not write",
                    found.name()
                ));
            }
        }
        let partitions = self.snapshot().metadata().partition_columns();
        if partitions != self.partition_by.as_slice() {
            differences.push_str(&format!(
                "\n  - the table is partitioned by {:?}, the pipeline by {:?}",
                partitions, self.partition_by
            ));
        }
        LakeError::schema_mismatch(&self.name, &self.url, differences)
    }
}

/// A table opened for reading.
pub enum Existing {
    /// A Delta table, at its location.
    Delta(Url, DeltaTable),
    /// A plain-files table.
    Files(Box<FilesTable>),
}

/// Opens the table at `uri` for reading: its Delta log, or else its plain-files log; with
/// neither, the Delta error ([`LakeError::is_not_created`]).
pub async fn open_for_reading(
    name: &str,
    uri: &str,
    storage_options: &HashMap<String, String>,
) -> Result<Existing, LakeError> {
    let delta = open_existing(name, uri, storage_options).await;
    if delta.as_ref().is_err_and(LakeError::is_not_created)
        && let Some(files) = FilesTable::open(name, uri, storage_options).await?
    {
        return Ok(Existing::Files(Box::new(files)));
    }
    let (url, table) = delta?;
    Ok(Existing::Delta(url, table))
}

/// Opens a table that must exist already (a location without a Delta log is an error).
pub(crate) async fn open_existing(
    name: &str,
    uri: &str,
    storage_options: &HashMap<String, String>,
) -> Result<(Url, DeltaTable), LakeError> {
    let url = table_url(name, uri)?;
    let table = deltalake::open_table_with_storage_options(url.clone(), storage_options.clone())
        .await
        .map_err(|source| LakeError::Access {
            table: name.into(),
            uri: url.to_string(),
            action: "open",
            source,
        })?;
    Ok((url, table))
}
