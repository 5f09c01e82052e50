//! What the console shows of the lake's tables, read-only: per table its version, files, bytes,
//! rows and last commit; for one table its columns, its date/hour partitions and its latest
//! commits with what each did and which source offsets it carried. Delta tables are read from
//! their log; plain-files tables from sluice's own log under `_sluice/log`; Iceberg tables
//! through their catalog.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use arrow::datatypes::{DataType, Schema};
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow as _;
use serde::Serialize;
use sluice_lake::evolution::{SchemaChange, schema_history};
use sluice_lake::files::FilesTable;
use sluice_lake::files::log::{Entry, live_objects};
use sluice_lake::table::{Existing, open_for_reading};
use sluice_query::TableLocation;

mod delta_log;
mod iceberg;

/// How many commits a table's page lists, newest first.
const HISTORY: u64 = 50;

/// How long reading one table may take before it shows as down: a store that does not answer
/// is otherwise retried for minutes.
pub(crate) const TABLE_LIMIT: Duration = Duration::from_secs(10);

/// A table as the tables list shows it; `error` instead of figures when it cannot be read.
#[derive(Debug, Serialize, Default)]
pub(crate) struct TableInfo {
    name: String,
    uri: String,
    format: Option<&'static str>,
    up: bool,
    error: Option<String>,
    version: Option<u64>,
    files: Option<usize>,
    bytes: Option<u64>,
    rows: Option<u64>,
    last_commit_ms: Option<i64>,
    schema_changes: Vec<ChangeInfo>,
}

/// One change of a table's columns.
#[derive(Debug, Serialize)]
struct ChangeInfo {
    at_ms: i64,
    added: Vec<Column>,
}

/// One column.
#[derive(Debug, Serialize)]
pub(crate) struct Column {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) data_type: String,
    pub(crate) nullable: bool,
}

/// One table's page.
#[derive(Debug, Serialize)]
pub(crate) struct TableDetail {
    /// Whether `sluice verify` checks it: a stream's table (a window table is not).
    verifiable: bool,
    name: String,
    uri: String,
    format: &'static str,
    version: u64,
    schema: Vec<Column>,
    partitions: Vec<PartitionInfo>,
    history: Vec<CommitInfo>,
}

/// One date/hour partition of a table.
#[derive(Debug, Serialize, Default)]
struct PartitionInfo {
    values: BTreeMap<String, Option<String>>,
    files: usize,
    rows: Option<u64>,
    bytes: u64,
}

/// One commit of a table.
#[derive(Debug, Serialize, Default, PartialEq)]
pub(crate) struct CommitInfo {
    pub(crate) version: u64,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) operation: String,
    pub(crate) files_added: usize,
    pub(crate) files_removed: usize,
    pub(crate) rows_added: u64,
    pub(crate) bytes_added: u64,
    pub(crate) offsets: Vec<Offset>,
    pub(crate) schema_change: Option<String>,
}

