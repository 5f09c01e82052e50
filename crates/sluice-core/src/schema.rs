//! Stream schemas: the fields a stream's records carry, mapped to Arrow types.
//!
//! A schema comes from a JSON Schema file (the same file the gateway validates with), from an
//! inline field list in the pipeline file, from an Avro schema ([`avro`]) or from a Protobuf
//! message ([`protobuf`]); [`lake`] maps the types those decode to onto Delta's. Every table written from a stream has the same
//! layout: the stream's fields, then the lineage columns that say where each row came from in
//! Kafka, then the `date`/`hour` columns derived from event time that tables partition by.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use crate::expressions::SqlExpr;

pub mod avro;
pub mod lake;
pub mod protobuf;

/// Lineage column: the Kafka topic a row was read from.
pub const TOPIC_COLUMN: &str = "_topic";
/// Lineage column: the Kafka partition a row was read from.
pub const PARTITION_COLUMN: &str = "_partition";
/// Lineage column: the Kafka offset of the record a row was decoded from.
pub const OFFSET_COLUMN: &str = "_offset";
/// Lineage column: when sluice decoded the row (UTC).
pub const INGESTED_AT_COLUMN: &str = "_ingested_at";
/// Derived column: the UTC date of the row's event time.
pub const DATE_COLUMN: &str = "date";
/// Derived column: the UTC hour (0–23) of the row's event time.
pub const HOUR_COLUMN: &str = "hour";

/// Columns sluice adds to every row; a stream may not declare fields with these names.
pub const RESERVED_COLUMNS: [&str; 6] = [
    TOPIC_COLUMN,
    PARTITION_COLUMN,
    OFFSET_COLUMN,
    INGESTED_AT_COLUMN,
    DATE_COLUMN,
    HOUR_COLUMN,
];

/// The type of one field of a stream, as written in the pipeline file or a JSON Schema, or as
/// an Avro schema gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// A 64-bit signed integer.
    Int64,
    /// A 64-bit float.
    Float64,
    /// true or false.
    Boolean,
    /// An instant: RFC 3339 text or epoch milliseconds, stored as UTC microseconds.
    Timestamp,
    /// A calendar date, written as "YYYY-MM-DD".
    Date,
    /// Any other Arrow type a binary format carries (records, arrays, maps, decimals, 32-bit
    /// numbers, bytes): Avro streams only, never decoded from JSON.
    Arrow(DataType),
}

impl FieldType {
    /// The names accepted in an inline field list, for error messages.
    pub const NAMES: &str = "string, int64, float64, boolean, timestamp, date";

    /// Parses a type name of an inline field list (a few common aliases are accepted).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "string" | "utf8" | "text" => Self::String,
            "int64" | "integer" | "long" | "bigint" => Self::Int64,
            "float64" | "double" | "number" => Self::Float64,
            "boolean" | "bool" => Self::Boolean,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            _ => return None,
        })
    }

    /// The type's name as an inline field list writes it.
    pub fn name(&self) -> String {
        String::from(match self {
            Self::String => "string",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
            Self::Date => "date",
            Self::Arrow(ty) => return ty.to_string(),
        })
    }

    /// The Arrow type rows of this field are stored as.
    pub fn arrow(&self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Timestamp => utc_micros(),
            Self::Date => DataType::Date32,
            Self::Arrow(ty) => ty.clone(),
        }
    }
}

/// Timestamps are stored as UTC microseconds: the type Delta Lake's `timestamp` maps to.
pub fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// One field of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaField {
    /// The JSON property name, also the column name.
    pub name: String,
    /// The type its values decode to.
    pub ty: FieldType,
    /// A record without this field (or with null) is rejected.
    pub required: bool,
}

/// The validated schema of a stream: its fields and which one holds event time.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSchema {
    fields: Vec<SchemaField>,
    event_time_index: usize,
    /// Columns computed from the others by SQL, appended after `date` and `hour` in order
    /// (each may use the ones before it).
    derived: Vec<(String, SqlExpr)>,
}

