//! `sluice compact` for an Iceberg table: a partition's small data files rewritten as one, in a
//! **replace** snapshot that marks the old files deleted and adds the new one, with the rows
//! counted equal on both sides before anything is committed.
//!
//! Committing a compaction as an append leaves the old files live beside the new one and
//! doubles their rows (iceberg-rust's own PR #2620 thread shows it); iceberg 0.10.1 has no
//! rewrite action, so the snapshot is built here from the crate's public writers: one manifest
//! holding every live file (`EXISTING`), the replaced ones (`DELETED`) and the new ones
//! (`ADDED`), its manifest list, and the snapshot with operation `replace`, committed by
//! compare-and-set in the SQL catalog. Its summary carries the table's `sluice.progress`
//! unchanged, so a running stream's next commit (which then finds the table moved) checks its
//! offsets, passes, and lands on top. A compaction that finds the table moved by a stream
//! builds its snapshot again on the new state with the same new files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;

use arrow::array::RecordBatch;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use iceberg::spec::{
    DataFile, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot, Summary,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, NamespaceIdent, TableIdent};
use object_store::ObjectStoreExt;
use sluice_core::config::Catalog as CatalogConfig;
use sluice_lake::LakeError;
use sluice_lake::compact::Compaction;

use crate::catalog::{MetadataSwap, swapping_catalog};
use crate::data_files::{DataFileWriter, Partitioning};
use crate::failed;
use crate::progress::Progress;
use crate::reading::{arrow_schema_of, manifest_files};
use crate::schema::with_field_ids;
use crate::storage::{path_in_store, store_of};

/// How many times the snapshot is built again on a table a stream moved meanwhile.
const REBASES: usize = 20;

/// A live data file with what an `EXISTING` or `DELETED` entry must keep of it.
#[derive(Clone)]
struct Live {
    file: DataFile,
    snapshot_id: i64,
    sequence_number: i64,
    file_sequence_number: Option<i64>,
}

/// Compacts the Iceberg table `name` of `catalog`: in each partition, the files smaller than
/// `target_size`, when there are two or more, become one.
pub async fn compact(
    name: &str,
    catalog: &CatalogConfig,
    storage_options: &HashMap<String, String>,
    target_size: NonZeroU64,
) -> Result<Compaction, LakeError> {
    let connected = swapping_catalog(catalog, storage_options)
        .await
        .map_err(failed(name, "reach its catalog"))?;
    let ident = TableIdent::new(NamespaceIdent::new(catalog.namespace.clone()), name.into());
    let mut table = connected
        .load_table(&ident)
        .await
        .map_err(failed(name, "load it from its catalog"))?;
    let live = live_files(&table)
        .await
        .map_err(failed(name, "read its manifests"))?;
    let groups = small_files_by_partition(&table, &live, target_size.get());
    let mut done = Compaction {
        files_removed: 0,
        files_added: 0,
        bytes_removed: 0,
        bytes_added: 0,
        partitions: groups.len() as u64,
        version: table
            .metadata()
            .current_snapshot()
            .map(|s| s.sequence_number() as u64),
        snapshots_expired: None,
        files_expired: None,
    };
    if groups.is_empty() {
        return Ok(done);
    }
    let writer = writer_for(&table, storage_options).map_err(failed(name, "prepare its writer"))?;
    let partitioning = partitioning_of(&table).map_err(failed(name, "read its partitioning"))?;
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for group in groups.values() {
        let batches = read_rows(&writer, group)
            .await
            .map_err(failed(name, "read the files to compact"))?;
        let parts = partitioning
            .split(&batches)
            .map_err(failed(name, "split rows by partition"))?;
        for (key, rows) in parts {
            added.push(
                writer
                    .write(&partitioning, &key, &rows)
                    .await
                    .map_err(failed(name, "write a compacted file (nothing committed)"))?,
            );
        }
        removed.extend(group.iter().cloned());
    }
    let rows_removed: u64 = removed.iter().map(|l| l.file.record_count()).sum();
    let rows_added: u64 = added.iter().map(DataFile::record_count).sum();
    if rows_removed != rows_added {
        return Err(failed(name, "compact (nothing committed)")(format!(
            "the {} replaced files hold {rows_removed} rows, the {} new ones {rows_added}",
            removed.len(),
            added.len()
        )));
    }
    for _ in 0..REBASES {
        match commit_replace(&connected, &table, &removed, &added).await {
            Ok(Some(committed)) => {
                done.files_removed = removed.len() as u64;
                done.files_added = added.len() as u64;
                done.bytes_removed = removed.iter().map(|l| l.file.file_size_in_bytes()).sum();
                done.bytes_added = added.iter().map(DataFile::file_size_in_bytes).sum();
                done.version = Some(committed);
                return Ok(done);
            }
            Ok(None) => {
                table = connected
                    .load_table(&ident)
                    .await
                    .map_err(failed(name, "reload it"))?;
            }
            Err(err) => return Err(failed(name, "commit the compaction")(err)),
        }
    }
    Err(failed(name, "commit the compaction")(format!(
        "the table moved under {REBASES} attempts in a row"
    )))
}

