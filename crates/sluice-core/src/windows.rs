//! Event-time windows: which windows an event falls in, and the aggregation of closed windows,
//! which DataFusion runs as one `GROUP BY window_start, <keys>` over the rows of the windows
//! that just closed.
//!
//! A window `[start, start + size)` closes when the watermark reaches its end; an event whose
//! last window has closed is late. State is the rows of open windows, so an aggregate is
//! whatever DataFusion computes over rows (`count(distinct x)`,
//! `first_value(x ORDER BY ts)`, …), exactly as batch SQL over the same events would.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;

use crate::event_time::date_and_hour;
use crate::schema::{DATE_COLUMN, HOUR_COLUMN, utc_micros};

/// The column holding a window's start, in aggregation input and window tables.
pub const WINDOW_START: &str = "window_start";
/// The column holding a window's end (exclusive), in window tables.
pub const WINDOW_END: &str = "window_end";

/// How events are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Back-to-back windows of `size_us`.
    Tumble {
        /// Window length in microseconds.
        size_us: i64,
    },
    /// Windows of `size_us` starting every `slide_us`; an event is in `size / slide` of them.
    Hop {
        /// Window length in microseconds.
        size_us: i64,
        /// Distance between window starts in microseconds; divides `size_us`.
        slide_us: i64,
    },
}

impl WindowKind {
    /// The window length in microseconds.
    pub fn size_us(self) -> i64 {
        match self {
            Self::Tumble { size_us } | Self::Hop { size_us, .. } => size_us,
        }
    }

    fn slide_us(self) -> i64 {
        match self {
            Self::Tumble { size_us } => size_us,
            Self::Hop { slide_us, .. } => slide_us,
        }
    }

    /// The starts of the windows holding an event at `t`, ascending.
    pub fn starts(self, t: i64) -> impl Iterator<Item = i64> {
        let (size, slide) = (self.size_us(), self.slide_us());
        let last = t.div_euclid(slide) * slide;
        let first = last - (size / slide - 1) * slide;
        (0..size / slide).map(move |i| first + i * slide)
    }

    /// The end of the last window holding an event at `t`: once the watermark reaches it, the
    /// event is no longer needed, and an event arriving then is late.
    pub fn last_end(self, t: i64) -> i64 {
        let slide = self.slide_us();
        t.div_euclid(slide) * slide + self.size_us()
    }
}

impl std::fmt::Display for WindowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text =
            |us: i64| humantime::format_duration(std::time::Duration::from_micros(us as u64));
        match *self {
            Self::Tumble { size_us } => write!(f, "tumbling {} windows", text(size_us)),
            Self::Hop { size_us, slide_us } => {
                write!(f, "{} windows every {}", text(size_us), text(slide_us))
            }
        }
    }
}

/// A compiled window aggregation.
#[derive(Clone)]
pub struct WindowAggregation {
    kind: WindowKind,
    event_time: String,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    sql: String,
}

impl std::fmt::Debug for WindowAggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregation")
            .field("kind", &self.kind)
            .field("sql", &self.sql)
            .finish()
    }
}

