//! A stream table's Arrow columns as an Iceberg schema, and back: the Arrow schema sluice
//! writes Parquet with, each field carrying its Iceberg field id (`PARQUET:field_id`), since
//! Iceberg readers (pyiceberg, Trino, Spark) find columns by id, not by name.
//!
//! Written here rather than taken from the iceberg crate, whose conversions are on arrow 58
//! while sluice is on arrow 59.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use deltalake::parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use iceberg::spec::{
    ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema as IcebergSchema,
    StructType, Type,
};

/// The Iceberg schema of `schema`, its field ids numbered from 1 (a catalog may renumber them
/// when it creates the table; [`with_field_ids`] reads the ids back).
pub fn iceberg_schema(schema: &Schema) -> Result<IcebergSchema, String> {
    let mut next_id = 0;
    let fields = fields_of(schema.fields(), &mut next_id)?;
    IcebergSchema::builder()
        .with_fields(fields)
        .build()
        .map_err(|err| err.to_string())
}

fn fields_of(fields: &Fields, next_id: &mut i32) -> Result<Vec<NestedFieldRef>, String> {
    fields
        .iter()
        .map(|field| {
            *next_id += 1;
            let id = *next_id;
            let ty = iceberg_type(field, next_id)?;
            Ok(Arc::new(NestedField::new(
                id,
                field.name(),
                ty,
                !field.is_nullable(),
            )))
        })
        .collect()
}

fn iceberg_type(field: &Field, next_id: &mut i32) -> Result<Type, String> {
    let primitive = match field.data_type() {
        DataType::Boolean => PrimitiveType::Boolean,
        DataType::Int32 => PrimitiveType::Int,
        DataType::Int64 => PrimitiveType::Long,
        DataType::Float32 => PrimitiveType::Float,
        DataType::Float64 => PrimitiveType::Double,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PrimitiveType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => PrimitiveType::Binary,
        DataType::Date32 => PrimitiveType::Date,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => PrimitiveType::Timestamptz,
        DataType::Timestamp(TimeUnit::Microsecond, None) => PrimitiveType::Timestamp,
        DataType::Decimal128(precision, scale) if *scale >= 0 => PrimitiveType::Decimal {
            precision: u32::from(*precision),
            scale: (*scale).unsigned_abs().into(),
        },
        DataType::Struct(children) => {
            return Ok(Type::Struct(StructType::new(fields_of(children, next_id)?)));
        }
        DataType::List(element) | DataType::LargeList(element) => {
            let [element] = fields_of(&Fields::from(vec![element.clone()]), next_id)?
                .try_into()
                .expect("one field in, one out");
            return Ok(Type::List(ListType::new(element)));
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(pair) = entries.data_type() else {
                return Err(unsupported(field));
            };
            let [key, value] = fields_of(pair, next_id)?
                .try_into()
                .map_err(|_| unsupported(field))?;
            return Ok(Type::Map(MapType::new(key, value)));
        }
        _ => return Err(unsupported(field)),
    };
    Ok(Type::Primitive(primitive))
}

/// The Iceberg type of one column, its nested fields numbered from 1 (a commit adding the
/// column numbers them afresh).
pub fn iceberg_type_of(field: &Field) -> Result<Type, String> {
    iceberg_type(field, &mut 0)
}

/// The columns of `schema` that `table` lacks (top level, by name), in `schema`'s order.
pub fn columns_lacking(schema: &Schema, table: &IcebergSchema) -> Vec<FieldRef> {
    (schema.fields().iter())
        .filter(|field| table.as_struct().field_by_name(field.name()).is_none())
        .cloned()
        .collect()
}

fn unsupported(field: &Field) -> String {
    format!(
        "column {} is {}, which sluice does not write to Iceberg tables",
        field.name(),
        field.data_type()
    )
}

