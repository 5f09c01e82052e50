//! Reaching a catalog (`[catalogs.<name>]`), and committing to it only on top of the table state
//! a commit was checked against.
//!
//! The iceberg crate's `Transaction::commit` reloads the table first and, when another writer
//! moved it, re-applies the commit on the new state and retries: right for an engine that may
//! append anywhere, wrong for exactly-once, where a commit is valid only on the state whose
//! offsets it continues (apache/iceberg#16282 and #17637 are what follows otherwise).
//! [`PinnedCatalog`] makes the transaction see the state sluice checked and turns a conflict
//! into a final error; the sink then reloads, checks its offsets again, and either retries or
//! is fenced.
//!
//! The SQL and Glue catalogs are sluice's own and keep only a pointer to each table's metadata
//! file: [`MetadataSwap`] moves it over the state a commit was applied to, for the crate's
//! commits ([`commit_by_swap`]) and compaction's replace snapshot alike.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use iceberg::io::{FileIO, FileIOBuilder};
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, Result, TableCommit,
    TableCreation, TableIdent,
};
use sluice_core::config::{Catalog as CatalogConfig, CatalogKind};

use crate::glue::{self, GlueCatalog};
use crate::rest_catalog;
use crate::sql_catalog::{PostgresRows, SqlCatalog, SqliteRows};
use crate::storage::ObjectStorageFactory;

/// Connects to `config`'s catalog, its tables' files reached with `storage_options`.
pub async fn connect(
    config: &CatalogConfig,
    storage_options: &HashMap<String, String>,
) -> Result<Arc<dyn Catalog>> {
    let CatalogKind::Rest {
        uri,
        auth,
        oauth2_server_uri,
        scope,
    } = &config.kind
    else {
        // The SQL and Glue catalogs are sluice's own: the same as compaction reaches them.
        let catalog: Arc<dyn Catalog> = swapping_catalog(config, storage_options).await?;
        return Ok(catalog);
    };
    let storage = Arc::new(ObjectStorageFactory::new(storage_options.clone()));
    Ok(Arc::new(
        rest_catalog::open(
            config,
            uri,
            auth,
            oauth2_server_uri.as_deref(),
            scope.as_deref(),
            storage,
        )
        .await?,
    ))
}

/// A catalog that sets a table's metadata file that sluice wrote itself, if the table is still
/// at the one it was built on: what compaction's replace snapshot needs, since the iceberg
/// crate (0.10) has no public replace action to send through `update_table`.
#[async_trait]
pub trait MetadataSwap: Catalog {
    /// Points `table` at the metadata file `next` (holding `metadata`) if it still points at
    /// `previous`; whether it did.
    async fn swap_metadata(
        &self,
        table: &TableIdent,
        previous: &str,
        next: &str,
        metadata: &TableMetadata,
    ) -> Result<bool>;
}

/// A commit through a catalog that keeps a pointer to the metadata file: the current state
/// loaded, the commit applied to it (its requirements are checked there), the next metadata
/// file written, then swapped in only over the state it was applied to.
pub(crate) async fn commit_by_swap(
    catalog: &dyn MetadataSwap,
    commit: TableCommit,
) -> Result<Table> {
    let ident = commit.identifier().clone();
    let current = catalog.load_table(&ident).await?;
    let previous = current.metadata_location_result()?.to_string();
    let staged = commit.apply(current)?;
    let location = staged.metadata_location_result()?.to_string();
    staged
        .metadata()
        .write_to(staged.file_io(), &location.parse::<MetadataLocation>()?)
        .await?;
    if !(catalog
        .swap_metadata(&ident, &previous, &location, staged.metadata())
        .await?)
    {
        return Err(Error::new(
            ErrorKind::CatalogCommitConflicts,
            format!("table {ident} moved while the commit was written"),
        )
        .with_retryable(true));
    }
    Ok(staged)
}

/// Writes the first metadata file of the table `creation` describes, under its location:
/// the metadata and where it is.
pub(crate) async fn write_first_metadata(
    file_io: &FileIO,
    creation: TableCreation,
) -> Result<(TableMetadata, MetadataLocation)> {
    let Some(location) = creation.location.clone() else {
        return Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!(
                "table {}: sluice places every table at its own location",
                creation.name
            ),
        ));
    };
    let metadata = TableMetadataBuilder::from_table_creation(creation)?
        .build()?
        .metadata;
    let metadata_location = MetadataLocation::new_with_metadata(&location, &metadata);
    metadata.write_to(file_io, &metadata_location).await?;
    Ok((metadata, metadata_location))
}

