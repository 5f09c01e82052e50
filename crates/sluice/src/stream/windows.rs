//! A partition lane's state for one window aggregation: the rows of its open windows, its
//! watermark, and the windows it emitted that are not committed yet.
//!
//! Exactly once by replay (docs/DESIGN.md, "Windows"): each commit of a window table records,
//! per partition, the last offset processed (`V`, the `txn` version), the offset to replay
//! from (`replay_from`: the lowest offset among rows of open windows), the close watermark
//! (`close_us`: every window ending at or before it was emitted) and the newest event time
//! seen (`max_event_us`). A lane reopened from them reads from `replay_from`, keeps the rows
//! at or below `V` whose windows are still open (they counted then too, as the close
//! watermark only grows), and sends nothing again for them (no late output, no window).

use std::time::Instant;

use anyhow::Result;
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use sluice_core::schema::OFFSET_COLUMN;
use sluice_core::windows::{WindowAggregation, WindowKind, min_i64};

/// The names of a window table's marks (besides the offset), as stored in its `txn`s.
pub const REPLAY_FROM: &str = "replay_from";
/// See [`REPLAY_FROM`].
pub const CLOSE_US: &str = "close_us";
/// See [`REPLAY_FROM`].
pub const MAX_EVENT_US: &str = "max_event_us";

/// Where a window table left a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowMarks {
    /// The last offset processed.
    pub committed: Option<i64>,
    /// The lowest offset among rows of windows open then.
    pub replay_from: Option<i64>,
    /// Windows ending at or before this were emitted.
    pub close_us: Option<i64>,
    /// The newest event time seen.
    pub max_event_us: Option<i64>,
}

/// What a window table has to commit from one lane.
#[derive(Debug)]
pub struct WindowPending {
    /// Emitted window rows.
    pub batches: Vec<RecordBatch>,
    /// The offset the table holds now.
    pub previous: Option<i64>,
    /// The last offset processed.
    pub last_offset: i64,
    /// The marks to store with it.
    pub marks: Vec<(&'static str, i64)>,
}

/// One window aggregation's state in one lane.
#[derive(Debug)]
pub struct WindowLane {
    /// The last offset the window table holds for this partition.
    pub committed: Option<i64>,
    last_seen: Option<i64>,
    /// Rows of open windows (the stream's table rows).
    open: Vec<RecordBatch>,
    max_event_us: Option<i64>,
    close_us: Option<i64>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// When the oldest uncommitted progress arrived.
    since: Option<Instant>,
    /// When a record last arrived: a lane silent past the idle timeout no longer holds back
    /// the stream's watermark.
    pub last_arrival: Instant,
}

impl WindowLane {
    /// A lane continuing from what the window table recorded.
    pub fn new(marks: WindowMarks, now: Instant) -> Self {
        Self {
            committed: marks.committed,
            last_seen: marks.committed,
            open: Vec::new(),
            max_event_us: marks.max_event_us,
            close_us: marks.close_us,
            pending: Vec::new(),
            pending_rows: 0,
            since: None,
            last_arrival: now,
        }
    }

    /// Where reading must start for this window: its replay offset, else after its committed
    /// offset; `None` for the log start.
    pub fn resume_offset(marks: &WindowMarks) -> Option<i64> {
        marks.replay_from.or(marks.committed.map(|c| c + 1))
    }