impl StreamSchema {
    /// Builds a schema; the event-time field becomes a required timestamp whatever its declared
    /// type (records may carry it as RFC 3339 text or epoch milliseconds).
    pub fn new(mut fields: Vec<SchemaField>, event_time: &str) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        for field in &fields {
            if !seen.insert(field.name.as_str()) {
                return Err(format!("field {:?} is declared twice", field.name));
            }
            if RESERVED_COLUMNS.contains(&field.name.as_str()) {
                return Err(format!(
                    "field {:?} clashes with a column sluice adds to every row ({})",
                    field.name,
                    RESERVED_COLUMNS.join(", ")
                ));
            }
        }
        let event_time_index = fields
            .iter()
            .position(|field| field.name == event_time)
            .ok_or_else(|| {
                format!("the event-time field {event_time:?} is not among the schema's fields")
            })?;
        let field = &mut fields[event_time_index];
        if !matches!(
            field.ty,
            FieldType::Timestamp | FieldType::String | FieldType::Int64
        ) {
            return Err(format!(
                "the event-time field {event_time:?} must be a timestamp, RFC 3339 string or epoch-millisecond integer"
            ));
        }
        field.ty = FieldType::Timestamp;
        field.required = true;
        Ok(Self {
            fields,
            event_time_index,
            derived: Vec::new(),
        })
    }

    /// Adds a column computed by `sql` from the columns so far; `name` must be new.
    pub fn derive(&mut self, name: &str, sql: &str) -> Result<(), String> {
        let schema = self.table_schema();
        if schema.column_with_name(name).is_some() {
            return Err(format!("a column named {name:?} exists already"));
        }
        let expr = SqlExpr::compile(sql, &schema)?;
        self.derived.push((name.to_string(), expr));
        Ok(())
    }

    /// The derived columns: name and expression, in order.
    pub fn derived(&self) -> &[(String, SqlExpr)] {
        &self.derived
    }

    /// A JSON Schema that records of this stream satisfy: each field with its JSON type, nullable
    /// unless required. The gateway validates with it when the stream has no schema file.
    pub fn json_schema(&self) -> Value {
        let properties: serde_json::Map<String, Value> = self
            .fields
            .iter()
            .map(|field| {
                let mut types = match field.ty {
                    FieldType::String | FieldType::Date => vec!["string"],
                    FieldType::Int64 => vec!["integer"],
                    FieldType::Float64 => vec!["number"],
                    FieldType::Boolean => vec!["boolean"],
                    // RFC 3339 text or epoch milliseconds.
                    FieldType::Timestamp => vec!["string", "integer"],
                    // Not JSON: the gateway does not take records of binary formats.
                    FieldType::Arrow(_) => return (field.name.clone(), serde_json::json!({})),
                };
                if !field.required {
                    types.push("null");
                }
                (field.name.clone(), serde_json::json!({ "type": types }))
            })
            .collect();
        let required: Vec<&str> = self
            .fields
            .iter()
            .filter(|field| field.required)
            .map(|field| field.name.as_str())
            .collect();
        serde_json::json!({ "type": "object", "properties": properties, "required": required })
    }

    /// The stream's fields in declaration order.
    pub fn fields(&self) -> &[SchemaField] {
        &self.fields
    }

    /// The field that holds event time.
    pub fn event_time(&self) -> &SchemaField {
        &self.fields[self.event_time_index]
    }

    /// Position of the event-time field among [`Self::fields`].
    pub fn event_time_index(&self) -> usize {
        self.event_time_index
    }

    /// Whether the stream declares a field of this name.
    pub fn has_field(&self, name: &str) -> bool {
        self.fields.iter().any(|field| field.name == name)
    }

    /// The schema of every table written from this stream: fields, lineage, date/hour, then
    /// the derived columns.
    pub fn table_schema(&self) -> SchemaRef {
        let mut columns: Vec<Field> = self
            .fields
            .iter()
            .map(|field| Field::new(&field.name, field.ty.arrow(), true))
            .collect();
        columns.extend([
            Field::new(TOPIC_COLUMN, DataType::Utf8, true),
            Field::new(PARTITION_COLUMN, DataType::Int32, true),
            Field::new(OFFSET_COLUMN, DataType::Int64, true),
            Field::new(INGESTED_AT_COLUMN, utc_micros(), true),
            Field::new(DATE_COLUMN, DataType::Date32, true),
            Field::new(HOUR_COLUMN, DataType::Int32, true),
        ]);
        columns.extend(
            self.derived
                .iter()
                .map(|(name, expr)| Field::new(name, expr.data_type().clone(), true)),
        );
        Arc::new(Schema::new(columns))
    }
}

