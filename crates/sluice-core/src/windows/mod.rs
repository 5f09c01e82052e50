//! Event-time windows: which windows an event falls in, and the aggregation of windows, the
//! query `SELECT window_start, window_end, <keys>, <aggregates> … GROUP BY window_start,
//! window_end, <keys>` planned by DataFusion.
//!
//! A window `[start, end)` closes when the watermark reaches its end. Tumbling and hopping
//! windows are fixed in time; a session window is a run of one key's events each less than the
//! gap after the one before, ending a gap after its last event ([`sessions`]). Open fixed
//! windows are held as partial aggregates per window and key where the query's plan is one
//! aggregation ([`partial`]); otherwise (sessions, and plans DataFusion rewrites) as rows,
//! aggregated in one `GROUP BY` when windows close. Either way an aggregate is whatever
//! DataFusion computes (`count(distinct x)`, `first_value(x ORDER BY ts)`, …), exactly as batch
//! SQL over the same events would. Only the columns the query reads are copied out of rows.

mod partial;
mod sessions;

pub use partial::OpenAggregates;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::event_time::date_and_hour;
use crate::schema::{DATE_COLUMN, HOUR_COLUMN, utc_micros};
use partial::IncrementalPlan;

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
    /// One window per run of a key's events less than `gap_us` apart, from its first event to
    /// `gap_us` after its last.
    Session {
        /// Silence that ends a session, in microseconds.
        gap_us: i64,
    },
}

impl WindowKind {
    /// A fixed window kind's (size, slide) in microseconds; `None` for sessions, whose bounds
    /// depend on the events.
    pub fn size_and_slide(self) -> Option<(i64, i64)> {
        match self {
            Self::Tumble { size_us } => Some((size_us, size_us)),
            Self::Hop { size_us, slide_us } => Some((size_us, slide_us)),
            Self::Session { .. } => None,
        }
    }

    /// The starts of the fixed windows holding an event at `t`, ascending (none for sessions).
    pub fn starts(self, t: i64) -> impl Iterator<Item = i64> {
        let (size, slide) = self.size_and_slide().unwrap_or((0, 1));
        let last = t.div_euclid(slide) * slide;
        let first = last - (size / slide - 1) * slide;
        (0..size / slide).map(move |i| first + i * slide)
    }

    /// The end of the last fixed window holding an event at `t`: once the watermark reaches
    /// it, the event is no longer needed, and an event arriving then is late. For a session,
    /// the earliest end its session can have.
    pub fn last_end(self, t: i64) -> i64 {
        match self.size_and_slide() {
            Some((size, slide)) => t.div_euclid(slide) * slide + size,
            None => t + self.gap_us(),
        }
    }

    /// A session window's gap (0 for fixed windows).
    fn gap_us(self) -> i64 {
        match self {
            Self::Session { gap_us } => gap_us,
            _ => 0,
        }
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
            Self::Session { gap_us } => {
                write!(f, "sessions ending after {} of silence", text(gap_us))
            }
        }
    }
}

