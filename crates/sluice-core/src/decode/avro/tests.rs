use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};

use super::Framing;
use crate::decode::confluent::RegisteredSchema;
use crate::decode::{Decoder, Format, RawRecord, RejectKind};
use crate::schema::StreamSchema;
use crate::schema::avro::{avro_arrow_schema, fields_from_avro_schema};

use super::AvroRecords;

const READING: &str = r#"{"type": "record", "name": "Reading", "fields": [
    {"name": "device", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "n", "type": ["null", "int"], "default": null}
]}"#;

/// Version 1 of the writers: no `n`.
const READING_V1: &str = r#"{"type": "record", "name": "Reading", "fields": [
    {"name": "device", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}"#;

/// `device` became a number: not readable as the stream's schema.
const READING_BROKEN: &str = r#"{"type": "record", "name": "Reading", "fields": [
    {"name": "device", "type": "double"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}
]}"#;

fn avro_schema(text: &str) -> RegisteredSchema {
    RegisteredSchema {
        schema_type: "AVRO".into(),
        schema: text.into(),
        references: Vec::new(),
    }
}

fn zigzag(value: i64, out: &mut Vec<u8>) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// An Avro body of `READING` (or of `READING_V1` when `n` is `None` and `v1`).
fn body(device: &str, ts_ms: i64, n: Option<i32>, v1: bool) -> Vec<u8> {
    let mut out = Vec::new();
    zigzag(device.len() as i64, &mut out);
    out.extend_from_slice(device.as_bytes());
    zigzag(ts_ms, &mut out);
    if !v1 {
        match n {
            None => zigzag(0, &mut out),
            Some(n) => {
                zigzag(1, &mut out);
                zigzag(i64::from(n), &mut out);
            }
        }
    }
    out
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn decoder(framing: Framing) -> Decoder {
    let schema = StreamSchema::new(fields_from_avro_schema(READING).unwrap(), "ts").unwrap();
    let avro = AvroRecords::new(
        READING,
        avro_arrow_schema(READING).unwrap(),
        framing,
        vec![],
    );
    Decoder {
        format: Format::Avro(Arc::new(avro)),
        ..Decoder::new(Arc::new(schema), 1024)
    }
}

fn records(payloads: &[Vec<u8>]) -> Vec<RawRecord<'_>> {
    payloads
        .iter()
        .enumerate()
        .map(|(offset, payload)| RawRecord {
            payload: Some(payload),
            partition: 3,
            offset: offset as i64,
        })
        .collect()
}

#[test]
fn confluent_records_of_several_writer_versions_become_rows_in_order() {
    let decoder = decoder(Framing::Confluent);
    let payloads = vec![
        framed(7, &body("a", 1_000, Some(1), false)),
        framed(5, &body("b", 2_000, None, true)),
        framed(7, &body("c", 3_000, None, false)),
    ];
    let payload_slices = || payloads.iter().map(Vec::as_slice);
    assert_eq!(decoder.ids_to_learn(payload_slices()), [7, 5]);
    decoder.learn(7, Ok(avro_schema(READING)));
    decoder.learn(5, Ok(avro_schema(READING_V1)));
    assert!(decoder.ids_to_learn(payload_slices()).is_empty());

    let decoded = decoder.decode("readings", &records(&payloads), 42);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let batch = decoded.batch;
    let devices: Vec<&str> = batch
        .column_by_name("device")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(devices, ["a", "b", "c"]);
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.values().to_vec(), [1_000_000, 2_000_000, 3_000_000]);
    let n = batch
        .column_by_name("n")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(n.iter().collect::<Vec<_>>(), [Some(1), None, None]);
    let offsets = batch.column_by_name("_offset").unwrap();
    assert_eq!(offsets.len(), 3);
}

