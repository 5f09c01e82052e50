//! An Iceberg table as the console shows it, read through its catalog: the current snapshot's
//! live files by partition directory, and the snapshots of `main`, newest first, with their
//! operation, counts and the offsets their `sluice.progress` carries.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::TableMetadata;
use sluice_core::config::Catalog;
use sluice_iceberg::IcebergSnapshot;
use sluice_iceberg::progress::{PROGRESS_PROPERTY, Progress};

use super::{CommitInfo, HISTORY, Offset, PartitionInfo, TableDetail, TableInfo, columns};

async fn open(
    name: &str,
    catalog: &Catalog,
    storage_options: &HashMap<String, String>,
) -> Result<IcebergSnapshot, String> {
    IcebergSnapshot::open(name, catalog, storage_options)
        .await
        .map_err(|err| super::error_chain(&err))
}

/// The tables list's line of the table.
pub(super) async fn info(
    name: &str,
    catalog: &Catalog,
    storage_options: &HashMap<String, String>,
) -> Result<TableInfo, String> {
    let table = open(name, catalog, storage_options).await?;
    let metadata = table.table.metadata();
    Ok(TableInfo {
        name: name.to_string(),
        uri: table.location().to_string(),
        format: Some("iceberg"),
        up: true,
        error: None,
        version: Some(table.version),
        files: Some(table.files.len()),
        bytes: Some(table.files.iter().map(|f| f.size).sum()),
        rows: Some(table.files.iter().map(|f| f.records).sum()),
        last_commit_ms: metadata.current_snapshot().map(|s| s.timestamp_ms()),
        schema_changes: super::changes(table.schema_changes()),
    })
}

/// The table's page.
pub(super) async fn detail(
    name: &str,
    catalog: &Catalog,
    storage_options: &HashMap<String, String>,
    verifiable: bool,
) -> Result<TableDetail, String> {
    let table = open(name, catalog, storage_options).await?;
    let mut partitions: BTreeMap<String, PartitionInfo> = BTreeMap::new();
    for file in &table.files {
        let directory = file.location.rsplit('/').nth(1).unwrap_or_default();
        let partition = partitions
            .entry(directory.to_string())
            .or_insert_with(|| PartitionInfo {
                values: (directory.split_once('='))
                    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                    .into_iter()
                    .collect(),
                rows: Some(0),
                ..PartitionInfo::default()
            });
        partition.files += 1;
        partition.bytes += file.size;
        partition.rows = partition.rows.map(|rows| rows + file.records);
    }
    Ok(TableDetail {
        verifiable,
        name: name.to_string(),
        uri: table.location().to_string(),
        format: "iceberg",
        version: table.version,
        schema: columns(table.arrow_schema()?.as_ref()),
        partitions: partitions.into_values().collect(),
        history: history(table.table.metadata()),
    })
}

/// The snapshots of `main`, newest first.
fn history(metadata: &TableMetadata) -> Vec<CommitInfo> {
    let mut commits = Vec::new();
    let mut snapshot = metadata.current_snapshot();
    while let Some(current) = snapshot.filter(|_| commits.len() < HISTORY as usize) {
        let summary = current.summary();
        let count = |key: &str| {
            (summary.additional_properties.get(key)).and_then(|value| value.parse::<u64>().ok())
        };
        let progress: Progress = (summary.additional_properties.get(PROGRESS_PROPERTY))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        commits.push(CommitInfo {
            version: current.sequence_number().max(0) as u64,
            timestamp_ms: Some(current.timestamp_ms()),
            operation: summary.operation.as_str().to_string(),
            files_added: count("added-data-files").unwrap_or(0) as usize,
            files_removed: count("deleted-data-files").unwrap_or(0) as usize,
            rows_added: count("added-records").unwrap_or(0),
            bytes_added: count("added-files-size").unwrap_or(0),
            offsets: (progress.partitions())
                .map(|(topic, partition, reached)| Offset {
                    topic: topic.to_string(),
                    partition,
                    offset: reached.offset,
                })
                .collect(),
            schema_change: None,
        });
        snapshot = current
            .parent_snapshot_id()
            .and_then(|parent| metadata.snapshot_by_id(parent));
    }
    commits
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use sluice_core::config::CatalogKind;
    use sluice_iceberg::{IcebergSink, IcebergTable};
    use sluice_lake::{PartitionProgress, Sink};

    use super::*;

    #[tokio::test]
    async fn an_iceberg_table_shows_its_files_partitions_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog {
            name: "lake".into(),
            kind: CatalogKind::Sql {
                uri: format!("sqlite:///{}/catalog.db", dir.path().display()),
            },
            warehouse: format!("file://{}", dir.path().display()),
            namespace: "sluice".into(),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("_offset", DataType::Int64, true),
        ]));
        let uri = format!("file://{}/t", dir.path().display());
        let mut sink = IcebergSink::open_or_create(
            IcebergTable {
                name: "t",
                uri: &uri,
                catalog: &catalog,
                schema: &schema,
                event_time: "ts",
                partition_by: &["hour".to_string()],
            },
            &HashMap::new(),
        )
        .await
        .unwrap();
        // 2026-12-03T09:00Z and an hour later: two partitions.
        let times = [1_796_288_400_000_000, 1_796_292_000_000_000];
        for (offset, ts) in times.into_iter().enumerate() {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(TimestampMicrosecondArray::from(vec![ts]).with_timezone("UTC")),
                    Arc::new(Int64Array::from(vec![offset as i64])),
                ],
            )
            .unwrap();
            let progress = PartitionProgress {
                topic: "events".into(),
                partition: 0,
                previous: offset.checked_sub(1).map(|o| o as i64),
                last_offset: offset as i64,
                marks: Vec::new(),
            };
            sink.commit(&[batch], &[progress]).await.unwrap();
        }

        let listed = info("t", &catalog, &HashMap::new()).await.unwrap();
        assert_eq!(
            (listed.format, listed.version, listed.files, listed.rows),
            (Some("iceberg"), Some(2), Some(2), Some(2))
        );
        let page = detail("t", &catalog, &HashMap::new(), true).await.unwrap();
        let hours: Vec<&Option<String>> = page
            .partitions
            .iter()
            .map(|p| &p.values["ts_hour"])
            .collect();
        assert_eq!(
            hours,
            [
                &Some("2026-12-03-09".to_string()),
                &Some("2026-12-03-10".to_string())
            ]
        );
        let history: Vec<(u64, &str, usize, i64)> = (page.history.iter())
            .map(|c| {
                (
                    c.version,
                    c.operation.as_str(),
                    c.files_added,
                    c.offsets[0].offset,
                )
            })
            .collect();
        assert_eq!(history, [(2, "append", 1, 1), (1, "append", 1, 0)]);
        assert_eq!(page.schema[0].name, "ts");
    }
}
