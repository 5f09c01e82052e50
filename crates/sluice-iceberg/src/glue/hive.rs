//! Arrow types as Hive (Athena DDL) types, the column types of Glue tables.

use arrow::datatypes::DataType;

/// The Hive (Athena DDL) type of an Arrow type; `text` for CSV and JSON objects, where
/// timestamps are ISO 8601 text.
pub fn hive_type(data_type: &DataType, text: bool) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "decimal(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Date32 | DataType::Date64 if !text => "date".into(),
        DataType::Timestamp(_, _) if !text => "timestamp".into(),
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) if !text => {
            "binary".into()
        }
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("array<{}>", hive_type(item.data_type(), text))
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), hive_type(f.data_type(), text)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                hive_type(kv[0].data_type(), text),
                hive_type(kv[1].data_type(), text)
            ),
            _ => "string".into(),
        },
        DataType::Dictionary(_, value) => hive_type(value, text),
        _ => "string".into(),
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::hive_type;

    #[test]
    fn nested_and_unsigned_types_map_to_hive_types_that_hold_them() {
        let item = Field::new("depot", DataType::Utf8, true);
        let nested = DataType::Struct(vec![item, Field::new("seq", DataType::UInt32, true)].into());
        assert_eq!(hive_type(&nested, false), "struct<depot:string,seq:bigint>");
        assert_eq!(hive_type(&DataType::UInt64, false), "decimal(20,0)");
        assert_eq!(
            hive_type(&DataType::Decimal128(12, 2), true),
            "decimal(12,2)"
        );
        assert_eq!(hive_type(&DataType::Date32, true), "string");
    }
}