#[test]
fn bad_records_are_rejected_alone_with_their_reason() {
    let decoder = decoder(Framing::Confluent);
    let good = framed(1, &body("ok", 1_000, Some(2), false));
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 2);
    let mut trailing = good.clone();
    trailing.push(9);
    let payloads = vec![
        good.clone(),
        truncated,
        b"{\"device\": \"json\"}".to_vec(),
        vec![0, 0, 0],
        framed(404, &body("x", 1, None, false)),
        framed(2, &body("broken", 1, None, true)),
        trailing,
        framed(1, &body("late", i64::MAX, None, false)),
        framed(3, b"{}"),
        good,
    ];
    decoder.learn(1, Ok(avro_schema(READING)));
    decoder.learn(404, Err("schema id 404 is not in the registry".into()));
    decoder.learn(2, Ok(avro_schema(READING_BROKEN)));
    let json_schema = RegisteredSchema {
        schema_type: "JSON".into(),
        schema: "{}".into(),
        references: Vec::new(),
    };
    decoder.learn(3, Ok(json_schema));

    let decoded = decoder.decode("readings", &records(&payloads), 42);
    assert_eq!(decoded.batch.num_rows(), 2);
    let offsets: Vec<i64> = decoded
        .batch
        .column_by_name("_offset")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .to_vec();
    assert_eq!(offsets, [0, 9]);
    let kinds: Vec<(i64, RejectKind)> = decoded
        .rejected
        .iter()
        .map(|r| (r.offset, r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (1, RejectKind::Schema),
            (2, RejectKind::WireFormat),
            (3, RejectKind::WireFormat),
            (4, RejectKind::UnknownSchema),
            (5, RejectKind::Incompatible),
            (6, RejectKind::Schema),
            (7, RejectKind::Schema),
            (8, RejectKind::Incompatible),
        ]
    );
    let reasons: Vec<&str> = decoded.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[1].contains("magic byte 0x7b"), "{}", reasons[1]);
    assert!(reasons[2].contains("shorter than"), "{}", reasons[2]);
    assert!(reasons[3].contains("not in the registry"), "{}", reasons[3]);
    assert!(reasons[4].contains("writer schema id 2"), "{}", reasons[4]);
    assert!(reasons[6].contains("event time field ts"), "{}", reasons[6]);
    assert!(
        reasons[7].contains("a JSON schema; the stream reads Avro"),
        "{}",
        reasons[7]
    );
}

#[test]
fn plain_avro_bodies_are_read_with_the_stream_schema() {
    let decoder = decoder(Framing::Plain);
    let payloads = vec![body("a", 5, Some(3), false), b"".to_vec(), vec![0xff; 3]];
    assert!(
        decoder
            .ids_to_learn(payloads.iter().map(Vec::as_slice))
            .is_empty()
    );
    let decoded = decoder.decode("readings", &records(&payloads), 42);
    assert_eq!(decoded.batch.num_rows(), 1);
    let kinds: Vec<RejectKind> = decoded.rejected.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [RejectKind::Empty, RejectKind::Schema]);
}

const ORDER: &str = r#"{"type": "record", "name": "Order", "fields": [
    {"name": "ts", "type": "long"},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "customer", "type": ["null", {"type": "record", "name": "Customer", "fields": [
        {"name": "since", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tier", "type": {"type": "enum", "name": "Tier", "symbols": ["GOLD", "TIN"]}}
    ]}]}
]}"#;

#[test]
fn nested_records_enums_decimals_and_arrays_become_lake_types() {
    let schema = StreamSchema::new(fields_from_avro_schema(ORDER).unwrap(), "ts").unwrap();
    let avro = AvroRecords::new(
        ORDER,
        avro_arrow_schema(ORDER).unwrap(),
        Framing::Plain,
        vec![],
    );
    let decoder = Decoder {
        format: Format::Avro(Arc::new(avro)),
        ..Decoder::new(Arc::new(schema), 1024)
    };
    let mut body = Vec::new();
    zigzag(1_700_000_000_123, &mut body); // ts: epoch milliseconds
    zigzag(2, &mut body); // price: 2 bytes, 0x3039 = 12345 → 123.45
    body.extend_from_slice(&[0x30, 0x39]);
    zigzag(1, &mut body); // status: PAID
    zigzag(2, &mut body); // tags: a block of two
    for tag in ["x", "yz"] {
        zigzag(tag.len() as i64, &mut body);
        body.extend_from_slice(tag.as_bytes());
    }
    zigzag(0, &mut body); // end of the array
    let customer_at = body.len();
    zigzag(1, &mut body); // customer: the record branch
    zigzag(86_400_000, &mut body);
    zigzag(0, &mut body); // tier: GOLD
    let mut no_customer = body.clone();
    no_customer.truncate(customer_at);
    zigzag(0, &mut no_customer); // customer: null

    let payloads = vec![body, no_customer];
    let decoded = decoder.decode("orders", &records(&payloads), 1);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let batch = decoded.batch;
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 1_700_000_000_123_000);
    let price = batch
        .column_by_name("price")
        .unwrap()
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    assert_eq!(price.value_as_string(0), "123.45");
    let status = batch.column_by_name("status").unwrap().as_string::<i32>();
    assert_eq!(status.value(0), "PAID");
    let tags = batch.column_by_name("tags").unwrap().as_list::<i32>();
    assert_eq!(
        tags.value(0)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect::<Vec<_>>(),
        ["x", "yz"]
    );
    let customer = batch.column_by_name("customer").unwrap().as_struct();
    assert!(customer.is_valid(0) && customer.is_null(1));
    let since = customer
        .column(0)
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(since.value(0), 86_400_000_000);
    assert_eq!(since.timezone(), Some("UTC"));
    assert_eq!(customer.column(1).as_string::<i32>().value(0), "GOLD");
}

