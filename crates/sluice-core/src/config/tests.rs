//! Tests of pipeline-file validation: good files load; bad ones name every problem.

use super::*;
use crate::windows::WindowKind;

const SCHEMA: &str = r#"{"required": ["device_id"], "properties": {
    "device_id": {"type": "string"}, "ts": {"type": "string", "format": "date-time"},
    "temperature_c": {"type": "number"}}}"#;

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "items", "type": {"type": "array", "items": "string"}}]}"#;

pub(super) fn parse(text: &str) -> Result<Pipeline, ConfigError> {
    Pipeline::parse(Path::new("pipeline.toml"), text, |path| match path {
        "sensor.schema.json" => Ok(SCHEMA.to_string()),
        "order.avsc" => Ok(AVRO_SCHEMA.to_string()),
        "orders.proto" | "customer.proto" => crate::schema::protobuf::tests::read(path),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{other} not found"),
        )),
    })
}

#[test]
fn a_complete_file_loads_with_defaults_filled_in() {
    let pipeline = parse(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "sensor_events"
        topic = "sensor_events"
        schema = "sensor.schema.json"
        event_time = "ts"
        key = "device_id"
        [[tables]]
        name = "sensor_events"
        from = "sensor_events"
        uri = "s3://lake/sensor_events"
        flush = { max_rows = 1000, max_latency = "2s" }
        "#,
    )
    .unwrap();
    let table = &pipeline.tables[0];
    assert_eq!(table.partition_by, ["date", "hour"]);
    assert_eq!(table.flush.max_rows, 1000);
    assert_eq!(table.flush.max_latency, Duration::from_secs(2));
    assert_eq!(table.flush.max_bytes, defaults::FLUSH_MAX_BYTES);
    assert_eq!(
        pipeline
            .stream("sensor_events")
            .unwrap()
            .schema
            .event_time()
            .name,
        "ts"
    );
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let err = parse(
        r#"
        [kafka]
        group = ""
        [[streams]]
        name = "s"
        topic = "t"
        fields = [{ name = "ts", type = "timestamp" }, { name = "x", type = "decimal" }]
        event_time = "ts"
        [[streams]]
        name = "missing"
        topic = "t2"
        schema = "nope.json"
        event_time = "ts"
        [[tables]]
        name = "bad-name"
        from = "nowhere"
        uri = "/tmp/x"
        partition_by = ["day"]
        flush = { max_bytes = "lots", max_latency = "0s" }
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
            "kafka.group",
            "streams.s.fields[1].type",
            "streams.missing.schema",
            "tables[0].name",
            "tables[0].from",
            "tables[0].partition_by[0]",
            "tables[0].flush.max_bytes",
            "tables[0].flush.max_latency",
        ]
    );
    let text = err.to_string();
    assert!(text.starts_with("pipeline.toml: 8 problem(s):"), "{text}");
    assert!(text.contains("\"decimal\""), "{text}");
    assert!(text.contains("nope.json"), "{text}");
}

#[test]
fn unknown_fields_and_bad_toml_name_the_file_and_line() {
    let err = parse("[kafka]\ngroup = \"g\"\nbrokerz = \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("pipeline.toml: "), "{text}");
    assert!(
        text.contains("brokerz") && text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn event_time_and_key_must_name_fields() {
    let err = parse(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "s"
        topic = "t"
        schema = "sensor.schema.json"
        event_time = "when"
        [[streams]]
        name = "k"
        topic = "t"
        schema = "sensor.schema.json"
        event_time = "ts"
        key = "serial"
        [[tables]]
        name = "t"
        from = "s"
        uri = "/tmp/t"
        "#,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("streams.s.event_time: the event-time field \"when\""),
        "{text}"
    );
    assert!(
        text.contains("streams.k.key: the key field \"serial\""),
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
    dead_letter_topic = "sensor_events_dlq"
    [[tables]]
    name = "sensor_events"
    from = "sensor_events"
    uri = "lake/sensor_events"
"#;

#[test]
fn alert_rules_compile_against_the_stream_columns() {
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[alerts]]
        name = "overheat"
        from = "sensor_events"
        when = "temperature_c > 85 AND _partition >= 0"
        topic = "sensor_alerts"
        "#
    ))
    .unwrap();
    assert_eq!(
        pipeline.alerts[0].when.sql(),
        "temperature_c > 85 AND _partition >= 0"
    );
    assert_eq!(
        pipeline.streams[0].dead_letter_topic.as_deref(),
        Some("sensor_events_dlq")
    );
}

#[test]
fn a_bad_rule_is_reported_with_its_field() {
    let err = parse(&format!(
        r#"{SENSOR_STREAM}
        [[alerts]]
        name = "overheat"
        from = "sensor_events"
        when = "tempreture_c > 85"
        topic = "sensor_alerts"
        [[alerts]]
        name = "loop"
        from = "sensor_events"
        when = "temperature_c"
        topic = "sensor_events"
        [[alerts]]
        name = "nowhere"
        from = "sensors"
        when = "true"
        topic = "a"
        "#
    ))
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected problems, got {err}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "alerts.overheat.when",
            "alerts.loop.topic",
            "alerts.loop.when",
            "alerts.nowhere.from"
        ],
        "{problems:#?}"
    );
    assert!(
        problems[0].message.contains("tempreture_c"),
        "{problems:#?}"
    );
}