/// A source partition's offset as a commit records it.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Offset {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Opens the table at `location`, with a message fit for the page when it cannot be.
async fn open(
    location: &TableLocation,
    storage_options: &HashMap<String, String>,
) -> Result<Existing, String> {
    let TableLocation { name, uri, .. } = location;
    open_for_reading(name, uri, storage_options)
        .await
        .map_err(|err| match err.is_not_created() {
            true => {
                format!("table {name} at {uri} does not exist yet (no Delta log, no _sluice/log)")
            }
            false => error_chain(&err),
        })
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Many errors repeat their cause in their own message already.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Every table of `locations`, each with its figures or why it cannot be read.
pub(crate) async fn list(
    locations: &[TableLocation],
    storage_options: &HashMap<String, String>,
) -> Vec<TableInfo> {
    futures::future::join_all(locations.iter().map(|location| async move {
        let info = within_limit(async {
            if let Some(catalog) = &location.catalog {
                return iceberg::info(&location.name, catalog, storage_options).await;
            }
            match open(location, storage_options).await? {
                Existing::Delta(_, table) => delta_info(&location.name, &table).await,
                Existing::Files(table) => files_info(&location.name, &table).await,
            }
        });
        match info.await {
            Ok(info) => info,
            Err(error) => TableInfo {
                name: location.name.clone(),
                uri: location.uri.clone(),
                error: Some(error),
                ..TableInfo::default()
            },
        }
    }))
    .await
}

/// The page of the table at `location`; `verifiable` when `sluice verify` checks it.
pub(crate) async fn detail(
    location: &TableLocation,
    storage_options: &HashMap<String, String>,
    verifiable: bool,
) -> Result<TableDetail, String> {
    within_limit(async {
        if let Some(catalog) = &location.catalog {
            return iceberg::detail(&location.name, catalog, storage_options, verifiable).await;
        }
        match open(location, storage_options).await? {
            Existing::Delta(_, table) => delta_detail(&location.name, &table, verifiable).await,
            Existing::Files(table) => files_detail(&location.name, &table, verifiable).await,
        }
    })
    .await
}

/// `read`, or an error once it took [`TABLE_LIMIT`].
async fn within_limit<T>(read: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    (tokio::time::timeout(TABLE_LIMIT, read).await).unwrap_or_else(|_| {
        Err(format!(
            "no answer from its store within {} s",
            TABLE_LIMIT.as_secs()
        ))
    })
}

fn columns(schema: &Schema) -> Vec<Column> {
    (schema.fields().iter())
        .map(|field| Column {
            name: field.name().clone(),
            data_type: field.data_type().to_string(),
            nullable: field.is_nullable(),
        })
        .collect()
}

fn changes(history: Vec<SchemaChange>) -> Vec<ChangeInfo> {
    (history.into_iter())
        .map(|change| ChangeInfo {
            at_ms: change.at_ms,
            added: (change.added.into_iter())
                .map(|(name, data_type)| Column {
                    name,
                    data_type,
                    nullable: true,
                })
                .collect(),
        })
        .collect()
}

/// The files of a Delta table's current version, by partition.
fn delta_partitions(table: &DeltaTable) -> Result<Vec<PartitionInfo>, String> {
    let snapshot = table.snapshot().map_err(|err| error_chain(&err))?;
    let mut partitions: BTreeMap<Vec<(String, Option<String>)>, PartitionInfo> = BTreeMap::new();
    for file in snapshot.log_data().iter() {
        let values: BTreeMap<String, Option<String>> =
            file.partition_values_map().into_iter().collect();
        let partition = partitions
            .entry(values.clone().into_iter().collect())
            .or_insert_with(|| PartitionInfo {
                values,
                rows: Some(0),
                ..PartitionInfo::default()
            });
        partition.files += 1;
        partition.bytes += file.size() as u64;
        partition.rows = partition
            .rows
            .zip(file.num_records())
            .map(|(sum, rows)| sum + rows as u64);
    }
    Ok(partitions.into_values().rev().collect())
}

async fn delta_info(name: &str, table: &DeltaTable) -> Result<TableInfo, String> {
    let snapshot = table.snapshot().map_err(|err| error_chain(&err))?;
    let version = snapshot.version();
    let partitions = delta_partitions(table)?;
    let latest = delta_log::commits(table, version, 1).await?;
    Ok(TableInfo {
        name: name.to_string(),
        uri: table.table_url().to_string(),
        format: Some("delta"),
        up: true,
        error: None,
        version: Some(version),
        files: Some(partitions.iter().map(|p| p.files).sum()),
        bytes: Some(partitions.iter().map(|p| p.bytes).sum()),
        rows: partitions.iter().map(|p| p.rows).sum(),
        last_commit_ms: latest.first().and_then(|c| c.timestamp_ms),
        schema_changes: changes(schema_history(snapshot.metadata().configuration())),
    })
}

async fn delta_detail(
    name: &str,
    table: &DeltaTable,
    verifiable: bool,
) -> Result<TableDetail, String> {
    let snapshot = table.snapshot().map_err(|err| error_chain(&err))?;
    let version = snapshot.version();
    let schema: Schema = (snapshot.schema().as_ref())
        .try_into_arrow()
        .map_err(|err: arrow::error::ArrowError| err.to_string())?;
    Ok(TableDetail {
        verifiable,
        name: name.to_string(),
        uri: table.table_url().to_string(),
        format: "delta",
        version,
        schema: columns(&schema),
        partitions: delta_partitions(table)?,
        history: delta_log::commits(table, version, HISTORY).await?,
    })
}

/// The live objects of a plain-files table, by the partition their path names.
fn files_partitions(entries: &[Entry]) -> Vec<PartitionInfo> {
    let mut partitions: BTreeMap<String, PartitionInfo> = BTreeMap::new();
    for object in live_objects(entries) {
        let directory = object.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let partition = partitions
            .entry(directory.to_string())
            .or_insert_with(|| PartitionInfo {
                values: (directory.split('/'))
                    .filter_map(|part| part.split_once('='))
                    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                    .collect(),
                rows: Some(0),
                ..PartitionInfo::default()
            });
        partition.files += 1;
        partition.bytes += object.bytes;
        partition.rows = partition.rows.map(|rows| rows + object.rows);
    }
    partitions.into_values().rev().collect()
}

async fn files_info(name: &str, table: &FilesTable) -> Result<TableInfo, String> {
    let entries = table.entries().await.map_err(|err| error_chain(&err))?;
    let partitions = files_partitions(&entries);
    Ok(TableInfo {
        name: name.to_string(),
        uri: table.url().to_string(),
        format: Some(format_name(&table.latest.table.format)),
        up: true,
        error: None,
        version: Some(table.latest.seq),
        files: Some(partitions.iter().map(|p| p.files).sum()),
        bytes: Some(partitions.iter().map(|p| p.bytes).sum()),
        rows: partitions.iter().map(|p| p.rows).sum(),
        last_commit_ms: Some(table.latest.committed_at_ms),
        schema_changes: changes(table.latest.table.changes.clone()),
    })
}

async fn files_detail(
    name: &str,
    table: &FilesTable,
    verifiable: bool,
) -> Result<TableDetail, String> {
    let entries = table.entries().await.map_err(|err| error_chain(&err))?;
    let mut schema = columns(table.schema().map_err(|err| error_chain(&err))?.as_ref());
    schema.extend(
        (table.partition_columns().into_iter()).map(|(name, ty): (String, DataType)| Column {
            name,
            data_type: ty.to_string(),
            nullable: false,
        }),
    );
    let history = (entries.iter().rev().take(HISTORY as usize))
        .map(|entry| CommitInfo {
            version: entry.seq,
            timestamp_ms: Some(entry.committed_at_ms),
            operation: match entry.removed.is_empty() {
                true => "append".into(),
                false => "compact".into(),
            },
            files_added: entry.objects.len(),
            files_removed: entry.removed.len(),
            rows_added: entry.objects.iter().map(|o| o.rows).sum(),
            bytes_added: entry.objects.iter().map(|o| o.bytes).sum(),
            offsets: (entry.progress.iter())
                .filter_map(|(key, progress)| {
                    let (topic, partition) = key.rsplit_once('/')?;
                    Some(Offset {
                        topic: topic.to_string(),
                        partition: partition.parse().ok()?,
                        offset: progress.offset,
                    })
                })
                .collect(),
            schema_change: None,
        })
        .collect();
    Ok(TableDetail {
        verifiable,
        name: name.to_string(),
        uri: table.url().to_string(),
        format: format_name(&table.latest.table.format),
        version: table.latest.seq,
        schema,
        partitions: files_partitions(&entries),
        history,
    })
}

/// The format a plain-files log records, as a static name.
fn format_name(format: &str) -> &'static str {
    match format {
        "parquet" => "parquet",
        "csv" => "csv",
        _ => "jsonl",
    }
}
