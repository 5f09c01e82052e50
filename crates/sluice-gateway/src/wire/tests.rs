use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use sluice_core::{Decoder, Pipeline, RawRecord};

use super::*;

const ORDER_AVSC: &str = r#"{"type": "record", "name": "Order", "namespace": "shop", "fields": [
    {"name": "order_id", "type": "long"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}},
    {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item",
        "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
    {"name": "note", "type": ["null", "string"], "default": null}
]}"#;

const ORDER_PROTO: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  enum Status { NEW = 0; PAID = 1; }
  message Item { string sku = 1; int32 qty = 2; }
  int64 order_id = 1;
  google.protobuf.Timestamp ts = 2;
  Status status = 3;
  repeated Item items = 4;
  optional string note = 5;
}
"#;

/// A stream of `format` (plain bodies: no registry), with its schema file.
fn stream(format: &str) -> sluice_core::config::Stream {
    let schema = if format == "avro" {
        "order.avsc"
    } else {
        "order.proto"
    };
    let text = format!(
        r#"
        [kafka]
        group = "g"
        [[streams]]
        name = "orders"
        topic = "orders"
        format = "{format}"
        schema = "{schema}"
        event_time = "ts"
        [[tables]]
        name = "orders"
        from = "orders"
        uri = "/tmp/orders"
        "#
    );
    let pipeline = Pipeline::parse(Path::new("test.toml"), &text, |file| {
        Ok(if file.ends_with(".avsc") {
            ORDER_AVSC
        } else {
            ORDER_PROTO
        }
        .to_string())
    })
    .unwrap();
    pipeline.streams[0].clone()
}

/// Encodes `json` for `stream` and decodes it back with sluice's own decoder.
async fn round_trip(stream: &sluice_core::config::Stream, json: &str) -> RecordBatch {
    let wire = WireFormat::of_stream(stream).await.unwrap();
    let encoded = wire.encode(json.as_bytes()).unwrap();
    let decoder = Decoder::of_stream(stream);
    let record = RawRecord {
        payload: Some(&encoded),
        partition: 0,
        offset: 0,
    };
    let decoded = decoder.decode("orders", &[record], 0);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    decoded.batch
}

const ORDER: &str = r#"{"order_id": 42, "ts": "2026-12-01T10:00:00.123Z", "status": "PAID",
    "amount": "12.50", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}], "note": null}"#;

#[tokio::test]
async fn json_records_become_avro_bodies_that_decode_to_the_same_values() {
    let batch = round_trip(&stream("avro"), ORDER).await;
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(column("order_id").as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(
        column("ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_796_119_200_123_000
    );
    assert_eq!(column("status").as_string::<i32>().value(0), "PAID");
    assert_eq!(column("items").as_list::<i32>().value(0).len(), 2);
    assert!(column("note").is_null(0));
}

#[tokio::test]
async fn json_records_become_protobuf_messages_that_decode_to_the_same_values() {
    let json = ORDER.replace(r#""amount": "12.50", "#, "");
    let batch = round_trip(&stream("protobuf"), &json).await;
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(column("order_id").as_primitive::<Int64Type>().value(0), 42);
    assert_eq!(
        column("ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        1_796_119_200_123_000
    );
    assert_eq!(column("status").as_string::<i32>().value(0), "PAID");
    let items = column("items");
    let items = items.as_list::<i32>().value(0);
    assert_eq!(items.as_struct().column(0).as_string::<i32>().value(1), "b");
    assert!(column("note").is_null(0));
}

#[tokio::test]
async fn a_record_that_does_not_fit_is_refused_with_the_field() {
    let wire = WireFormat::of_stream(&stream("avro")).await.unwrap();
    let err = wire
        .encode(
            ORDER
                .replace(r#""status": "PAID""#, r#""status": 7"#)
                .as_bytes(),
        )
        .unwrap_err();
    assert!(err.contains("status"), "{err}");
    let err = wire
        .encode(
            ORDER
                .replace(r#""status": "PAID""#, r#""status": "LOST""#)
                .as_bytes(),
        )
        .unwrap_err();
    assert!(err.contains("LOST") || err.contains("status"), "{err}");
    let err = wire.encode(br#"{"order_id": 1}"#).unwrap_err();
    assert!(err.contains("ts") || err.contains("does not fit"), "{err}");
    // The encoder kept between records still writes whole ones after the refusals, one each.
    let first = wire.encode(ORDER.as_bytes()).unwrap();
    assert_eq!(wire.encode(ORDER.as_bytes()).unwrap(), first);
}

#[tokio::test]
async fn an_unknown_protobuf_enum_name_is_refused_not_sent_as_the_default() {
    let wire = WireFormat::of_stream(&stream("protobuf")).await.unwrap();
    let json = ORDER
        .replace(r#""amount": "12.50", "#, "")
        .replace(r#""status": "PAID""#, r#""status": "LOST""#);
    let err = wire.encode(json.as_bytes()).unwrap_err();
    assert!(err.contains("LOST"), "{err}");
}