impl WindowAggregation {
    /// Plans `SELECT window_start, <group_by>, <aggregates> … GROUP BY window_start,
    /// <group_by>` over rows of `input` (a stream's table schema) to check names and types.
    /// Planning needs no I/O; this blocks the calling thread for it.
    pub fn compile(
        kind: WindowKind,
        input: &SchemaRef,
        event_time: &str,
        group_by: &[String],
        aggregates: &[(String, String)],
    ) -> Result<Self, String> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WINDOW_START, utc_micros(), false));
        let input_schema = Arc::new(Schema::new(fields));
        let keys: Vec<String> = std::iter::once(WINDOW_START.to_string())
            .chain(group_by.iter().map(|k| quote(k)))
            .collect();
        let selected: Vec<String> = keys
            .iter()
            .cloned()
            .chain(
                aggregates
                    .iter()
                    .map(|(name, expr)| format!("{expr} AS {}", quote(name))),
            )
            .collect();
        let sql = format!(
            "SELECT {} FROM events GROUP BY {}",
            selected.join(", "),
            keys.join(", ")
        );
        let context = SessionContext::new();
        context
            .register_batch("events", RecordBatch::new_empty(input_schema.clone()))
            .map_err(|e| e.to_string())?;
        let planned = futures::executor::block_on(context.sql(&sql))
            .map_err(|err| format!("{}", err).replace("Error during planning: ", ""))?;
        let grouped = planned.schema().as_arrow().clone();
        let mut out: Vec<Field> = vec![
            Field::new(WINDOW_START, utc_micros(), false),
            Field::new(WINDOW_END, utc_micros(), false),
        ];
        out.extend(
            grouped
                .fields()
                .iter()
                .skip(1)
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        out.extend([
            Field::new(DATE_COLUMN, DataType::Date32, true),
            Field::new(HOUR_COLUMN, DataType::Int32, true),
        ]);
        Ok(Self {
            kind,
            event_time: event_time.to_string(),
            input_schema,
            output_schema: Arc::new(Schema::new(out)),
            sql,
        })
    }

    /// The window kind.
    pub fn kind(&self) -> WindowKind {
        self.kind
    }

    /// The schema of window table rows.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// The event-time column of input rows.
    pub fn event_time(&self) -> &str {
        &self.event_time
    }

    /// Aggregates the windows of `rows` (a stream's table rows) whose end is in
    /// `(after, until]`, one output row per window and key.
    pub async fn aggregate(
        &self,
        rows: &[RecordBatch],
        after: Option<i64>,
        until: i64,
    ) -> Result<RecordBatch, String> {
        let exploded = self.explode(rows, after, until)?;
        if exploded.num_rows() == 0 {
            return Ok(RecordBatch::new_empty(self.output_schema.clone()));
        }
        let context = SessionContext::new();
        context
            .register_batch("events", exploded)
            .map_err(|e| e.to_string())?;
        let batches = context
            .sql(&self.sql)
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.push(self.finish(batch)?);
        }
        concat_batches(&self.output_schema, &out).map_err(|e| e.to_string())
    }

    /// Each row once per window of it whose end is in `(after, until]`, with `window_start`.
    fn explode(
        &self,
        rows: &[RecordBatch],
        after: Option<i64>,
        until: i64,
    ) -> Result<RecordBatch, String> {
        let size = self.kind.size_us();
        let mut pieces = Vec::with_capacity(rows.len());
        for batch in rows {
            let times = batch
                .column_by_name(&self.event_time)
                .ok_or("rows lack the event-time column")?
                .as_primitive::<TimestampMicrosecondType>();
            let (mut indices, mut starts) = (Vec::new(), Vec::new());
            for (row, t) in times.iter().enumerate() {
                let Some(t) = t else { continue };
                for start in self.kind.starts(t) {
                    let end = start + size;
                    if end <= until && after.is_none_or(|a| end > a) {
                        indices.push(row as u32);
                        starts.push(start);
                    }
                }
            }
            let taken =
                take_record_batch(batch, &UInt32Array::from(indices)).map_err(|e| e.to_string())?;
            let mut columns = taken.columns().to_vec();
            columns.push(Arc::new(
                TimestampMicrosecondArray::from(starts).with_timezone("UTC"),
            ));
            pieces.push(
                RecordBatch::try_new(self.input_schema.clone(), columns)
                    .map_err(|e| e.to_string())?,
            );
        }
        concat_batches(&self.input_schema, &pieces).map_err(|e| e.to_string())
    }

    /// Adds `window_end` and the date/hour of `window_start` to grouped rows.
    fn finish(&self, grouped: RecordBatch) -> Result<RecordBatch, String> {
        let start = grouped.column(0).as_primitive::<TimestampMicrosecondType>();
        let size = self.kind.size_us();
        let end: TimestampMicrosecondArray = start
            .iter()
            .map(|s| s.map(|s| s + size))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("UTC");
        let start = start.clone().with_timezone("UTC");
        let (date, hour) = date_and_hour(&start);
        let mut columns: Vec<ArrayRef> = vec![Arc::new(start), Arc::new(end)];
        columns.extend(grouped.columns().iter().skip(1).cloned());
        columns.extend([Arc::new(date) as ArrayRef, Arc::new(hour)]);
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// The smallest value of an Int64 column (offsets), if any.
pub fn min_i64(batches: &[RecordBatch], column: &str) -> Option<i64> {
    batches
        .iter()
        .filter_map(|b| b.column_by_name(column))
        .filter_map(|c| arrow::compute::min(c.as_any().downcast_ref::<Int64Array>()?))
        .min()
}

/// A name as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn tumbling_and_hopping_windows_hold_the_right_events() {
        let tumble = WindowKind::Tumble { size_us: MIN };
        assert_eq!(tumble.starts(90_000_000).collect::<Vec<_>>(), [MIN]);
        assert_eq!(tumble.last_end(90_000_000), 2 * MIN);
        assert_eq!(tumble.starts(-1).collect::<Vec<_>>(), [-MIN]);
        let hop = WindowKind::Hop {
            size_us: 5 * MIN,
            slide_us: MIN,
        };
        assert_eq!(
            hop.starts(5 * MIN + 1).collect::<Vec<_>>(),
            [MIN, 2 * MIN, 3 * MIN, 4 * MIN, 5 * MIN]
        );
        assert_eq!(hop.last_end(5 * MIN + 1), 10 * MIN);
    }
}
