//! An Iceberg table registered as a DataFusion listing table over exactly the data files of
//! its current snapshot (read from its manifests through its catalog), with the columns of its
//! current schema. The iceberg crate's own DataFusion provider is on DataFusion 53, sluice on
//! 55; a table sluice writes has no delete files, so its live data files are its rows.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use sluice_core::config::Catalog;
use sluice_iceberg::IcebergSnapshot;
use sluice_iceberg::storage::store_of;
use url::Url;

use crate::{QueryError, TableSummary};

/// Registers the Iceberg table `name` of `catalog`; returns what `sluice tables` shows of it.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    catalog: &Catalog,
    storage_options: &HashMap<String, String>,
) -> Result<TableSummary, QueryError> {
    let snapshot = IcebergSnapshot::open(name, catalog, storage_options).await?;
    let schema = snapshot.arrow_schema().map_err(DataFusionError::Plan)?;
    if snapshot.files.is_empty() {
        ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    } else {
        // Each table gets a store URL of its own, rooted at its bucket (or at `/`), so that a
        // file's path under it is its location's path.
        let (store, _) = store_of(snapshot.location(), storage_options)
            .map_err(|err| DataFusionError::External(Box::new(err)))?;
        let base = format!("sluice-iceberg://{name}/");
        ctx.register_object_store(&Url::parse(&base).expect("a valid URL"), store);
        let urls = (snapshot.files.iter())
            .map(|file| {
                let path = Url::parse(&file.location).map_err(|err| {
                    DataFusionError::Plan(format!("data file {}: {err}", file.location))
                })?;
                ListingTableUrl::parse(format!("{base}{}", path.path().trim_start_matches('/')))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(TableSummary {
        name: name.to_string(),
        uri: snapshot.location().to_string(),
        format: "iceberg",
        version: snapshot.version,
        files: snapshot.files.len(),
        schema_changes: snapshot.schema_changes(),
    })
}