/// Connects to `config`'s catalog when it can take a metadata file sluice wrote (the SQL and
/// Glue catalogs; a REST catalog takes only the commits the crate builds).
pub async fn swapping_catalog(
    config: &CatalogConfig,
    storage_options: &HashMap<String, String>,
) -> Result<Arc<dyn MetadataSwap>> {
    let storage = Arc::new(ObjectStorageFactory::new(storage_options.clone()));
    match &config.kind {
        CatalogKind::Sql { uri } => Ok(Arc::new(open_sqlite(config, uri, storage).await?)),
        CatalogKind::Postgres { url } => {
            let rows = Box::new(PostgresRows::new(url)?);
            let file_io = FileIOBuilder::new(storage).build();
            Ok(Arc::new(
                SqlCatalog::open(&config.name, rows, file_io).await?,
            ))
        }
        CatalogKind::Glue {
            endpoint,
            region,
            catalog_id,
        } => Ok(Arc::new(
            open_glue(config, endpoint, region, catalog_id, storage).await?,
        )),
        CatalogKind::Rest { .. } => Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!(
                "catalog {}: compaction commits through a SQL or Glue catalog only: the \
                 iceberg crate 0.10 has no public replace (rewrite) action to send through a \
                 REST catalog",
                config.name
            ),
        )),
    }
}

async fn open_sqlite(
    config: &CatalogConfig,
    uri: &str,
    storage: Arc<ObjectStorageFactory>,
) -> Result<SqlCatalog> {
    let path = sqlite_path(uri).ok_or_else(|| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("catalog {}: {uri:?} is not a sqlite: URI", config.name),
        )
    })?;
    let rows = Box::new(SqliteRows::open(path).await?);
    SqlCatalog::open(&config.name, rows, FileIOBuilder::new(storage).build()).await
}

async fn open_glue(
    config: &CatalogConfig,
    endpoint: &Option<String>,
    region: &Option<String>,
    catalog_id: &Option<String>,
    storage: Arc<ObjectStorageFactory>,
) -> Result<GlueCatalog> {
    let client = glue::client(endpoint.as_deref(), region.as_deref()).await;
    let file_io = FileIOBuilder::new(storage).build();
    GlueCatalog::new(&config.name, client, catalog_id.clone(), file_io)
}

/// The file of a SQLite URI as SQLAlchemy (pyiceberg) and sqlx write them:
/// `sqlite:////abs/path.db` or `sqlite:///abs/path.db` (absolute), `sqlite:rel/path.db`
/// (relative to the working directory).
pub fn sqlite_path(uri: &str) -> Option<std::path::PathBuf> {
    let rest = uri.strip_prefix("sqlite:")?;
    let path = match rest.strip_prefix("//") {
        Some(after_authority) => after_authority,
        None => rest,
    };
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

/// Makes sure `namespace` exists (another writer may create it at the same moment).
pub async fn ensure_namespace(catalog: &dyn Catalog, namespace: &NamespaceIdent) -> Result<()> {
    if catalog.namespace_exists(namespace).await? {
        return Ok(());
    }
    match catalog.create_namespace(namespace, HashMap::new()).await {
        Ok(_) => Ok(()),
        Err(_) if catalog.namespace_exists(namespace).await? => Ok(()),
        Err(err) => Err(err),
    }
}

/// A catalog whose `load_table` answers with the state a commit was planned on, so that the
/// commit asserts that state (its `main` snapshot) and fails, finally, when it moved.
#[derive(Debug)]
pub struct PinnedCatalog<'a> {
    /// The real catalog.
    pub inner: &'a dyn Catalog,
    /// The table state the commit continues.
    pub base: &'a Table,
}

/// Whether `err` says the table moved under a commit.
pub fn is_conflict(err: &Error) -> bool {
    err.kind() == ErrorKind::CatalogCommitConflicts
}

#[async_trait]
impl Catalog for PinnedCatalog<'_> {
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        match table == self.base.identifier() {
            true => Ok(self.base.clone()),
            false => self.inner.load_table(table).await,
        }
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await.map_err(|err| {
            match is_conflict(&err) {
                // Not retried on another base by the transaction: the sink decides.
                true => Error::new(ErrorKind::CatalogCommitConflicts, err.message().to_string())
                    .with_retryable(false),
                false => err,
            }
        })
    }

    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
}
