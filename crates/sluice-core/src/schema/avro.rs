//! Avro schemas as stream schemas: an Avro record schema (a `.avsc` file) gives the stream's
//! fields, with the Arrow types arrow-avro decodes them to, turned into types a Delta table
//! holds (timestamps in microseconds, enums as text, fixed as bytes).

use std::sync::Arc;

use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef, TimeUnit};
use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

use super::{FieldType, SchemaField, utc_micros};

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
                .map_err(|err| format!("field {}: {err}", field.name()))?;
            Ok(SchemaField {
                name: field.name().clone(),
                ty,
                required: !field.is_nullable(),
            })
        })
        .collect()
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

/// The stream field type of a decoded Arrow type: the JSON-like types as such, anything else
/// as the Arrow type a Delta table stores it as.
fn field_type(decoded: &DataType) -> Result<FieldType, String> {
    let lake = lake_type(decoded)?;
    if !can_cast_types(decoded, &lake) {
        return Err(format!(
            "Avro type decoded as {decoded} cannot be stored as {lake}"
        ));
    }
    Ok(match lake {
        DataType::Utf8 => FieldType::String,
        DataType::Int64 => FieldType::Int64,
        DataType::Float64 => FieldType::Float64,
        DataType::Boolean => FieldType::Boolean,
        DataType::Date32 => FieldType::Date,
        ty if ty == utc_micros() => FieldType::Timestamp,
        other => FieldType::Arrow(other),
    })
}

/// The type a Delta table stores values of a decoded Arrow type as (a cast of the decoded
/// column gives it), or why there is none.
pub fn lake_type(decoded: &DataType) -> Result<DataType, String> {
    Ok(match decoded {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::Binary
        | DataType::Date32 => decoded.clone(),
        DataType::Decimal128(precision, scale) => DataType::Decimal128(*precision, *scale),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::Timestamp(_, Some(_)) => utc_micros(),
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        // Enums: their symbols as text.
        DataType::Dictionary(_, values) => lake_type(values)?,
        DataType::Struct(fields) => DataType::Struct(lake_fields(fields)?),
        DataType::List(item) | DataType::LargeList(item) => {
            DataType::List(Arc::new(lake_field(item)?))
        }
        DataType::Map(entries, sorted) => DataType::Map(Arc::new(lake_field(entries)?), *sorted),
        other => {
            return Err(format!(
                "Avro type decoded as {other} has no Delta type (time of day, duration, unions of several types and decimals over 38 digits are not supported)"
            ));
        }
    })
}

fn lake_fields(fields: &Fields) -> Result<Fields, String> {
    fields.iter().map(|field| lake_field(field)).collect()
}

/// A nested field as a Delta table stores it: its type mapped, Avro's metadata dropped.
fn lake_field(field: &Field) -> Result<Field, String> {
    let ty = lake_type(field.data_type()).map_err(|err| format!("{}: {err}", field.name()))?;
    Ok(Field::new(field.name(), ty, field.is_nullable()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
