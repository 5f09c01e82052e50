//! Tests of batch decoding: good rows, isolated bad records and their reasons, limits.

use arrow::array::Float64Array;
use arrow::datatypes::{Date32Type, Int32Type, Int64Type};

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
    assert!(reason(106).contains("2 JSON values"), "{}", reason(106));
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
    assert!(
        reason(0).unwrap().contains("nested deeper than 128"),
        "{reasons:?}"
    );
    assert_eq!(reason(1), None, "brackets inside a string are not nesting");
    assert!(
        reason(2).unwrap().contains("max_record_size of 1024 bytes"),
        "{reasons:?}"
    );
    assert!(reason(3).is_some(), "1e999 is not a float64: {reasons:?}");
    assert!(reason(4).is_some(), "a timestamp beyond int64: {reasons:?}");
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
