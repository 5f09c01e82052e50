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

use super::windows::WindowLane;

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
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(offsets: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            OFFSET_COLUMN,
            DataType::Int64,
            true,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(offsets.to_vec()))]).unwrap()
    }

    #[test]
    fn a_lane_resumes_after_the_lowest_committed_offset_of_its_tables() {
        assert_eq!(Lane::new(&[Some(9), Some(4)]).next_offset(), 5);
        assert_eq!(Lane::new(&[Some(9), None]).next_offset(), 0);
        assert_eq!(Lane::new(&[]).next_offset(), 0);
    }

    #[test]
    fn old_records_are_skipped_and_a_gap_seeks_back_once_per_batch() {
        let mut lane = Lane::new(&[Some(9)]);
        lane.begin_batch();
        assert_eq!(lane.admit(8), Admit::Skip);
        assert_eq!(lane.admit(10), Admit::Take);
        assert_eq!(lane.admit(13), Admit::SeekTo(11));
        assert_eq!(lane.admit(14), Admit::Skip);
        lane.begin_batch();
        assert_eq!(lane.admit(11), Admit::Take);
        assert_eq!(lane.next_offset(), 12);
    }

    #[test]
    fn a_seek_landing_beyond_the_target_seeks_further_back_until_the_records_come() {
        // The broker serves fetches from the first batch starting at or after the offset
        // (tansu 0.6): records 1650..=1659 form one batch, the lake holds up to 1654.
        let mut lane = Lane::new(&[Some(1654)]);
        lane.begin_batch();
        assert_eq!(lane.admit(1660), Admit::SeekTo(1655));
        lane.begin_batch();
        assert_eq!(lane.admit(1660), Admit::SeekTo(1591));
        lane.begin_batch();
        for offset in 1600..1655 {
            assert_eq!(lane.admit(offset), Admit::Skip);
        }
        assert_eq!(lane.admit(1655), Admit::Take);
        assert_eq!(lane.next_offset(), 1656);
    }

    #[test]
    fn moves_of_a_lane_that_delivers_nothing_pause_longer_each_time_until_it_reaches_its_end() {
        let mut lane = Lane::new(&[Some(99)]);
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(lane.nudge(at(0)), Some(100));
        // A fetch answered slowly must not be cancelled by the next move: 5 s, then 10, 20, ...
        assert_eq!(lane.nudge(at(4)), None);
        assert!(lane.nudge(at(5)).is_some());
        assert_eq!(lane.nudge(at(14)), None);
        assert!(lane.nudge(at(15)).is_some());
        assert_eq!(lane.nudge(at(34)), None);
        assert!(lane.nudge(at(35)).is_some());
        for moved_at in [75, 135, 195] {
            assert_eq!(lane.nudge(at(moved_at - 1)), None);
            assert!(lane.nudge(at(moved_at)).is_some(), "capped at 60 s");
        }
        lane.reached_the_end();
        assert!(lane.nudge(at(196)).is_some());
        assert_eq!(lane.nudge(at(200)), None);
    }

    #[test]
    fn a_lane_parked_with_nothing_arriving_is_nudged_further_back_each_time() {
        let mut lane = Lane::new(&[Some(1654)]);
        let start = Instant::now();
        assert_eq!(lane.nudge(start), Some(1655));
        assert_eq!(lane.nudge(start + Duration::from_secs(5)), Some(1591));
        assert_eq!(lane.nudge(start + Duration::from_secs(15)), Some(1143));
        // The third seek lands before the batch holding 1655.
        lane.begin_batch();
        for offset in 1150..1655 {
            assert_eq!(lane.admit(offset), Admit::Skip);
        }
        assert_eq!(lane.admit(1655), Admit::Take);
    }

    #[test]
    fn a_jump_right_after_a_record_below_the_target_is_a_real_gap() {
        let mut lane = Lane::new(&[Some(99)]);
        lane.begin_batch();
        assert_eq!(lane.admit(104), Admit::SeekTo(100));
        lane.begin_batch();
        assert_eq!(lane.admit(104), Admit::SeekTo(36));
        lane.begin_batch();
        assert_eq!(lane.admit(99), Admit::Skip);
        // 100..=103 are not in the log (compaction): 99 is followed directly by 104.
        assert_eq!(lane.admit(104), Admit::Take);
        assert_eq!(lane.admit(105), Admit::Take);
    }

    #[test]
    fn records_fetched_before_a_seek_prove_nothing() {
        let mut lane = Lane::new(&[Some(9)]);
        lane.begin_batch();
        assert_eq!(lane.admit(12), Admit::SeekTo(10));
        // The rest of this batch predates the seek.
        assert_eq!(lane.admit(8), Admit::Skip);
        assert_eq!(lane.admit(13), Admit::Skip);
        lane.begin_batch();
        assert_eq!(lane.admit(10), Admit::Take);
    }

    #[test]
    fn when_the_log_starts_beyond_the_lake_the_jump_is_taken_after_seeking_to_zero() {
        let mut lane = Lane::new(&[Some(99)]);
        let mut targets = Vec::new();
        loop {
            lane.begin_batch();
            match lane.admit(500) {
                Admit::SeekTo(target) => targets.push(target),
                Admit::Take => break,
                Admit::Skip => unreachable!(),
            }
        }
        assert_eq!(targets, [100, 36, 0]);
        assert_eq!(lane.next_offset(), 501);
    }

    #[test]
    fn tables_keep_only_rows_beyond_what_they_hold_and_commit_their_progress() {
        let mut lane = Lane::new(&[Some(4), None]);
        let now = Instant::now();
        lane.append(0, &rows(&[3, 4, 5, 6]), 6, now);
        lane.append(1, &rows(&[3, 4, 5, 6]), 6, now);
        assert_eq!(lane.tables[0].rows(), 2);
        assert_eq!(lane.tables[1].rows(), 4);
        let pending = lane.tables[0].take_pending().unwrap();
        assert_eq!((pending.previous, pending.last_offset), (Some(4), 6));
        assert_eq!(pending.batches[0].num_rows(), 2);
        assert_eq!(lane.tables[0].rows(), 0);
        // Rejected-only progress still has to be committed.
        lane.tables[0].committed = Some(6);
        lane.append(0, &rows(&[]), 7, now);
        assert!(lane.tables[0].has_pending());
        assert_eq!(lane.tables[0].take_pending().unwrap().last_offset, 7);
        // Nothing new, nothing to commit.
        lane.tables[0].committed = Some(7);
        assert!(lane.tables[0].take_pending().is_none());
    }
}

