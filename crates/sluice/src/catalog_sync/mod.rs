//! `sluice catalog sync`: registers a pipeline's tables in its AWS Glue catalogs
//! (`[catalogs.<name>] type = "glue"`), so that Athena, Redshift Spectrum and Glue's own jobs
//! find them by name: Delta tables as Athena's native Delta tables, plain-files tables as Hive
//! tables with partition projection ([`glue_tables`]). Iceberg tables whose catalog is that Glue
//! catalog are registered by `sluice stream` itself, commit by commit; sync only reports them.
//!
//! A table is created when Glue does not have it and updated (with Glue's `VersionId`, so that
//! a concurrent change is refused, not overwritten) when its columns, location or projection
//! changed, say after a schema change; a Glue table sluice did not register is never touched
//! (refused, naming it). `sluice stream --catalog-sync-every D` runs the same every `D`.

pub mod glue_tables;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use aws_sdk_glue::Client;
use aws_sdk_glue::types::{Table, TableInput};
use iceberg::{NamespaceIdent, TableIdent};
use object_store::ObjectStore;
use serde::Serialize;
use sluice_core::Pipeline;
use sluice_core::config::{Catalog, CatalogKind, TableFormat};
use sluice_core::schema::DATE_COLUMN;
use sluice_iceberg::catalog::ensure_namespace;
use sluice_iceberg::glue;
use sluice_lake::location::{TableLocation, object_store_at, table_url};
use sluice_lake::table::{WRITER, WRITER_PROPERTY};
use sluice_query::{Lake, Opening};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use glue_tables::Registered;

/// What sync did with one table in one catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Synced {
    /// The Glue catalog (its pipeline name).
    pub catalog: String,
    /// `<database>.<table>`.
    pub table: String,
    /// `delta`, `parquet`, `csv`, `jsonl` or `iceberg`.
    pub format: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened to a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Glue did not have it; it does now.
    Created,
    /// Glue had an older registration (columns, location or projection); it was replaced.
    Updated,
    /// Glue already had it as it is.
    Unchanged,
    /// An Iceberg table of this catalog: `sluice stream` registers it and every commit.
    RegisteredByStream,
    /// Not registered, and why.
    Skipped(String),
    /// Glue has a table of that name that sluice did not register: left as it is.
    Refused(String),
}

/// Registers the tables of `pipeline` in its Glue catalogs (only `only` when given).
pub async fn run(
    pipeline: &Pipeline,
    storage_options: &HashMap<String, String>,
    only: Option<&str>,
) -> Result<Vec<Synced>> {
    let catalogs = glue_catalogs(pipeline, only)?;
    let plain: Vec<TableLocation> = TableLocation::of_pipeline(pipeline)
        .into_iter()
        .filter(|t| t.catalog.is_none())
        .collect();
    let (lake, unavailable) =
        Lake::open_available(&plain, storage_options, Opening::default()).await;
    let unavailable: HashMap<String, String> = (unavailable.into_iter())
        .map(|(location, err)| (location.name, err.to_string()))
        .collect();
    let mut synced = Vec::new();
    for catalog in catalogs {
        let glue = Glue::connect(catalog, storage_options).await?;
        for table in TablesToSync::of(pipeline) {
            let outcome = match unavailable.get(table.name) {
                Some(why) => Outcome::Skipped(format!("cannot be read: {why}")),
                None => glue.sync(&table, &lake, storage_options).await?,
            };
            synced.push(Synced {
                catalog: catalog.name.clone(),
                table: format!("{}.{}", catalog.namespace, table.name),
                format: table.format.name(),
                outcome,
            });
        }
    }
    Ok(synced)
}

/// One line per table.
pub fn summary(synced: &[Synced]) -> String {
    synced
        .iter()
        .map(|s| {
            let outcome = match &s.outcome {
                Outcome::Created => "created".to_string(),
                Outcome::Updated => "updated".to_string(),
                Outcome::Unchanged => "unchanged".to_string(),
                Outcome::RegisteredByStream => "registered by sluice stream".to_string(),
                Outcome::Skipped(why) => format!("skipped: {why}"),
                Outcome::Refused(why) => format!("refused: {why}"),
            };
            format!("{} {} ({}): {outcome}\n", s.catalog, s.table, s.format)
        })
        .collect()
}

/// An error naming every refused table, if any (the command's exit status).
pub fn refusals(synced: &[Synced]) -> Result<()> {
    let refused: Vec<String> = (synced.iter())
        .filter_map(|s| match &s.outcome {
            Outcome::Refused(why) => Some(format!("catalog {} (Glue): {why}", s.catalog)),
            _ => None,
        })
        .collect();
    match refused.is_empty() {
        true => Ok(()),
        false => Err(anyhow!("{}", refused.join("\n"))),
    }
}

