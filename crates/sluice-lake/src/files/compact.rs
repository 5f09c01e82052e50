//! `sluice compact` on a plain-files table: the small objects of each date/hour partition read
//! back and rewritten as objects of about the target size, in one commit of the table's log
//! that adds the new objects and removes the old ones, with every source partition's progress
//! unchanged (a stream committing meanwhile is not fenced by it, nor it by the stream).
//!
//! Readers of a table format see the swap at once; readers of plain objects cannot: the new
//! objects are put before the old ones are deleted, so for that moment a listing sees the
//! rewritten rows twice (never none). `sluice verify` run in that moment reports the old
//! objects as unexpected.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use bytes::Bytes;
use deltalake::DeltaTableError;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use sluice_core::config::{FileCompression, FileFormat, FileKind};

use super::encode::ObjectEncoder;
use super::log::{self, LoggedObject};
use super::{FilesSink, FilesTable};
use crate::LakeError;
use crate::compact::Compaction;

impl FilesSink {
    /// Opens an existing plain-files table as its log describes it, for maintenance.
    pub async fn open_existing(
        name: &str,
        uri: &str,
        storage_options: &HashMap<String, String>,
    ) -> Result<Option<Self>, LakeError> {
        let Some(table) = FilesTable::open(name, uri, storage_options).await? else {
            return Ok(None);
        };
        let info = &table.latest.table;
        let format = FileFormat::from_names(&info.format, &info.compression).ok_or_else(|| {
            LakeError::Foreign {
                table: name.into(),
                uri: table.url().to_string(),
                found: format!(
                    "its log names format {:?} with compression {:?}",
                    info.format, info.compression
                ),
            }
        })?;
        let mut fields: Vec<Field> = (table.schema()?.fields().iter())
            .map(|field| field.as_ref().clone())
            .collect();
        fields.extend(
            (table.partition_columns().into_iter()).map(|(name, ty)| Field::new(name, ty, true)),
        );
        let schema = Arc::new(Schema::new(fields));
        let partition_by = info.partition_by.clone();
        Self::open_or_create(name, uri, storage_options, &schema, &partition_by, format)
            .await
            .map(Some)
    }

    /// Rewrites the objects smaller than `target_size` of each partition holding more than
    /// one, into objects of about that size, in one commit. Only objects of commits known to
    /// be published and at least `min_age` old are taken: a writer still publishing its
    /// commit must not put an object again after the compaction deleted it.
    pub async fn compact(
        &mut self,
        target_size: u64,
        min_age: std::time::Duration,
    ) -> Result<Compaction, LakeError> {
        self.read_new_entries().await?;
        let entries = log::entries_after(&self.store, None)
            .await
            .map_err(self.access_error("read the log of"))?;
        let settled = settled_objects(&entries, self.latest.published_through, min_age);
        let bins = bins(
            (log::live_objects(&entries).into_iter())
                .filter(|object| settled.contains(object.path.as_str()))
                .collect(),
            target_size,
        );
        let mut encoders = Vec::new();
        let mut removed = Vec::new();
        let mut bytes_removed = 0;
        for bin in &bins {
            let partition = partition_of(&bin[0].path).to_string();
            let mut encoder = ObjectEncoder::new(self.format, &self.object_schema)
                .map_err(|e| self.compact_error(e.into()))?;
            for object in bin {
                for batch in self.read_object(&object.path).await? {
                    encoder
                        .write(&batch)
                        .map_err(|e| self.compact_error(e.into()))?;
                }
                removed.push(object.path.clone());
                bytes_removed += object.bytes;
            }
            encoders.push((partition, encoder));
        }
        let mut compaction = Compaction {
            files_removed: removed.len() as u64,
            files_added: 0,
            bytes_removed,
            bytes_added: 0,
            partitions: count_partitions(&bins),
            version: Some(self.latest.seq),
            snapshots_expired: None,
            files_expired: None,
        };
        if bins.is_empty() {
            return Ok(compaction);
        }
        let objects = self.stage(encoders).await?;
        let entry = self.commit_entry(&objects, &[], &removed).await?;
        let commit = self.publish_commit(entry, objects).await;
        compaction.files_added = commit.files as u64;
        compaction.bytes_added = commit.bytes;
        compaction.version = Some(commit.version);
        Ok(compaction)
    }

