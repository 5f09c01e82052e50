//! A partition lane's state for one window aggregation: its open windows (as partial
//! aggregates per window and key, or as rows where the query needs them), its watermark, and
//! the windows it emitted that are not committed yet.
//!
//! Exactly once by replay (docs/DESIGN.md, "Windows"): each commit of a window table records,
//! per partition, the last offset processed (`V`, the `txn` version), the offset to replay
//! from (`replay_from`: where the oldest batch with rows in open windows began), the
//! newest event time before that offset (`replay_max_us`), the close watermark (`close_us`:
//! every window ending at or before it was emitted) and the newest event time seen
//! (`max_event_us`). A lane reopened from them reads from `replay_from`, decides again which
//! rows were late exactly as it did then, keeps the rows at or below `V` whose windows are
//! still open, and sends nothing again for them (no late output, no window).
//!
//! Lateness is decided by the partition alone, in offset order, so that a run after a crash
//! decides exactly as the crashed one did about records it read past the last commit (and
//! may have sent to the late output already): the stream's watermark depends on how far the
//! other partitions had been read, which differs from run to run. The lateness line is the
//! newest event time before the event in its partition less the allowed lateness. For
//! tumbling and hopping windows an event is late when its last window ends at or before that
//! line (or has closed, which only a partition idle past the timeout can see sooner: the
//! stream's watermark, which closes windows, is never past the line of a partition that
//! counts towards it). For sessions, whose windows depend on later events, an event is late
//! when it is behind the line itself, and a partition's sessions close no further than that
//! line: so a session once emitted can never gain an event. A replay draws the line where it
//! was (`replay_max_us`). On a repartition topic the records of all source partitions
//! interleave, so there an event is late only when its window has closed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use sluice_core::schema::OFFSET_COLUMN;
use sluice_core::windows::{OpenAggregates, WindowAggregation, WindowKind};

use crate::lanes::Pending;

/// The names of a window table's marks (besides the offset), as stored in its `txn`s.
pub const REPLAY_FROM: &str = "replay_from";
/// See [`REPLAY_FROM`].
pub const REPLAY_MAX_US: &str = "replay_max_us";
/// See [`REPLAY_FROM`].
pub const CLOSE_US: &str = "close_us";
/// See [`REPLAY_FROM`].
pub const MAX_EVENT_US: &str = "max_event_us";

/// Where a window table left a partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowMarks {
    /// The last offset processed.
    pub committed: Option<i64>,
    /// Where the oldest batch holding rows of windows open then began.
    pub replay_from: Option<i64>,
    /// The newest event time before `replay_from`.
    pub replay_max_us: Option<i64>,
    /// Windows ending at or before this were emitted.
    pub close_us: Option<i64>,
    /// The newest event time seen.
    pub max_event_us: Option<i64>,
}

/// Where a batch with rows in open windows began: what a replay starts from.
#[derive(Debug, Clone, Copy)]
struct BatchStart {
    /// The offset of the batch's first record.
    first_offset: i64,
    /// The newest event time before that record.
    max_before: Option<i64>,
}

/// Rows of open windows from one batch of records.
#[derive(Debug)]
struct OpenRows {
    rows: RecordBatch,
    /// Per row, the lateness line when it was read: windows ending at or before it do not
    /// take the row (a hopping window's earlier windows may still be open then).
    floors: Int64Array,
    start: BatchStart,
}

/// A batch folded into partial aggregates, needed for a replay until its last window closes.
#[derive(Debug)]
struct FoldedBatch {
    start: BatchStart,
    /// The end of the last window any of its rows is in.
    last_end: i64,
}

/// What a lane's open windows hold.
#[derive(Debug)]
enum Open {
    /// Partial aggregates per window and key, and the batches folded into them.
    Aggregates {
        windows: OpenAggregates,
        batches: Vec<FoldedBatch>,
    },
    /// The rows (sessions, and queries DataFusion does not plan as one aggregation).
    Rows(Vec<OpenRows>),
}

impl Open {
    fn of(aggregation: &WindowAggregation) -> Self {
        if aggregation.is_incremental() {
            Self::Aggregates {
                windows: OpenAggregates::default(),
                batches: Vec::new(),
            }
        } else {
            Self::Rows(Vec::new())
        }
    }