/// A stream reading `READING_V1` meets writer `READING` (which adds `n`): `n` becomes a column
/// beside the stream's, null for records of the old writer.
#[test]
fn a_writer_that_adds_a_field_widens_the_reader_with_a_column_of_its_own() {
    let schema = StreamSchema::new(fields_from_avro_schema(READING_V1).unwrap(), "ts").unwrap();
    let avro = AvroRecords::new(
        READING_V1,
        avro_arrow_schema(READING_V1).unwrap(),
        Framing::Confluent,
        vec!["date".into()],
    );
    let decoder = Decoder {
        format: Format::Avro(Arc::new(avro)),
        ..Decoder::new(Arc::new(schema), 1024)
    };
    decoder.learn(1, Ok(avro_schema(READING_V1)));
    let before = decoder.decode(
        "r",
        &records(&[framed(1, &body("a", 1_000, None, true))]),
        0,
    );
    assert!(before.added.is_empty());

    decoder.learn(2, Ok(avro_schema(READING)));
    decoder.learn(3, Ok(avro_schema(READING_BROKEN)));
    let payloads = vec![
        framed(1, &body("a", 1_000, None, true)),
        framed(2, &body("b", 2_000, Some(7), false)),
        framed(3, &body("c", 3_000, None, true)),
    ];
    let decoded = decoder.decode("r", &records(&payloads), 0);
    assert_eq!(decoded.rejected.len(), 1, "{:?}", decoded.rejected);
    assert_eq!(decoded.rejected[0].kind, RejectKind::Incompatible);
    // The stream's columns are as before; `n` comes beside them.
    assert!(decoded.batch.column_by_name("n").is_none());
    let [(field, n)] = &decoded.added[..] else {
        panic!("{:?}", decoded.added)
    };
    assert_eq!((field.name().as_str(), field.is_nullable()), ("n", true));
    let n = n.as_primitive::<Int32Type>();
    assert_eq!(n.iter().collect::<Vec<_>>(), [None, Some(7)]);
    let with_added = decoded.with_added();
    assert_eq!(
        with_added
            .schema()
            .fields()
            .last()
            .map(|f| f.name().as_str()),
        Some("n")
    );
}

#[test]
fn fields_a_writer_adds_are_appended_nullable_with_a_null_default() {
    let widened = crate::schema::avro::with_fields_added_by(READING_V1, READING, &[]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&widened).unwrap();
    assert_eq!(
        json["fields"][2],
        serde_json::json!({"name": "n", "type": ["null", "int"], "default": null})
    );
    let required = r#"{"type": "record", "name": "Reading", "fields": [
        {"name": "device", "type": "string"}, {"name": "site", "type": "string"}]}"#;
    let widened = crate::schema::avro::with_fields_added_by(READING_V1, required, &[]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&widened).unwrap();
    assert_eq!(
        json["fields"][2]["type"],
        serde_json::json!(["null", "string"])
    );
    assert_eq!(
        crate::schema::avro::with_fields_added_by(READING, READING_V1, &[]),
        None
    );
    // A field named as one of the table's other columns is not taken.
    let reserved = ["n".to_string()];
    assert_eq!(
        crate::schema::avro::with_fields_added_by(READING_V1, READING, &reserved),
        None
    );
}
