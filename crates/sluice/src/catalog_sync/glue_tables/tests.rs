use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice_core::config::{FileCompression, FileFormat, FileKind};

use super::*;

fn sensor_schema() -> Schema {
    Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("temperature", DataType::Float64, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("_offset", DataType::Int64, true),
        Field::new("date", DataType::Date32, true),
        Field::new("hour", DataType::Int32, true),
    ])
}

fn registered(schema: &Schema) -> Registered<'_> {
    Registered {
        name: "sensor_events",
        location: "s3://lake/curated/sensor_events/",
        schema,
    }
}

fn column_types(input: &TableInput) -> Vec<(String, String)> {
    let storage = input.storage_descriptor().unwrap();
    storage
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                c.r#type().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_plain_parquet_table_is_projected_on_date_and_hour_without_partitions_in_glue() {
    let schema = sensor_schema();
    let format = FileFormat {
        kind: FileKind::Parquet,
        compression: FileCompression::Zstd,
    };
    let partition_by = ["date".to_string(), "hour".to_string()];
    let input = files_table(&registered(&schema), &format, &partition_by, "2026-11-30").unwrap();
    let parameters = input.parameters().unwrap();
    let expected = [
        ("projection.enabled", "true"),
        ("projection.date.type", "date"),
        ("projection.date.format", "yyyy-MM-dd"),
        ("projection.date.range", "2026-11-30,NOW+1DAYS"),
        ("projection.hour.type", "integer"),
        ("projection.hour.range", "0,23"),
        (
            "storage.location.template",
            "s3://lake/curated/sensor_events/date=${date}/hour=${hour}",
        ),
        ("classification", "parquet"),
        (WRITER_PROPERTY, WRITER),
    ];
    for (key, value) in expected {
        assert_eq!(
            parameters.get(key).map(String::as_str),
            Some(value),
            "{key}"
        );
    }
    // Unpadded, as sluice's paths are: `hour=9`, not `hour=09`.
    assert!(!parameters.contains_key("projection.hour.digits"));
    let keys: Vec<(&str, Option<&str>)> = (input.partition_keys().iter())
        .map(|c| (c.name(), c.r#type()))
        .collect();
    assert_eq!(keys, [("date", Some("date")), ("hour", Some("int"))]);
    assert_eq!(
        column_types(&input),
        [
            ("device_id", "string"),
            ("ts", "timestamp"),
            ("temperature", "double"),
            ("tags", "array<string>"),
            ("_offset", "bigint"),
        ]
        .map(|(n, t)| (n.to_string(), t.to_string()))
    );
    let storage = input.storage_descriptor().unwrap();
    assert_eq!(
        storage.serde_info().unwrap().serialization_library(),
        Some(PARQUET_SERDE)
    );
    assert_eq!(input.table_type(), Some("EXTERNAL_TABLE"));
}

#[test]
fn a_csv_table_skips_its_header_and_lists_timestamps_as_text() {
    let schema = sensor_schema();
    let format = FileFormat {
        kind: FileKind::Csv,
        compression: FileCompression::Gzip,
    };
    let partition_by = ["date".to_string()];
    let input = files_table(&registered(&schema), &format, &partition_by, "2026-11-30").unwrap();
    let parameters = input.parameters().unwrap();
    assert_eq!(parameters["skip.header.line.count"], "1");
    assert_eq!(
        parameters["storage.location.template"],
        "s3://lake/curated/sensor_events/date=${date}"
    );
    assert!(!parameters.contains_key("projection.hour.type"));
    let columns = column_types(&input);
    assert!(
        columns.contains(&("ts".into(), "string".into())),
        "{columns:?}"
    );
    // Only `date` is a partition column here: `hour` stays in the objects.
    assert!(
        columns.contains(&("hour".into(), "int".into())),
        "{columns:?}"
    );
    let serde = input.storage_descriptor().unwrap().serde_info().unwrap();
    assert_eq!(serde.serialization_library(), Some(CSV_SERDE));
    assert_eq!(serde.parameters().unwrap()["quoteChar"], "\"");
}

#[test]
fn a_delta_table_is_registered_as_athena_reads_delta() {
    let schema = sensor_schema();
    let input = delta_table(&registered(&schema)).unwrap();
    let parameters = input.parameters().unwrap();
    assert_eq!(parameters["table_type"], "DELTA");
    assert_eq!(parameters[WRITER_PROPERTY], WRITER);
    assert!(input.partition_keys().is_empty());
    let storage = input.storage_descriptor().unwrap();
    assert_eq!(storage.location(), Some("s3://lake/curated/sensor_events/"));
    assert_eq!(column_types(&input).len(), 7);
}
