//! A plain-files table whose columns grew, queried in each format: rows written before a
//! column was added read null there (a CSV object's shorter rows, a JSON line without the key, a
//! Parquet file without the column), rows after read their value, and `sluice tables` shows
//! the change.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_core::config::{FileCompression, FileFormat, FileKind};
use sluice_lake::location::TableLocation;
use sluice_lake::{FilesSink, PartitionProgress, Sink};
use sluice_query::{Format, Lake, render};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new("date", DataType::Date32, true),
        Field::new("hour", DataType::Int32, true),
    ]))
}

/// Rows at `offsets` in hour 9 of 2026-12-03, with a `site` column (`s<offset>`) when `site`.
fn rows(offsets: &[i64], site: bool) -> RecordBatch {
    let mut fields = schema().fields().to_vec();
    let mut columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(StringArray::from(
            offsets.iter().map(|o| format!("d,{o}")).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(offsets.to_vec())),
        Arc::new(Date32Array::from(vec![20_790; offsets.len()])),
        Arc::new(Int32Array::from(vec![9; offsets.len()])),
    ];
    if site {
        fields.push(Arc::new(Field::new("site", DataType::Utf8, true)));
        columns.push(Arc::new(StringArray::from(
            offsets.iter().map(|o| format!("s{o}")).collect::<Vec<_>>(),
        )));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn progress(previous: Option<i64>, last_offset: i64) -> PartitionProgress {
    PartitionProgress {
        topic: "events".into(),
        partition: 0,
        previous,
        last_offset,
        marks: Vec::new(),
    }
}

async fn open(uri: &str, format: FileFormat) -> FilesSink {
    let partition_by = ["date".to_string(), "hour".to_string()];
    FilesSink::open_or_create("t", uri, &HashMap::new(), &schema(), &partition_by, format)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_table_that_gained_a_column_reads_null_before_it_in_every_format() {
    for (kind, compression) in [
        (FileKind::Csv, FileCompression::Gzip),
        (FileKind::Jsonl, FileCompression::None),
        (FileKind::Parquet, FileCompression::Zstd),
    ] {
        let format = FileFormat { kind, compression };
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().display().to_string();
        let mut sink = open(&uri, format).await;
        sink.commit(&[rows(&[0, 1], false)], &[progress(None, 1)])
            .await
            .unwrap();
        // A commit of rows without the column, then rows with it: two objects of the hour.
        sink.commit(
            &[rows(&[2], false), rows(&[3, 4], true)],
            &[progress(Some(1), 4)],
        )
        .await
        .unwrap();
        // A restarted writer whose stream lacks the column writes it as null.
        let mut restarted = open(&uri, format).await;
        restarted
            .commit(&[rows(&[5], false)], &[progress(Some(4), 5)])
            .await
            .unwrap();
        let location = TableLocation {
            name: "t".into(),
            uri: uri.clone(),
            catalog: None,
        };
        let lake = Lake::open(std::slice::from_ref(&location), &HashMap::new())
            .await
            .unwrap();
        let read = lake
            .sql("select _offset, site, device_id from t order by _offset")
            .await
            .unwrap();
        let text = render(&read, Format::Csv).unwrap();
        assert_eq!(
            text,
            "_offset,site,device_id\n0,,\"d,0\"\n1,,\"d,1\"\n2,,\"d,2\"\n3,s3,\"d,3\"\n\
             4,s4,\"d,4\"\n5,,\"d,5\"\n",
            "{kind:?}"
        );
        let summary = &lake.tables()[0];
        let added: Vec<&(String, String)> = (summary.schema_changes.iter())
            .flat_map(|change| &change.added)
            .collect();
        assert_eq!(
            added,
            [&("site".to_string(), "Utf8".to_string())],
            "{kind:?}"
        );
    }
}
