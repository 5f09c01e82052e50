//! The Iceberg catalog on AWS Glue: a table is a Glue table with `table_type = ICEBERG` and
//! the location of its current metadata file in `metadata_location`, as Athena, Spark's and
//! pyiceberg's Glue catalogs keep them, so each of them reads what sluice commits.
//!
//! Why not iceberg-rust's own `iceberg-catalog-glue` (0.10.1): it refuses every table with a
//! `timestamptz` column ("Conversion from Timestamptz is not supported", measured on the first
//! run), and every sluice table has one (the event time, `_ingested_at`). This catalog lists
//! them as Glue's `timestamp`, as pyiceberg does. Like the SQL catalog it only keeps the
//! pointer: what a commit means is the iceberg crate's `TableCommit::apply` and
//! `TableMetadata::write_to` ([`crate::catalog::commit_by_swap`]). The swap reads the Glue
//! table, checks that it still points at the metadata the commit was applied to, and updates
//! it with the `VersionId` it read, Glue's optimistic lock: a concurrent commit makes it fail
//! with `ConcurrentModificationException`, a conflict.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::types::{Column, DatabaseInput, StorageDescriptor, TableInput};
use iceberg::io::FileIO;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, Runtime, TableCommit,
    TableCreation, TableIdent,
};
use sluice_lake::table::{WRITER, WRITER_PROPERTY};

use super::{describe, hive_type, is_already_there, is_not_found};
use crate::catalog::{MetadataSwap, commit_by_swap, write_first_metadata};
use crate::reading::arrow_fields;

const METADATA_LOCATION: &str = "metadata_location";
const PREVIOUS_METADATA_LOCATION: &str = "previous_metadata_location";

/// An Iceberg catalog on AWS Glue.
#[derive(Debug)]
pub struct GlueCatalog {
    name: String,
    client: Client,
    catalog_id: Option<String>,
    file_io: FileIO,
    /// Where the tables' background work runs (the caller's tokio runtime).
    runtime: Runtime,
}

/// A Glue table's Iceberg pointer: its metadata location and the `VersionId` it was read at.
struct Pointer {
    metadata_location: String,
    version_id: Option<String>,
}

