//! `sluice query` and `sluice tables`: SQL over the lake, tables named as in the pipeline.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use sluice_core::{Pipeline, Settings};
use sluice_query::{Format, Lake, TableLocation, render};

use crate::cli::{DEFAULT_DATA_DIR, LakeArgs, OutputFormat};

/// Runs `sql` and prints the result in `format`.
pub async fn run_query(args: &LakeArgs, sql: &str, format: OutputFormat) -> Result<()> {
    let lake = open(args).await?;
    let batches = lake.sql(sql).await?;
    let format = match format {
        OutputFormat::Table => Format::Table,
        OutputFormat::Csv => Format::Csv,
        OutputFormat::Json => Format::Json,
    };
    let text = render(&batches, format)?;
    print!("{text}");
    if format == Format::Table {
        println!();
    }
    Ok(())
}

/// Prints every table with its format, location, version and file count, and under it each
/// change of its columns.
pub async fn run_tables(args: &LakeArgs) -> Result<()> {
    let lake = open(args).await?;
    println!(
        "{:<24} {:<8} {:>8} {:>7}  uri",
        "table", "format", "version", "files"
    );
    for table in lake.tables() {
        println!(
            "{:<24} {:<8} {:>8} {:>7}  {}",
            table.name, table.format, table.version, table.files, table.uri
        );
        for change in &table.schema_changes {
            let added: Vec<String> = (change.added.iter())
                .map(|(name, ty)| format!("{name} ({ty})"))
                .collect();
            let at = chrono::DateTime::from_timestamp_millis(change.at_ms)
                .map_or_else(|| change.at_ms.to_string(), |at| at.to_rfc3339());
            println!("  schema change at {at}: added {}", added.join(", "));
        }
    }
    Ok(())
}

async fn open(args: &LakeArgs) -> Result<Lake> {
    let (tables, storage_options) = match &args.pipeline {
        Some(file) => {
            let pipeline = Pipeline::load(file)?;
            let tables = TableLocation::of_pipeline(&pipeline);
            (
                tables,
                sluice_lake::location::storage_options(&pipeline.storage_options),
            )
        }
        None => {
            let default = Path::new(DEFAULT_DATA_DIR).join("lake");
            let lake = args
                .lake
                .clone()
                .unwrap_or_else(|| default.display().to_string());
            let storage_options = sluice_lake::location::storage_options(&Settings::default());
            (discover(&lake, &storage_options).await?, storage_options)
        }
    };
    Ok(Lake::open(&tables, &storage_options).await?)
}

/// Every table directly under `lake` (a directory or an s3:// prefix), named after its
/// directory.
async fn discover(
    lake: &str,
    storage_options: &HashMap<String, String>,
) -> Result<Vec<TableLocation>> {
    let local = !lake.contains("://") || lake.starts_with("file://");
    if local && !Path::new(lake.trim_start_matches("file://")).is_dir() {
        bail!(
            "no lake at {lake} (run `sluice up`, or pass --pipeline FILE or --lake DIR|s3://BUCKET/PREFIX)"
        );
    }
    let tables = sluice_lake::location::discover_tables(lake, storage_options).await?;
    if tables.is_empty() {
        bail!("no tables under {lake} yet");
    }
    Ok(tables)
}
