//! Tests of batch decoding: good rows, isolated bad records and their reasons, limits.

use arrow::array::{Array, AsArray, Float64Array};
use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};

use super::*;
use crate::schema::{FieldType, SchemaField};

fn sensor_decoder() -> Decoder {
    let fields = vec![
        SchemaField {
            name: "device_id".into(),
            ty: FieldType::String,
            required: true,
        },
        SchemaField {
            name: "ts".into(),
            ty: FieldType::Timestamp,
            required: true,
        },
        SchemaField {
            name: "temperature_c".into(),
            ty: FieldType::Float64,
            required: false,
        },
    ];
    Decoder::new(Arc::new(StreamSchema::new(fields, "ts").unwrap()), 1024)
}

fn records(payloads: &[&'static str]) -> Vec<RawRecord<'static>> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| RawRecord {
            payload: Some(p.as_bytes()),
            partition: 3,
            offset: 100 + i as i64,
        })
        .collect()
}

#[test]
fn good_records_become_rows_with_lineage_and_partition_columns() {
    let input = records(&[
        r#"{"device_id":"d1","ts":"2026-11-22T10:15:00.250Z","temperature_c":21.5}"#,
        r#"{"device_id":"d2","ts":1795341600000,"extra":"ignored"}"#,
    ]);
    let out = sensor_decoder().decode("sensors", &input, 7);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let batch = out.batch;
    assert_eq!(batch.num_rows(), 2);
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_795_342_500_250_000);
    assert_eq!(ts.value(1), 1_795_341_600_000_000);
    let temp = batch
        .column_by_name("temperature_c")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(temp.value(0), 21.5);
    assert!(temp.is_null(1));
    assert_eq!(
        batch
            .column_by_name("_offset")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values(),
        &[100, 101]
    );
    assert_eq!(
        batch
            .column_by_name("_partition")
            .unwrap()
            .as_primitive::<Int32Type>()
            .value(1),
        3
    );
    assert_eq!(
        batch
            .column_by_name("date")
            .unwrap()
            .as_primitive::<Date32Type>()
            .value(0),
        20_779
    );
    assert_eq!(
        batch
            .column_by_name("hour")
            .unwrap()
            .as_primitive::<Int32Type>()
            .values(),
        &[10, 10]
    );
}

#[test]
fn bad_records_are_isolated_with_reasons_and_neighbours_survive() {
    let good = r#"{"device_id":"d","ts":"2026-11-22T10:00:00Z","temperature_c":1.0}"#;
    let input = records(&[
        good,
        "not json",
        r#"{"device_id":"d","ts":"2026-11-22T10:00:00Z","temperature_c":"hot"}"#,
        good,
        r#"{"device_id":"d","temperature_c":2.0}"#,
        r#"{"device_id":"d","ts":"yesterday"}"#,
        r#"{"device_id":"d","ts":1}{"device_id":"e","ts":2}"#,
        r#"{"device_id":"d","ts":"#,
        "",
        good,
    ]);
    let out = sensor_decoder().decode("sensors", &input, 0);
    let offsets: Vec<i64> = out
        .batch
        .column_by_name("_offset")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    assert_eq!(offsets, [100, 103, 109]);
    let reasons: Vec<(i64, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.offset, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 7, "{reasons:?}");
    let reason = |offset| reasons.iter().find(|(o, _)| *o == offset).unwrap().1;
    assert!(reason(101).starts_with("not valid JSON"), "{}", reason(101));
    assert!(
        reason(102).starts_with("does not match the schema")
            && reason(102).contains("temperature_c"),
        "{}",
        reason(102)
    );
    assert!(reason(104).contains("required field ts"), "{}", reason(104));
    assert!(reason(105).contains("yesterday"), "{}", reason(105));
    assert!(
        reason(106).contains("more than one JSON value"),
        "{}",
        reason(106)
    );
    assert!(reason(107).contains("not complete"), "{}", reason(107));
    assert!(reason(108).contains("empty payload"), "{}", reason(108));
}

#[test]
fn invalid_utf8_is_rejected_not_mangled() {
    let bytes: &'static [u8] = b"{\"device_id\":\"\xff\",\"ts\":1}";
    let input = [RawRecord {
        payload: Some(bytes),
        partition: 0,
        offset: 5,
    }];
    let out = sensor_decoder().decode("sensors", &input, 0);
    assert_eq!(out.batch.num_rows(), 0);
    assert!(out.rejected[0].reason.contains("UTF-8"));
}