    /// Where the oldest batch with rows in open windows began.
    fn oldest(&self) -> Option<BatchStart> {
        match self {
            Self::Aggregates { batches, .. } => batches.first().map(|b| b.start),
            Self::Rows(open) => open.first().map(|o| o.start),
        }
    }

    /// Takes the rows `rows` (kept rows of one batch, each with its floor) into their windows
    /// ending after `close`.
    fn take(
        &mut self,
        aggregation: &WindowAggregation,
        (rows, floors): (RecordBatch, Int64Array),
        start: BatchStart,
        close: Option<i64>,
    ) -> Result<()> {
        match self {
            Self::Aggregates { windows, batches } => {
                let times = rows
                    .column_by_name(aggregation.event_time())
                    .expect("rows carry event time")
                    .as_primitive::<TimestampMicrosecondType>();
                let newest = arrow::compute::max(times).expect("rows have event times");
                aggregation
                    .update(windows, &rows, &floors, close)
                    .map_err(anyhow::Error::msg)?;
                batches.push(FoldedBatch {
                    start,
                    last_end: aggregation.kind().last_end(newest),
                });
            }
            Self::Rows(open) => open.push(OpenRows {
                rows,
                floors,
                start,
            }),
        }
        Ok(())
    }

    /// The oldest event time of the open rows (`None` with partial aggregates).
    fn oldest_time(&self, aggregation: &WindowAggregation) -> Option<i64> {
        let Self::Rows(open) = self else {
            return None;
        };
        open.iter()
            .filter_map(|open| {
                let times = open.rows.column_by_name(aggregation.event_time())?;
                arrow::compute::min(times.as_primitive::<TimestampMicrosecondType>())
            })
            .min()
    }

    /// Emits the windows ending in `(after, to]` and forgets what no open window needs.
    async fn close(
        &mut self,
        aggregation: &WindowAggregation,
        after: Option<i64>,
        to: i64,
    ) -> Result<RecordBatch> {
        let open = match self {
            Self::Aggregates { windows, batches } => {
                batches.retain(|batch| batch.last_end > to);
                return aggregation.close(windows, to).map_err(anyhow::Error::msg);
            }
            Self::Rows(open) => open,
        };
        let kind = aggregation.kind();
        let rows: Vec<RecordBatch> = open.iter().map(|o| o.rows.clone()).collect();
        let floors: Vec<Int64Array> = open.iter().map(|o| o.floors.clone()).collect();
        let (emitted, still_open) = match kind {
            WindowKind::Session { .. } => aggregation
                .close_sessions(&rows, after, to)
                .await
                .map_err(anyhow::Error::msg)?,
            _ => {
                let emitted = aggregation
                    .aggregate(&rows, &floors, after, to)
                    .await
                    .map_err(anyhow::Error::msg)?;
                let event_time = aggregation.event_time();
                let still_open = rows
                    .iter()
                    .map(|batch| {
                        batch
                            .column_by_name(event_time)
                            .expect("rows carry event time")
                            .as_primitive::<TimestampMicrosecondType>()
                            .iter()
                            .map(|t| Some(t.is_some_and(|t| kind.last_end(t) > to)))
                            .collect()
                    })
                    .collect();
                (emitted, still_open)
            }
        };
        *open = std::mem::take(open)
            .into_iter()
            .zip(still_open)
            .filter_map(|(open, keep)| {
                let rows = filter_record_batch(&open.rows, &keep).expect("mask fits");
                let floors = arrow::compute::filter(&open.floors, &keep)
                    .expect("mask fits")
                    .as_primitive::<Int64Type>()
                    .clone();
                (rows.num_rows() > 0).then_some(OpenRows {
                    rows,
                    floors,
                    ..open
                })
            })
            .collect();
        Ok(emitted)
    }

    /// Memory held by the open windows.
    fn bytes(&self) -> usize {
        match self {
            Self::Aggregates { windows, .. } => windows.bytes(),
            Self::Rows(open) => open
                .iter()
                .map(|o| o.rows.get_array_memory_size() + o.floors.get_array_memory_size())
                .sum(),
        }
    }
}

