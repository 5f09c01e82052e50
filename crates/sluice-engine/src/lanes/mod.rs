//! Partition lanes: for each assigned Kafka partition, where reading must continue and what
//! each table has buffered and committed.
//!
//! A lane starts from the lake's record of progress (the `txn` versions), never from Kafka's
//! committed offsets: its next offset is the lowest `committed + 1` over the tables it feeds
//! (the log start for a table that has nothing yet). Records arriving out of that line are
//! skipped (already in the lake) or trigger a seek back (never lose one).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::gt;
use sluice_core::schema::OFFSET_COLUMN;
use sluice_kafka::side::SideMark;

use crate::windows::WindowLane;

/// What to do with a record at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Process it: it is the next offset.
    Take,
    /// Ignore it: already processed, or read before a seek took effect.
    Skip,
    /// Records are missing before it: seek to this offset and ignore the rest of this batch.
    SeekTo(i64),
}

/// Where the lane's last seek went and whether it has taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    None,
    /// Sought to `back` offsets below the next one while processing the current batch: what
    /// follows in it predates the seek.
    ThisBatch {
        back: i64,
    },
    /// Sought to `back` offsets below the next one in an earlier batch.
    Earlier {
        back: i64,
    },
}

/// How far below the next offset to seek after a seek `back` below it landed beyond: eight
/// times further, from 64. Going back too far only costs reading records the lake already
/// holds; a producer's record batch rarely spans more than a few thousand records.
fn further_back(back: i64) -> i64 {
    (back * 8).max(64)
}

/// How long after moving a lane that delivered nothing the next move may come; each further
/// move waits twice as long, up to [`MAX_MOVE_PAUSE`], until the lane reaches its log end. A
/// move cancels the fetch in flight: librdkafka drops what it fetched for the old position.
/// Under a CPU hog tansu took 4.2 s to answer one fetch from its SQLite log, so a consumer moved
/// every 5 s never delivered a record again (issue 18, the stall after a broker restart).
const FIRST_MOVE_PAUSE: Duration = Duration::from_secs(5);

/// The longest pause between two moves of one lane.
const MAX_MOVE_PAUSE: Duration = Duration::from_secs(60);

/// One table's view of a lane.
#[derive(Debug)]
pub struct TableBuffer {
    /// The last offset the table holds for this partition.
    pub committed: Option<i64>,
    /// The last offset processed for the table (rows buffered or records rejected).
    pub last_seen: Option<i64>,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    /// When the oldest uncommitted progress arrived.
    since: Option<Instant>,
}

/// What a table (or window table) has to commit from one lane.
#[derive(Debug)]
pub struct Pending {
    /// Buffered rows.
    pub batches: Vec<RecordBatch>,
    /// The offset the table holds now.
    pub previous: Option<i64>,
    /// The last offset the commit covers.
    pub last_offset: i64,
    /// Further numbers to record with it (a window's replay offset and watermarks).
    pub marks: Vec<(&'static str, i64)>,
}

impl TableBuffer {
    pub(super) fn new(committed: Option<i64>) -> Self {
        Self {
            committed,
            last_seen: committed,
            batches: Vec::new(),
            rows: 0,
            bytes: 0,
            since: None,
        }
    }

    /// Whether there is progress not yet committed.
    pub fn has_pending(&self) -> bool {
        self.last_seen > self.committed
    }

    /// Records processing of offsets up to `last_offset`, where nothing is buffered (how far a
    /// repartitioned window's events were forwarded).
    pub fn progressed(&mut self, last_offset: i64, now: Instant) {
        if self.last_seen.is_none_or(|seen| last_offset > seen) {
            self.last_seen = Some(last_offset);
            self.since.get_or_insert(now);
        }
    }

    /// Buffered rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Buffered bytes (Arrow memory).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest pending progress arrived.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Takes the buffered rows and leaves the counts and progress for a later
    /// [`Self::take_pending`]: for a writer that writes rows ahead of their commit.
    pub fn take_rows(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.batches)
    }