#[test]
fn invalid_utf8_among_good_records_rejects_that_record_alone() {
    let good: &'static [u8] = br#"{"device_id":"a","ts":1}"#;
    let bad: &'static [u8] = b"{\"device_id\":\"\xff\",\"ts\":1}";
    let input: Vec<RawRecord<'_>> = [good, bad, good]
        .iter()
        .enumerate()
        .map(|(offset, payload)| RawRecord {
            payload: Some(payload),
            partition: 0,
            offset: offset as i64,
        })
        .collect();
    let out = sensor_decoder().decode("sensors", &input, 0);
    assert_eq!(out.batch.num_rows(), 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].offset, 1);
    assert!(
        out.rejected[0].reason.contains("UTF-8"),
        "{:?}",
        out.rejected
    );
}

#[test]
fn oversized_deeply_nested_and_out_of_range_records_are_rejected() {
    let deep = format!(
        r#"{{"device_id":"d","ts":1,"x":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let deep_in_a_string = format!(
        r#"{{"device_id":"{}","ts":1795341600000}}"#,
        "[".repeat(200)
    );
    let big = format!(r#"{{"device_id":"{}","ts":1}}"#, "x".repeat(2000));
    let payloads = [
        deep.as_str(),
        deep_in_a_string.as_str(),
        big.as_str(),
        r#"{"device_id":"d","ts":1,"temperature_c":1e999}"#,
        r#"{"device_id":"d","ts":99999999999999999999999}"#,
    ];
    let input: Vec<RawRecord<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| RawRecord {
            payload: Some(p.as_bytes()),
            partition: 0,
            offset: i as i64,
        })
        .collect();
    let out = sensor_decoder().decode("sensors", &input, 0);
    let reasons: Vec<(i64, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.offset, r.reason.as_str()))
        .collect();
    let reason = |offset| reasons.iter().find(|(o, _)| *o == offset).map(|r| r.1);
    let kinds: Vec<(i64, RejectKind)> = out.rejected.iter().map(|r| (r.offset, r.kind)).collect();
    assert_eq!(
        kinds,
        [
            (0, RejectKind::TooDeep),
            (2, RejectKind::TooLarge),
            (3, RejectKind::Schema),
            (4, RejectKind::Schema)
        ]
    );
    assert!(
        reason(0).unwrap().contains("nested deeper than 128"),
        "{reasons:?}"
    );
    assert_eq!(reason(1), None, "brackets inside a string are not nesting");
    assert!(
        reason(2).unwrap().contains("max_record_size of 1024 bytes"),
        "{reasons:?}"
    );
    assert!(
        reason(3)
            .unwrap()
            .contains("field temperature_c: number out of range"),
        "1e999 is not a float64: {reasons:?}"
    );
    assert!(
        reason(4)
            .unwrap()
            .contains("out of range for timestamp field ts"),
        "a timestamp beyond int64: {reasons:?}"
    );
    assert_eq!(out.batch.num_rows(), 1);
}

#[test]
fn derived_columns_are_computed_and_a_failing_row_is_rejected_alone() {
    let fields = vec![
        SchemaField {
            name: "device_id".into(),
            ty: FieldType::String,
            required: true,
        },
        SchemaField {
            name: "ts".into(),
            ty: FieldType::Timestamp,
            required: true,
        },
        SchemaField {
            name: "n".into(),
            ty: FieldType::Int64,
            required: false,
        },
    ];
    let mut schema = StreamSchema::new(fields, "ts").unwrap();
    schema.derive("per", "100 / n").unwrap();
    schema.derive("per_twice", "per * 2").unwrap();
    let decoder = Decoder::new(Arc::new(schema), 1024);
    let input = records(&[
        r#"{"device_id":"a","ts":1,"n":4}"#,
        r#"{"device_id":"b","ts":1,"n":0}"#,
        r#"{"device_id":"c","ts":1,"n":50}"#,
    ]);
    let out = decoder.decode("t", &input, 0);
    assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
    assert_eq!(out.rejected[0].offset, 101);
    assert_eq!(out.rejected[0].kind, RejectKind::Derived);
    assert!(
        out.rejected[0].reason.contains("100 / n"),
        "{:?}",
        out.rejected
    );
    let twice = out
        .batch
        .column_by_name("per_twice")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(twice.values(), &[50, 4]);
    assert_eq!(out.batch.schema(), *decoder.table_schema());
}

/// A decoder of one optional field of type `ty` named `v`, beside the required event time.
fn one_field_decoder(ty: FieldType) -> Decoder {
    let fields = vec![
        SchemaField {
            name: "ts".into(),
            ty: FieldType::Timestamp,
            required: true,
        },
        SchemaField {
            name: "v".into(),
            ty,
            required: false,
        },
    ];
    Decoder::new(Arc::new(StreamSchema::new(fields, "ts").unwrap()), 1024)
}