#[cfg(test)]
mod properties {
    //! The bookkeeping under random delivery: restarts at arbitrary consumer positions, seeks,
    //! commits and crashes never move a committed offset backwards, commit every offset exactly
    //! once, and always make progress.
    //!
    //! The log is made of record batches. A fetch starts at the first batch that *starts* at or
    //! after the offset asked for, as tansu 0.6 serves it (with one record per batch, that is
    //! Kafka's exact positioning). A seek discards what was fetched before it (librdkafka's
    //! op-version barrier). Consumption then runs on through whole batches. While the random
    //! steps run the log holds `LOG` records; the final drain appends one more batch, as new
    //! traffic would, so a consumer parked in the middle of the last batch gets going again.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        /// The consumer delivers up to this many records from its position.
        Deliver(usize),
        /// The table commits what is pending.
        Commit,
        /// The process dies: buffers are lost, the lane reopens from the lake, and the consumer
        /// starts fetching wherever Kafka puts it.
        Crash(i64),
    }

    const LOG: i64 = 200;
    const TAIL: i64 = 10;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1usize..40).prop_map(Step::Deliver),
            2 => Just(Step::Commit),
            1 => (0..LOG).prop_map(Step::Crash),
        ]
    }

    /// Batch start offsets: every offset (Kafka-like), or a random few (tansu-like).
    fn batches() -> impl Strategy<Value = BTreeSet<i64>> {
        prop_oneof![
            Just((0..LOG + TAIL).collect::<BTreeSet<i64>>()),
            prop::collection::btree_set(1..LOG, 0..40).prop_map(|mut bases| {
                bases.extend([0, LOG, LOG + TAIL]);
                bases
            }),
        ]
    }

    /// Where a fetch asked to start at `offset` really starts.
    fn fetch_start(bases: &BTreeSet<i64>, offset: i64) -> i64 {
        bases.range(offset..).next().copied().unwrap_or(LOG + TAIL)
    }

    fn no_rows() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            OFFSET_COLUMN,
            DataType::Int64,
            true,
        )]));
        RecordBatch::new_empty(schema)
    }

    proptest! {
        #[test]
        fn committed_offsets_never_go_backwards_and_cover_each_offset_once(
            bases in batches(),
            steps in prop::collection::vec(step(), 1..120),
        ) {
            let mut committed: Option<i64> = None;
            let mut times_committed = vec![0u32; (LOG + TAIL) as usize];
            let mut lane = Lane::new(&[committed]);
            let mut position: i64 = 0;
            let mut end = LOG;
            let mut taken: Vec<i64> = Vec::new();
            let now = Instant::now();
            let mut commit = |lane: &mut Lane, taken: &mut Vec<i64>, committed: &mut Option<i64>| {
                if let Some(pending) = lane.tables[0].take_pending() {
                    prop_assert_eq!(pending.previous, *committed);
                    prop_assert!(Some(pending.last_offset) > *committed, "committed offsets move forward");
                    let expected: Vec<i64> = (committed.map_or(0, |c| c + 1)..=pending.last_offset).collect();
                    prop_assert_eq!(&*taken, &expected, "a commit holds exactly the offsets after the last one");
                    for offset in taken.drain(..) {
                        times_committed[offset as usize] += 1;
                    }
                    *committed = Some(pending.last_offset);
                    lane.tables[0].committed = *committed;
                }
                Ok(())
            };
            // The random steps, then new traffic and a drain until the log is consumed.
            let drain = std::iter::repeat_n([Step::Deliver(50), Step::Commit], 20).flatten();
            let steps: Vec<(bool, Step)> = steps
                .into_iter()
                .map(|s| (false, s))
                .chain(drain.map(|s| (true, s)))
                .collect();
            for (draining, step) in steps {
                if draining {
                    end = LOG + TAIL;
                }
                match step {
                    Step::Deliver(count) => {
                        lane.begin_batch();
                        let mut last = None;
                        for offset in position..(position + count as i64).min(end) {
                            match lane.admit(offset) {
                                Admit::Take => {
                                    taken.push(offset);
                                    last = Some(offset);
                                }
                                Admit::Skip => {}
                                Admit::SeekTo(target) => {
                                    position = fetch_start(&bases, target);
                                    break;
                                }
                            }
                            position = offset + 1;
                        }
                        if let Some(last) = last {
                            lane.append(0, &no_rows(), last, now);
                        }
                    }
                    Step::Commit => commit(&mut lane, &mut taken, &mut committed)?,
                    Step::Crash(at) => {
                        taken.clear();
                        lane = Lane::new(&[committed]);
                        position = fetch_start(&bases, at);
                    }
                }
            }
            prop_assert_eq!(committed, Some(LOG + TAIL - 1), "the drain commits the whole log");
            prop_assert!(times_committed.iter().all(|&n| n == 1), "{:?}", times_committed);
        }
    }
}
