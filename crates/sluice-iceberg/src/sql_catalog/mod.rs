//! The Iceberg SQL catalog: the tables `iceberg_tables` and `iceberg_namespace_properties` in
//! the layout pyiceberg's and iceberg-rust's `SqlCatalog` share, so either reads and commits
//! the tables sluice registers, in a SQLite file ([`sqlite`]) or a PostgreSQL database
//! ([`postgres`]).
//!
//! Why not iceberg-rust's own `iceberg-catalog-sql`: it reaches SQLite through sqlx, whose
//! SQLite driver compiles a bundled SQLite, and the embedded broker (tansu) already links
//! libsql's: two copies of every `sqlite3_*` symbol, which does not link. This catalog uses the
//! libsql already in the binary (and tokio-postgres for PostgreSQL), and only for the rows;
//! what a commit means (its requirements, the new metadata and where it is written) is the
//! iceberg crate's `TableCommit::apply` and `TableMetadata::write_to`. A commit is a
//! compare-and-set of the metadata location, as in both upstream catalogs: it lands only on the
//! state its requirements were checked against.

mod postgres;
mod sqlite;

use std::collections::HashMap;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, Runtime, TableCommit,
    TableCreation, TableIdent,
};

pub use postgres::PostgresRows;
pub use sqlite::SqliteRows;

use crate::catalog::{MetadataSwap, commit_by_swap, write_first_metadata};

const CREATE_TABLES: &str = "CREATE TABLE IF NOT EXISTS iceberg_tables (
    catalog_name VARCHAR(255) NOT NULL,
    table_namespace VARCHAR(255) NOT NULL,
    table_name VARCHAR(255) NOT NULL,
    metadata_location VARCHAR(1000),
    previous_metadata_location VARCHAR(1000),
    iceberg_type VARCHAR(5),
    PRIMARY KEY (catalog_name, table_namespace, table_name))";

const CREATE_NAMESPACES: &str = "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (
    catalog_name VARCHAR(255) NOT NULL,
    namespace VARCHAR(255) NOT NULL,
    property_key VARCHAR(255),
    property_value VARCHAR(1000),
    PRIMARY KEY (catalog_name, namespace, property_key))";

/// A table row of this catalog: `iceberg_type` is `TABLE`, or missing in rows an older
/// pyiceberg made.
const IS_TABLE: &str = "(iceberg_type = 'TABLE' OR iceberg_type IS NULL)";

/// The database a SQL catalog's rows are in. Statements number their text parameters `?1`,
/// `?2`, … (each database's driver rewrites them as it needs).
#[async_trait]
pub trait SqlRows: Send + Sync + std::fmt::Debug {
    /// The first column of the rows `sql` selects, as text.
    async fn texts(&self, sql: &str, params: Vec<String>) -> Result<Vec<Option<String>>>;

    /// Runs `sql`; how many rows it changed.
    async fn execute(&self, sql: &str, params: Vec<String>) -> Result<u64>;
}

/// An Iceberg SQL catalog.
pub struct SqlCatalog {
    name: String,
    rows: Box<dyn SqlRows>,
    file_io: FileIO,
    /// Where the tables' background work runs (the caller's tokio runtime).
    runtime: Runtime,
}

impl std::fmt::Debug for SqlCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("name", &self.name)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl SqlCatalog {
    /// Opens the catalog `name` in the database `rows` (creating its two tables when missing);
    /// table files are reached through `file_io`.
    pub async fn open(name: &str, rows: Box<dyn SqlRows>, file_io: FileIO) -> Result<Self> {
        for (table, create) in [
            ("iceberg_tables", CREATE_TABLES),
            ("iceberg_namespace_properties", CREATE_NAMESPACES),
        ] {
            // Looked for first: a role that may use the tables need not be allowed to create
            // them (PostgreSQL checks that before `IF NOT EXISTS`); and another member may
            // create one at the same moment.
            let exists = async || {
                let probe = format!("SELECT catalog_name FROM {table} WHERE 1 = 0");
                rows.texts(&probe, Vec::new()).await.is_ok()
            };
            if !exists().await
                && let Err(err) = rows.execute(create, Vec::new()).await
                && !exists().await
            {
                return Err(err);
            }
        }
        Ok(Self {
            name: name.to_string(),
            rows,
            file_io,
            runtime: Runtime::try_current()?,
        })
    }

    async fn texts(&self, sql: &str, params: Vec<String>) -> Result<Vec<Option<String>>> {
        self.rows.texts(sql, params).await
    }

    async fn execute(&self, sql: &str, params: Vec<String>) -> Result<u64> {
        self.rows.execute(sql, params).await
    }

    /// The table's current metadata location.
    async fn metadata_location(&self, table: &TableIdent) -> Result<String> {
        let found = self
            .texts(
                &format!(
                    "SELECT metadata_location FROM iceberg_tables
                     WHERE catalog_name = ?1 AND table_namespace = ?2 AND table_name = ?3
                       AND {IS_TABLE}"
                ),
                self.key(table),
            )
            .await?;
        found.into_iter().flatten().next().ok_or_else(|| {
            Error::new(
                ErrorKind::TableNotFound,
                format!("no table {table} in catalog {}", self.name),
            )
        })
    }

