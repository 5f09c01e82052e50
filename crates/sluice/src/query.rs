//! `sluice query` and `sluice tables`: SQL over the lake, tables named as in the pipeline.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sluice_core::Pipeline;
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

/// Prints every table with its location, version and file count.
pub async fn run_tables(args: &LakeArgs) -> Result<()> {
    let lake = open(args).await?;
    println!("{:<24} {:>8} {:>7}  uri", "table", "version", "files");
    for table in lake.tables() {
        println!(
            "{:<24} {:>8} {:>7}  {}",
            table.name, table.version, table.files, table.uri
        );
    }
    Ok(())
}

async fn open(args: &LakeArgs) -> Result<Lake> {
    let (tables, storage_options) = match (&args.pipeline, &args.lake) {
        (Some(file), _) => {
            let pipeline = Pipeline::load(file)?;
            let tables = pipeline
                .lake_tables()
                .map(|(name, uri)| TableLocation {
                    name: name.to_string(),
                    uri: uri.to_string(),
                })
                .collect();
            (
                tables,
                sluice_lake::location::storage_options(&pipeline.storage_options),
            )
        }
        (None, Some(dir)) => (discover(dir)?, HashMap::new()),
        (None, None) => (
            discover(&Path::new(DEFAULT_DATA_DIR).join("lake"))?,
            HashMap::new(),
        ),
    };
    Ok(Lake::open(&tables, &storage_options).await?)
}

/// Every directory under `lake` that holds a Delta log, named after the directory.
fn discover(lake: &Path) -> Result<Vec<TableLocation>> {
    let entries = std::fs::read_dir(lake).with_context(|| {
        format!(
            "no lake at {} (run `sluice up`, or pass --pipeline FILE or --lake DIR)",
            lake.display()
        )
    })?;
    let mut tables = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", lake.display()))?
            .path();
        if path.join("_delta_log").is_dir()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            tables.push(TableLocation {
                name: name.to_string(),
                uri: path.display().to_string(),
            });
        }
    }
    if tables.is_empty() {
        bail!("no Delta tables under {} yet", lake.display());
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}