/// A lane's contribution to its stream's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneWatermark {
    /// Its watermark.
    At(i64),
    /// None yet: it holds the stream's watermark back.
    Held,
    /// Nothing to say: silent past the idle timeout.
    Idle,
}

/// For a lane of a repartition topic: its records come from every partition of the stream's
/// topic, each in order, so its watermark is the lowest over them.
#[derive(Debug)]
struct Origins {
    /// The stream topic's partition count.
    count: i32,
    idle_timeout: Duration,
    opened: Instant,
    /// Per source partition: the newest event time seen from it here, and when it arrived.
    seen: HashMap<i32, (i64, Instant)>,
}

/// One window aggregation's state in one lane.
#[derive(Debug)]
pub struct WindowLane {
    /// The last offset the window table holds for this partition.
    pub committed: Option<i64>,
    last_seen: Option<i64>,
    allowed_lateness_us: i64,
    /// Records below this were dealt with before the last commit.
    replay_from: Option<i64>,
    /// Until the replay reaches this offset (the one committed before the lane opened), the
    /// close watermark stays where it was committed, so the replayed rows are judged as
    /// they were then and no window closes without them.
    replaying_to: Option<i64>,
    open: Open,
    /// The newest event time up to the record being ingested, in offset order.
    running_max_us: Option<i64>,
    max_event_us: Option<i64>,
    close_us: Option<i64>,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// When the oldest uncommitted progress arrived.
    since: Option<Instant>,
    /// When a record last arrived (none yet: `None`): a lane silent past the idle timeout no
    /// longer holds back the stream's watermark.
    last_arrival: Option<Instant>,
    origins: Option<Origins>,
}

impl WindowLane {
    /// A lane of `aggregation` continuing from what the window table recorded.
    pub fn new(
        marks: WindowMarks,
        allowed_lateness_us: i64,
        aggregation: &WindowAggregation,
    ) -> Self {
        Self {
            committed: marks.committed,
            last_seen: marks.committed,
            allowed_lateness_us,
            replay_from: marks.replay_from,
            replaying_to: marks
                .committed
                .filter(|&c| Self::resume_offset(&marks).is_some_and(|from| from <= c)),
            open: Open::of(aggregation),
            running_max_us: marks.replay_max_us,
            max_event_us: marks.max_event_us,
            close_us: marks.close_us,
            pending: Vec::new(),
            pending_rows: 0,
            since: None,
            last_arrival: None,
            origins: None,
        }
    }

    /// Makes this the lane of a repartition topic, opened at `opened`, fed by `count` source
    /// partitions, each of which stops holding the watermark back after `idle_timeout` without
    /// records here.
    pub fn fed_by_partitions(
        mut self,
        count: i32,
        idle_timeout: Duration,
        opened: Instant,
    ) -> Self {
        self.origins = Some(Origins {
            count,
            idle_timeout,
            opened,
            seen: HashMap::new(),
        });
        self
    }

    /// Where reading must start for this window: its replay offset, else after its committed
    /// offset; `None` for the log start.
    pub fn resume_offset(marks: &WindowMarks) -> Option<i64> {
        marks.replay_from.or(marks.committed.map(|c| c + 1))
    }