    /// The rows of the object at `path`.
    async fn read_object(&self, path: &str) -> Result<Vec<RecordBatch>, LakeError> {
        let read = self.store.get(&Path::from(path)).await;
        let bytes = match read {
            Ok(got) => got.bytes().await,
            Err(err) => Err(err),
        }
        .map_err(|err| self.compact_error(err.into()))?;
        decode(bytes, self.format, &self.object_schema).map_err(|err| {
            self.compact_error(DeltaTableError::generic(format!(
                "cannot read {path}: {err}"
            )))
        })
    }

    fn compact_error(&self, source: DeltaTableError) -> LakeError {
        LakeError::Compact {
            table: self.name.clone(),
            source,
        }
    }
}

/// The objects of `entries` committed at least `min_age` ago, by commits up to
/// `published_through`.
fn settled_objects(
    entries: &[log::Entry],
    published_through: Option<u64>,
    min_age: std::time::Duration,
) -> std::collections::HashSet<&str> {
    let before = chrono::Utc::now().timestamp_millis() - min_age.as_millis() as i64;
    (entries.iter())
        .filter(|entry| published_through.is_some_and(|through| entry.seq <= through))
        .filter(|entry| entry.committed_at_ms <= before)
        .flat_map(|entry| entry.objects.iter().map(|object| object.path.as_str()))
        .collect()
}

/// Groups of objects to rewrite as one: per partition, the objects below `target_size`, packed
/// in the order they were added until a group reaches it; groups of one are left alone.
fn bins(objects: Vec<LoggedObject>, target_size: u64) -> Vec<Vec<LoggedObject>> {
    let mut by_partition: Vec<(String, Vec<LoggedObject>)> = Vec::new();
    for object in objects.into_iter().filter(|o| o.bytes < target_size) {
        let partition = partition_of(&object.path).to_string();
        match by_partition.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, objects)) => objects.push(object),
            None => by_partition.push((partition, vec![object])),
        }
    }
    let mut bins = Vec::new();
    for (_, objects) in by_partition {
        let mut bin: Vec<LoggedObject> = Vec::new();
        for object in objects {
            bin.push(object);
            if bin.iter().map(|o| o.bytes).sum::<u64>() >= target_size {
                bins.push(std::mem::take(&mut bin));
            }
        }
        bins.push(bin);
    }
    bins.retain(|bin| bin.len() > 1);
    bins
}

fn count_partitions(bins: &[Vec<LoggedObject>]) -> u64 {
    let mut partitions: Vec<&str> = bins.iter().map(|bin| partition_of(&bin[0].path)).collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions.len() as u64
}

/// The `date=…/hour=…` directory of an object's path.
fn partition_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Reads a plain object back into rows with `schema`.
fn decode(
    bytes: Bytes,
    format: FileFormat,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, ArrowError> {
    if format.kind == FileKind::Parquet {
        return ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|builder| builder.build())
            .map_err(|err| ArrowError::ExternalError(Box::new(err)))?
            .collect();
    }
    let text: Box<dyn Read> = match format.compression {
        FileCompression::Gzip => Box::new(flate2::read::GzDecoder::new(&bytes[..])),
        FileCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(&bytes[..])?),
        FileCompression::None | FileCompression::Snappy => Box::new(&bytes[..]),
    };
    let text = BufReader::new(text);
    if format.kind == FileKind::Csv {
        // An object written before a column was added lacks it at the end of its rows.
        arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .with_truncated_rows(true)
            .build(text)?
            .collect()
    } else {
        arrow::json::ReaderBuilder::new(schema.clone())
            .build(text)?
            .collect()
    }
}
