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

use super::lanes::Pending;

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
    pub fn take_pending(&mut self) -> Option<Pending> {
        let last_offset = self.last_seen.filter(|_| self.has_pending())?;
        let replay_from = min_i64(&self.open, OFFSET_COLUMN).unwrap_or(last_offset + 1);
        let mut marks = vec![(REPLAY_FROM, replay_from)];
        marks.extend(self.close_us.map(|c| (CLOSE_US, c)));
        marks.extend(self.max_event_us.map(|m| (MAX_EVENT_US, m)));
        self.pending_rows = 0;
        self.since = None;
        Some(Pending {
            batches: std::mem::take(&mut self.pending),
            previous: self.committed,
            last_offset,
            marks,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use proptest::prelude::*;
    use sluice_core::schema::utc_micros;

    use super::*;

    const SECOND: i64 = 1_000_000;
    const LATENESS: i64 = 30 * SECOND;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", utc_micros(), true),
            Field::new("v", DataType::Float64, true),
            Field::new(OFFSET_COLUMN, DataType::Int64, true),
        ]))
    }

    /// Events as (device, event time, value), offsets in arrival order.
    fn batch(events: &[(u8, i64, i64)], first_offset: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    events.iter().map(|e| format!("d{}", e.0)),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.1))
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from_iter_values(
                    events.iter().map(|e| e.2 as f64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..events.len() as i64).map(|i| first_offset + i),
                )),
            ],
        )
        .unwrap()
    }

    /// (window start, device) → (count, sum).
    type Emitted = BTreeMap<(i64, String), (i64, i64)>;

    /// Feeds `arrivals` in batches of the given sizes, advancing the lane's own watermark after
    /// each, then closes everything; returns (window start, device) → (count, sum) and the
    /// number of late events.
    fn run(kind: WindowKind, arrivals: &[(u8, i64, i64)], splits: &[usize]) -> (Emitted, usize) {
        let aggregation = WindowAggregation::compile(
            kind,
            &schema(),
            "ts",
            &["device_id".to_string()],
            &[
                ("n".into(), "count(*)".into()),
                ("s".into(), "sum(v)".into()),
            ],
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut lane = WindowLane::new(WindowMarks::default(), Instant::now());
        let (mut at, mut late) = (0, 0);
        for size in splits
            .iter()
            .copied()
            .chain(std::iter::once(arrivals.len()))
        {
            let end = (at + size.max(1)).min(arrivals.len());
            if at == end {
                break;
            }
            let rows = batch(&arrivals[at..end], at as i64);
            late += lane
                .ingest(kind, "ts", &rows, end as i64 - 1, Instant::now())
                .len();
            let watermark = lane.watermark(LATENESS).unwrap();
            runtime
                .block_on(lane.advance(&aggregation, watermark))
                .unwrap();
            at = end;
        }
        runtime
            .block_on(lane.advance(&aggregation, i64::MAX / 4))
            .unwrap();
        let mut windows = BTreeMap::new();
        for emitted in lane.take_pending().unwrap().batches {
            let starts = emitted.column(0).as_primitive::<TimestampMicrosecondType>();
            let devices = emitted.column(2).as_string::<i32>();
            let counts = emitted.column(3).as_primitive::<Int64Type>();
            let sums = emitted
                .column(4)
                .as_primitive::<arrow::datatypes::Float64Type>();
            for row in 0..emitted.num_rows() {
                let key = (starts.value(row), devices.value(row).to_string());
                let value = (counts.value(row), sums.value(row) as i64);
                assert!(
                    windows.insert(key, value).is_none(),
                    "a window emitted twice"
                );
            }
        }
        (windows, late)
    }

    fn kinds() -> impl Strategy<Value = WindowKind> {
        prop_oneof![
            Just(WindowKind::Tumble {
                size_us: 60 * SECOND
            }),
            Just(WindowKind::Hop {
                size_us: 60 * SECOND,
                slide_us: 20 * SECOND,
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Events one second apart, each delayed by less than the allowed lateness: whatever
        /// the order they arrive in and however the batches fall, no event is late and the
        /// windows are those of the in-order run.
        #[test]
        fn any_arrival_order_within_the_lateness_gives_the_same_windows(
            kind in kinds(),
            events in prop::collection::vec((0u8..3, 0i64..100), 50..400),
            delays in prop::collection::vec(0i64..LATENESS, 400),
            splits in prop::collection::vec(1usize..60, 0..40),
        ) {
            let in_order: Vec<(u8, i64, i64)> = events
                .iter()
                .enumerate()
                .map(|(i, (device, value))| (*device, 1_795_000_000 * SECOND + i as i64 * SECOND, *value))
                .collect();
            let mut shuffled: Vec<(i64, (u8, i64, i64))> = in_order
                .iter()
                .zip(&delays)
                .map(|(event, delay)| (event.1 + delay, *event))
                .collect();
            shuffled.sort_by_key(|(arrival, event)| (*arrival, event.1));
            let shuffled: Vec<(u8, i64, i64)> = shuffled.into_iter().map(|(_, e)| e).collect();

            let (expected, none_late) = run(kind, &in_order, &[]);
            let (got, late) = run(kind, &shuffled, &splits);
            prop_assert_eq!(none_late, 0);
            prop_assert_eq!(late, 0);
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn an_event_behind_a_closed_window_is_late_and_not_counted() {
        let kind = WindowKind::Tumble {
            size_us: 60 * SECOND,
        };
        let t0 = 1_795_000_000 * SECOND - 1_795_000_000 * SECOND % (60 * SECOND);
        let arrivals = [
            (0, t0, 1),
            (0, t0 + 120 * SECOND, 2), // closes [t0, t0+60s): watermark t0 + 90 s
            (0, t0 + 10 * SECOND, 4),  // late
            (0, t0 + 61 * SECOND, 8),  // on time: its window ends at t0 + 120 s
        ];
        let (windows, late) = run(kind, &arrivals, &[1, 1, 1, 1]);
        assert_eq!(late, 1);
        let d0 = |start: i64| windows.get(&(start, "d0".to_string())).copied();
        assert_eq!(d0(t0), Some((1, 1)));
        assert_eq!(d0(t0 + 60 * SECOND), Some((1, 8)));
        assert_eq!(d0(t0 + 120 * SECOND), Some((1, 2)));
    }
}
