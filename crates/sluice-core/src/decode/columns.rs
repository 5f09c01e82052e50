//! Arrow builders for a stream's fields, filled one row of cells at a time.

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};

use super::row::Cell;
use crate::schema::FieldType;

/// The builder of one field's column.
#[derive(Debug)]
pub(super) enum ColumnBuilder {
    /// A string field.
    String(StringBuilder),
    /// An int64 field.
    Int64(Int64Builder),
    /// A float64 field.
    Float64(Float64Builder),
    /// A boolean field.
    Boolean(BooleanBuilder),
    /// A timestamp field, in UTC microseconds.
    Timestamp(TimestampMicrosecondBuilder),
    /// A date field.
    Date(Date32Builder),
}

/// Bytes reserved per row for a string column: enough for most identifiers, grown if not.
const STRING_BYTES_PER_ROW: usize = 16;

impl ColumnBuilder {
    /// An empty builder for a field of type `ty`, with room for `rows` rows.
    pub(super) fn new(ty: &FieldType, rows: usize) -> Self {
        match ty {
            FieldType::String => Self::String(StringBuilder::with_capacity(
                rows,
                rows * STRING_BYTES_PER_ROW,
            )),
            FieldType::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            FieldType::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            FieldType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(rows)),
            FieldType::Timestamp => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            FieldType::Date => Self::Date(Date32Builder::with_capacity(rows)),
            FieldType::Arrow(ty) => {
                unreachable!("a JSON stream has only JSON field types, not {ty}")
            }
        }
    }

    /// Appends one cell, which was read by this column's field type.
    pub(super) fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Self::String(column), Cell::Text(text)) => column.append_value(text),
            (Self::Int64(column), Cell::Integer(value)) => column.append_value(value),
            (Self::Float64(column), Cell::Float(value)) => column.append_value(value),
            (Self::Boolean(column), Cell::Boolean(value)) => column.append_value(value),
            (Self::Timestamp(column), Cell::Integer(micros)) => column.append_value(micros),
            (Self::Date(column), Cell::Days(days)) => column.append_value(days),
            (column, Cell::Null) => column.append_null(),
            (column, cell) => unreachable!("{cell:?} was not read for a column like {column:?}"),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::String(column) => column.append_null(),
            Self::Int64(column) => column.append_null(),
            Self::Float64(column) => column.append_null(),
            Self::Boolean(column) => column.append_null(),
            Self::Timestamp(column) => column.append_null(),
            Self::Date(column) => column.append_null(),
        }
    }

    /// The finished column.
    pub(super) fn finish(mut self) -> ArrayRef {
        let column: &mut dyn ArrayBuilder = match &mut self {
            Self::String(column) => column,
            Self::Int64(column) => column,
            Self::Float64(column) => column,
            Self::Boolean(column) => column,
            Self::Timestamp(column) => column,
            Self::Date(column) => column,
        };
        column.finish()
    }
}
