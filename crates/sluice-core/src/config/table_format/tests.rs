//! Tests of tables' `format` and `compression` as a pipeline file gives them.

use secrecy::ExposeSecret;

use crate::config::tests::parse;
use crate::config::{
    CatalogKind, ConfigError, FileCompression, FileFormat, FileKind, PostgresUrl, RestAuth,
    TableFormat,
};

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
    assert!(
        matches!(&catalog.kind, CatalogKind::Sql { uri } if uri == "sqlite:////var/lib/sluice/catalog.db"),
        "{catalog:?}"
    );
}

#[test]
fn window_tables_are_stored_as_tables_are_and_refused_by_the_same_checks() {
    let window = |name: &str, storage: &str| {
        format!(
            r#"
        [[windows]]
        name = "{name}"
        from = "sensor_events"
        group_by = ["device_id"]
        tumble = "1m"
        aggregates = {{ n = "count(*)" }}
        uri = "s3://lake/{name}"
        {storage}
        "#
        )
    };
    let catalog = r#"
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "s3://lake/readings"
        [catalogs.lake]
        type = "sql"
        uri = "sqlite:////var/lib/sluice/catalog.db"
        warehouse = "s3://lake/warehouse"
        "#;
    let pipeline = parse(&format!(
        "{SENSOR_STREAM}{}{}{}{catalog}",
        window("delta_1m", ""),
        window("iceberg_1m", "format = \"iceberg\"\ncatalog = \"lake\""),
        window("csv_1m", "format = \"csv\"\ncompression = \"gzip\""),
    ))
    .unwrap();
    let stored: Vec<(TableFormat, Option<&str>)> = (pipeline.windows.iter())
        .map(|w| (w.format, w.catalog.as_ref().map(|c| c.name.as_str())))
        .collect();
    let csv = FileFormat {
        kind: FileKind::Csv,
        compression: FileCompression::Gzip,
    };
    assert_eq!(
        stored,
        [
            (TableFormat::Delta, None),
            (TableFormat::Iceberg, Some("lake")),
            (TableFormat::Files(csv), None),
        ]
    );

    let err = parse(&format!(
        "{SENSOR_STREAM}{}{}{}{catalog}",
        window("no_catalog", "format = \"iceberg\""),
        window("zipped_delta", "compression = \"zstd\""),
        window("catalogued_csv", "format = \"csv\"\ncatalog = \"lake\""),
    ))
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "windows.no_catalog.catalog",
            "windows.zipped_delta.compression",
            "windows.catalogued_csv.catalog"
        ],
        "{err}"
    );
}

#[test]
fn a_sql_catalog_in_postgres_keeps_its_password_out_of_sight() {
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "s3://lake/readings"
        format = "iceberg"
        catalog = "pg"
        [catalogs.pg]
        type = "sql"
        uri = "postgresql+psycopg2://sluice:s3cret@db.internal:5432/catalog?sslmode=require"
        warehouse = "s3://lake/warehouse"
        "#
    ))
    .unwrap();
    let CatalogKind::Postgres { url } = &pipeline.catalogs["pg"].kind else {
        panic!("{:?}", pipeline.catalogs["pg"])
    };
    assert_eq!(
        url.connect.expose_secret(),
        "postgresql://sluice:s3cret@db.internal:5432/catalog?sslmode=require"
    );
    assert_eq!(
        url.shown,
        "postgresql://sluice:[REDACTED]@db.internal:5432/catalog?sslmode=require"
    );
    assert!(!format!("{pipeline:?}").contains("s3cret"));
    let in_query = PostgresUrl::parse("postgresql://db/catalog?user=u&password=s3cret").unwrap();
    assert_eq!(
        in_query.shown,
        "postgresql://db/catalog?user=u&password=[REDACTED]"
    );
    let refused = |query: &str| {
        PostgresUrl::parse(&format!("postgresql://db/catalog?{query}"))
            .unwrap()
            .unsupported()
            .unwrap_or_default()
    };
    assert!(refused("sslmode=verify-full").contains("sslmode=verify-full is not supported"));
    assert!(refused("sslrootcert=/ca.pem").contains("SSL_CERT_FILE"));
    assert_eq!(refused("sslmode=require&connect_timeout=5"), "");
    for not_postgres in ["postgresql:///catalog", "postgresx://db/catalog", "db:5432"] {
        assert!(PostgresUrl::parse(not_postgres).is_none(), "{not_postgres}");
    }
}