/// `sluice stream --catalog-sync-every`: syncs when the stream starts and then every `every`
/// until `stop`, so that a table created or changed (a schema change) reaches Glue within
/// that time. A failed round is logged and the next one tries again; it never stops the
/// stream.
pub async fn every(
    pipeline: Pipeline,
    storage_options: HashMap<String, String>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        match run(&pipeline, &storage_options, None).await {
            Ok(synced) => {
                for s in &synced {
                    match &s.outcome {
                        Outcome::Created | Outcome::Updated => {
                            info!(catalog = %s.catalog, table = %s.table, outcome = ?s.outcome, "Registered in Glue.")
                        }
                        Outcome::Refused(why) => {
                            warn!(catalog = %s.catalog, table = %s.table, why, "Not registered in Glue.")
                        }
                        _ => {}
                    }
                }
            }
            Err(err) => {
                warn!(error = %format!("{err:#}"), retry_in = ?every, "Catalog sync failed.")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn glue_catalogs<'a>(pipeline: &'a Pipeline, only: Option<&str>) -> Result<Vec<&'a Catalog>> {
    let glue: Vec<&Catalog> = (pipeline.catalogs.values())
        .filter(|c| matches!(c.kind, CatalogKind::Glue { .. }))
        .filter(|c| only.is_none_or(|name| c.name == name))
        .collect();
    match (glue.is_empty(), only) {
        (true, Some(name)) => Err(anyhow!(
            "--catalog {name}: the pipeline has no [catalogs.{name}] with type = \"glue\""
        )),
        (true, None) => Err(anyhow!(
            "the pipeline has no [catalogs.<name>] with type = \"glue\" to register its tables in"
        )),
        (false, _) => Ok(glue),
    }
}

/// A table of the pipeline as sync sees it.
struct TablesToSync<'a> {
    name: &'a str,
    uri: &'a str,
    format: TableFormat,
    partition_by: &'a [String],
    catalog: Option<&'a Catalog>,
}

impl<'a> TablesToSync<'a> {
    /// The pipeline's tables, then its window tables.
    fn of(pipeline: &'a Pipeline) -> Vec<Self> {
        let tables = pipeline.tables.iter().map(|t| Self {
            name: &t.name,
            uri: &t.uri,
            format: t.format,
            partition_by: &t.partition_by,
            catalog: t.catalog.as_ref(),
        });
        let windows = pipeline.windows.iter().map(|w| Self {
            name: &w.name,
            uri: &w.uri,
            format: w.format,
            partition_by: &w.partition_by,
            catalog: w.catalog.as_ref(),
        });
        tables.chain(windows).collect()
    }

    /// Its Glue table, from its columns as the lake holds them.
    async fn glue_input(
        &self,
        lake: &Lake,
        storage_options: &HashMap<String, String>,
    ) -> Result<TableInput> {
        let schema = (lake.schema_of(self.name).await)
            .ok_or_else(|| anyhow!("table {}: not opened", self.name))?;
        let url = table_url(self.name, self.uri)?;
        let location = format!("{}/", url.as_str().trim_end_matches('/'));
        let registered = Registered {
            name: self.name,
            location: &location,
            schema: &schema,
        };
        let input = match self.format {
            TableFormat::Files(format) => {
                let first_date = first_date(&url, storage_options).await?;
                glue_tables::files_table(&registered, &format, self.partition_by, &first_date)
            }
            _ => glue_tables::delta_table(&registered),
        };
        input.map_err(|err| anyhow!("table {}: {err}", self.name))
    }
}

/// The first `date=` partition of the plain-files table at `url` (one listing of its top
/// level), or today when it has none yet.
async fn first_date(url: &url::Url, storage_options: &HashMap<String, String>) -> Result<String> {
    let store = object_store_at(url, storage_options)?;
    let listed = (store.list_with_delimiter(None).await)
        .with_context(|| format!("list the partitions of {url}"))?;
    let prefix = format!("{DATE_COLUMN}=");
    let first = (listed.common_prefixes.iter())
        .filter_map(|p| p.as_ref().strip_prefix(&prefix).map(str::to_string))
        .min();
    Ok(first.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string()))
}

/// A Glue catalog reached through the AWS SDK, and as the Iceberg catalog on it.
struct Glue<'a> {
    catalog: &'a Catalog,
    client: Client,
    catalog_id: Option<String>,
    iceberg: Arc<dyn iceberg::Catalog>,
}

impl<'a> Glue<'a> {
    /// Connects to `catalog` and makes sure its database exists.
    async fn connect(
        catalog: &'a Catalog,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self> {
        let CatalogKind::Glue {
            endpoint,
            region,
            catalog_id,
        } = &catalog.kind
        else {
            unreachable!("only Glue catalogs are synced")
        };
        let iceberg = (sluice_iceberg::catalog::connect(catalog, storage_options).await)
            .with_context(|| format!("catalog {}: reach Glue", catalog.name))?;
        let database = NamespaceIdent::new(catalog.namespace.clone());
        (ensure_namespace(iceberg.as_ref(), &database).await).with_context(|| {
            format!(
                "catalog {}: create database {}",
                catalog.name, catalog.namespace
            )
        })?;
        Ok(Self {
            catalog,
            client: glue::client(endpoint.as_deref(), region.as_deref()).await,
            catalog_id: catalog_id.clone(),
            iceberg,
        })
    }

