use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use prost_reflect::prost::Message;
use prost_reflect::{DynamicMessage, MapKey, Value};

use super::ProtoRecords;
use crate::decode::confluent::{Framing, RegisteredSchema};
use crate::decode::{Decoder, Format, RawRecord, RejectKind};
use crate::schema::StreamSchema;
use crate::schema::protobuf::StreamMessage;
use crate::schema::protobuf::tests::{CUSTOMER_PROTO, ORDERS_PROTO, read};

fn stream_message() -> StreamMessage {
    StreamMessage::read("orders.proto", Some("shop.Order"), &read)
        .unwrap()
        .0
}

fn decoder(framing: Framing) -> Decoder {
    let (message, fields) = StreamMessage::read("orders.proto", None, &read).unwrap();
    let schema = StreamSchema::new(fields, "ts").unwrap();
    Decoder {
        format: Format::Protobuf(Arc::new(ProtoRecords::new(
            message,
            framing,
            vec!["date".into()],
        ))),
        ..Decoder::new(Arc::new(schema), 1024)
    }
}

/// Order `i`'s message body, as a producer's serializer writes it.
fn order(i: i64) -> Vec<u8> {
    let message = stream_message().message;
    let pool = message.parent_pool();
    let mut order = DynamicMessage::new(message.clone());
    order.set_field_by_name("order_id", Value::I64(i));
    let mut ts = DynamicMessage::new(
        pool.get_message_by_name("google.protobuf.Timestamp")
            .unwrap(),
    );
    ts.set_field_by_name("seconds", Value::I64(1_764_540_000 + i));
    ts.set_field_by_name("nanos", Value::I32(250_000_000));
    order.set_field_by_name("ts", Value::Message(ts));
    order.set_field_by_name("status", Value::EnumNumber((i % 3) as i32));
    let item = pool.get_message_by_name("shop.Order.Item").unwrap();
    let items = (0..i % 3)
        .map(|k| {
            let mut item = DynamicMessage::new(item.clone());
            item.set_field_by_name("sku", Value::String(format!("sku-{k}")));
            item.set_field_by_name("qty", Value::I32(k as i32 + 1));
            Value::Message(item)
        })
        .collect();
    order.set_field_by_name("items", Value::List(items));
    let mut customer = DynamicMessage::new(pool.get_message_by_name("shop.Customer").unwrap());
    customer.set_field_by_name("name", Value::String(format!("customer {i}")));
    customer.set_field_by_name("vip", Value::Bool(i % 2 == 0));
    order.set_field_by_name("customer", Value::Message(customer));
    if i % 2 == 1 {
        order.set_field_by_name("note", Value::String(format!("note {i}")));
    }
    order.set_field_by_name("big", Value::U64(u64::MAX - i as u64));
    let counts = [(MapKey::String("a".into()), Value::I32(i as i32))]
        .into_iter()
        .collect();
    order.set_field_by_name("counts", Value::Map(counts));
    order.encode_to_vec()
}

/// `body` in the Confluent wire format: magic byte, id, message indexes `[0]`, message.
fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

fn records(payloads: &[Vec<u8>]) -> Vec<RawRecord<'_>> {
    payloads
        .iter()
        .enumerate()
        .map(|(offset, payload)| RawRecord {
            payload: Some(payload),
            partition: 1,
            offset: offset as i64,
        })
        .collect()
}

fn registered(schema: &str, references: &[(&str, &str)]) -> RegisteredSchema {
    RegisteredSchema {
        schema_type: "PROTOBUF".into(),
        schema: schema.into(),
        references: references
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect(),
    }
}