    /// Takes a lane's decoded rows up to `last_offset` (on a repartition topic, with each row's
    /// source partition); returns the offsets of late events, which have not been reported
    /// before.
    pub fn ingest(
        &mut self,
        aggregation: &WindowAggregation,
        (batch, origins): (&RecordBatch, Option<&[i32]>),
        last_offset: i64,
        now: Instant,
    ) -> Result<Vec<i64>> {
        self.last_arrival = Some(now);
        let kind = aggregation.kind();
        let times = batch
            .column_by_name(aggregation.event_time())
            .expect("decoded rows carry event time")
            .as_primitive::<TimestampMicrosecondType>();
        let offsets = batch
            .column_by_name(OFFSET_COLUMN)
            .expect("decoded rows carry _offset")
            .as_primitive::<Int64Type>();
        // The lane admits each offset once, in order; offsets up to `committed` are a replay.
        let mut late = Vec::new();
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut floors = Vec::with_capacity(batch.num_rows());
        let mut first: Option<(i64, Option<i64>)> = None;
        for row in 0..batch.num_rows() {
            let offset = offsets.value(row);
            if self.replay_from.is_some_and(|from| offset < from) || times.is_null(row) {
                keep.push(false);
                continue;
            }
            first.get_or_insert((offset, self.running_max_us));
            let t = times.value(row);
            if let (Some(state), Some(origins)) = (&mut self.origins, origins) {
                let seen = state.seen.entry(origins[row]).or_insert((t, now));
                *seen = (seen.0.max(t), now);
            }
            let line = self
                .running_max_us
                .map(|max| max - self.allowed_lateness_us);
            let open = match kind {
                WindowKind::Session { .. } => line.is_none_or(|line| t >= line),
                _ => {
                    let end = kind.last_end(t);
                    self.close_us.is_none_or(|close| end > close)
                        && (self.origins.is_some() || line.is_none_or(|line| end > line))
                }
            };
            if open {
                floors.push(line.filter(|_| self.origins.is_none()).unwrap_or(i64::MIN));
            }
            self.running_max_us = Some(self.running_max_us.map_or(t, |m| m.max(t)));
            let replayed = self.committed.is_some_and(|c| offset <= c);
            if !open && !replayed {
                late.push(offset);
            }
            keep.push(open);
        }
        if let Some(max) = self.running_max_us {
            self.max_event_us = Some(self.max_event_us.map_or(max, |m| m.max(max)));
        }
        let rows = filter_record_batch(&aggregation.keep(batch), &BooleanArray::from(keep))
            .expect("mask fits");
        if let Some((first_offset, max_before)) = first.filter(|_| rows.num_rows() > 0) {
            let start = BatchStart {
                first_offset,
                max_before,
            };
            let floors = Int64Array::from(floors);
            self.open
                .take(aggregation, (rows, floors), start, self.close_us)?;
        }
        if self.replaying_to.is_some_and(|to| last_offset >= to) {
            self.replaying_to = None;
        }
        if self.last_seen.is_none_or(|s| last_offset > s) {
            self.last_seen = Some(last_offset);
            self.since.get_or_insert(now);
        }
        Ok(late)
    }

    /// When a record last arrived, if one has.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// The lane's own watermark: the newest event time less the allowed lateness; on a
    /// repartition topic, the lowest over the source partitions not idle (one never seen holds
    /// it back until the lane has been open for the idle timeout).
    pub fn watermark(&self, now: Instant) -> LaneWatermark {
        let Some(origins) = &self.origins else {
            return self.max_event_us.map_or(LaneWatermark::Held, |m| {
                LaneWatermark::At(m - self.allowed_lateness_us)
            });
        };
        let mut lowest = None;
        for partition in 0..origins.count {
            match origins.seen.get(&partition) {
                Some((_, heard)) if now.duration_since(*heard) >= origins.idle_timeout => {}
                Some((max, _)) => {
                    let watermark = max - self.allowed_lateness_us;
                    lowest = Some(lowest.map_or(watermark, |l: i64| l.min(watermark)));
                }
                None if now.duration_since(origins.opened) >= origins.idle_timeout => {}
                None => return LaneWatermark::Held,
            }
        }
        lowest.map_or(LaneWatermark::Idle, LaneWatermark::At)
    }

    /// Moves the close watermark to `to` (never back, nor while replaying; for sessions, no
    /// further than the lateness line of this partition): emits every window that ends in
    /// between and forgets rows no open window needs.
    pub async fn advance(&mut self, aggregation: &WindowAggregation, to: i64) -> Result<()> {
        if self.replaying_to.is_some() {
            // The stream's watermark can be past this lane's committed close (other lanes
            // committed later): closing now would drop the rows not replayed yet.
            return Ok(());
        }
        let to = match aggregation.kind() {
            WindowKind::Session { .. } => match self.running_max_us {
                Some(max) => to.min(max - self.allowed_lateness_us),
                None => return Ok(()),
            },
            _ => to,
        };
        self.close_to(aggregation, to).await
    }

