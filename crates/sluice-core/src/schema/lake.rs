//! The types a Delta table holds, for columns decoded from records of a schema language
//! (Avro, Protobuf): each decoded Arrow type mapped to the type it is stored as (a cast of the
//! decoded column gives it), and to the stream field type that names it.

use std::sync::Arc;

use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};

use super::{FieldType, utc_micros};

/// The stream field type of a decoded Arrow type: the JSON-like types as such, anything else
/// as the Arrow type a Delta table stores it as.
pub fn field_type(decoded: &DataType) -> Result<FieldType, String> {
    let lake = lake_type(decoded)?;
    if !can_cast_types(decoded, &lake) {
        return Err(format!(
            "decoded as {decoded}, which cannot be stored as {lake}"
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

/// The type a Delta table stores values of a decoded Arrow type as, or why there is none.
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
        // Delta has signed integers only: each unsigned one in the next wider type.
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
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
                "decoded as {other}, which has no Delta type (times of day, durations, unions of several types and decimals over 38 digits are not supported)"
            ));
        }
    })
}

fn lake_fields(fields: &Fields) -> Result<Fields, String> {
    fields.iter().map(|field| lake_field(field)).collect()
}

/// A nested field as a Delta table stores it: its type mapped, the decoder's metadata dropped.
fn lake_field(field: &Field) -> Result<Field, String> {
    let ty = lake_type(field.data_type()).map_err(|err| format!("{}: {err}", field.name()))?;
    Ok(Field::new(field.name(), ty, field.is_nullable()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_integers_widen_to_signed_ones() {
        assert_eq!(lake_type(&DataType::UInt32).unwrap(), DataType::Int64);
        assert_eq!(
            lake_type(&DataType::UInt64).unwrap(),
            DataType::Decimal128(20, 0)
        );
        assert_eq!(
            field_type(&DataType::UInt64).unwrap(),
            FieldType::Arrow(DataType::Decimal128(20, 0))
        );
    }
}
