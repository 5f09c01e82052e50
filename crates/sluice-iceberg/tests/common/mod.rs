//! What the Iceberg sink tests share: a SQL catalog (a SQLite file, the layout pyiceberg
//! shares) and a table on the local filesystem, sensor rows, and readers of what landed.
#![allow(dead_code)] // each test file uses its own part

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_core::config::{Catalog, CatalogKind};
use sluice_iceberg::{IcebergSink, IcebergTable};
use sluice_lake::{LakeError, PartitionProgress};

/// 2026-12-03T09:00:00Z in microseconds.
pub const NINE_AM: i64 = 1_796_288_400_000_000;
pub const HOUR: i64 = 3_600_000_000;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("_partition", DataType::Int32, true),
        Field::new("_offset", DataType::Int64, true),
    ]))
}

/// Rows of `partition` at `offsets`, the even ones at 09:xx and the odd ones at 10:xx.
pub fn rows(partition: i32, offsets: &[i64]) -> RecordBatch {
    let times: Vec<i64> = offsets
        .iter()
        .map(|o| NINE_AM + (o % 2) * HOUR + o)
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(
                offsets.iter().map(|o| format!("d{o}")).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            Arc::new(Float64Array::from(
                offsets.iter().map(|o| *o as f64 / 2.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int32Array::from(vec![partition; offsets.len()])),
            Arc::new(Int64Array::from(offsets.to_vec())),
        ],
    )
    .unwrap()
}

pub fn moved(partition: i32, previous: Option<i64>, last_offset: i64) -> PartitionProgress {
    PartitionProgress {
        topic: "sensor.events".into(),
        partition,
        previous,
        last_offset,
        marks: vec![("watermark", last_offset * 10)],
    }
}

pub fn catalog(dir: &Path) -> Catalog {
    Catalog {
        name: "lake".into(),
        kind: CatalogKind::Sql {
            uri: format!("sqlite:///{}/catalog.db", dir.display()),
        },
        warehouse: format!("file://{}/warehouse", dir.display()),
        namespace: "sluice".into(),
    }
}

pub async fn open_with(dir: &Path, schema: &SchemaRef) -> Result<IcebergSink, LakeError> {
    let uri = format!("file://{}/sensor_events", dir.display());
    let partition_by = ["date".to_string(), "hour".to_string()];
    IcebergSink::open_or_create(
        IcebergTable {
            name: "sensor_events",
            uri: &uri,
            catalog: &catalog(dir),
            schema,
            event_time: "ts",
            partition_by: &partition_by,
        },
        &HashMap::new(),
    )
    .await
}

pub async fn open(dir: &Path) -> IcebergSink {
    open_with(dir, &schema()).await.unwrap()
}

pub fn summary(sink: &IcebergSink, key: &str) -> String {
    let snapshot = sink.table().metadata().current_snapshot().unwrap();
    snapshot.summary().additional_properties[key].clone()
}

/// The table as `sluice query` and `verify` read it.
pub async fn snapshot_of(dir: &Path) -> sluice_iceberg::IcebergSnapshot {
    sluice_iceberg::IcebergSnapshot::open("sensor_events", &catalog(dir), &HashMap::new())
        .await
        .unwrap()
}

/// A reader of the Parquet file at `path`.
pub fn reader_of(path: impl AsRef<Path>) -> ParquetRecordBatchReaderBuilder<std::fs::File> {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap()
}

pub fn snapshots(sink: &IcebergSink) -> usize {
    sink.table().metadata().snapshots().count()
}