/// Reads the fields of a JSON Schema document (an object schema with `properties`).
///
/// Supported property types: string (with `format: date-time` → timestamp, `format: date` →
/// date), integer, number, boolean; `["T", "null"]` marks a nullable field. `required` lists the
/// fields a record must carry.
pub fn fields_from_json_schema(text: &str) -> Result<Vec<SchemaField>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))?;
    let (properties, required) = object_schema(&doc)?;
    properties
        .iter()
        .map(|(name, property)| {
            let ty =
                json_schema_type(property).map_err(|err| format!("properties.{name}: {err}"))?;
            Ok(SchemaField {
                name: name.clone(),
                ty,
                required: required.contains(&name.as_str()),
            })
        })
        .collect()
}

/// Whether every record valid under a writer's JSON Schema (`writer`, as a registry holds it)
/// can be read by the stream's fields: each field it declares takes only JSON types the field
/// reads, and each field the stream requires is required there too; or why not.
pub fn json_schema_readable(stream: &StreamSchema, writer: &str) -> Result<(), String> {
    let doc: Value =
        serde_json::from_str(writer).map_err(|err| format!("not valid JSON: {err}"))?;
    let (properties, required) = object_schema(&doc)?;
    for field in stream.fields() {
        let Some(property) = properties.get(&field.name) else {
            if field.required {
                return Err(format!(
                    "it has no property {}, which the stream requires",
                    field.name
                ));
            }
            continue;
        };
        if field.required && !required.contains(&field.name.as_str()) {
            return Err(format!(
                "{} is optional there, and the stream requires it",
                field.name
            ));
        }
        property_readable(field, property)?;
    }
    Ok(())
}