#[test]
fn a_window_compiles_its_aggregates_against_the_stream() {
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[windows]]
        name = "device_1m"
        from = "sensor_events"
        group_by = ["device_id"]
        tumble = "1m"
        allowed_lateness = "30s"
        aggregates = {{ n = "count(*)", avg_temp = "avg(temperature_c)", devices = "count(distinct device_id)" }}
        uri = "lake/device_1m"
        late_topic = "late"
        "#
    ))
    .unwrap();
    let window = &pipeline.windows[0];
    assert_eq!(window.allowed_lateness_us, 30_000_000);
    let columns: Vec<&str> = window
        .aggregation
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "window_start",
            "window_end",
            "device_id",
            "n",
            "avg_temp",
            "devices",
            "date",
            "hour"
        ]
    );
}

#[test]
fn a_window_is_a_tumble_a_hop_or_a_session_but_only_one() {
    let keyed = SENSOR_STREAM.replace(
        "event_time = \"ts\"",
        "event_time = \"ts\"\nkey = \"device_id\"",
    );
    let window = |kind: &str| {
        parse(&format!(
            r#"{keyed}
            [[windows]]
            name = "visits"
            from = "sensor_events"
            group_by = ["device_id"]
            {kind}
            aggregates = {{ n = "count(*)" }}
            uri = "lake/visits"
            "#
        ))
    };
    let pipeline = window(r#"session = "30s""#).unwrap();
    assert_eq!(
        pipeline.windows[0].kind(),
        WindowKind::Session { gap_us: 30_000_000 }
    );
    let err = window("session = \"30s\"\n tumble = \"1m\"").unwrap_err();
    assert!(err.to_string().contains("windows.visits.tumble"), "{err}");
    let err = window(r#"session = "0s""#).unwrap_err();
    assert!(err.to_string().contains("windows.visits.session"), "{err}");
}

#[test]
fn a_window_not_grouped_by_the_stream_key_goes_through_a_repartition_topic() {
    // SENSOR_STREAM declares no key: its records of one device may be in any partition.
    let pipeline = parse(&format!(
        r#"{SENSOR_STREAM}
        [[windows]]
        name = "per_site"
        from = "sensor_events"
        group_by = ["device_id"]
        tumble = "1m"
        aggregates = {{ n = "count(*)" }}
        uri = "lake/per_site"
        "#
    ))
    .unwrap();
    assert_eq!(
        pipeline.windows[0].repartition_topic.as_deref(),
        Some("g-per_site-repartition")
    );
    let err = parse(&format!(
        r#"{SENSOR_STREAM}
        [[windows]]
        name = "visits"
        from = "sensor_events"
        group_by = ["device_id"]
        session = "30s"
        aggregates = {{ n = "count(*)" }}
        uri = "lake/visits"
        "#
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("repartitioned sessions are not built"),
        "{err}"
    );
}

#[test]
fn a_bad_window_is_reported_with_its_fields() {
    let err = parse(&format!(
        r#"{SENSOR_STREAM}
        [[windows]]
        name = "w1"
        from = "sensor_events"
        group_by = ["devise_id"]
        hop = {{ size = "5m", slide = "2m" }}
        aggregates = {{ n = "count(*)" }}
        uri = "lake/w1"
        [[windows]]
        name = "w2"
        from = "sensor_events"
        tumble = "1m"
        aggregates = {{ t = "avg(tempreture_c)" }}
        uri = "lake/w2"
        [[windows]]
        name = "sensor_events"
        from = "sensor_events"
        aggregates = {{ n = "count(*)" }}
        uri = "lake/w3"
        "#
    ))
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected problems, got {err}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "tables and windows",
            "windows.w1.hop.slide",
            "windows.w1.group_by[0]",
            "windows.w2.aggregates",
            "windows.sensor_events.tumble",
        ],
        "{problems:#?}"
    );
    assert!(
        problems[3].message.contains("tempreture_c"),
        "{problems:#?}"
    );
}

#[test]
fn derived_columns_and_table_filters_compile_against_the_stream() {
    let text = SENSOR_STREAM.replace(
        "dead_letter_topic = \"sensor_events_dlq\"",
        "derive = { temp_f = \"temperature_c * 1.8 + 32\", hot = \"temp_f > 185\" }",
    );
    let pipeline = parse(&format!(
        r#"{text}
        [[tables]]
        name = "hot_readings"
        from = "sensor_events"
        uri = "lake/hot"
        filter = "hot AND device_id <> 'test'"
        "#
    ))
    .unwrap();
    let schema = pipeline.streams[0].schema.table_schema();
    let last: Vec<&str> = schema
        .fields()
        .iter()
        .rev()
        .take(2)
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(last, ["hot", "temp_f"]);
    assert!(pipeline.tables[1].filter.is_some());

    let err = parse(&format!(
        r#"{}
        [[tables]]
        name = "bad"
        from = "sensor_events"
        uri = "lake/bad"
        filter = "temp_f"
        "#,
        SENSOR_STREAM.replace(
            "dead_letter_topic = \"sensor_events_dlq\"",
            "derive = { temp_f = \"temprature_c * 1.8\" }",
        )
    ))
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = err else {
        panic!("expected problems, got {err}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    // The stream is refused for its derived column; tables naming it are not judged again.
    assert_eq!(
        fields,
        ["streams.sensor_events.derive.temp_f"],
        "{problems:#?}"
    );
}

fn parse_with_env(text: &str) -> Result<Pipeline, ConfigError> {
    let env = |name: &str| match name {
        "LAKE_SECRET" => Some("s3cr\"et".to_string()),
        "FETCH_BYTES" => Some("1048576".to_string()),
        _ => None,
    };
    Pipeline::parse_with_env(
        Path::new("pipeline.toml"),
        text,
        |_| Ok(SCHEMA.to_string()),
        &env,
    )
}

/// A pipeline whose `[kafka.options]` and `[lake.storage_options]` are `kafka` and `lake`.
fn with_options(kafka: &str, lake: &str) -> String {
    format!(
        r#"
        [kafka]
        group = "g"
        [kafka.options]
        {kafka}
        [lake.storage_options]
        {lake}
        [[streams]]
        name = "sensor_events"
        topic = "sensor_events"
        schema = "sensor.schema.json"
        event_time = "ts"
        [[tables]]
        name = "t"
        from = "sensor_events"
        uri = "s3://lake/${{TABLE_DIR:-raw}}"
        "#
    )
}

#[test]
fn environment_variables_fill_strings_and_an_unset_one_names_its_field() {
    let kafka = r#""fetch.max.bytes" = "${FETCH_BYTES}""#;
    let pipeline = parse_with_env(&with_options(
        kafka,
        r#"aws_secret_access_key = "${LAKE_SECRET}""#,
    ))
    .unwrap();
    assert_eq!(
        pipeline.kafka.options.expose("fetch.max.bytes"),
        Some("1048576")
    );
    let secret = pipeline.storage_options.expose("aws_secret_access_key");
    assert_eq!(secret, Some("s3cr\"et"));
    assert!(
        !format!("{pipeline:?}").contains("s3cr"),
        "the secret shows in Debug"
    );
    assert_eq!(pipeline.tables[0].uri, "s3://lake/raw");

    let err = parse_with_env(&with_options(
        kafka,
        r#"aws_secret_access_key = "${NOT_SET}""#,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "lake.storage_options.aws_secret_access_key: environment variable NOT_SET is not set"
        ),
        "{err}"
    );
}

#[test]
fn a_guarded_kafka_option_is_refused_by_name() {
    let kafka = r#"
        "enable.auto.commit" = "true"
        "acks" = "1"
        "fetch.max.bytes" = "1048576"
    "#;
    let err = parse(&with_options(kafka, "")).unwrap_err().to_string();
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(
        err.contains("kafka.options.\"enable.auto.commit\": sluice sets enable.auto.commit itself"),
        "{err}"
    );
    assert!(
        err.contains("kafka.options.\"acks\": sluice sets acks itself"),
        "{err}"
    );
}

#[test]
fn kafka_security_is_typed_and_each_wrong_combination_names_its_field() {
    let pipeline = parse_with_env(&with_options(
        "",
        "",
    ).replace(
        "[kafka.options]",
        "[kafka.security]\nprotocol = \"sasl_ssl\"\nsasl_mechanism = \"scram-sha-512\"\n\
         username = \"alice\"\npassword = \"${LAKE_SECRET}\"\nca_file = \"ca.pem\"\n[kafka.options]",
    ))
    .unwrap();
    let security = &pipeline.kafka.security;
    assert_eq!(security.protocol, kafka::SecurityProtocol::SaslSsl);
    assert!(matches!(
        security.sasl,
        Some(kafka::Sasl::Password {
            mechanism: "SCRAM-SHA-512",
            ..
        })
    ));
    assert!(
        !format!("{pipeline:?}").contains("s3cr"),
        "the password shows in Debug"
    );

    let err = parse(&with_options("", "").replace(
        "[kafka.options]",
        "[kafka.security]\nprotocol = \"SSL\"\ncert_file = \"c.pem\"\nusername = \"bob\"\n\
         [kafka.options]\n\"sasl.password\" = \"x\"",
    ))
    .unwrap_err()
    .to_string();
    for expected in [
        "kafka.security.key_file: cert_file needs its private key",
        "kafka.security.username: a SASL setting, but protocol is SSL",
        "kafka.options.\"sasl.password\": sluice sets sasl.password itself",
    ] {
        assert!(err.contains(expected), "{expected} not in {err}");
    }
}

#[test]
fn gateway_guards_have_defaults_and_a_zero_is_refused_by_field() {
    let stream = r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "s"
        topic = "t"
        schema = "sensor.schema.json"
        event_time = "ts"
        [[tables]]
        name = "s"
        from = "s"
        uri = "/tmp/s"
    "#;
    let pipeline = parse(stream).unwrap();
    let gateway = &pipeline.gateway;
    assert_eq!(
        gateway.limits.max_concurrent,
        defaults::GATEWAY_MAX_CONCURRENT
    );
    assert_eq!(gateway.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(gateway.limits.body_timeout, Duration::from_secs(30));
    assert!(!gateway.require_key_for_metrics);

    let err = parse(&format!(
        "{stream}\n[gateway]\nrequire_key_for_metrics = true\n\
         limits = {{ max_concurrent = 0, header_timeout = \"0s\", body_timeout = \"soon\" }}"
    ))
    .unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "gateway.limits.max_concurrent",
            "gateway.limits.header_timeout",
            "gateway.limits.body_timeout",
        ]
    );
}

#[test]
fn aws_msk_iam_takes_a_region_and_no_password() {
    let security = |lines: &str| {
        with_options("", "").replace(
            "[kafka.options]",
            &format!("[kafka.security]\nprotocol = \"SASL_SSL\"\n{lines}\n[kafka.options]"),
        )
    };
    let pipeline = parse_with_env(&security(
        "sasl_mechanism = \"aws_msk_iam\"\naws_region = \"eu-west-1\"",
    ))
    .unwrap();
    assert!(matches!(
        &pipeline.kafka.security.sasl,
        Some(kafka::Sasl::AwsMskIam { region: Some(region) }) if region == "eu-west-1"
    ));
    let pipeline = parse_with_env(&security("sasl_mechanism = \"AWS_MSK_IAM\"")).unwrap();
    assert!(matches!(
        pipeline.kafka.security.sasl,
        Some(kafka::Sasl::AwsMskIam { region: None })
    ));

    let err = parse_with_env(&security(
        "sasl_mechanism = \"AWS_MSK_IAM\"\nusername = \"u\"\naws_region = \" \"",
    ))
    .unwrap_err()
    .to_string();
    for expected in [
        "kafka.security.username: AWS_MSK_IAM takes no user name or password",
        "kafka.security.aws_region: expected a region",
    ] {
        assert!(err.contains(expected), "{expected} not in {err}");
    }
    let err = parse_with_env(&security(
        "sasl_mechanism = \"SCRAM-SHA-256\"\nusername = \"u\"\npassword = \"p\"\naws_region = \"us-east-1\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("kafka.security.aws_region: only AWS_MSK_IAM takes a region"),
        "{err}"
    );
    let err = parse_with_env(&security("sasl_mechanism = \"OAUTHBEARER\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("write AWS_MSK_IAM"), "{err}");
}

#[test]
fn an_avro_stream_takes_its_fields_from_its_avro_schema_and_names_its_registry() {
    let stream = |extra: &str| {
        format!(
            r#"
            [kafka]
            group = "g"
            [[streams]]
            name = "orders"
            topic = "orders"
            format = "avro"
            event_time = "ts"
            {extra}
            [[tables]]
            name = "orders"
            from = "orders"
            uri = "s3://lake/orders"
            "#
        )
    };
    let pipeline = parse(&stream(
        r#"schema = "order.avsc"
        registry = { url = "http://127.0.0.1:8081/", user = "u", password = "p" }"#,
    ))
    .unwrap();
    let orders = &pipeline.streams[0];
    let StreamFormat::Avro {
        registry: Some(registry),
        ..
    } = &orders.format
    else {
        panic!("an Avro stream with a registry: {:?}", orders.format);
    };
    assert_eq!(registry.url, "http://127.0.0.1:8081");
    assert!(matches!(registry.auth, RegistryAuth::Basic { .. }));
    let table = orders.schema.table_schema();
    assert!(matches!(
        table.field_with_name("items").unwrap().data_type(),
        arrow::datatypes::DataType::List(_)
    ));

    let problems = |extra: &str| parse(&stream(extra)).unwrap_err().to_string();
    assert!(problems("").contains("streams.orders.schema: expected an Avro schema file"));
    assert!(problems(r#"schema = "missing.avsc""#).contains("cannot read Avro schema file"));
    assert!(
        problems(
            r#"schema = "order.avsc"
        registry = { url = "127.0.0.1:8081" }"#
        )
        .contains("streams.orders.registry.url")
    );
    assert!(
        problems(
            r#"schema = "order.avsc"
        registry = { url = "http://r", user = "u" }"#
        )
        .contains("`user` with `password`")
    );
    assert!(
        problems(r#"schema = "sensor.schema.json""#)
            .contains("streams.orders.schema: sensor.schema.json: not an Avro schema")
    );
    let json_schema_without_registry = parse(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "s"
        topic = "s"
        format = "json_schema"
        schema = "sensor.schema.json"
        event_time = "ts"
        [[tables]]
        name = "s"
        from = "s"
        uri = "s3://lake/s"
        "#,
    );
    assert!(
        json_schema_without_registry
            .unwrap_err()
            .to_string()
            .contains("streams.s.registry: format = \"json_schema\" reads schema ids")
    );
    let json_with_registry = parse(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "s"
        topic = "s"
        schema = "sensor.schema.json"
        event_time = "ts"
        registry = { url = "http://r" }
        [[tables]]
        name = "s"
        from = "s"
        uri = "s3://lake/s"
        "#,
    );
    assert!(
        json_with_registry
            .unwrap_err()
            .to_string()
            .contains("format = \"avro\", \"protobuf\" or \"json_schema\" only")
    );
}

#[test]
fn a_protobuf_stream_takes_its_fields_from_a_message_of_its_proto_file() {
    let stream = |extra: &str| {
        format!(
            r#"
            [kafka]
            group = "g"
            [[streams]]
            name = "orders"
            topic = "orders"
            format = "protobuf"
            event_time = "ts"
            {extra}
            [[tables]]
            name = "orders"
            from = "orders"
            uri = "s3://lake/orders"
            "#
        )
    };
    let pipeline = parse(&stream(
        r#"schema = "orders.proto"
        message = "Order"
        registry = { url = "http://127.0.0.1:8081", token = "t" }"#,
    ))
    .unwrap();
    let orders = &pipeline.streams[0];
    let StreamFormat::Protobuf {
        message,
        registry: Some(registry),
    } = &orders.format
    else {
        panic!("a Protobuf stream with a registry: {:?}", orders.format);
    };
    assert_eq!(message.message.full_name(), "shop.Order");
    assert!(matches!(registry.auth, RegistryAuth::Bearer(_)));
    let table = orders.schema.table_schema();
    assert!(matches!(
        table.field_with_name("customer").unwrap().data_type(),
        arrow::datatypes::DataType::Struct(_)
    ));

    let problems = |extra: &str| parse(&stream(extra)).unwrap_err().to_string();
    assert!(problems("").contains("streams.orders.schema: expected a .proto file"));
    assert!(
        problems(
            r#"schema = "orders.proto"
        message = "Invoice""#
        )
        .contains("streams.orders.schema: orders.proto: no message Invoice")
    );
    assert!(problems(r#"schema = "missing.proto""#).contains("cannot read \"missing.proto\""));
    let avro_with_message = parse(
        &stream(
            r#"schema = "order.avsc"
        message = "Order""#,
        )
        .replace("\"protobuf\"", "\"avro\""),
    );
    assert!(
        avro_with_message
            .unwrap_err()
            .to_string()
            .contains("streams.orders.message: a message is named for format = \"protobuf\" only")
    );
}