    /// Takes a lane's decoded rows up to `last_offset`; returns the offsets of late events
    /// (whose last window has closed), which have not been reported before.
    pub fn ingest(
        &mut self,
        kind: WindowKind,
        event_time: &str,
        batch: &RecordBatch,
        last_offset: i64,
        now: Instant,
    ) -> Vec<i64> {
        self.last_arrival = now;
        let times = batch
            .column_by_name(event_time)
            .expect("decoded rows carry event time")
            .as_primitive::<TimestampMicrosecondType>();
        let offsets = batch
            .column_by_name(OFFSET_COLUMN)
            .expect("decoded rows carry _offset")
            .as_primitive::<Int64Type>();
        // The lane admits each offset once, in order; offsets up to `committed` are a replay.
        let mut late = Vec::new();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let offset = offsets.value(row);
            let open = times.is_valid(row)
                && self
                    .close_us
                    .is_none_or(|close| kind.last_end(times.value(row)) > close);
            let replayed = self.committed.is_some_and(|c| offset <= c);
            if !open && !replayed {
                late.push(offset);
            }
            keep.push(open);
        }
        if let Some(max) = arrow::compute::max(times) {
            self.max_event_us = Some(self.max_event_us.map_or(max, |m| m.max(max)));
        }
        let rows = filter_record_batch(batch, &BooleanArray::from(keep)).expect("mask fits");
        if rows.num_rows() > 0 {
            self.open.push(rows);
        }
        if self.last_seen.is_none_or(|s| last_offset > s) {
            self.last_seen = Some(last_offset);
            self.since.get_or_insert(now);
        }
        late
    }

    /// The lane's own watermark: the newest event time less the allowed lateness.
    pub fn watermark(&self, allowed_lateness_us: i64) -> Option<i64> {
        self.max_event_us.map(|m| m - allowed_lateness_us)
    }

    /// Moves the close watermark to `to` (never back): emits every window that ends in
    /// between and forgets rows no open window needs.
    pub async fn advance(&mut self, aggregation: &WindowAggregation, to: i64) -> Result<()> {
        if self.close_us.is_some_and(|close| to <= close) {
            return Ok(());
        }
        let kind = aggregation.kind();
        let slide = match kind {
            WindowKind::Tumble { size_us } => size_us,
            WindowKind::Hop { slide_us, .. } => slide_us,
        };
        // Window ends are multiples of the slide: nothing closes unless one is crossed.
        let crosses = self
            .close_us
            .is_none_or(|close| to.div_euclid(slide) > close.div_euclid(slide));
        if crosses && !self.open.is_empty() {
            let emitted = aggregation
                .aggregate(&self.open, self.close_us, to)
                .await
                .map_err(anyhow::Error::msg)?;
            if emitted.num_rows() > 0 {
                // Another lane's progress can close this lane's windows: pending without any
                // new offset of its own.
                self.pending_rows += emitted.num_rows();
                self.pending.push(emitted);
                self.since.get_or_insert_with(Instant::now);
            }
            let event_time = aggregation.event_time();
            self.open = std::mem::take(&mut self.open)
                .into_iter()
                .filter_map(|batch| {
                    let times = batch
                        .column_by_name(event_time)
                        .expect("rows carry event time")
                        .as_primitive::<TimestampMicrosecondType>();
                    let keep: BooleanArray = times
                        .iter()
                        .map(|t| Some(t.is_some_and(|t| kind.last_end(t) > to)))
                        .collect();
                    let kept = filter_record_batch(&batch, &keep).expect("mask fits");
                    (kept.num_rows() > 0).then_some(kept)
                })
                .collect();
        }
        self.close_us = Some(to);
        Ok(())
    }

    /// Whether there is progress or emitted windows not yet committed.
    pub fn has_pending(&self) -> bool {
        self.last_seen > self.committed || !self.pending.is_empty()
    }

    /// Emitted rows waiting for a commit.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    /// When the oldest pending progress arrived.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Takes the emitted rows and marks for a commit; [`Self::committed`] moves only once the
    /// caller reports success.
    pub fn take_pending(&mut self) -> Option<WindowPending> {
        let last_offset = self.last_seen.filter(|_| self.has_pending())?;
        let replay_from = min_i64(&self.open, OFFSET_COLUMN).unwrap_or(last_offset + 1);
        let mut marks = vec![(REPLAY_FROM, replay_from)];
        marks.extend(self.close_us.map(|c| (CLOSE_US, c)));
        marks.extend(self.max_event_us.map(|m| (MAX_EVENT_US, m)));
        self.pending_rows = 0;
        self.since = None;
        Some(WindowPending {
            batches: std::mem::take(&mut self.pending),
            previous: self.committed,
            last_offset,
            marks,
        })
    }
}
