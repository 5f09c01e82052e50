//! A plain-files table registered as a DataFusion listing table: the objects under its
//! `date=/hour=` paths with the columns its log records. Staged copies and log entries under
//! `_sluice/` have other endings, so the listing leaves them out.

use std::sync::Arc;

use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use sluice_lake::files::FilesTable;
use url::Url;

use crate::{QueryError, TableSummary};

/// Registers `table` under `name`; returns what `sluice tables` shows of it.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    table: &FilesTable,
) -> Result<TableSummary, QueryError> {
    let info = &table.latest.table;
    let compression = if info.extension.ends_with(".gz") {
        FileCompressionType::GZIP
    } else if info.extension.ends_with(".zst") {
        FileCompressionType::ZSTD
    } else {
        FileCompressionType::UNCOMPRESSED
    };
    let (format, kind): (Arc<dyn FileFormat>, _) = match info.format.as_str() {
        "parquet" => (Arc::new(ParquetFormat::default()), "parquet"),
        "csv" => (
            Arc::new(
                // An object written before a column was added lacks it at the end of its rows.
                CsvFormat::default()
                    .with_has_header(true)
                    .with_truncated_rows(true)
                    .with_file_compression_type(compression),
            ),
            "csv",
        ),
        _ => (
            Arc::new(JsonFormat::default().with_file_compression_type(compression)),
            "jsonl",
        ),
    };
    // Each table gets a store URL of its own, rooted at the table.
    let root = Url::parse(&format!("sluice-files://{name}/")).map_err(|err| {
        datafusion::error::DataFusionError::Plan(format!("table name {name}: {err}"))
    })?;
    ctx.register_object_store(&root, table.store.clone());
    let options = ListingOptions::new(format)
        .with_file_extension(info.extension.clone())
        .with_table_partition_cols(table.partition_columns());
    let config = ListingTableConfig::new(ListingTableUrl::parse(root.as_str())?)
        .with_listing_options(options)
        .with_schema(table.schema()?);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(TableSummary {
        name: name.to_string(),
        uri: table.url().to_string(),
        format: kind,
        version: table.latest.seq,
        files: table.latest.total_objects as usize,
        schema_changes: info.changes.clone(),
    })
}