    /// The input is complete (`sluice load`): emits every window, sessions included.
    pub async fn finish(&mut self, aggregation: &WindowAggregation) -> Result<()> {
        self.replaying_to = None;
        self.close_to(aggregation, i64::MAX / 4).await
    }

    async fn close_to(&mut self, aggregation: &WindowAggregation, to: i64) -> Result<()> {
        if self.close_us.is_some_and(|close| to <= close) {
            return Ok(());
        }
        if self.closes_any(aggregation, to) {
            let emitted = self.open.close(aggregation, self.close_us, to).await?;
            if emitted.num_rows() > 0 {
                // Another lane's progress can close this lane's windows: pending without any
                // new offset of its own.
                self.pending_rows += emitted.num_rows();
                self.pending.push(emitted);
                self.since.get_or_insert_with(Instant::now);
            }
        }
        self.close_us = Some(to);
        Ok(())
    }

    /// Whether moving the close watermark to `to` can close an open window.
    fn closes_any(&self, aggregation: &WindowAggregation, to: i64) -> bool {
        let kind = aggregation.kind();
        match kind.size_and_slide() {
            // Window ends are multiples of the slide: nothing closes unless one is crossed.
            Some((_, slide)) => {
                self.open.oldest().is_some()
                    && self
                        .close_us
                        .is_none_or(|close| to.div_euclid(slide) > close.div_euclid(slide))
            }
            // A session ends at least a gap after its oldest event.
            None => self
                .open
                .oldest_time(aggregation)
                .is_some_and(|oldest| kind.last_end(oldest) <= to),
        }
    }

    /// Memory held by the open windows.
    pub fn state_bytes(&self) -> usize {
        self.open.bytes()
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
        let (replay_from, replay_max) = match self.open.oldest() {
            Some(start) => (start.first_offset, start.max_before),
            None => (last_offset + 1, self.running_max_us),
        };
        let mut marks = vec![(REPLAY_FROM, replay_from)];
        marks.extend(replay_max.map(|m| (REPLAY_MAX_US, m)));
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

/// The stream's watermark over its assigned partitions, each given as when it was assigned and
/// its lane (if open): the lowest lane watermark, leaving out partitions silent for
/// `idle_timeout`. A partition that has delivered nothing holds it back until it has been
/// assigned for that long; opening its lane is not hearing from it (a lane opened late, with
/// nothing to read, held the watermark back until the others had gone idle, and no window
/// ever closed). `None` while held back or when every partition is idle.
pub fn stream_watermark<'a>(
    partitions: impl Iterator<Item = (Instant, Option<&'a WindowLane>)>,
    idle_timeout: Duration,
    now: Instant,
) -> Option<i64> {
    let mut watermark: Option<i64> = None;
    for (assigned_at, state) in partitions {
        match contribution(assigned_at, state, idle_timeout, now) {
            LaneWatermark::At(w) => watermark = Some(watermark.map_or(w, |m| m.min(w))),
            LaneWatermark::Held => return None,
            LaneWatermark::Idle => {}
        }
    }
    watermark
}

/// Whether a partition that has not been heard from (or, on a repartition topic, a source
/// partition not heard from through it) holds the stream's watermark back, waiting for its
/// idle timeout.
pub fn held_by_silence<'a>(
    mut partitions: impl Iterator<Item = (Instant, Option<&'a WindowLane>)>,
    idle_timeout: Duration,
    now: Instant,
) -> bool {
    partitions.any(|(assigned_at, state)| {
        contribution(assigned_at, state, idle_timeout, now) == LaneWatermark::Held
    })
}

/// What one assigned partition (assigned at `assigned_at`, its lane's window `state` if it has
/// a lane) gives the stream's watermark: nothing once silent for `idle_timeout`.
fn contribution(
    assigned_at: Instant,
    state: Option<&WindowLane>,
    idle_timeout: Duration,
    now: Instant,
) -> LaneWatermark {
    let heard = state
        .and_then(WindowLane::last_arrival)
        .unwrap_or(assigned_at);
    if now.duration_since(heard) >= idle_timeout {
        return LaneWatermark::Idle;
    }
    state.map_or(LaneWatermark::Held, |w| w.watermark(now))
}

#[cfg(test)]
mod tests;