/// Whether `field` reads every value a writer's JSON Schema `property` allows: each JSON type
/// it declares is one the field's type reads (or `null`, for a field that is not required).
fn property_readable(field: &SchemaField, property: &Value) -> Result<(), String> {
    let reads: &[&str] = match field.ty {
        FieldType::String => &["string"],
        FieldType::Int64 | FieldType::Float64 => &["integer", "number", "string"],
        FieldType::Boolean => &["boolean"],
        FieldType::Timestamp => &["string", "integer", "number"],
        FieldType::Date => &["string", "integer"],
        FieldType::Arrow(_) => &[],
    };
    let declared: Vec<&str> = match property.get("type") {
        Some(Value::String(ty)) => vec![ty.as_str()],
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let nullable = !field.required;
    match declared
        .iter()
        .find(|ty| !(reads.contains(ty) || (nullable && **ty == "null")))
    {
        Some(unread) => Err(format!(
            "{} may be {unread:?} there, which the stream's {} field does not read",
            field.name,
            field.ty.name()
        )),
        None => Ok(()),
    }
}

/// The properties of a writer's JSON Schema (`writer`, as a registry holds it) whose type a
/// stream field can have, as optional fields.
pub(crate) fn json_schema_optional_fields(writer: &str) -> Vec<SchemaField> {
    let Ok(doc) = serde_json::from_str::<Value>(writer) else {
        return Vec::new();
    };
    let Ok((properties, _)) = object_schema(&doc) else {
        return Vec::new();
    };
    (properties.iter())
        .filter_map(|(name, property)| {
            Some(SchemaField {
                name: name.clone(),
                ty: json_schema_type(property).ok()?,
                required: false,
            })
        })
        .collect()
}

/// The `properties` of an object schema, and the names it lists as `required`.
fn object_schema(doc: &Value) -> Result<(&serde_json::Map<String, Value>, Vec<&str>), String> {
    let properties = doc
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("expected an object schema with \"properties\"")?;
    let required = doc
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok((properties, required))
}

fn json_schema_type(property: &Value) -> Result<FieldType, String> {
    let declared = match property.get("type") {
        Some(Value::String(ty)) => ty.as_str(),
        Some(Value::Array(types)) => {
            let non_null: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|ty| *ty != "null")
                .collect();
            match non_null.as_slice() {
                [ty] => *ty,
                _ => return Err(format!("expected one type besides \"null\", got {types:?}")),
            }
        }
        _ => return Err("expected a \"type\"".into()),
    };
    let format = property.get("format").and_then(Value::as_str);
    match (declared, format) {
        ("string", Some("date-time")) => Ok(FieldType::Timestamp),
        ("string", Some("date")) => Ok(FieldType::Date),
        ("string", _) => Ok(FieldType::String),
        ("integer", _) => Ok(FieldType::Int64),
        ("number", _) => Ok(FieldType::Float64),
        ("boolean", _) => Ok(FieldType::Boolean),
        (other, _) => Err(format!(
            "type {other:?} is not supported yet (supported: string, integer, number, boolean)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENSOR: &str = r#"{
        "type": "object",
        "required": ["device_id", "ts"],
        "properties": {
            "device_id": {"type": "string"},
            "ts": {"type": "string", "format": "date-time"},
            "temperature_c": {"type": ["number", "null"]},
            "ok": {"type": "boolean"},
            "count": {"type": "integer"}
        }
    }"#;

    #[test]
    fn json_schema_maps_to_arrow_with_lineage_and_partition_columns() {
        let schema = StreamSchema::new(fields_from_json_schema(SENSOR).unwrap(), "ts").unwrap();
        let table = schema.table_schema();
        let names: Vec<&str> = table.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "device_id",
                "ts",
                "temperature_c",
                "ok",
                "count",
                "_topic",
                "_partition",
                "_offset",
                "_ingested_at",
                "date",
                "hour"
            ]
        );
        assert_eq!(
            table.field_with_name("ts").unwrap().data_type(),
            &utc_micros()
        );
        assert_eq!(
            table.field_with_name("temperature_c").unwrap().data_type(),
            &DataType::Float64
        );
        assert!(schema.fields()[0].required);
        assert!(!schema.fields()[2].required);
    }

    #[test]
    fn event_time_must_exist_and_be_time_like() {
        let fields = fields_from_json_schema(SENSOR).unwrap();
        assert!(
            StreamSchema::new(fields.clone(), "when")
                .unwrap_err()
                .contains("\"when\"")
        );
        assert!(
            StreamSchema::new(fields, "ok")
                .unwrap_err()
                .contains("must be a timestamp")
        );
    }

    #[test]
    fn a_writer_json_schema_is_readable_when_its_records_all_decode() {
        let schema = StreamSchema::new(fields_from_json_schema(SENSOR).unwrap(), "ts").unwrap();
        assert_eq!(json_schema_readable(&schema, SENSOR), Ok(()));
        let added = SENSOR.replace(
            r#""count": {"type": "integer"}"#,
            r#""count": {"type": "integer"}, "extra": {"type": "object"}"#,
        );
        assert_eq!(json_schema_readable(&schema, &added), Ok(()));
        let retyped = SENSOR.replace(
            r#""ok": {"type": "boolean"}"#,
            r#""ok": {"type": "string"}"#,
        );
        let err = json_schema_readable(&schema, &retyped).unwrap_err();
        assert!(err.contains("ok may be \"string\""), "{err}");
        let optional = SENSOR.replace(
            r#""required": ["device_id", "ts"]"#,
            r#""required": ["ts"]"#,
        );
        let err = json_schema_readable(&schema, &optional).unwrap_err();
        assert!(err.contains("device_id is optional there"), "{err}");
        assert!(json_schema_readable(&schema, "[]").is_err());
    }

    #[test]
    fn reserved_and_unsupported_fields_are_refused() {
        let clash = vec![SchemaField {
            name: "_offset".into(),
            ty: FieldType::Int64,
            required: false,
        }];
        assert!(
            StreamSchema::new(clash, "_offset")
                .unwrap_err()
                .contains("clashes")
        );
        let nested = r#"{"properties": {"tags": {"type": "array"}}}"#;
        assert!(
            fields_from_json_schema(nested)
                .unwrap_err()
                .contains("properties.tags")
        );
    }
}