#[test]
fn a_rest_catalog_takes_oauth2_client_credentials_or_a_token() {
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "s3://lake/readings"
        format = "iceberg"
        catalog = "lake"
        [catalogs.lake]
        type = "rest"
        uri = "https://catalog.example.com/api/"
        warehouse = "lake"
        credential = "sluice:s3cret"
        scope = "PRINCIPAL_ROLE:ALL"
        "#
    ))
    .unwrap();
    let catalog = pipeline.tables[0].catalog.as_ref().unwrap();
    let CatalogKind::Rest {
        uri, auth, scope, ..
    } = &catalog.kind
    else {
        panic!("{catalog:?}")
    };
    assert_eq!(uri, "https://catalog.example.com/api");
    assert_eq!(scope.as_deref(), Some("PRINCIPAL_ROLE:ALL"));
    let RestAuth::Credential(credential) = auth else {
        panic!("{auth:?}")
    };
    assert_eq!(credential.expose_secret(), "sluice:s3cret");
    assert!(!format!("{catalog:?}").contains("s3cret"), "{catalog:?}");

    let err = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "/tmp/readings"
        [catalogs.rest]
        type = "rest"
        uri = "catalog.example.com"
        warehouse = "lake"
        credential = "a:b"
        token = "t"
        oauth2_server_uri = "ftp://idp"
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
            "catalogs.rest.uri",
            "catalogs.rest.oauth2_server_uri",
            "catalogs.rest.token"
        ],
        "{err}"
    );
}

#[test]
fn a_glue_catalog_takes_an_endpoint_a_region_and_a_catalog_id() {
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "/tmp/readings"
        [catalogs.athena]
        type = "glue"
        uri = "http://127.0.0.1:5000"
        region = "eu-west-1"
        catalog_id = "123456789012"
        warehouse = "s3://lake/warehouse"
        namespace = "lake"
        "#
    ))
    .unwrap();
    let catalog = &pipeline.catalogs["athena"];
    assert!(
        matches!(
            &catalog.kind,
            CatalogKind::Glue { endpoint: Some(e), region: Some(r), catalog_id: Some(c) }
                if e == "http://127.0.0.1:5000" && r == "eu-west-1" && c == "123456789012"
        ),
        "{catalog:?}"
    );
    let err = parse(&format!(
        r#"{SENSOR_STREAM}
        [[tables]]
        name = "readings"
        from = "sensor_events"
        uri = "/tmp/readings"
        [catalogs.athena]
        type = "glue"
        uri = "glue.eu-west-1.amazonaws.com"
        warehouse = "s3://lake/warehouse"
        credential = "a:b"
        [catalogs.local]
        type = "sql"
        uri = "sqlite:catalog.db"
        warehouse = "s3://lake/warehouse"
        region = "eu-west-1"
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
            "catalogs.athena.uri",
            "catalogs.athena.credential",
            "catalogs.local.region"
        ],
        "{err}"
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
        [catalogs.pg]
        type = "sql"
        uri = "mysql://db/catalog"
        warehouse = "s3://lake/warehouse"
        token = "t"
        [catalogs.rest]
        type = "hive"
        uri = "thrift://metastore:9083"
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
            "catalogs.pg.uri",
            "catalogs.pg.token",
            "catalogs.rest.type",
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
        text.contains("or \"glue\" (AWS Glue), got \"hive\""),
        "{text}"
    );
    assert!(
        text.contains("sqlite:relative/path.db or postgresql://user:password@host"),
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