/// Every live data file of the current snapshot.
async fn live_files(table: &Table) -> iceberg::Result<Vec<Live>> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let mut live = Vec::new();
    for manifest in manifest_files(table, snapshot).await? {
        let manifest = manifest.load_manifest(table.file_io()).await?;
        for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
            live.push(Live {
                file: entry.data_file().clone(),
                snapshot_id: entry.snapshot_id().unwrap_or(snapshot.snapshot_id()),
                sequence_number: entry
                    .sequence_number()
                    .unwrap_or(snapshot.sequence_number()),
                file_sequence_number: entry.file_sequence_number,
            });
        }
    }
    Ok(live)
}

/// The files smaller than `target` of each partition holding two or more of them.
fn small_files_by_partition(
    table: &Table,
    live: &[Live],
    target: u64,
) -> BTreeMap<String, Vec<Live>> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let mut groups: BTreeMap<String, Vec<Live>> = BTreeMap::new();
    for file in live.iter().filter(|l| l.file.file_size_in_bytes() < target) {
        let key = spec.partition_to_path(file.file.partition(), metadata.current_schema().clone());
        groups.entry(key).or_default().push(file.clone());
    }
    groups.retain(|_, files| files.len() > 1);
    groups
}

fn writer_for(
    table: &Table,
    storage_options: &HashMap<String, String>,
) -> Result<DataFileWriter, String> {
    let metadata = table.metadata();
    let data_location = format!("{}/data", metadata.location().trim_end_matches('/'));
    let (store, data_path) =
        store_of(&data_location, storage_options).map_err(|e| e.to_string())?;
    let schema = with_field_ids(
        &arrow_schema_of(table)?.as_ref().clone(),
        metadata.current_schema(),
    )?;
    Ok(DataFileWriter {
        store,
        data_path,
        data_location,
        schema,
    })
}

fn partitioning_of(table: &Table) -> Result<Partitioning, String> {
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let source = spec.fields().first().map(|f| f.source_id);
    let column = source.and_then(|id| metadata.current_schema().field_by_id(id));
    Partitioning::new(spec, column.map_or("", |field| field.name.as_str()))
}

/// The rows of `files`, read with sluice's own Parquet reader.
async fn read_rows(writer: &DataFileWriter, files: &[Live]) -> Result<Vec<RecordBatch>, String> {
    let mut batches = Vec::new();
    for live in files {
        let path = path_in_store(live.file.file_path()).map_err(|e| e.to_string())?;
        let bytes = writer
            .store
            .get(&path)
            .await
            .map_err(|e| format!("{}: {e}", live.file.file_path()))?
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", live.file.file_path()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| format!("{}: {e}", live.file.file_path()))?;
        let mut rows = 0;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{}: {e}", live.file.file_path()))?;
            rows += batch.num_rows() as u64;
            batches.push(batch);
        }
        if rows != live.file.record_count() {
            return Err(format!(
                "{} holds {rows} rows, its manifest entry says {}",
                live.file.file_path(),
                live.file.record_count()
            ));
        }
    }
    Ok(batches)
}

