//! Tests of tables' `format` and `compression` as a pipeline file gives them.

use crate::config::tests::parse;
use crate::config::{CatalogKind, ConfigError, FileCompression, FileFormat, FileKind, TableFormat};

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

const SENSOR_STREAM: &str = r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "sensor_events"
        topic = "sensor_events"
        schema = "sensor.schema.json"
        event_time = "ts"
"#;

#[test]
fn an_iceberg_table_carries_the_catalog_it_names() {
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "s3://lake/readings"
        format = "iceberg"
        catalog = "lake"
        [catalogs.lake]
        type = "sql"
        uri = "sqlite:////var/lib/sluice/catalog.db"
        warehouse = "s3://lake/warehouse"
        "#
    ))
    .unwrap();
    let table = &pipeline.tables[0];
    assert_eq!(table.format, TableFormat::Iceberg);
    let catalog = table.catalog.as_ref().unwrap();
    assert_eq!(
        (catalog.name.as_str(), catalog.namespace.as_str()),
        ("lake", "sluice")
    );
    assert_eq!(
        catalog.kind,
        CatalogKind::Sql {
            uri: "sqlite:////var/lib/sluice/catalog.db".into()
        }
    );
}

#[test]
fn catalogs_and_the_tables_naming_them_are_checked_field_by_field() {
    let err = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "a"
        from = "sensor_events"
        uri = "/tmp/a"
        format = "iceberg"
        [[tables]]
        name = "b"
        from = "sensor_events"
        uri = "/tmp/b"
        format = "iceberg"
        catalog = "nowhere"
        compression = "snappy"
        [[tables]]
        name = "c"
        from = "sensor_events"
        uri = "/tmp/c"
        catalog = "rest"
        [catalogs.rest]
        type = "rest"
        uri = "postgres://db/catalog"
        warehouse = ""
        namespace = "my-ns"
        "#
    ))
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "catalogs.rest.type",
            "catalogs.rest.uri",
            "catalogs.rest.warehouse",
            "catalogs.rest.namespace",
            "tables.a.catalog",
            "tables.b.compression",
            "tables.b.catalog",
            "tables.c.catalog",
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("the REST and Glue catalogs are not built yet"),
        "{text}"
    );
    assert!(
        text.contains("a Postgres catalog is not built yet"),
        "{text}"
    );
    assert!(
        text.contains("no [catalogs.nowhere] section (catalogs: none)"),
        "{text}"
    );
    assert!(
        text.contains("only Iceberg tables (format = \"iceberg\") are registered"),
        "{text}"
    );
}
