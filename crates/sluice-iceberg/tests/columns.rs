//! An Iceberg table's columns: a table of other columns is refused with the differences, a
//! table gains the columns newer rows carry (older rows read null), and nested columns land
//! with the table's field ids.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use sluice_iceberg::IcebergSink;
use sluice_lake::Sink;

use common::*;

#[tokio::test]
async fn a_table_with_other_columns_is_refused_with_the_differences() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path()).await;
    sink.commit(&[rows(0, &[0])], &[moved(0, None, 0)])
        .await
        .unwrap();
    let other = Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let Err(err) = open_with(dir.path(), &other).await else {
        panic!("a table of other columns was opened");
    };
    let message = err.to_string();
    assert!(
        message.contains("exists with a different schema"),
        "{message}"
    );
    assert!(
        message.contains("column device_id: the stream's long against the table's string"),
        "{message}"
    );
    assert!(
        !message.contains("temperature_c"),
        "an optional column the stream lacks is no difference: {message}"
    );
}

/// `batch` with a column `site` after its own: `s<offset>`.
fn with_site(batch: RecordBatch) -> RecordBatch {
    let offsets = batch.column_by_name("_offset").unwrap().clone();
    let offsets = offsets.as_any().downcast_ref::<Int64Array>().unwrap();
    let sites: StringArray = offsets.iter().map(|o| o.map(|o| format!("s{o}"))).collect();
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new("site", DataType::Utf8, true)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(sites));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// The columns the table's history says were added, in order.
fn added_columns(sink: &IcebergSink) -> Vec<(String, String)> {
    let history = sluice_lake::evolution::schema_history(sink.table().metadata().properties());
    history
        .into_iter()
        .flat_map(|change| change.added)
        .collect()
}

#[tokio::test]
async fn a_table_gains_the_columns_newer_rows_carry_and_older_rows_read_null() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open(dir.path()).await;
    sink.commit(&[rows(0, &[0, 2])], &[moved(0, None, 2)])
        .await
        .unwrap();
    // One commit of rows without `site` and rows with it (a newer writer's, mid-batch).
    sink.commit(
        &[rows(0, &[4]), with_site(rows(0, &[6, 8]))],
        &[moved(0, Some(2), 8)],
    )
    .await
    .unwrap();
    let site = sink
        .table()
        .metadata()
        .current_schema()
        .field_by_name("site")
        .cloned()
        .expect("the table gained site");
    assert!(!site.required);
    assert_eq!(added_columns(&sink), [("site".into(), "Utf8".into())]);

    // A restarted member whose stream has not met the newer writer yet opens the table and
    // lands rows without the column; one whose schema file gained `floor` adds it at open.
    let mut restarted = open(dir.path()).await;
    restarted
        .commit(&[rows(0, &[10])], &[moved(0, Some(8), 10)])
        .await
        .unwrap();
    let mut fields = schema().fields().to_vec();
    fields.push(Arc::new(Field::new("floor", DataType::Int64, false)));
    let wider = open_with(dir.path(), &Arc::new(Schema::new(fields)))
        .await
        .unwrap();
    assert_eq!(
        added_columns(&wider),
        [
            ("site".into(), "Utf8".into()),
            ("floor".into(), "Int64".into())
        ]
    );
    assert_eq!(wider.committed("sensor.events", 0).await.unwrap(), Some(10));

    // Compaction reads files with and without the column into one file that has it: null for
    // the older rows, with the table's field id.
    sluice_iceberg::compact::compact(
        "sensor_events",
        &catalog(dir.path()),
        &HashMap::new(),
        std::num::NonZeroU64::new(64 << 20).unwrap(),
    )
    .await
    .unwrap();
    let compacted = snapshot_of(dir.path()).await;
    assert_eq!(compacted.files.len(), 1, "the even offsets share 09:00");
    let path = compacted.files[0].location.trim_start_matches("file://");
    let reader = reader_of(path);
    let field = reader.schema().field_with_name("site").unwrap().clone();
    assert_eq!(
        field.metadata()[PARQUET_FIELD_ID_META_KEY],
        site.id.to_string()
    );
    let mut landed: Vec<(i64, Option<String>)> = Vec::new();
    for batch in reader.build().unwrap() {
        let batch = batch.unwrap();
        let offsets = batch.column_by_name("_offset").unwrap();
        let offsets = offsets.as_any().downcast_ref::<Int64Array>().unwrap();
        let sites = batch.column_by_name("site").unwrap();
        let sites = sites.as_any().downcast_ref::<StringArray>().unwrap();
        landed.extend(
            offsets
                .iter()
                .zip(sites.iter())
                .map(|(o, s)| (o.unwrap(), s.map(String::from))),
        );
    }
    landed.sort();
    let expected: Vec<(i64, Option<String>)> = [0, 2, 4, 6, 8, 10]
        .into_iter()
        .map(|o| (o, (o == 6 || o == 8).then(|| format!("s{o}"))))
        .collect();
    assert_eq!(landed, expected);
}

/// Rows with a struct and a list of structs (an Avro record and array, as arrow-avro decodes
/// them: nested fields without field ids) land, each nested field carrying the table's id.
#[tokio::test]
async fn nested_columns_land_with_the_field_ids_of_the_table() {
    use arrow::array::{ArrayRef, ListArray, StructArray};
    use arrow::buffer::OffsetBuffer;
    use arrow::datatypes::Fields;

    let dir = tempfile::tempdir().unwrap();
    let item = Fields::from(vec![
        Field::new("sku", DataType::Utf8, false),
        Field::new("qty", DataType::Int32, false),
    ]);
    let item_field = Arc::new(Field::new("item", DataType::Struct(item.clone()), false));
    let mut fields = schema().fields().to_vec();
    fields.push(Arc::new(Field::new(
        "items",
        DataType::List(item_field.clone()),
        false,
    )));
    let nested = Arc::new(Schema::new(fields));
    let mut sink = open_with(dir.path(), &nested).await.unwrap();
    let flat = rows(0, &[0, 2]);
    let items = StructArray::new(
        item,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            Arc::new(Int32Array::from(vec![1, 2, 3])),
        ],
        None,
    );
    let lists = ListArray::new(
        item_field,
        OffsetBuffer::from_lengths([1, 2]),
        Arc::new(items),
        None,
    );
    let mut columns = flat.columns().to_vec();
    columns.push(Arc::new(lists));
    let batch = RecordBatch::try_new(nested.clone(), columns).unwrap();
    sink.commit(&[batch], &[moved(0, None, 2)]).await.unwrap();

    let snapshot = snapshot_of(dir.path()).await;
    assert_eq!(snapshot.files.len(), 1);
    let path = snapshot.files[0].location.trim_start_matches("file://");
    let reader = reader_of(path);
    let DataType::List(element) = reader
        .schema()
        .field_with_name("items")
        .unwrap()
        .data_type()
    else {
        panic!("items is not a list");
    };
    let DataType::Struct(children) = element.data_type() else {
        panic!("an item is not a struct");
    };
    let table = sink.table().metadata().current_schema().clone();
    for child in children {
        let id = &child.metadata()[PARQUET_FIELD_ID_META_KEY];
        let name = format!("items.element.{}", child.name());
        assert_eq!(
            *id,
            table.field_by_name(&name).unwrap().id.to_string(),
            "{name}"
        );
    }
    let read: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(read, 2);
}
