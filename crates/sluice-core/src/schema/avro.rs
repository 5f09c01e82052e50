//! Avro schemas as stream schemas: an Avro record schema (a `.avsc` file) gives the stream's
//! fields, with the Arrow types arrow-avro decodes them to, turned into types a Delta table
//! holds (timestamps in microseconds, enums as text, fixed as bytes).

use arrow::datatypes::SchemaRef;
use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

use super::SchemaField;
use super::lake::field_type;

/// The id an Avro schema is known by when records carry no id (plain Avro, one schema file).
pub const PLAIN_AVRO_ID: u32 = 0;

/// The stream fields of an Avro record schema, in its order; a field whose type is not a
/// union with `"null"` is required.
pub fn fields_from_avro_schema(text: &str) -> Result<Vec<SchemaField>, String> {
    let decoded = avro_arrow_schema(text)?;
    decoded
        .fields()
        .iter()
        .map(|field| {
            let ty = field_type(field.data_type())
                .map_err(|err| format!("field {}: Avro type {err}", field.name()))?;
            Ok(SchemaField {
                name: field.name().clone(),
                ty,
                required: !field.is_nullable(),
            })
        })
        .collect()
}

/// The reader schema `reader` (JSON text) with the top-level fields of the writer schema
/// `writer` that it lacks appended, each made nullable with a null default (a union with
/// `"null"` first), so that records of older writers read as null there: the schema a stream
/// reads once a newer writer version added fields. A field named as one of `reserved` (the
/// table's other columns) is not taken. `None` when `writer` adds no field, or either is not
/// a record schema.
pub fn with_fields_added_by(reader: &str, writer: &str, reserved: &[String]) -> Option<String> {
    let mut reader: serde_json::Value = serde_json::from_str(reader).ok()?;
    let writer: serde_json::Value = serde_json::from_str(writer).ok()?;
    let known: Vec<String> = (reader.get("fields")?.as_array()?.iter())
        .filter_map(|field| field.get("name")?.as_str().map(String::from))
        .chain(reserved.iter().cloned())
        .collect();
    let added: Vec<serde_json::Value> = (writer.get("fields")?.as_array()?.iter())
        .filter(|field| {
            (field.get("name").and_then(|name| name.as_str()))
                .is_some_and(|name| !known.iter().any(|known| known == name))
        })
        .map(|field| {
            let mut field = field.clone();
            let ty = field
                .get("type")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let nullable = match ty {
                serde_json::Value::Array(branches) => {
                    let others = branches.into_iter().filter(|b| b != "null");
                    std::iter::once(serde_json::Value::from("null"))
                        .chain(others)
                        .collect()
                }
                other => serde_json::json!(["null", other]),
            };
            field["type"] = nullable;
            field["default"] = serde_json::Value::Null;
            field
        })
        .collect();
    if added.is_empty() {
        return None;
    }
    reader.get_mut("fields")?.as_array_mut()?.extend(added);
    Some(reader.to_string())
}

/// The Arrow schema arrow-avro decodes records of this Avro schema to.
pub fn avro_arrow_schema(text: &str) -> Result<SchemaRef, String> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store
        .set(
            Fingerprint::Id(PLAIN_AVRO_ID),
            AvroSchema::new(text.to_string()),
        )
        .map_err(|err| format!("not an Avro schema: {err}"))?;
    let decoder = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .build_decoder()
        .map_err(|err| format!("not an Avro schema: {err}"))?;
    let schema = decoder.schema();
    if schema.fields().is_empty() {
        return Err("expected an Avro record schema with fields".into());
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;

    use super::*;
    use crate::schema::{FieldType, utc_micros};

    const ORDER: &str = r#"{
        "type": "record", "name": "Order", "namespace": "shop",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "qty", "type": "int"},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
                {"name": "name", "type": "string"},
                {"name": "since", "type": {"type": "long", "logicalType": "timestamp-micros"}}
            ]}},
            {"name": "note", "type": ["null", "string"], "default": null}
        ]
    }"#;

    #[test]
    fn an_avro_record_gives_fields_with_lake_types() {
        let fields = fields_from_avro_schema(ORDER).unwrap();
        let by_name = |name: &str| fields.iter().find(|f| f.name == name).unwrap();
        assert_eq!(by_name("id").ty, FieldType::String);
        assert!(by_name("id").required);
        assert_eq!(by_name("ts").ty, FieldType::Timestamp);
        assert_eq!(by_name("qty").ty, FieldType::Arrow(DataType::Int32));
        assert_eq!(
            by_name("price").ty,
            FieldType::Arrow(DataType::Decimal128(10, 2))
        );
        assert_eq!(by_name("status").ty, FieldType::String);
        assert!(matches!(
            by_name("tags").ty,
            FieldType::Arrow(DataType::List(_))
        ));
        let FieldType::Arrow(DataType::Struct(customer)) = &by_name("customer").ty else {
            panic!("customer is a struct");
        };
        assert_eq!(customer[1].data_type(), &utc_micros());
        assert_eq!(by_name("note").ty, FieldType::String);
        assert!(!by_name("note").required);
    }

    #[test]
    fn what_delta_cannot_hold_is_refused_by_name() {
        let time = r#"{"type": "record", "name": "R", "fields": [
            {"name": "at", "type": {"type": "int", "logicalType": "time-millis"}}]}"#;
        let err = fields_from_avro_schema(time).unwrap_err();
        assert!(
            err.contains("field at") && err.contains("no Delta type"),
            "{err}"
        );
        assert!(
            fields_from_avro_schema(r#"{"type": "string"}"#).is_err(),
            "a schema that is not a record"
        );
        assert!(
            fields_from_avro_schema("{not json")
                .unwrap_err()
                .contains("not an Avro schema")
        );
    }
}