#[test]
fn plain_messages_become_rows_with_every_value() {
    let decoder = decoder(Framing::Plain);
    let payloads: Vec<Vec<u8>> = (0..4).map(order).collect();
    let decoded = decoder.decode("orders", &records(&payloads), 0);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let batch = decoded.batch;
    assert_eq!(batch.num_rows(), 4);
    let ids = batch
        .column_by_name("order_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[0, 1, 2, 3]);
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(3), (1_764_540_003 * 1_000_000) + 250_000);
    let status = batch.column_by_name("status").unwrap().as_string::<i32>();
    assert_eq!(status.value(2), "SHIPPED");
    let note = batch.column_by_name("note").unwrap().as_string::<i32>();
    assert!(note.is_null(0));
    assert_eq!(note.value(1), "note 1");
    let big = batch
        .column_by_name("big")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(big.value(1), i128::from(u64::MAX - 1));
    let items = batch.column_by_name("items").unwrap().as_list::<i32>();
    assert_eq!(items.value(2).len(), 2);
    let customer = batch.column_by_name("customer").unwrap().as_struct();
    assert_eq!(customer.column(0).as_string::<i32>().value(3), "customer 3");
}

#[test]
fn framed_records_are_read_by_their_writer_schema_and_bad_ones_refused_alone() {
    let decoder = decoder(Framing::Confluent);
    let mut truncated = framed(4, &order(5));
    truncated.truncate(truncated.len() - 3);
    let payloads = vec![
        framed(4, &order(1)),
        framed(9, &order(2)),
        truncated,
        b"{\"json\": true}".to_vec(),
        framed(4, &order(3)),
        framed(8, &order(4)),
    ];
    let batch = records(&payloads);
    let ids = decoder.ids_to_learn(batch.iter().filter_map(|r| r.payload));
    assert_eq!(ids, vec![4, 9, 8]);
    decoder.learn(
        4,
        Ok(registered(
            ORDERS_PROTO,
            &[("customer.proto", CUSTOMER_PROTO)],
        )),
    );
    decoder.learn(9, Err("HTTP 404".into()));
    // `order_id` became text: not readable as the stream's message.
    let changed = ORDERS_PROTO.replace("int64 order_id = 1", "string order_id = 1");
    decoder.learn(
        8,
        Ok(registered(&changed, &[("customer.proto", CUSTOMER_PROTO)])),
    );
    let decoded = decoder.decode("orders", &batch, 0);
    let ids = decoded
        .batch
        .column_by_name("order_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 3]);
    let kinds: Vec<(i64, RejectKind)> = decoded
        .rejected
        .iter()
        .map(|r| (r.offset, r.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, RejectKind::UnknownSchema),
            (2, RejectKind::Schema),
            (3, RejectKind::WireFormat),
            (5, RejectKind::Incompatible),
        ]
    );
    assert!(
        decoded.rejected[3].reason.contains("order_id"),
        "{}",
        decoded.rejected[3].reason
    );
}

#[test]
fn a_writer_with_an_added_field_or_a_renumbered_one() {
    let decoder = decoder(Framing::Confluent);
    let added = ORDERS_PROTO.replace(
        "map<string, int32> counts = 8;",
        "map<string, int32> counts = 8;\n  string channel = 9;",
    );
    let moved = ORDERS_PROTO.replace("uint64 big = 7;", "uint64 big = 10;");
    decoder.learn(
        1,
        Ok(registered(&added, &[("customer.proto", CUSTOMER_PROTO)])),
    );
    decoder.learn(
        2,
        Ok(registered(&moved, &[("customer.proto", CUSTOMER_PROTO)])),
    );
    let payloads = vec![framed(1, &order(6)), framed(2, &order(7))];
    let decoded = decoder.decode("orders", &records(&payloads), 0);
    assert_eq!(
        decoded.batch.num_rows(),
        1,
        "the writer with one more field is read"
    );
    let reason = &decoded.rejected[0].reason;
    assert!(reason.contains("big") && reason.contains("10"), "{reason}");
}

