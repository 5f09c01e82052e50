//! One JSON record read into the cells of a row, typed by the stream's fields, in one pass of
//! serde_json: no `Value` tree, field names matched as they are read, strings borrowed from the
//! payload unless they hold escapes, fields the schema does not name skipped unparsed.
//!
//! What each type accepts:
//! - string: a JSON string;
//! - int64: an integer (`3`, `3.0` or the string `"3"`);
//! - float64: a number, or a string that holds a finite one;
//! - boolean: `true` or `false`;
//! - timestamp: RFC 3339 text (or the forms Arrow's parser takes, such as a space for `T`),
//!   read to the microsecond, or a number of epoch milliseconds; years 1 to 9999;
//! - date: `"YYYY-MM-DD"`, or a number of days since 1970-01-01;
//! - `null`, or no such property, is a null (which a required field refuses).

use std::borrow::Cow;
use std::fmt;

use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
use arrow::datatypes::Date32Type;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Unexpected, Visitor};
use serde_json::error::Category;

use super::{TIME_RANGE_US, rfc3339};
use crate::schema::{FieldType, SchemaField};

/// One field's value, already of its column's type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell<'a> {
    /// JSON `null` or an absent property.
    Null,
    /// A string field.
    Text(Cow<'a, str>),
    /// An int64 field, or a timestamp in epoch microseconds.
    Integer(i64),
    /// A float64 field.
    Float(f64),
    /// A boolean field.
    Boolean(bool),
    /// A date field, in days since the epoch.
    Days(i32),
}

/// The cells of one row, one per field of the schema in order; reused from record to record so
/// that reading a record allocates nothing (but the strings that hold escapes).
#[derive(Debug, Default)]
pub(super) struct Row<'a> {
    /// The values read by the last successful [`Row::read`].
    pub(super) cells: Vec<Cell<'a>>,
    /// Which fields the record being read has named so far.
    seen: Vec<bool>,
    /// The field whose value is being read, to name it when the value is not valid JSON.
    reading: Option<usize>,
}

impl<'a> Row<'a> {
    /// Reads `payload` as one JSON object of `fields`. On error the cells are left in any state
    /// and the reason names the problem for people.
    pub(super) fn read(&mut self, payload: &'a [u8], fields: &[SchemaField]) -> Result<(), String> {
        // One UTF-8 check of the whole payload: then serde_json need not check each string.
        let text =
            std::str::from_utf8(payload).map_err(|err| format!("payload is not UTF-8: {err}"))?;
        let mut json = serde_json::Deserializer::from_str(text);
        self.cells.clear();
        self.cells.resize(fields.len(), Cell::Null);
        self.seen.clear();
        self.seen.resize(fields.len(), false);
        self.reading = None;
        RowSeed { fields, row: self }
            .deserialize(&mut json)
            .map_err(|err| explain(err, self.reading.map(|index| fields[index].name.as_str())))?;
        json.end().map_err(|err| {
            format!("payload holds more than one JSON value; expected exactly one object ({err})")
        })?;
        required_present(fields, &self.cells)
    }
}

/// Fails naming every required field that is null or absent.
fn required_present(fields: &[SchemaField], cells: &[Cell<'_>]) -> Result<(), String> {
    let missing: Vec<&str> = fields
        .iter()
        .zip(cells)
        .filter(|(field, cell)| field.required && **cell == Cell::Null)
        .map(|(field, _)| field.name.as_str())
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("missing or null required field {one}")),
        many => Err(format!(
            "missing or null required fields {}",
            many.join(", ")
        )),
    }
}

/// serde_json's error as a reason: which kind of problem, in which field if the value of one
/// was being read (a type mismatch names its field itself), then where in the payload.
fn explain(err: serde_json::Error, field: Option<&str>) -> String {
    match (err.classify(), field) {
        (Category::Eof, _) => format!("payload is not complete JSON (truncated?): {err}"),
        (Category::Data, _) => format!("does not match the schema: {err}"),
        (Category::Syntax | Category::Io, Some(field)) => {
            format!("not valid JSON in field {field}: {err}")
        }
        (Category::Syntax | Category::Io, None) => format!("not valid JSON: {err}"),
    }
}

/// Reads the top-level object: each named field into its cell, the rest skipped.
struct RowSeed<'f, 'r, 'a> {
    fields: &'f [SchemaField],
    row: &'r mut Row<'a>,
}

impl<'a> DeserializeSeed<'a> for RowSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'a> Visitor<'a> for RowSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<(), M::Error> {
        let mut next = 0;
        while let Some(index) = map.next_key_seed(FieldIndex {
            fields: self.fields,
            likely: next,
        })? {
            let Some(index) = index else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            next = index + 1;
            let field = &self.fields[index];
            if std::mem::replace(&mut self.row.seen[index], true) {
                return Err(de::Error::custom(format_args!(
                    "field {} appears twice",
                    field.name
                )));
            }
            self.row.reading = Some(index);
            self.row.cells[index] = map.next_value_seed(CellSeed(field))?;
            self.row.reading = None;
        }
        Ok(())
    }
}

