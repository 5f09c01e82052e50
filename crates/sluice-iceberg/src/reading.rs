//! An Iceberg table read back through its catalog, for `sluice query` and `sluice verify`: its
//! current snapshot's live data files (from the manifests), its columns as Arrow, its
//! progress; and the checks `verify` makes of its files.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use futures::TryStreamExt;
use iceberg::spec::{ManifestFile, ManifestList, PrimitiveType, Snapshot, Type};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_core::config::Catalog as CatalogConfig;
use sluice_lake::LakeError;
use sluice_lake::audit::{BadFile, read_footers};
use sluice_lake::evolution::{SchemaChange, schema_history};
use url::Url;

use crate::catalog::connect;
use crate::failed;
use crate::progress::Progress;
use crate::storage::{location_in, path_in_store, store_of};

/// A data file of the current snapshot.
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// Its absolute location.
    pub location: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its rows.
    pub records: u64,
}

/// An Iceberg table at its current snapshot.
pub struct IcebergSnapshot {
    /// The table as the catalog holds it.
    pub table: Table,
    /// The current snapshot's sequence number (0 before the first commit).
    pub version: u64,
    /// Its live data files.
    pub files: Vec<LiveFile>,
    /// Each source partition's progress.
    pub progress: Progress,
    /// The store holding the table's location.
    store: Arc<dyn ObjectStore>,
}