#[test]
fn a_newer_writer_version_adds_its_fields_as_columns_read_in_older_rows_as_protobuf_reads_them() {
    let decoder = decoder(Framing::Confluent);
    let customer = [("customer.proto", CUSTOMER_PROTO)];
    decoder.learn(1, Ok(registered(ORDERS_PROTO, &customer)));
    // Version 2 adds an optional string, a plain (proto3) integer, a repeated string, an enum
    // and a message the stream's files define; not taken: a field named like a table column,
    // a map, and an enum only the writer's file defines.
    let v2 = ORDERS_PROTO
        .replace(
            "map<string, int32> counts = 8;",
            "map<string, int32> counts = 8;\n  optional string channel = 9;\n  int32 priority = 10;\n  \
             repeated string tags = 11;\n  string date = 12;\n  Status previous = 13;\n  \
             Customer referrer = 14;\n  map<string, string> labels = 15;\n  Via via = 16;",
        )
        .replace("message Order {", "enum Via { WEB = 0; SHOP = 1; }\n\nmessage Order {");
    decoder.learn(2, Ok(registered(&v2, &customer)));
    let mut files = crate::schema::protobuf::ProtoFiles::default();
    files
        .add_registered("customer.proto", CUSTOMER_PROTO)
        .unwrap();
    let root = files.add_registered("orders.proto", &v2).unwrap();
    let writer = files.compile(&root).unwrap();
    let pool = writer.parent_pool();
    let mut newer = DynamicMessage::decode(
        pool.get_message_by_name("shop.Order").unwrap(),
        &order(2)[..],
    )
    .unwrap();
    newer.set_field_by_name("channel", Value::String("web".into()));
    newer.set_field_by_name("priority", Value::I32(7));
    newer.set_field_by_name("tags", Value::List(vec![Value::String("x".into())]));
    newer.set_field_by_name("previous", Value::EnumNumber(2));
    let mut referrer = DynamicMessage::new(pool.get_message_by_name("shop.Customer").unwrap());
    referrer.set_field_by_name("name", Value::String("ada".into()));
    newer.set_field_by_name("referrer", Value::Message(referrer));
    newer.set_field_by_name("via", Value::EnumNumber(1));
    let payloads = vec![framed(1, &order(1)), framed(2, &newer.encode_to_vec())];
    let decoded = decoder.decode("orders", &records(&payloads), 0);
    assert!(decoded.rejected.is_empty(), "{:?}", decoded.rejected);
    let added: Vec<&str> = (decoded.added.iter())
        .map(|(field, _)| field.name().as_str())
        .collect();
    assert_eq!(
        added,
        ["channel", "priority", "tags", "previous", "referrer"]
    );
    let column = |name: &str| {
        let at = added.iter().position(|a| *a == name).unwrap();
        decoded.added[at].1.clone()
    };
    let channel = column("channel");
    let channel = channel.as_string::<i32>();
    assert!(channel.is_null(0), "version 1's row has no channel");
    assert_eq!(channel.value(1), "web");
    // Without presence in the writer's schema, version 1's row reads as protobuf reads it.
    let priority = column("priority");
    let priority = priority.as_primitive::<arrow::datatypes::Int32Type>();
    assert_eq!((priority.is_null(0), priority.value(0)), (false, 0));
    assert_eq!(priority.value(1), 7);
    let tags = column("tags");
    let tags = tags.as_list::<i32>();
    assert_eq!((tags.value_length(0), tags.value_length(1)), (0, 1));
    assert_eq!(tags.value(1).as_string::<i32>().value(0), "x");
    let previous = column("previous");
    let previous = previous.as_string::<i32>();
    assert_eq!((previous.value(0), previous.value(1)), ("NEW", "SHIPPED"));
    let referrer = column("referrer");
    let referrer = referrer.as_struct();
    assert!(referrer.is_null(0), "version 1's row has no referrer");
    let names = referrer.column_by_name("name").unwrap().as_string::<i32>();
    assert_eq!(names.value(1), "ada");
    let ids = (decoded.batch.column_by_name("order_id").unwrap()).as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 2], "the stream's columns are unchanged");
}

#[test]
fn a_registered_schema_of_another_type_is_refused() {
    let decoder = decoder(Framing::Confluent);
    decoder.learn(
        3,
        Ok(RegisteredSchema {
            schema_type: "AVRO".into(),
            ..registered("{}", &[])
        }),
    );
    let payloads = vec![framed(3, &order(1))];
    let decoded = decoder.decode("orders", &records(&payloads), 0);
    assert_eq!(decoded.rejected[0].kind, RejectKind::Incompatible);
    assert!(decoded.rejected[0].reason.contains("AVRO"));
}
