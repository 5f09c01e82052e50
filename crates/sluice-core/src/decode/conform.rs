//! Columns decoded by a schema language's decoder (Avro, Protobuf) made into the stream's
//! columns: each cast to its field's lake type, and event time as UTC microseconds.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow::compute::{cast, filter};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit};

use super::{RawRecord, RejectKind, Rejected, TIME_RANGE_US, reject};
use crate::schema::{SchemaField, StreamSchema, utc_micros};

/// Decoded rows made into the stream's columns.
pub(super) struct Conformed<'r> {
    /// The stream's fields' columns.
    pub columns: Vec<ArrayRef>,
    /// The records they hold, in order.
    pub kept: Vec<&'r RawRecord<'r>>,
    /// Columns of the fields newer writer versions added, after the stream's.
    pub added: Vec<(FieldRef, ArrayRef)>,
}

/// Casts decoded columns to the stream's field types (then to the `added` fields' types: the
/// decoded columns after the stream's), with event time as UTC microseconds; rows whose event
/// time is missing or out of range are rejected.
pub(super) fn conform<'r>(
    schema: &StreamSchema,
    added: &[SchemaField],
    decoded: RecordBatch,
    kept: Vec<&'r RawRecord<'r>>,
    rejected: &mut Vec<Rejected>,
) -> Conformed<'r> {
    let event_time = event_time_micros(decoded.column(schema.event_time_index()));
    let in_range: BooleanArray = event_time
        .iter()
        .map(|us| Some(us.is_some_and(|us| (TIME_RANGE_US.0..=TIME_RANGE_US.1).contains(&us))))
        .collect();
    let name = &schema.event_time().name;
    let mut good = Vec::with_capacity(kept.len());
    for (record, ok) in kept.into_iter().zip(in_range.values().iter()) {
        if ok {
            good.push(record);
        } else {
            let reason = format!("event time field {name} is missing or out of range");
            rejected.push(reject(record, RejectKind::Schema, reason));
        }
    }
    let column_of = |index: usize, field: &SchemaField| {
        let column = if index == schema.event_time_index() {
            Arc::new(event_time.clone()) as ArrayRef
        } else {
            let target = field.ty.arrow();
            let column = decoded.column(index);
            if column.data_type() == &target {
                column.clone()
            } else {
                cast(column, &target).expect("a lake type is a cast of the decoded type")
            }
        };
        filter(&column, &in_range).expect("same length")
    };
    let own = schema.fields().len();
    let columns = (schema.fields().iter().enumerate())
        .map(|(index, field)| column_of(index, field))
        .collect();
    let added = (added.iter().enumerate())
        .map(|(index, field)| {
            let column = column_of(own + index, field);
            let field = Field::new(&field.name, column.data_type().clone(), true);
            (Arc::new(field), column)
        })
        .collect();
    Conformed {
        columns,
        kept: good,
        added,
    }
}

/// Event time as UTC microseconds from a decoded column: a timestamp, epoch milliseconds (a
/// long) or RFC 3339 text; null where it is none of them or overflows.
fn event_time_micros(column: &ArrayRef) -> TimestampMicrosecondArray {
    let micros = match column.data_type() {
        DataType::Int64 => column
            .as_primitive::<Int64Type>()
            .iter()
            .map(|ms| ms.and_then(|ms| ms.checked_mul(1000)))
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone(),
        _ => cast(column, &utc_micros())
            .map(|cast| {
                cast.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .clone()
            })
            .unwrap_or_else(|_| TimestampMicrosecondArray::new_null(column.len())),
    };
    micros.with_timezone("UTC")
}