impl IcebergSnapshot {
    /// Loads `name` from `catalog` and lists its live data files.
    pub async fn open(
        name: &str,
        catalog: &CatalogConfig,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self, LakeError> {
        let connected = connect(catalog, storage_options)
            .await
            .map_err(failed(name, "reach its catalog"))?;
        let ident = TableIdent::new(NamespaceIdent::new(catalog.namespace.clone()), name.into());
        let table = connected
            .load_table(&ident)
            .await
            .map_err(failed(name, "load it from its catalog"))?;
        let metadata = table.metadata();
        let progress = Progress::of(metadata).map_err(failed(name, "read its progress"))?;
        let (version, files) = match metadata.current_snapshot() {
            None => (0, Vec::new()),
            Some(snapshot) => {
                let io = table.file_io();
                let list = manifest_files(&table, snapshot)
                    .await
                    .map_err(failed(name, "read its manifest list"))?;
                let mut files = Vec::new();
                for manifest in &list {
                    let manifest = manifest
                        .load_manifest(io)
                        .await
                        .map_err(failed(name, "read a manifest"))?;
                    files.extend(manifest.entries().iter().filter(|e| e.is_alive()).map(|e| {
                        let file = e.data_file();
                        LiveFile {
                            location: file.file_path().to_string(),
                            size: file.file_size_in_bytes(),
                            records: file.record_count(),
                        }
                    }));
                }
                (snapshot.sequence_number().max(0) as u64, files)
            }
        };
        let (store, _) = store_of(metadata.location(), storage_options)
            .map_err(failed(name, "reach its storage"))?;
        Ok(Self {
            table,
            version,
            files,
            progress,
            store,
        })
    }

    /// The table's location.
    pub fn location(&self) -> &str {
        self.table.metadata().location()
    }

    /// The table's current columns as Arrow, as sluice writes them.
    pub fn arrow_schema(&self) -> Result<SchemaRef, String> {
        arrow_schema_of(&self.table)
    }

    /// The columns the table gained, oldest change first.
    pub fn schema_changes(&self) -> Vec<SchemaChange> {
        schema_history(self.table.metadata().properties())
    }

    /// The live data files that are missing or whose Parquet footer cannot be read.
    pub async fn check_files(&self) -> Vec<BadFile> {
        let mut bad = Vec::new();
        let mut paths = Vec::new();
        for file in &self.files {
            match split_location(self.location(), &file.location) {
                Some(path) => paths.push(path),
                None => bad.push(BadFile {
                    path: file.location.clone(),
                    error: format!("not in the table's store at {}", self.location()),
                }),
            }
        }
        bad.extend(read_footers(self.store.clone(), &paths).await);
        bad
    }

    /// Data files under the table's `data/` that no snapshot of the table references (written
    /// by a commit that never landed) and are older than `min_age`; with `delete`, removed.
    /// Files of expired snapshots are not counted: sluice does not expire snapshots yet.
    pub async fn uncommitted_files(
        &self,
        min_age: std::time::Duration,
        delete: bool,
    ) -> Result<Vec<String>, LakeError> {
        let name = self.table.identifier().name().to_string();
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
        unreached_files(&self.table, &self.store, &["data"], cutoff, delete)
            .await
            .map_err(failed(&name, "find the data files no snapshot reaches"))
    }
}

/// The files under the table's `dirs` older than `cutoff` that `table` does not reach
/// ([`reached_files`]), by location; deleted when `delete`. `store` is the store of the table's
/// location ([`store_of`]).
pub(crate) async fn unreached_files(
    table: &Table,
    store: &Arc<dyn ObjectStore>,
    dirs: &[&str],
    cutoff: chrono::DateTime<chrono::Utc>,
    delete: bool,
) -> Result<Vec<String>, String> {
    let reached = reached_files(table).await.map_err(|e| e.to_string())?;
    let location = table.metadata().location().trim_end_matches('/');
    let mut found = Vec::new();
    for dir in dirs {
        let prefix = path_in_store(&format!("{location}/{dir}")).map_err(|e| e.to_string())?;
        let listed: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        for meta in listed.into_iter().filter(|m| m.last_modified < cutoff) {
            let file = location_in(location, &meta.location).map_err(|e| e.to_string())?;
            if reached.contains(&file) {
                continue;
            }
            if delete {
                store
                    .delete(&meta.location)
                    .await
                    .map_err(|e| format!("{file}: {e}"))?;
            }
            found.push(file);
        }
    }
    Ok(found)
}

/// The table's current columns as Arrow, as sluice writes them.
pub(crate) fn arrow_schema_of(table: &Table) -> Result<SchemaRef, String> {
    let fields = arrow_fields(table.metadata().current_schema().as_struct().fields())?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Every file the table reaches: its current metadata and metadata log, and each snapshot's
/// manifest list, manifests and live data files (what reading that snapshot, time travel
/// included, opens; a `DELETED` entry only records that a file left).
pub(crate) async fn reached_files(table: &Table) -> iceberg::Result<HashSet<String>> {
    let metadata = table.metadata();
    let mut reached: HashSet<String> = metadata
        .metadata_log()
        .iter()
        .map(|log| log.metadata_file.clone())
        .chain(table.metadata_location().map(String::from))
        .collect();
    let mut manifests = HashMap::new();
    for snapshot in metadata.snapshots() {
        reached.insert(snapshot.manifest_list().to_string());
        for manifest in manifest_files(table, snapshot).await? {
            manifests.insert(manifest.manifest_path.clone(), manifest);
        }
    }
    for (path, manifest) in manifests {
        let loaded = manifest.load_manifest(table.file_io()).await?;
        reached.extend(
            loaded
                .entries()
                .iter()
                .filter(|entry| entry.is_alive())
                .map(|entry| entry.data_file().file_path().to_string()),
        );
        reached.insert(path);
    }
    Ok(reached)
}

/// The manifests `snapshot`'s manifest list names.
pub(crate) async fn manifest_files(
    table: &Table,
    snapshot: &Snapshot,
) -> iceberg::Result<Vec<ManifestFile>> {
    let list = table
        .file_io()
        .new_input(snapshot.manifest_list())?
        .read()
        .await?;
    let list = ManifestList::parse_with_version(&list, table.metadata().format_version())?;
    Ok(list.entries().to_vec())
}

/// The path of `location` in the store of `table` (the table's own location), when it is in
/// that store.
fn split_location(table: &str, location: &str) -> Option<Path> {
    let (table_root, _) = root_and_path(table)?;
    let (root, path) = root_and_path(location)?;
    (root == table_root).then_some(path)
}

fn root_and_path(location: &str) -> Option<(String, Path)> {
    let url = Url::parse(location).ok()?;
    let path = Path::from_url_path(url.path()).ok()?;
    Some((format!("{}://{}", url.scheme(), url.authority()), path))
}

pub(crate) fn arrow_fields(fields: &[iceberg::spec::NestedFieldRef]) -> Result<Fields, String> {
    fields
        .iter()
        .map(|field| {
            Ok(Arc::new(Field::new(
                &field.name,
                arrow_type(&field.field_type)?,
                !field.required,
            )))
        })
        .collect()
}

/// The Arrow type sluice writes an Iceberg type as (the inverse of [`crate::schema`]'s
/// mapping).
fn arrow_type(ty: &Type) -> Result<DataType, String> {
    Ok(match ty {
        Type::Primitive(primitive) => match primitive {
            PrimitiveType::Boolean => DataType::Boolean,
            PrimitiveType::Int => DataType::Int32,
            PrimitiveType::Long => DataType::Int64,
            PrimitiveType::Float => DataType::Float32,
            PrimitiveType::Double => DataType::Float64,
            PrimitiveType::String => DataType::Utf8,
            PrimitiveType::Binary => DataType::Binary,
            PrimitiveType::Date => DataType::Date32,
            PrimitiveType::Timestamptz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            PrimitiveType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PrimitiveType::Decimal { precision, scale } => DataType::Decimal128(
                u8::try_from(*precision).map_err(|e| e.to_string())?,
                i8::try_from(*scale).map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("sluice does not read Iceberg {other} columns")),
        },
        Type::Struct(children) => DataType::Struct(arrow_fields(children.fields())?),
        Type::List(list) => DataType::List(Arc::new(Field::new(
            "item",
            arrow_type(&list.element_field.field_type)?,
            !list.element_field.required,
        ))),
        Type::Map(map) => DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("keys", arrow_type(&map.key_field.field_type)?, false),
                    Field::new(
                        "values",
                        arrow_type(&map.value_field.field_type)?,
                        !map.value_field.required,
                    ),
                ])),
                false,
            )),
            false,
        ),
    })
}
