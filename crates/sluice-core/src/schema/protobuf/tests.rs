use arrow::datatypes::DataType;

use super::*;
use crate::schema::{FieldType, utc_micros};

pub(crate) const ORDERS_PROTO: &str = r#"
syntax = "proto3";
package shop;

import "google/protobuf/timestamp.proto";
import "customer.proto";

enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }

message Order {
  message Item {
    string sku = 1;
    int32 qty = 2;
  }
  int64 order_id = 1;
  google.protobuf.Timestamp ts = 2;
  Status status = 3;
  repeated Item items = 4;
  Customer customer = 5;
  optional string note = 6;
  uint64 big = 7;
  map<string, int32> counts = 8;
}
"#;

pub(crate) const CUSTOMER_PROTO: &str = r#"
syntax = "proto3";
package shop;
message Customer { string name = 1; bool vip = 2; }
"#;

/// Reads the two files above, by name.
pub(crate) fn read(name: &str) -> std::io::Result<String> {
    match name {
        "orders.proto" => Ok(ORDERS_PROTO.into()),
        "customer.proto" => Ok(CUSTOMER_PROTO.into()),
        _ => Err(std::io::ErrorKind::NotFound.into()),
    }
}

#[test]
fn a_message_gives_fields_with_lake_types() {
    let (message, fields) = StreamMessage::read("orders.proto", Some("shop.Order"), &read).unwrap();
    assert_eq!(message.message.full_name(), "shop.Order");
    let by_name = |name: &str| fields.iter().find(|f| f.name == name).unwrap();
    assert_eq!(by_name("order_id").ty, FieldType::Int64);
    assert!(
        by_name("order_id").required,
        "a proto3 scalar is never missing"
    );
    assert_eq!(by_name("ts").ty, FieldType::Timestamp);
    assert!(!by_name("ts").required, "a message field may be unset");
    assert_eq!(by_name("status").ty, FieldType::String);
    assert_eq!(by_name("note").ty, FieldType::String);
    assert!(!by_name("note").required);
    assert_eq!(
        by_name("big").ty,
        FieldType::Arrow(DataType::Decimal128(20, 0))
    );
    let FieldType::Arrow(DataType::List(item)) = &by_name("items").ty else {
        panic!("items is a list: {:?}", by_name("items").ty);
    };
    let DataType::Struct(item) = item.data_type() else {
        panic!("of structs");
    };
    assert_eq!(item[1].data_type(), &DataType::Int32);
    assert!(matches!(
        by_name("customer").ty,
        FieldType::Arrow(DataType::Struct(_))
    ));
    assert!(matches!(
        by_name("counts").ty,
        FieldType::Arrow(DataType::Map(..))
    ));
    assert_ne!(by_name("ts").ty.arrow(), DataType::Int64);
    assert_eq!(by_name("ts").ty.arrow(), utc_micros());
}

#[test]
fn the_message_is_found_by_short_name_or_as_the_only_one() {
    let file = ProtoFiles::read("orders.proto", &read)
        .unwrap()
        .compile("orders.proto")
        .unwrap();
    assert_eq!(
        find_message(&file, Some("Order")).unwrap().full_name(),
        "shop.Order"
    );
    assert_eq!(find_message(&file, None).unwrap().full_name(), "shop.Order");
    let err = find_message(&file, Some("Invoice")).unwrap_err();
    assert!(
        err.contains("no message Invoice") && err.contains("shop.Order"),
        "{err}"
    );
}

#[test]
fn a_missing_import_or_a_syntax_error_is_named() {
    let only_orders = |name: &str| match name {
        "orders.proto" => Ok(ORDERS_PROTO.to_string()),
        _ => Err(std::io::ErrorKind::NotFound.into()),
    };
    let err = StreamMessage::read("orders.proto", None, &only_orders).unwrap_err();
    assert!(err.contains("customer.proto"), "{err}");
    let broken = |_: &str| Ok("syntax = \"proto3\"; message { }".to_string());
    let err = StreamMessage::read("broken.proto", None, &broken).unwrap_err();
    assert!(err.contains("broken.proto"), "{err}");
}

#[test]
fn a_registered_schema_is_read_as_text_or_as_a_serialized_descriptor() {
    let file = ProtoFiles::read("orders.proto", &read)
        .unwrap()
        .compile("orders.proto")
        .unwrap();
    let serialized = base64::engine::general_purpose::STANDARD.encode(
        prost_reflect::prost::Message::encode_to_vec(file.file_descriptor_proto()),
    );
    let mut files = ProtoFiles::default();
    files
        .add_registered("customer.proto", CUSTOMER_PROTO)
        .unwrap();
    let name = files.add_registered("schema-7.proto", &serialized).unwrap();
    assert_eq!(name, "orders.proto", "a descriptor keeps its own name");
    let compiled = files.compile(&name).unwrap();
    assert_eq!(
        find_message(&compiled, None).unwrap().full_name(),
        "shop.Order"
    );
}

#[test]
fn a_message_path_counts_top_level_then_nested_messages() {
    let file = ProtoFiles::read("orders.proto", &read)
        .unwrap()
        .compile("orders.proto")
        .unwrap();
    let pool = file.parent_pool();
    assert_eq!(
        message_path(&pool.get_message_by_name("shop.Order").unwrap()),
        vec![0]
    );
    assert_eq!(
        message_path(&pool.get_message_by_name("shop.Order.Item").unwrap()),
        vec![0, 0]
    );
    let path = message_path(&pool.get_message_by_name("shop.Order.Item").unwrap());
    let encoded = crate::decode::confluent::encode_message_indexes(&path);
    assert_eq!(
        crate::decode::confluent::message_indexes(&encoded).unwrap(),
        (path, encoded.len())
    );
}