/// A property name, as the index of the field it names (`None` for a field not in the schema).
struct FieldIndex<'f> {
    fields: &'f [SchemaField],
    /// The field to try first: the one after the last found, as producers mostly write
    /// properties in one order, which then costs one comparison per property.
    likely: usize,
}

impl<'a> DeserializeSeed<'a> for FieldIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        match self.fields.get(self.likely) {
            Some(field) if field.name == name => Ok(Some(self.likely)),
            _ => Ok(self.fields.iter().position(|field| field.name == name)),
        }
    }
}

/// A field's value, converted to its type as it is read.
struct CellSeed<'f>(&'f SchemaField);

impl<'a> DeserializeSeed<'a> for CellSeed<'_> {
    type Value = Cell<'a>;

    fn deserialize<D: Deserializer<'a>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl CellSeed<'_> {
    fn out_of_range<E: de::Error>(&self, value: impl fmt::Display) -> E {
        E::custom(format_args!(
            "{value} is out of range for {} field {}",
            self.0.ty.name(),
            self.0.name
        ))
    }

    /// A timestamp cell of `micros` (`None` when it overflowed), if it is within years 1 to
    /// 9999; else an error that shows `value` as written.
    fn instant<E: de::Error>(
        &self,
        micros: Option<i64>,
        value: impl fmt::Display,
    ) -> Result<Cell<'static>, E> {
        match micros {
            Some(micros) if (TIME_RANGE_US.0..=TIME_RANGE_US.1).contains(&micros) => {
                Ok(Cell::Integer(micros))
            }
            _ => Err(self.out_of_range(value)),
        }
    }
}

impl<'a> Visitor<'a> for CellSeed<'_> {
    type Value = Cell<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let accepted = match &self.0.ty {
            FieldType::String => "a string",
            FieldType::Int64 => "an integer",
            FieldType::Float64 => "a number",
            FieldType::Boolean => "true or false",
            FieldType::Timestamp => "RFC 3339 text or epoch milliseconds",
            FieldType::Date => "a \"YYYY-MM-DD\" date",
            FieldType::Arrow(_) => "a value of a binary format",
        };
        write!(f, "{accepted} for field {}", self.0.name)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Self::Value, E> {
        match self.0.ty {
            FieldType::Boolean => Ok(Cell::Boolean(value)),
            _ => Err(E::invalid_type(Unexpected::Bool(value), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        match self.0.ty {
            FieldType::Int64 => Ok(Cell::Integer(value)),
            FieldType::Float64 => Ok(Cell::Float(value as f64)),
            FieldType::Timestamp => self.instant(
                value.checked_mul(1000),
                format_args!("{value} epoch milliseconds"),
            ),
            FieldType::Date => i32::try_from(value)
                .map(Cell::Days)
                .map_err(|_| self.out_of_range(format_args!("{value} days"))),
            FieldType::String | FieldType::Boolean | FieldType::Arrow(_) => {
                Err(E::invalid_type(Unexpected::Signed(value), &self))
            }
        }
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            Err(_) if self.0.ty == FieldType::Float64 => Ok(Cell::Float(value as f64)),
            Err(_) => Err(self.out_of_range(value)),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        match self.0.ty {
            FieldType::Float64 if value.is_finite() => Ok(Cell::Float(value)),
            FieldType::Float64 => Err(self.out_of_range(value)),
            FieldType::Int64 if value.fract() == 0.0 => {
                if (i64::MIN as f64..i64::MAX as f64).contains(&value) {
                    Ok(Cell::Integer(value as i64))
                } else {
                    Err(self.out_of_range(value))
                }
            }
            // `as` saturates: a number past the range lands outside it.
            FieldType::Timestamp => self.instant(
                Some((value * 1000.0).round() as i64),
                format_args!("{value} epoch milliseconds"),
            ),
            _ => Err(E::invalid_type(Unexpected::Float(value), &self)),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'a str) -> Result<Self::Value, E> {
        match self.0.ty {
            FieldType::String => Ok(Cell::Text(Cow::Borrowed(value))),
            _ => self.visit_str(value),
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        let refused = || E::invalid_value(Unexpected::Str(value), &self);
        match self.0.ty {
            FieldType::String => Ok(Cell::Text(Cow::Owned(value.to_owned()))),
            FieldType::Int64 => value.parse().map(Cell::Integer).map_err(|_| refused()),
            FieldType::Float64 => match value.parse::<f64>() {
                Ok(number) if number.is_finite() => Ok(Cell::Float(number)),
                _ => Err(refused()),
            },
            FieldType::Timestamp => {
                let micros = match rfc3339::micros(value) {
                    Some(micros) => micros,
                    None => string_to_datetime(&chrono::Utc, value)
                        .map_err(|_| refused())?
                        .timestamp_micros(),
                };
                self.instant(Some(micros), format_args!("{value:?}"))
            }
            FieldType::Date => Date32Type::parse(value).map(Cell::Days).ok_or_else(refused),
            FieldType::Boolean | FieldType::Arrow(_) => Err(refused()),
        }
    }
}