    fn key(&self, table: &TableIdent) -> Vec<String> {
        vec![
            self.name.clone(),
            table.namespace().join("."),
            table.name().to_string(),
        ]
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

    fn unsupported<T>(&self, what: &str) -> Result<T> {
        Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!("sluice's SQL catalog does not {what}"),
        ))
    }
}

/// The compare-and-set every commit ends with: the row moves to `next` only if it still
/// holds `previous`.
#[async_trait]
impl MetadataSwap for SqlCatalog {
    async fn swap_metadata(
        &self,
        table: &TableIdent,
        previous: &str,
        next: &str,
        _metadata: &TableMetadata,
    ) -> Result<bool> {
        let mut params = vec![next.to_string(), previous.to_string()];
        params.extend(self.key(table));
        params.push(previous.to_string());
        let changed = self
            .execute(
                &format!(
                    "UPDATE iceberg_tables SET metadata_location = ?1, previous_metadata_location = ?2
                     WHERE catalog_name = ?3 AND table_namespace = ?4 AND table_name = ?5
                       AND {IS_TABLE} AND metadata_location = ?6"
                ),
                params,
            )
            .await?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        if parent.is_some() {
            return Ok(Vec::new());
        }
        let names = self
            .texts(
                "SELECT DISTINCT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?1
                 UNION SELECT DISTINCT table_namespace FROM iceberg_tables WHERE catalog_name = ?1",
                vec![self.name.clone()],
            )
            .await?;
        names
            .into_iter()
            .flatten()
            .map(|name| NamespaceIdent::from_strs(name.split('.')))
            .collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        if self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceAlreadyExists,
                format!("namespace {namespace:?} exists"),
            ));
        }
        let mut rows = properties.clone();
        rows.insert("exists".to_string(), "true".to_string());
        for (key, value) in rows {
            self.execute(
                "INSERT INTO iceberg_namespace_properties
                 (catalog_name, namespace, property_key, property_value) VALUES (?1, ?2, ?3, ?4)",
                vec![self.name.clone(), namespace.join("."), key, value],
            )
            .await?;
        }
        Ok(Namespace::with_properties(namespace.clone(), properties))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        if !self.namespace_exists(namespace).await? {
            return Err(Error::new(
                ErrorKind::NamespaceNotFound,
                format!("no namespace {namespace:?}"),
            ));
        }
        Ok(Namespace::new(namespace.clone()))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        let found = self
            .texts(
                "SELECT namespace FROM iceberg_namespace_properties
                 WHERE catalog_name = ?1 AND namespace = ?2
                 UNION SELECT table_namespace FROM iceberg_tables
                 WHERE catalog_name = ?1 AND table_namespace = ?2",
                vec![self.name.clone(), namespace.join(".")],
            )
            .await?;
        Ok(!found.is_empty())
    }

    async fn update_namespace(
        &self,
        _namespace: &NamespaceIdent,
        _properties: HashMap<String, String>,
    ) -> Result<()> {
        self.unsupported("change namespace properties")
    }

    async fn drop_namespace(&self, _namespace: &NamespaceIdent) -> Result<()> {
        self.unsupported("drop namespaces")
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        let names = self
            .texts(
                &format!(
                    "SELECT table_name FROM iceberg_tables
                     WHERE catalog_name = ?1 AND table_namespace = ?2 AND {IS_TABLE}"
                ),
                vec![self.name.clone(), namespace.join(".")],
            )
            .await?;
        Ok(names
            .into_iter()
            .flatten()
            .map(|name| TableIdent::new(namespace.clone(), name))
            .collect())
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let (metadata, metadata_location) = write_first_metadata(&self.file_io, creation).await?;
        let mut row = self.key(&ident);
        row.push(metadata_location.to_string());
        // The primary key refuses a second table of the name (another member created it).
        self.execute(
            "INSERT INTO iceberg_tables
             (catalog_name, table_namespace, table_name, metadata_location, iceberg_type)
             VALUES (?1, ?2, ?3, ?4, 'TABLE')",
            row,
        )
        .await
        .map_err(|err| {
            Error::new(
                ErrorKind::TableAlreadyExists,
                format!("table {ident} was not registered: {}", err.message()),
            )
        })?;
        self.table(ident, metadata_location.to_string(), metadata)
    }

    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        let location = self.metadata_location(table).await?;
        let metadata = TableMetadata::read_from(&self.file_io, &location).await?;
        self.table(table.clone(), location, metadata)
    }

    async fn drop_table(&self, _table: &TableIdent) -> Result<()> {
        self.unsupported("drop tables")
    }

    async fn purge_table(&self, _table: &TableIdent) -> Result<()> {
        self.unsupported("purge tables")
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        match self.metadata_location(table).await {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == ErrorKind::TableNotFound => Ok(false),
            Err(err) => Err(err),
        }
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
