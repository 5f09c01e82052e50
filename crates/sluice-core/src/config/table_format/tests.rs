//! Tests of tables' `format` and `compression` as a pipeline file gives them.

use crate::config::tests::parse;
use crate::config::{ConfigError, FileCompression, FileFormat, FileKind, TableFormat};

#[test]
fn tables_are_delta_unless_they_name_a_plain_format_with_its_compression() {
    let pipeline = parse(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "sensor_events"
        topic = "sensor_events"
        schema = "sensor.schema.json"
        event_time = "ts"
        [[tables]]
        name = "delta"
        from = "sensor_events"
        uri = "/tmp/delta"
        [[tables]]
        name = "parquet"
        from = "sensor_events"
        uri = "/tmp/parquet"
        format = "parquet"
        [[tables]]
        name = "csv"
        from = "sensor_events"
        uri = "/tmp/csv"
        format = "csv"
        compression = "gzip"
        "#,
    )
    .unwrap();
    let formats: Vec<TableFormat> = pipeline.tables.iter().map(|t| t.format).collect();
    let files = |kind, compression| TableFormat::Files(FileFormat { kind, compression });
    assert_eq!(
        formats,
        [
            TableFormat::Delta,
            files(FileKind::Parquet, FileCompression::Zstd),
            files(FileKind::Csv, FileCompression::Gzip),
        ]
    );
    let TableFormat::Files(csv) = formats[2] else {
        unreachable!()
    };
    assert_eq!(csv.extension(), ".csv.gz");
    assert_eq!(FileFormat::from_names("csv", "gzip"), Some(csv));
}

#[test]
fn a_plain_format_refuses_compressions_it_has_not_and_csv_refuses_nested_columns() {
    let err = parse(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "orders"
        topic = "orders"
        format = "avro"
        schema = "order.avsc"
        event_time = "ts"
        [[tables]]
        name = "a"
        from = "orders"
        uri = "/tmp/a"
        format = "csv"
        [[tables]]
        name = "b"
        from = "orders"
        uri = "/tmp/b"
        format = "parquet"
        compression = "gzip"
        [[tables]]
        name = "c"
        from = "orders"
        uri = "/tmp/c"
        format = "orc"
        [[tables]]
        name = "d"
        from = "orders"
        uri = "/tmp/d"
        compression = "zstd"
        "#,
    )
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "tables.a.format",
            "tables.b.compression",
            "tables.c.format",
            "tables.d.compression"
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("column items is List"), "{text}");
    assert!(
        text.contains(r#""zstd", "snappy", "none" for parquet, got "gzip""#),
        "{text}"
    );
}
