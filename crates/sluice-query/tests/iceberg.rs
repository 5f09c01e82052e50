//! An Iceberg table that sluice wrote, queried through its catalog: the rows of the current
//! snapshot's data files, with the table's columns, and an empty table before the first commit.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_core::config::{Catalog, CatalogKind};
use sluice_iceberg::{IcebergSink, IcebergTable};
use sluice_lake::location::TableLocation;
use sluice_lake::{PartitionProgress, Sink};
use sluice_query::{Format, Lake, render};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("_partition", DataType::Int32, true),
        Field::new("_offset", DataType::Int64, true),
    ]))
}

fn rows(offsets: &[i64]) -> RecordBatch {
    // Two hours apart: one data file each.
    let times: Vec<i64> = offsets
        .iter()
        .map(|o| 1_796_288_400_000_000 + o * 7_200_000_000)
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            Arc::new(Int32Array::from(vec![0; offsets.len()])),
            Arc::new(Int64Array::from(offsets.to_vec())),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn an_iceberg_table_is_queried_through_its_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog {
        name: "lake".into(),
        kind: CatalogKind::Sql {
            uri: format!("sqlite:///{}/catalog.db", dir.path().display()),
        },
        warehouse: format!("file://{}/warehouse", dir.path().display()),
        namespace: "sluice".into(),
    };
    let uri = format!("file://{}/t", dir.path().display());
    let mut sink = IcebergSink::open_or_create(
        IcebergTable {
            name: "t",
            uri: &uri,
            catalog: &catalog,
            schema: &schema(),
            event_time: "ts",
            partition_by: &["date".to_string(), "hour".to_string()],
        },
        &HashMap::new(),
    )
    .await
    .unwrap();
    let location = TableLocation {
        name: "t".into(),
        uri: uri.clone(),
        catalog: Some(catalog),
    };
    let count = "select count(*) as n, max(_offset) as hi from t";

    let empty = Lake::open(std::slice::from_ref(&location), &HashMap::new())
        .await
        .unwrap();
    let counted = render(&empty.sql(count).await.unwrap(), Format::Json).unwrap();
    assert_eq!(counted.trim(), r#"{"n":0}"#);

    let progress = |previous, last_offset| PartitionProgress {
        topic: "events".into(),
        partition: 0,
        previous,
        last_offset,
        marks: Vec::new(),
    };
    sink.commit(&[rows(&[0, 1, 2])], &[progress(None, 2)])
        .await
        .unwrap();
    sink.commit(&[rows(&[3, 4])], &[progress(Some(2), 4)])
        .await
        .unwrap();

    let lake = Lake::open(&[location], &HashMap::new()).await.unwrap();
    let summary = &lake.tables()[0];
    assert_eq!(
        (summary.format, summary.version, summary.files),
        ("iceberg", 2, 5)
    );
    eprintln!(
        "DEBUG {}",
        render(
            &lake.sql("explain analyze select * from t").await.unwrap(),
            Format::Table
        )
        .unwrap()
    );
    let counted = render(&lake.sql(count).await.unwrap(), Format::Json).unwrap();
    assert_eq!(counted.trim(), r#"{"n":5,"hi":4}"#);
}