    /// Registers `table` (readable in `lake`), or says why not.
    async fn sync(
        &self,
        table: &TablesToSync<'_>,
        lake: &Lake,
        storage_options: &HashMap<String, String>,
    ) -> Result<Outcome> {
        match (&table.format, table.catalog) {
            (TableFormat::Iceberg, Some(own)) if own.name == self.catalog.name => {
                let database = NamespaceIdent::new(self.catalog.namespace.clone());
                let ident = TableIdent::new(database, table.name.to_string());
                let found = (self.iceberg.table_exists(&ident).await)
                    .with_context(|| format!("catalog {}: look up {ident}", self.catalog.name))?;
                Ok(match found {
                    true => Outcome::RegisteredByStream,
                    false => Outcome::Skipped("not created yet: sluice stream creates it".into()),
                })
            }
            (TableFormat::Iceberg, own) => Ok(Outcome::Skipped(format!(
                "an Iceberg table of catalog {}",
                own.map(|c| c.name.as_str()).unwrap_or("?")
            ))),
            _ => {
                self.upsert(table.glue_input(lake, storage_options).await?)
                    .await
            }
        }
    }

    fn database(&self) -> &str {
        &self.catalog.namespace
    }

    fn failed(&self, action: String) -> impl FnOnce(String) -> anyhow::Error {
        let name = self.catalog.name.clone();
        move |err| anyhow!("catalog {name} (Glue): could not {action}: {err}")
    }

    /// The table `name` of the database, if Glue has it.
    async fn table(&self, name: &str) -> Result<Option<Table>> {
        let found = (self.client.get_table())
            .set_catalog_id(self.catalog_id.clone())
            .database_name(self.database())
            .name(name)
            .send()
            .await;
        match found {
            Ok(output) => Ok(output.table),
            Err(err) if glue::is_not_found(&err) => Ok(None),
            Err(err) => {
                let action = format!("look up table {}.{name}", self.database());
                Err(self.failed(action)(glue::describe(err)))
            }
        }
    }

    /// Creates or updates `wanted`; a table sluice did not register is refused.
    async fn upsert(&self, wanted: TableInput) -> Result<Outcome> {
        let name = wanted.name().to_string();
        let Some(existing) = self.table(&name).await? else {
            (self.client.create_table())
                .set_catalog_id(self.catalog_id.clone())
                .database_name(self.database())
                .table_input(wanted)
                .send()
                .await
                .map_err(|err| {
                    let action = format!("create table {}.{name}", self.database());
                    self.failed(action)(glue::describe(err))
                })?;
            return Ok(Outcome::Created);
        };
        let marker = existing.parameters().and_then(|p| p.get(WRITER_PROPERTY));
        if marker.map(String::as_str) != Some(WRITER) {
            return Ok(Outcome::Refused(format!(
                "{}.{name} exists and sluice did not register it ({WRITER_PROPERTY} is \
                 {marker:?}); it is left as it is: drop it or register the table under another \
                 name",
                self.database()
            )));
        }
        if registers_the_same(&existing, &wanted) {
            return Ok(Outcome::Unchanged);
        }
        (self.client.update_table())
            .set_catalog_id(self.catalog_id.clone())
            .database_name(self.database())
            .set_version_id(existing.version_id().map(str::to_string))
            .table_input(wanted)
            .send()
            .await
            .map_err(|err| {
                let action = format!("update table {}.{name}", self.database());
                self.failed(action)(glue::describe(err))
            })?;
        Ok(Outcome::Updated)
    }
}

/// Whether Glue's `existing` table already says what `wanted` says.
fn registers_the_same(existing: &Table, wanted: &TableInput) -> bool {
    let columns = |sd: Option<&aws_sdk_glue::types::StorageDescriptor>| {
        sd.map(|sd| {
            (sd.columns().iter())
                .map(|c| (c.name().to_string(), c.r#type().map(str::to_string)))
                .collect::<Vec<_>>()
        })
    };
    let keys = |keys: &[aws_sdk_glue::types::Column]| {
        (keys.iter())
            .map(|c| (c.name().to_string(), c.r#type().map(str::to_string)))
            .collect::<Vec<_>>()
    };
    existing.parameters() == wanted.parameters()
        && columns(existing.storage_descriptor()) == columns(wanted.storage_descriptor())
        && existing.storage_descriptor().and_then(|sd| sd.location())
            == wanted.storage_descriptor().and_then(|sd| sd.location())
        && keys(existing.partition_keys()) == keys(wanted.partition_keys())
}