impl GlueCatalog {
    /// The catalog `name` reached with `client` (in the account `catalog_id`, when not the
    /// caller's); table files are reached through `file_io`.
    pub fn new(
        name: &str,
        client: Client,
        catalog_id: Option<String>,
        file_io: FileIO,
    ) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            client,
            catalog_id,
            file_io,
            runtime: Runtime::try_current()?,
        })
    }

    fn failed(&self, action: String) -> impl FnOnce(String) -> Error + use<> {
        let name = self.name.clone();
        move |reason| {
            Error::new(
                ErrorKind::Unexpected,
                format!("Glue catalog {name}: could not {action}: {reason}"),
            )
        }
    }

    fn database(namespace: &NamespaceIdent) -> Result<String> {
        match namespace.as_ref().as_slice() {
            [database] => Ok(database.clone()),
            _ => Err(Error::new(
                ErrorKind::DataInvalid,
                format!("a Glue database is one name, not {namespace:?}"),
            )),
        }
    }

    /// The table's pointer, or `None` when Glue has no such table.
    async fn pointer(&self, ident: &TableIdent) -> Result<Option<Pointer>> {
        let database = Self::database(ident.namespace())?;
        let found = (self.client.get_table())
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&database)
            .name(ident.name())
            .send()
            .await;
        let table = match found {
            Ok(output) => output.table,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(self.failed(format!("look up table {ident}"))(describe(err))),
        };
        let Some(table) = table else {
            return Ok(None);
        };
        let parameters = table.parameters();
        let location = parameters.and_then(|p| p.get(METADATA_LOCATION)).ok_or_else(|| {
            Error::new(
                ErrorKind::DataInvalid,
                format!(
                    "Glue catalog {}: table {ident} is not an Iceberg table (no {METADATA_LOCATION}; \
                     table_type {:?})",
                    self.name,
                    parameters.and_then(|p| p.get("table_type"))
                ),
            )
        })?;
        Ok(Some(Pointer {
            metadata_location: location.clone(),
            version_id: table.version_id().map(str::to_string),
        }))
    }

    fn table(&self, ident: TableIdent, location: String, metadata: TableMetadata) -> Result<Table> {
        Table::builder()
            .file_io(self.file_io.clone())
            .metadata_location(location)
            .identifier(ident)
            .metadata(metadata)
            .runtime(self.runtime.clone())
            .build()
    }

    /// The Glue table of `metadata` at `location`: Iceberg's pointer, its columns as Hive
    /// types (Glue's `timestamp` for timestamps, zoned or not, as pyiceberg lists them).
    fn table_input(
        &self,
        name: &str,
        metadata: &TableMetadata,
        location: &str,
        previous: Option<&str>,
    ) -> Result<TableInput> {
        let fields = arrow_fields(metadata.current_schema().as_struct().fields())
            .map_err(|reason| Error::new(ErrorKind::DataInvalid, reason))?;
        let columns = fields
            .iter()
            .map(|f| {
                Column::builder()
                    .name(f.name())
                    .r#type(hive_type(f.data_type(), false))
                    .build()
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|err| Error::new(ErrorKind::DataInvalid, err.to_string()))?;
        let mut parameters = HashMap::from([
            ("table_type".to_string(), "ICEBERG".to_string()),
            (METADATA_LOCATION.to_string(), location.to_string()),
            (WRITER_PROPERTY.to_string(), WRITER.to_string()),
        ]);
        if let Some(previous) = previous {
            parameters.insert(PREVIOUS_METADATA_LOCATION.into(), previous.into());
        }
        let storage = StorageDescriptor::builder()
            .location(metadata.location())
            .set_columns(Some(columns))
            .build();
        TableInput::builder()
            .name(name)
            .table_type("EXTERNAL_TABLE")
            .set_parameters(Some(parameters))
            .storage_descriptor(storage)
            .build()
            .map_err(|err| Error::new(ErrorKind::DataInvalid, err.to_string()))
    }

    /// Moves the Glue table from `pointer` to the metadata file `next` (holding `metadata`),
    /// guarded by the `VersionId` it was read at; whether it moved (not: another writer moved
    /// it first).
    async fn point(
        &self,
        ident: &TableIdent,
        pointer: Pointer,
        next: &str,
        metadata: &TableMetadata,
    ) -> Result<bool> {
        let database = Self::database(ident.namespace())?;
        let previous = Some(pointer.metadata_location.as_str());
        let input = self.table_input(ident.name(), metadata, next, previous)?;
        let updated = (self.client.update_table())
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&database)
            .table_input(input)
            .set_version_id(pointer.version_id)
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_concurrent_modification_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(self.failed(format!("update table {ident}"))(describe(err))),
        }
    }

    fn unsupported<T>(&self, what: &str) -> Result<T> {
        Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!("sluice's Glue catalog does not {what}"),
        ))
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn list_namespaces(
        &self,
        _parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.unsupported("list databases")
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        let database = Self::database(namespace)?;
        let input = (DatabaseInput::builder().name(&database).build())
            .map_err(|err| Error::new(ErrorKind::DataInvalid, err.to_string()))?;
        let created = (self.client.create_database())
            .set_catalog_id(self.catalog_id.clone())
            .database_input(input)
            .send()
            .await;
        match created {
            Ok(_) => Ok(Namespace::with_properties(namespace.clone(), properties)),
            Err(err) if is_already_there(&err) => Err(Error::new(
                ErrorKind::NamespaceAlreadyExists,
                format!("Glue database {database} exists"),
            )),
            Err(err) => Err(self.failed(format!("create database {database}"))(
                describe(err),
            )),
        }
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        match self.namespace_exists(namespace).await? {
            true => Ok(Namespace::new(namespace.clone())),
            false => Err(Error::new(
                ErrorKind::NamespaceNotFound,
                format!("no Glue database {namespace:?}"),
            )),
        }
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        let database = Self::database(namespace)?;
        let found = (self.client.get_database())
            .set_catalog_id(self.catalog_id.clone())
            .name(&database)
            .send()
            .await;
        match found {
            Ok(_) => Ok(true),
            Err(err) if is_not_found(&err) => Ok(false),
            Err(err) => Err(self.failed(format!("look up database {database}"))(
                describe(err),
            )),
        }
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        self.unsupported("change database properties")
    }

    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> Result<()> {
        self.unsupported("drop databases")
    }

    async fn list_tables(&self, _namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.unsupported("list tables")
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let database = Self::database(namespace)?;
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let (metadata, metadata_location) = write_first_metadata(&self.file_io, creation).await?;
        let pointer = metadata_location.to_string();
        let input = self.table_input(ident.name(), &metadata, &pointer, None)?;
        let created = (self.client.create_table())
            .set_catalog_id(self.catalog_id.clone())
            .database_name(&database)
            .table_input(input)
            .send()
            .await;
        match created {
            Ok(_) => self.table(ident, pointer, metadata),
            // Another member created it at the same moment.
            Err(err) if is_already_there(&err) => Err(Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {ident} exists in Glue"),
            )),
            Err(err) => Err(self.failed(format!("create table {ident}"))(describe(err))),
        }
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let pointer = self.pointer(table).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::TableNotFound,
                format!("no table {table} in Glue catalog {}", self.name),
            )
        })?;
        let metadata = TableMetadata::read_from(&self.file_io, &pointer.metadata_location).await?;
        self.table(table.clone(), pointer.metadata_location, metadata)
    }

    async fn drop_table(&self, _table: &TableIdent) -> Result<()> {
        self.unsupported("drop tables")
    }

    async fn purge_table(&self, _table: &TableIdent) -> Result<()> {
        self.unsupported("purge tables")
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        Ok(self.pointer(table).await?.is_some())
    }

    async fn rename_table(&self, _src: &TableIdent, _dest: &TableIdent) -> Result<()> {
        self.unsupported("rename tables")
    }

    async fn register_table(
        &self,
        _table: &TableIdent,
        _metadata_location: String,
    ) -> Result<Table> {
        self.unsupported("register existing metadata")
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        commit_by_swap(self, commit).await
    }
}

/// Compaction's swap: only from the metadata file the replace snapshot was built on.
#[async_trait]
impl MetadataSwap for GlueCatalog {
    async fn swap_metadata(
        &self,
        table: &TableIdent,
        previous: &str,
        next: &str,
        metadata: &TableMetadata,
    ) -> Result<bool> {
        let pointer = self.pointer(table).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::TableNotFound,
                format!("no table {table} in Glue"),
            )
        })?;
        if pointer.metadata_location != previous {
            return Ok(false);
        }
        self.point(table, pointer, next, metadata).await
    }
}