/// Commits the replace snapshot on `table`'s state: `Ok(None)` when the table moved (build it
/// again on the new state), `Ok(Some(sequence number))` when it landed.
async fn commit_replace(
    catalog: &Arc<dyn MetadataSwap>,
    table: &Table,
    removed: &[Live],
    added: &[DataFile],
) -> Result<Option<u64>, String> {
    let metadata = table.metadata();
    let live = live_files(table).await.map_err(|e| e.to_string())?;
    let replaced: HashSet<&str> = removed.iter().map(|l| l.file.file_path()).collect();
    let still_live = live
        .iter()
        .filter(|l| replaced.contains(l.file.file_path()))
        .count();
    if still_live != replaced.len() {
        return Err(format!(
            "{} of the {} files to replace are no longer live: another compaction ran",
            replaced.len() - still_live,
            replaced.len()
        ));
    }
    let snapshot_id = new_snapshot_id(table);
    let sequence_number = metadata.next_sequence_number();
    let commit = uuid::Uuid::now_v7();
    let location = metadata.location().trim_end_matches('/');
    let io = table.file_io();
    let manifest_path = format!("{location}/metadata/{commit}-m0.avro");
    let mut manifest = ManifestWriterBuilder::new(
        io.new_output(&manifest_path).map_err(|e| e.to_string())?,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        metadata.default_partition_spec().as_ref().clone(),
    )
    .build_v2_data();
    for entry in &live {
        let (file, seq, file_seq) = (
            entry.file.clone(),
            entry.sequence_number,
            entry.file_sequence_number,
        );
        match replaced.contains(entry.file.file_path()) {
            true => manifest.add_delete_file(file, seq, file_seq),
            false => manifest.add_existing_file(file, entry.snapshot_id, seq, file_seq),
        }
        .map_err(|e| e.to_string())?;
    }
    for file in added {
        manifest
            .add_file(file.clone(), sequence_number)
            .map_err(|e| e.to_string())?;
    }
    let manifest = manifest
        .write_manifest_file()
        .await
        .map_err(|e| e.to_string())?;
    let list_path = format!("{location}/metadata/snap-{snapshot_id}-0-{commit}.avro");
    let parent = metadata.current_snapshot_id();
    let mut list = ManifestListWriter::v2(
        io.new_output(&list_path)
            .map_err(|e| e.to_string())?
            .writer()
            .await
            .map_err(|e| e.to_string())?,
        snapshot_id,
        parent,
        sequence_number,
    );
    list.add_manifests(std::iter::once(manifest))
        .map_err(|e| e.to_string())?;
    list.close().await.map_err(|e| e.to_string())?;

    let total_records: u64 = live.iter().map(|l| l.file.record_count()).sum();
    let mut summary = Progress::of(metadata)?.summary();
    summary.extend([
        ("added-data-files".to_string(), added.len().to_string()),
        ("deleted-data-files".to_string(), removed.len().to_string()),
        (
            "added-records".to_string(),
            added
                .iter()
                .map(DataFile::record_count)
                .sum::<u64>()
                .to_string(),
        ),
        (
            "deleted-records".to_string(),
            removed
                .iter()
                .map(|l| l.file.record_count())
                .sum::<u64>()
                .to_string(),
        ),
        ("total-records".to_string(), total_records.to_string()),
        (
            "total-data-files".to_string(),
            (live.len() - removed.len() + added.len()).to_string(),
        ),
    ]);
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent)
        .with_sequence_number(sequence_number)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation: Operation::Replace,
            additional_properties: summary,
        })
        .with_schema_id(metadata.current_schema_id());
    let current = table
        .metadata_location_result()
        .map_err(|e| e.to_string())?;
    let next = metadata
        .clone()
        .into_builder(Some(current.to_string()))
        .set_branch_snapshot(snapshot.build(), "main")
        .and_then(|builder| builder.build())
        .map_err(|e| e.to_string())?
        .metadata;
    let next_location = current
        .parse::<MetadataLocation>()
        .map_err(|e| e.to_string())?
        .with_next_version()
        .with_new_metadata(&next);
    next.write_to(io, &next_location)
        .await
        .map_err(|e| e.to_string())?;
    let landed = catalog
        .swap_metadata(
            table.identifier(),
            current,
            &next_location.to_string(),
            &next,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(landed.then_some(sequence_number as u64))
}

/// A snapshot id no snapshot of the table has.
fn new_snapshot_id(table: &Table) -> i64 {
    loop {
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((high ^ low) & (i64::MAX as u64)) as i64;
        if table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}