/// A compiled window aggregation.
#[derive(Clone)]
pub struct WindowAggregation {
    kind: WindowKind,
    event_time: String,
    group_by: Vec<String>,
    /// The columns of a stream's rows that open windows keep ([`WindowAggregation::keep`]):
    /// those the query reads (DataFusion's projection of its scan), event time and the
    /// group-by keys, in the stream's order.
    kept_columns: Vec<usize>,
    /// Where the columns the query reads are among the kept ones: only these are copied into
    /// the rows of closing windows.
    read_columns: Vec<usize>,
    /// Those columns, then the window's start and end.
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    sql: String,
    /// The query taken apart to aggregate as rows arrive, when its plan allows (fixed windows
    /// only).
    incremental: Option<Arc<IncrementalPlan>>,
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
    /// Plans `SELECT window_start, window_end, <group_by>, <aggregates> … GROUP BY
    /// window_start, window_end, <group_by>` over rows of `input` (a stream's table schema)
    /// to check names and types, and to learn which columns it reads. Planning needs no I/O;
    /// this blocks the calling thread for it.
    pub fn compile(
        kind: WindowKind,
        input: &SchemaRef,
        event_time: &str,
        group_by: &[String],
        aggregates: &[(String, String)],
    ) -> Result<Self, String> {
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(WINDOW_START, utc_micros(), false));
        fields.push(Field::new(WINDOW_END, utc_micros(), false));
        let input_schema = Arc::new(Schema::new(fields));
        let keys: Vec<String> = [WINDOW_START.to_string(), WINDOW_END.to_string()]
            .into_iter()
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
        let context =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        context
            .register_batch("events", RecordBatch::new_empty(input_schema.clone()))
            .map_err(|e| e.to_string())?;
        let planned = futures::executor::block_on(context.sql(&sql))
            .map_err(|err| format!("{}", err).replace("Error during planning: ", ""))?;
        let grouped = planned.schema().as_arrow().clone();
        let incremental = match kind {
            WindowKind::Session { .. } => None,
            _ => futures::executor::block_on(planned.clone().create_physical_plan())
                .ok()
                .and_then(|plan| IncrementalPlan::of(&plan))
                .map(Arc::new),
        };
        let read: Vec<usize> = scanned_columns(planned.into_optimized_plan())
            .unwrap_or_else(|| (0..input_schema.fields().len()).collect())
            .into_iter()
            .filter(|&index| index < input.fields().len())
            .collect();
        let mut kept_columns = read.clone();
        for name in group_by.iter().map(String::as_str).chain([event_time]) {
            kept_columns.push(input.index_of(name).map_err(|err| err.to_string())?);
        }
        kept_columns.sort_unstable();
        kept_columns.dedup();
        let read_columns = read
            .iter()
            .map(|index| {
                kept_columns
                    .binary_search(index)
                    .expect("read columns are kept")
            })
            .collect();
        let mut fields: Vec<Field> = read
            .iter()
            .map(|&index| input.field(index).clone())
            .collect();
        fields.push(Field::new(WINDOW_START, utc_micros(), false));
        fields.push(Field::new(WINDOW_END, utc_micros(), false));
        let input_schema = Arc::new(Schema::new(fields));
        let mut out: Vec<Field> = vec![
            Field::new(WINDOW_START, utc_micros(), false),
            Field::new(WINDOW_END, utc_micros(), false),
        ];
        out.extend(
            grouped
                .fields()
                .iter()
                .skip(2)
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        out.extend([
            Field::new(DATE_COLUMN, DataType::Date32, true),
            Field::new(HOUR_COLUMN, DataType::Int32, true),
        ]);
        Ok(Self {
            kind,
            event_time: event_time.to_string(),
            group_by: group_by.to_vec(),
            kept_columns,
            read_columns,
            input_schema,
            output_schema: Arc::new(Schema::new(out)),
            sql,
            incremental,
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

    /// The columns of `rows` (a stream's table rows) that open windows keep: what
    /// [`WindowAggregation::aggregate`] and [`WindowAggregation::close_sessions`] take.
    pub fn keep(&self, rows: &RecordBatch) -> RecordBatch {
        rows.project(&self.kept_columns)
            .expect("rows follow the stream's table schema the window was compiled for")
    }

    /// Aggregates the fixed windows of `rows` (kept rows, see [`WindowAggregation::keep`])
    /// whose end is in `(after, until]`, one output row per window and key. `floors` holds per
    /// row of `rows` a time at or before which its windows do not take it (it was read after
    /// their lateness line had passed them).
    pub async fn aggregate(
        &self,
        rows: &[RecordBatch],
        floors: &[Int64Array],
        after: Option<i64>,
        until: i64,
    ) -> Result<RecordBatch, String> {
        let exploded = self.explode(rows, floors, after, until)?;
        self.group(exploded).await
    }

    /// Whether open windows are held as partial aggregates ([`WindowAggregation::update`])
    /// rather than rows ([`WindowAggregation::aggregate`]): for fixed windows whose query
    /// DataFusion plans as a single aggregation.
    pub fn is_incremental(&self) -> bool {
        self.incremental.is_some()
    }

    /// This aggregation holding the rows of open windows even where partial aggregates would
    /// do: the reference that tests of partial aggregates compare with.
    #[must_use]
    pub fn keeping_rows(mut self) -> Self {
        self.incremental = None;
        self
    }

    /// Adds `rows` (kept rows) to the partial aggregates of their fixed windows whose end is
    /// after `after`, leaving out for each row the windows ending at or before its floor (see
    /// [`WindowAggregation::aggregate`]).
    pub fn update(
        &self,
        open: &mut OpenAggregates,
        rows: &RecordBatch,
        floors: &Int64Array,
        after: Option<i64>,
    ) -> Result<(), String> {
        let plan = self
            .incremental
            .as_ref()
            .ok_or("not an incremental window")?;
        let exploded = self.explode(
            std::slice::from_ref(rows),
            std::slice::from_ref(floors),
            after,
            i64::MAX,
        )?;
        open.update(plan, &exploded)
    }

    /// Emits and forgets the windows of `open` ending at or before `until`, one output row per
    /// window and key.
    pub fn close(&self, open: &mut OpenAggregates, until: i64) -> Result<RecordBatch, String> {
        let plan = self
            .incremental
            .as_ref()
            .ok_or("not an incremental window")?;
        let (size, _) = self.kind.size_and_slide().ok_or("sessions keep rows")?;
        let mut out = Vec::new();
        for grouped in open.close(plan, size, until)? {
            out.push(self.finish(grouped)?);
        }
        concat_batches(&self.output_schema, &out).map_err(|e| e.to_string())
    }

    /// Cuts `rows` (kept rows, see [`WindowAggregation::keep`]) into sessions and aggregates
    /// those ending in `(after, until]`; returns them, and per batch of `rows` which rows
    /// belong to sessions still open. Sessions ending at or before `after` were emitted before
    /// (their rows are replayed): they are dropped.
    pub async fn close_sessions(
        &self,
        rows: &[RecordBatch],
        after: Option<i64>,
        until: i64,
    ) -> Result<(RecordBatch, Vec<BooleanArray>), String> {
        let gap = self.kind.gap_us();
        let bounds = sessions::bounds(rows, &self.group_by, &self.event_time, gap)?;
        let mut pieces = Vec::with_capacity(rows.len());
        let mut still_open = Vec::with_capacity(rows.len());
        for (batch, bounds) in rows.iter().zip(bounds) {
            let (mut indices, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
            let mut open = Vec::with_capacity(bounds.len());
            for (row, bound) in bounds.into_iter().enumerate() {
                match bound {
                    Some((_, end)) if after.is_some_and(|a| end <= a) => open.push(false),
                    Some((start, end)) if end <= until => {
                        indices.push(row as u32);
                        starts.push(start);
                        ends.push(end);
                        open.push(false);
                    }
                    Some(_) => open.push(true),
                    None => open.push(false),
                }
            }
            pieces.push(self.with_bounds(batch, indices, starts, ends)?);
            still_open.push(BooleanArray::from(open));
        }
        let exploded = concat_batches(&self.input_schema, &pieces).map_err(|e| e.to_string())?;
        Ok((self.group(exploded).await?, still_open))
    }

    /// Runs the grouping query over rows carrying their window's bounds.
    async fn group(&self, exploded: RecordBatch) -> Result<RecordBatch, String> {
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
        floors: &[Int64Array],
        after: Option<i64>,
        until: i64,
    ) -> Result<RecordBatch, String> {
        let (size, _) = self
            .kind
            .size_and_slide()
            .ok_or("sessions are cut by close_sessions")?;
        let mut pieces = Vec::with_capacity(rows.len());
        for (batch, floors) in rows.iter().zip(floors) {
            let times = batch
                .column_by_name(&self.event_time)
                .ok_or("rows lack the event-time column")?
                .as_primitive::<TimestampMicrosecondType>();
            let (mut indices, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
            for (row, t) in times.iter().enumerate() {
                let Some(t) = t else { continue };
                let floor = floors.value(row);
                for start in self.kind.starts(t) {
                    let end = start + size;
                    if end <= until && after.is_none_or(|a| end > a) && end > floor {
                        indices.push(row as u32);
                        starts.push(start);
                        ends.push(end);
                    }
                }
            }
            pieces.push(self.with_bounds(batch, indices, starts, ends)?);
        }
        concat_batches(&self.input_schema, &pieces).map_err(|e| e.to_string())
    }

    /// The rows of `batch` at `indices`, each with its window's start and end.
    fn with_bounds(
        &self,
        batch: &RecordBatch,
        indices: Vec<u32>,
        starts: Vec<i64>,
        ends: Vec<i64>,
    ) -> Result<RecordBatch, String> {
        let read = batch
            .project(&self.read_columns)
            .map_err(|e| e.to_string())?;
        let taken =
            take_record_batch(&read, &UInt32Array::from(indices)).map_err(|e| e.to_string())?;
        let mut columns = taken.columns().to_vec();
        for bound in [starts, ends] {
            columns.push(Arc::new(
                TimestampMicrosecondArray::from(bound).with_timezone("UTC"),
            ));
        }
        RecordBatch::try_new(self.input_schema.clone(), columns).map_err(|e| e.to_string())
    }

    /// Adds the date/hour of `window_start` to grouped rows.
    fn finish(&self, grouped: RecordBatch) -> Result<RecordBatch, String> {
        let start = grouped.column(0).as_primitive::<TimestampMicrosecondType>();
        let end = grouped.column(1).as_primitive::<TimestampMicrosecondType>();
        let start = start.clone().with_timezone("UTC");
        let end = end.clone().with_timezone("UTC");
        let (date, hour) = date_and_hour(&start);
        let mut columns: Vec<ArrayRef> = vec![Arc::new(start), Arc::new(end)];
        columns.extend(grouped.columns().iter().skip(2).cloned());
        columns.extend([Arc::new(date) as ArrayRef, Arc::new(hour)]);
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// The columns the plan's table scan reads, when DataFusion narrowed it (`None`: all).
fn scanned_columns(plan: datafusion::error::Result<LogicalPlan>) -> Option<Vec<usize>> {
    let mut scanned = None;
    plan.ok()?
        .apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                scanned = scan.projection.clone();
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .ok()?;
    scanned
}

/// A name as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests;