/// Decodes `{"ts":0,"v":<value>}` for each value; the column `v` and the rejected reasons.
fn decode_values(ty: FieldType, values: &[&str]) -> (ArrayRef, Vec<String>) {
    let payloads: Vec<String> = values
        .iter()
        .map(|value| format!(r#"{{"ts":0,"v":{value}}}"#))
        .collect();
    let input: Vec<RawRecord<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(offset, payload)| RawRecord {
            payload: Some(payload.as_bytes()),
            partition: 0,
            offset: offset as i64,
        })
        .collect();
    let out = one_field_decoder(ty).decode("t", &input, 0);
    let reasons = out.rejected.iter().map(|r| r.reason.clone()).collect();
    (out.batch.column_by_name("v").unwrap().clone(), reasons)
}

#[test]
fn each_type_takes_its_json_forms_and_refuses_the_rest() {
    let (ints, refused) = decode_values(
        FieldType::Int64,
        &[
            "3", "-4.0", r#""5""#, "null", "3.5", r#""x""#, "true", "1e30",
        ],
    );
    let ints = ints.as_primitive::<Int64Type>();
    assert_eq!(
        ints.iter().collect::<Vec<_>>(),
        [Some(3), Some(-4), Some(5), None]
    );
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused.iter().all(|r| r.contains("field v")), "{refused:?}");

    let (floats, refused) = decode_values(
        FieldType::Float64,
        &["0.1", "7", r#""2.5""#, r#""NaN""#, r#""inf""#, "[1]"],
    );
    let floats = floats.as_primitive::<Float64Type>();
    assert_eq!(floats.values(), &[0.1, 7.0, 2.5]);
    assert_eq!(refused.len(), 3, "{refused:?}");

    let (booleans, refused) =
        decode_values(FieldType::Boolean, &["true", "false", "1", r#""true""#]);
    assert_eq!(
        booleans.as_boolean().iter().collect::<Vec<_>>(),
        [Some(true), Some(false)]
    );
    assert_eq!(refused.len(), 2, "{refused:?}");

    let (strings, refused) = decode_values(
        FieldType::String,
        &[r#""plain""#, r#""tab\tand \u00e9""#, "12", r#"{"a":1}"#],
    );
    let strings = strings.as_string::<i32>();
    assert_eq!(
        strings.iter().collect::<Vec<_>>(),
        [Some("plain"), Some("tab\tand é")]
    );
    assert_eq!(refused.len(), 2, "{refused:?}");

    let (dates, refused) = decode_values(
        FieldType::Date,
        &[r#""2026-11-22""#, "1", r#""22/11/2026""#],
    );
    assert_eq!(dates.as_primitive::<Date32Type>().values(), &[20_779, 1]);
    assert_eq!(refused.len(), 1, "{refused:?}");
}

#[test]
fn timestamps_keep_microseconds_and_take_epoch_milliseconds() {
    let (times, refused) = decode_values(
        FieldType::Timestamp,
        &[
            r#""2026-11-22T00:00:00.003600Z""#,
            r#""2026-11-22T01:00:00+01:00""#,
            "1795341600000",
            "1.5",
            r#""10000-01-01T00:00:00Z""#,
            r#""soon""#,
            r#""0000-12-31T23:00:00Z""#,
            "-62135596800001",
        ],
    );
    let times = times.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        times.values(),
        &[
            1_795_305_600_003_600,
            1_795_305_600_000_000,
            1_795_341_600_000_000,
            1_500
        ]
    );
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused[1].contains("soon"), "{refused:?}");
    for year_zero in &refused[2..] {
        assert!(
            year_zero.contains("out of range for timestamp field v"),
            "{refused:?}"
        );
    }
}

#[test]
fn a_field_named_twice_is_refused_and_unknown_nested_fields_are_skipped() {
    let input = records(&[
        r#"{"device_id":"d","ts":1,"ts":2}"#,
        r#"{"device_id":"d","ts":1,"extra":{"deep":[1,{"x":null}]},"more":[]}"#,
        r#"["device_id","ts"]"#,
    ]);
    let out = sensor_decoder().decode("sensors", &input, 0);
    assert_eq!(out.batch.num_rows(), 1);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("field ts appears twice"), "{reasons:?}");
    assert!(reasons[1].contains("expected a JSON object"), "{reasons:?}");
}

/// `json` in the Confluent wire format: magic byte, schema id, the JSON text.
fn framed_json(id: u32, json: &str) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(json.as_bytes());
    payload
}

#[test]
fn json_in_the_confluent_wire_format_is_read_after_its_header_by_its_writer_schema() {
    let decoder = Decoder {
        format: Format::FramedJson(Arc::default()),
        ..sensor_decoder()
    };
    let good = r#"{"device_id":"d1","ts":"2026-11-22T10:15:00Z","temperature_c":21.5}"#;
    let payloads = [
        framed_json(1, good),
        framed_json(2, good),
        framed_json(3, good),
        good.as_bytes().to_vec(),
        framed_json(1, r#"{"device_id":"d2"}"#),
        framed_json(1, good),
    ];
    assert_eq!(
        decoder.ids_to_learn(payloads.iter().map(Vec::as_slice)),
        [1, 2, 3]
    );
    let json = |schema: &str| RegisteredSchema {
        schema_type: "JSON".into(),
        schema: schema.into(),
        references: Vec::new(),
    };
    let writer = r#"{"type": "object", "required": ["device_id", "ts"], "properties": {
        "device_id": {"type": "string"}, "ts": {"type": "string", "format": "date-time"},
        "temperature_c": {"type": "number"}, "site": {"type": "string"}}}"#;
    decoder.learn(1, Ok(json(writer)));
    decoder.learn(
        2,
        Ok(json(&writer.replace(
            r#"{"type": "number"}"#,
            r#"{"type": "boolean"}"#,
        ))),
    );
    decoder.learn(3, Err("schema id 3 is not in the registry".into()));
    let records: Vec<RawRecord<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(offset, payload)| RawRecord {
            payload: Some(payload),
            partition: 0,
            offset: offset as i64,
        })
        .collect();
    let decoded = decoder.decode("t", &records, 0);
    let offsets = decoded.batch.column_by_name("_offset").unwrap();
    assert_eq!(
        offsets.as_primitive::<Int64Type>().values().to_vec(),
        [0, 5]
    );
    let refused: Vec<(i64, RejectKind)> = decoded
        .rejected
        .iter()
        .map(|r| (r.offset, r.kind))
        .collect();
    assert_eq!(
        refused,
        [
            (1, RejectKind::Incompatible),
            (2, RejectKind::UnknownSchema),
            (3, RejectKind::WireFormat),
            (4, RejectKind::Schema),
        ]
    );
    assert!(
        decoded.rejected[0]
            .reason
            .contains("temperature_c may be \"boolean\"")
    );
}