    /// Takes the buffered rows for a commit; the buffer is empty afterwards, and
    /// [`Self::committed`] moves only once the caller reports success.
    pub fn take_pending(&mut self) -> Option<Pending> {
        let last_offset = self.last_seen.filter(|_| self.has_pending())?;
        self.rows = 0;
        self.bytes = 0;
        self.since = None;
        Some(Pending {
            batches: std::mem::take(&mut self.batches),
            previous: self.committed,
            last_offset,
            marks: Vec::new(),
        })
    }
}

/// The state of one assigned partition.
#[derive(Debug)]
pub struct Lane {
    next: i64,
    seek: Seek,
    /// The offset delivered last (since the last seek took effect), if it was below `next`:
    /// a record beyond `next` right after it proves a real gap in the log.
    below: Option<i64>,
    /// When the lane last moved the consumer for delivering nothing ([`Self::nudge`]), and
    /// how long the next move waits.
    moved: Option<(Instant, Duration)>,
    /// One buffer per table fed by the lane's stream, in the stream's table order.
    pub tables: Vec<TableBuffer>,
    /// Per side topic (dead letters, alerts), the last record sent from this partition.
    pub side_marks: HashMap<String, SideMark>,
    /// One state per window aggregation of the lane's stream, in the stream's window order.
    pub windows: Vec<WindowLane>,
    /// Per repartitioned window of the lane's stream, how far its events were forwarded.
    pub forwards: Vec<TableBuffer>,
    /// Per repartition topic and partition, the last record forwarded from this partition.
    pub forwarded: HashMap<(String, i32), SideMark>,
}

impl Lane {
    /// A lane whose tables hold `committed` offsets. A table with nothing committed starts at
    /// offset 0: where the log really starts (retention may have removed the first records)
    /// is found by seeking there ([`Self::admit`]).
    #[cfg(test)]
    pub fn new(committed: &[Option<i64>]) -> Self {
        Self::resuming(committed, &[])
    }

    /// A lane whose tables hold `committed` offsets and that must also read from each of
    /// `also_from` (window replay offsets; `None` for the log start).
    pub fn resuming(committed: &[Option<i64>], also_from: &[Option<i64>]) -> Self {
        let from_tables = committed.iter().map(|c| c.map(|c| c + 1));
        let next = from_tables
            .chain(also_from.iter().copied())
            .min()
            .flatten()
            .unwrap_or(0);
        Self {
            next,
            seek: Seek::None,
            below: None,
            moved: None,
            tables: committed.iter().map(|c| TableBuffer::new(*c)).collect(),
            side_marks: HashMap::new(),
            windows: Vec::new(),
            forwards: Vec::new(),
            forwarded: HashMap::new(),
        }
    }

    /// The next offset the lane expects.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// The next offset that every table, window table and forward fed by the lane still
    /// needs from the lake's point of view: the lowest `committed + 1` (0 where nothing is
    /// committed). What lag is measured from.
    pub fn committed_next(&self) -> i64 {
        let tables = self
            .tables
            .iter()
            .chain(&self.forwards)
            .map(|t| t.committed);
        let windows = self.windows.iter().map(|w| w.committed);
        tables
            .chain(windows)
            .map(|c| c.map_or(0, |c| c + 1))
            .min()
            .unwrap_or(self.next)
    }

    /// Records that the consumer was just moved to [`Self::next_offset`] outside of
    /// [`Self::admit`] (after a refused commit).
    pub fn sought(&mut self) {
        self.seek = Seek::ThisBatch { back: 0 };
        self.below = None;
    }

