//! `sluice compact`: the pipeline's tables (or some of them), each compacted in one commit that
//! changes no data (a Delta commit, a plain-files log entry, an Iceberg replace snapshot), with
//! a spinner per table on a terminal and a line per table of what changed.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::num::NonZeroU64;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_core::config::Pipeline;
use sluice_lake::compact::{Compaction, compact};

/// What to compact.
pub struct CompactOptions {
    /// The validated pipeline.
    pub pipeline: Pipeline,
    /// Storage options for the lake.
    pub storage_options: HashMap<String, String>,
    /// Table names to compact; all of the pipeline's when empty.
    pub tables: Vec<String>,
    /// Size to rewrite small files into.
    pub target_size: NonZeroU64,
    /// Plain-files tables: objects committed more recently are left alone.
    pub min_age: Duration,
    /// Iceberg tables: expire snapshots and delete unreached files older than this.
    pub retain: Option<Duration>,
}

/// The shortest `--retain`: a stream's commit writes its files a moment before the catalog
/// names them, and they must not look unreached to an expiry running then.
const MIN_RETAIN: Duration = Duration::from_secs(60);

/// `--retain`, checked.
pub fn parse_retain(text: &str) -> Result<Duration> {
    let retain = sluice_core::config::parse_duration(text)
        .map_err(|err| anyhow::anyhow!("--retain: {err}"))?;
    anyhow::ensure!(
        retain >= MIN_RETAIN,
        "--retain {text}: at least 1m, so that a running stream's commit in flight is never \
         taken for an unreached file"
    );
    Ok(retain)
}

/// Compacts each chosen table in turn; returns (table, what was done).
pub async fn run(options: &CompactOptions) -> Result<Vec<(String, Compaction)>> {
    for name in &options.tables {
        anyhow::ensure!(
            options.pipeline.lake_tables().any(|(t, _)| t == name),
            "--table {name}: the pipeline has no such table (it has: {})",
            table_names(&options.pipeline)
        );
    }
    let mut done = Vec::new();
    for (name, uri) in options.pipeline.lake_tables() {
        if !options.tables.is_empty() && !options.tables.iter().any(|t| t == name) {
            continue;
        }
        let spinner = spinner(name);
        let result = match options.pipeline.catalog_of(name) {
            Some(catalog) => compact_iceberg(options, name, catalog).await,
            None => {
                compact(
                    name,
                    uri,
                    &options.storage_options,
                    options.target_size,
                    options.min_age,
                )
                .await
            }
        }
        .with_context(|| format!("compacting table {name}"));
        spinner.finish_and_clear();
        done.push((name.to_string(), result?));
    }
    Ok(done)
}

/// Compacts an Iceberg table, then expires it when `--retain` says so.
async fn compact_iceberg(
    options: &CompactOptions,
    name: &str,
    catalog: &sluice_core::config::Catalog,
) -> Result<Compaction, sluice_lake::LakeError> {
    let storage = &options.storage_options;
    let mut done =
        sluice_iceberg::compact::compact(name, catalog, storage, options.target_size).await?;
    if let Some(retain) = options.retain {
        let expiry = sluice_iceberg::expire::expire(name, catalog, storage, retain).await?;
        done.snapshots_expired = Some(expiry.snapshots_expired as u64);
        done.files_expired = Some(expiry.files_removed.len() as u64);
    }
    Ok(done)
}

/// One line per table for people.
pub fn summary(done: &[(String, Compaction)]) -> String {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut out = String::new();
    for (table, c) in done {
        if let (Some(snapshots), Some(files)) = (c.snapshots_expired, c.files_expired) {
            out += &format!(
                "table {table}: {snapshots} snapshot(s) expired, {files} file(s) no kept snapshot reaches removed\n"
            );
        }
        let version = c.version.map_or("-".into(), |v| v.to_string());
        if c.files_removed == 0 {
            out += &format!("table {table}: nothing to compact (version {version})\n");
        } else {
            out += &format!(
                "table {table}: {} files ({:.1} MiB) rewritten as {} ({:.1} MiB) in {} partition(s); version {version}\n",
                c.files_removed,
                mib(c.bytes_removed),
                c.files_added,
                mib(c.bytes_added),
                c.partitions,
            );
        }
    }
    out
}

fn table_names(pipeline: &Pipeline) -> String {
    let names: Vec<&str> = pipeline.lake_tables().map(|(name, _)| name).collect();
    names.join(", ")
}

fn spinner(table: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} compacting {msg} [{elapsed_precise}]")
            .expect("a valid template"),
    );
    spinner.set_message(table.to_string());
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_is_at_least_a_minute() {
        assert_eq!(parse_retain("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_retain("1m").unwrap(), MIN_RETAIN);
        let err = parse_retain("30s").unwrap_err().to_string();
        assert!(err.starts_with("--retain 30s: at least 1m"), "{err}");
        assert!(parse_retain("soon").is_err());
    }
}