/// `schema` with each field (nested ones too) carrying the id of the field of that name in
/// `table`; the differences between the two, one line each, when they do not match. The table
/// may have optional columns `schema` lacks (added by a newer writer, or by another member):
/// a data file without them reads as null there.
pub fn with_field_ids(schema: &Schema, table: &IcebergSchema) -> Result<SchemaRef, String> {
    let expected = iceberg_schema(schema)?;
    let mut differences = String::new();
    let fields = annotate(
        schema.fields(),
        expected.as_struct(),
        table.as_struct(),
        "",
        &mut differences,
    );
    for field in table.as_struct().fields() {
        if field.required && schema.field_with_name(&field.name).is_err() {
            differences.push_str(&format!(
                "\n  - column {} is required in the table but not in the stream",
                field.name
            ));
        }
    }
    if !differences.is_empty() {
        return Err(differences);
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

/// `fields` annotated with ids from `table`, comparing their Iceberg types (`expected`, the
/// same fields as [`iceberg_schema`] maps them) with the table's.
fn annotate(
    fields: &Fields,
    expected: &StructType,
    table: &StructType,
    prefix: &str,
    differences: &mut String,
) -> Fields {
    fields
        .iter()
        .zip(expected.fields())
        .map(|(field, wanted)| {
            let path = format!("{prefix}{}", field.name());
            let Some(found) = table.field_by_name(field.name()) else {
                differences.push_str(&format!(
                    "\n  - column {path} is in the stream but not in the table"
                ));
                return field.clone();
            };
            if !same_shape(&wanted.field_type, &found.field_type) {
                differences.push_str(&format!(
                    "\n  - column {path}: the stream's {} against the table's {}",
                    wanted.field_type, found.field_type
                ));
                return field.clone();
            }
            with_id(field, found, &path, differences)
        })
        .collect()
}

/// The types are the same, nested field ids aside.
fn same_shape(wanted: &Type, found: &Type) -> bool {
    match (wanted, found) {
        (Type::Primitive(a), Type::Primitive(b)) => a == b,
        (Type::Struct(a), Type::Struct(b)) => {
            a.fields().len() == b.fields().len()
                && a.fields()
                    .iter()
                    .zip(b.fields())
                    .all(|(x, y)| x.name == y.name && same_shape(&x.field_type, &y.field_type))
        }
        (Type::List(a), Type::List(b)) => {
            same_shape(&a.element_field.field_type, &b.element_field.field_type)
        }
        (Type::Map(a), Type::Map(b)) => {
            same_shape(&a.key_field.field_type, &b.key_field.field_type)
                && same_shape(&a.value_field.field_type, &b.value_field.field_type)
        }
        _ => false,
    }
}

/// `field` carrying `found`'s id, its children carrying theirs.
fn with_id(
    field: &FieldRef,
    found: &NestedField,
    path: &str,
    differences: &mut String,
) -> FieldRef {
    let data_type = match (field.data_type(), found.field_type.as_ref()) {
        (DataType::Struct(children), Type::Struct(table)) => {
            let expected = match iceberg_type(field, &mut 0) {
                Ok(Type::Struct(expected)) => expected,
                _ => return field.clone(),
            };
            DataType::Struct(annotate(
                children,
                &expected,
                table,
                &format!("{path}."),
                differences,
            ))
        }
        (DataType::List(element), Type::List(list)) => {
            DataType::List(with_id(element, &list.element_field, path, differences))
        }
        (DataType::LargeList(element), Type::List(list)) => {
            DataType::LargeList(with_id(element, &list.element_field, path, differences))
        }
        (DataType::Map(entries, sorted), Type::Map(map)) => {
            let DataType::Struct(pair) = entries.data_type() else {
                return field.clone();
            };
            let pair: Fields = pair
                .iter()
                .zip([&map.key_field, &map.value_field])
                .map(|(child, found)| with_id(child, found, path, differences))
                .collect();
            DataType::Map(
                Arc::new(
                    entries
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Struct(pair)),
                ),
                *sorted,
            )
        }
        (other, _) => other.clone(),
    };
    let mut metadata: HashMap<String, String> = field.metadata().clone();
    metadata.insert(PARQUET_FIELD_ID_META_KEY.to_string(), found.id.to_string());
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(data_type)
            .with_metadata(metadata),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_schema() -> Schema {
        Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("temperature_c", DataType::Float64, true),
            Field::new(
                "reading",
                DataType::Struct(Fields::from(vec![
                    Field::new("value", DataType::Int64, true),
                    Field::new_list("tags", Field::new_list_field(DataType::Utf8, true), true),
                ])),
                true,
            ),
            Field::new("date", DataType::Date32, true),
        ])
    }

    fn ids(fields: &Fields, out: &mut Vec<(String, String)>) {
        for field in fields {
            out.push((
                field.name().clone(),
                field.metadata()[PARQUET_FIELD_ID_META_KEY].clone(),
            ));
            match field.data_type() {
                DataType::Struct(children) => ids(children, out),
                DataType::List(element) => ids(&Fields::from(vec![element.clone()]), out),
                _ => {}
            }
        }
    }

    #[test]
    fn maps_types_and_numbers_every_field() {
        let schema = iceberg_schema(&stream_schema()).unwrap();
        let ts = schema.field_by_name("ts").unwrap();
        assert_eq!(*ts.field_type, Type::Primitive(PrimitiveType::Timestamptz));
        assert!(ts.required);
        assert!(!schema.field_by_name("temperature_c").unwrap().required);
        assert_eq!(schema.highest_field_id(), 8);
    }

    #[test]
    fn field_ids_come_from_the_table_not_from_the_order() {
        let stream = stream_schema();
        // The table as a catalog would hold it, numbered differently: reversed.
        let table = iceberg_schema(&stream).unwrap();
        let renumbered = IcebergSchema::builder()
            .with_fields(table.as_struct().fields().iter().map(|f| renumber(f)))
            .build()
            .unwrap();
        let annotated = with_field_ids(&stream, &renumbered).unwrap();
        let mut found = Vec::new();
        ids(annotated.fields(), &mut found);
        let expected: Vec<(String, String)> = [
            ("device_id", 99),
            ("ts", 98),
            ("temperature_c", 97),
            ("reading", 96),
            ("value", 95),
            ("tags", 94),
            ("item", 93),
            ("date", 92),
        ]
        .iter()
        .map(|(name, id)| (name.to_string(), id.to_string()))
        .collect();
        assert_eq!(found, expected);
    }

    fn renumber(field: &NestedFieldRef) -> NestedFieldRef {
        let ty = match field.field_type.as_ref() {
            Type::Struct(s) => {
                Type::Struct(StructType::new(s.fields().iter().map(renumber).collect()))
            }
            Type::List(l) => Type::List(ListType::new(renumber(&l.element_field))),
            other => other.clone(),
        };
        Arc::new(NestedField::new(
            100 - field.id,
            &field.name,
            ty,
            field.required,
        ))
    }

    #[test]
    fn a_table_of_other_columns_is_refused_with_each_difference() {
        let stream = stream_schema();
        let other = Schema::new(vec![
            Field::new("device_id", DataType::Int64, false),
            Field::new("humidity", DataType::Float64, true),
        ]);
        let table = iceberg_schema(&other).unwrap();
        let differences = with_field_ids(&stream, &table).unwrap_err();
        assert!(
            differences.contains("column device_id: the stream's string against the table's long"),
            "{differences}"
        );
        assert!(differences.contains("column ts is in the stream but not in the table"));
        assert!(
            !differences.contains("humidity"),
            "an optional column of the table the stream lacks is no difference: {differences}"
        );
    }

    #[test]
    fn a_required_column_the_stream_lacks_is_refused_and_lacking_ones_are_found() {
        let stream = stream_schema();
        let mut fields: Vec<FieldRef> = stream.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("site", DataType::Utf8, false)));
        let table = iceberg_schema(&Schema::new(fields.clone())).unwrap();
        let differences = with_field_ids(&stream, &table).unwrap_err();
        assert_eq!(
            differences,
            "\n  - column site is required in the table but not in the stream"
        );
        fields.retain(|f| f.name() != "temperature_c" && f.name() != "site");
        let narrower = iceberg_schema(&Schema::new(fields)).unwrap();
        let lacking = columns_lacking(&stream, &narrower);
        let names: Vec<&str> = lacking.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["temperature_c"]);
    }

    #[test]
    fn an_unsigned_column_is_named_in_the_refusal() {
        let schema = Schema::new(vec![Field::new("n", DataType::UInt16, true)]);
        let err = iceberg_schema(&schema).unwrap_err();
        assert_eq!(
            err,
            "column n is UInt16, which sluice does not write to Iceberg tables"
        );
    }
}