    /// Nothing arrived in an idle wait although the log holds records from the next offset
    /// on: the consumer is parked where fetches return nothing (inside the last record batch,
    /// on a broker that serves fetches from batch starts) or was never moved. Returns where to
    /// seek, going further back on each move, as a record beyond the next offset would; or
    /// `None` while the last move's pause runs (a slow fetch may still be on its way).
    pub fn nudge(&mut self, now: Instant) -> Option<i64> {
        let pause = match self.moved {
            Some((at, pause)) if now.duration_since(at) < pause => return None,
            Some((_, pause)) => (pause * 2).min(MAX_MOVE_PAUSE),
            None => FIRST_MOVE_PAUSE,
        };
        self.moved = Some((now, pause));
        let back = match self.seek {
            Seek::None => 0,
            Seek::ThisBatch { back } | Seek::Earlier { back } => further_back(back),
        }
        .min(self.next);
        self.seek = Seek::ThisBatch { back };
        self.below = None;
        Some(self.next - back)
    }

    /// The lane is at its log end: a later stall starts again with short pauses.
    pub fn reached_the_end(&mut self) {
        self.moved = None;
    }

    /// Marks the start of a new batch of records.
    pub fn begin_batch(&mut self) {
        if let Seek::ThisBatch { back } = self.seek {
            self.seek = Seek::Earlier { back };
        }
    }

    /// Decides about the record at `offset`.
    ///
    /// A record beyond the next offset means records are missing: seek to the next offset, and
    /// if the consumer still lands beyond it, seek further back (64, 512, 4096, … offsets below),
    /// skipping what is already in the lake. A broker may serve a fetch from the first record
    /// batch that *starts* at or after the offset asked for — tansu 0.6 does, skipping the
    /// rest of a batch a resume point falls into — so only seeking below that batch's start
    /// brings the records back. A jump is a real gap in the log (compaction, transaction
    /// markers) only when the consumer delivered a record below the next offset and then,
    /// directly after it, one beyond; or when a seek to offset 0 lands beyond it.
    pub fn admit(&mut self, offset: i64) -> Admit {
        let stale = matches!(self.seek, Seek::ThisBatch { .. });
        if offset < self.next {
            if !stale {
                self.below = Some(offset);
            }
            return Admit::Skip;
        }
        if offset > self.next {
            let back = match self.seek {
                Seek::ThisBatch { .. } => return Admit::Skip,
                _ if self.below.is_some() => {
                    tracing::warn!(
                        expected = self.next,
                        before = self.below,
                        offset,
                        "The log skips offsets here (compaction or transaction markers)."
                    );
                    None
                }
                Seek::None => Some(0),
                Seek::Earlier { back } if back < self.next => Some(further_back(back)),
                Seek::Earlier { .. } => {
                    tracing::warn!(
                        expected = self.next,
                        offset,
                        "The log starts beyond the lake's position (retention, or a new table on an old topic)."
                    );
                    None
                }
            };
            if let Some(back) = back {
                let back = back.min(self.next);
                self.seek = Seek::ThisBatch { back };
                self.below = None;
                return Admit::SeekTo(self.next - back);
            }
        }
        self.seek = Seek::None;
        self.below = None;
        self.next = offset + 1;
        Admit::Take
    }

    /// Records processing of offsets up to `last_offset` for table `slot`, with `batch` the rows
    /// decoded from them; rows the table already holds are dropped.
    pub fn append(&mut self, slot: usize, batch: &RecordBatch, last_offset: i64, now: Instant) {
        let table = &mut self.tables[slot];
        if table
            .committed
            .is_some_and(|committed| last_offset <= committed)
        {
            return;
        }
        let rows = match table.committed {
            Some(committed) if batch.num_rows() > 0 => {
                let offsets = batch
                    .column_by_name(OFFSET_COLUMN)
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                    .expect("decoded batches carry _offset");
                let newer =
                    gt(offsets, &Int64Array::new_scalar(committed)).expect("int64 comparison");
                filter_record_batch(batch, &newer).expect("mask matches the batch")
            }
            _ => batch.clone(),
        };
        if rows.num_rows() > 0 {
            table.rows += rows.num_rows();
            table.bytes += rows.get_array_memory_size();
            table.batches.push(rows);
        }
        table.last_seen = Some(last_offset);
        table.since.get_or_insert(now);
    }
}

#[cfg(test)]
mod tests;