#[test]
fn a_newer_json_schema_adds_its_properties_as_columns_only_for_writers_that_declare_them() {
    let decoder = Decoder {
        format: Format::FramedJson(Arc::new(JsonSchemaRecords::new(vec!["date".into()]))),
        ..sensor_decoder()
    };
    let json = |properties: &str| RegisteredSchema {
        schema_type: "JSON".into(),
        schema: format!(
            r#"{{"type": "object", "required": ["device_id", "ts"], "properties": {{
            "device_id": {{"type": "string"}}, "ts": {{"type": "string", "format": "date-time"}}
            {properties}}}}}"#
        ),
        references: Vec::new(),
    };
    decoder.learn(1, Ok(json("")));
    // Version 2 adds site and floor (and a property named like a table column: not taken).
    decoder.learn(
        2,
        Ok(json(
            r#", "site": {"type": ["string", "null"]}, "floor": {"type": "integer"}, "date": {"type": "string"}"#,
        )),
    );
    // Another writer has site as a number: its site is not read into the text column. Nor
    // is the floor of one that declares it a number (3.5 would not fit the integer column).
    decoder.learn(3, Ok(json(r#", "site": {"type": "integer"}"#)));
    decoder.learn(4, Ok(json(r#", "floor": {"type": "number"}"#)));
    let payloads = [
        // Version 1's records may carry an undeclared site of any type: skipped, as before.
        framed_json(
            1,
            r#"{"device_id":"a","ts":"2026-11-22T10:15:00Z","site":5}"#,
        ),
        framed_json(
            2,
            r#"{"device_id":"b","ts":"2026-11-22T10:15:01Z","site":"north","floor":3}"#,
        ),
        framed_json(
            3,
            r#"{"device_id":"c","ts":"2026-11-22T10:15:02Z","site":7}"#,
        ),
        framed_json(2, r#"{"device_id":"d","ts":"2026-11-22T10:15:03Z"}"#),
        framed_json(
            4,
            r#"{"device_id":"e","ts":"2026-11-22T10:15:04Z","floor":3.5}"#,
        ),
    ];
    let records: Vec<RawRecord<'_>> = (payloads.iter().enumerate())
        .map(|(offset, payload)| RawRecord {
            payload: Some(payload),
            partition: 0,
            offset: offset as i64,
        })
        .collect();
    let decoded = decoder.decode("t", &records, 0);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let added: Vec<&str> = (decoded.added.iter())
        .map(|(field, _)| field.name().as_str())
        .collect();
    assert_eq!(added, ["site", "floor"]);
    let site = decoded.added[0].1.as_string::<i32>();
    let sites: Vec<Option<&str>> = site.iter().collect();
    assert_eq!(sites, [None, Some("north"), None, None, None]);
    let floor = decoded.added[1].1.as_primitive::<Int64Type>();
    let floors: Vec<Option<i64>> = floor.iter().collect();
    assert_eq!(floors, [None, Some(3), None, None, None]);
}
