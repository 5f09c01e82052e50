//! Partition lanes: for each assigned Kafka partition, where reading must continue and what
//! each table has buffered and committed.
//!
//! A lane starts from the lake's record of progress (the `txn` versions), never from Kafka's
//! committed offsets: its next offset is the lowest `committed + 1` over the tables it feeds
//! (the log start for a table that has nothing yet). Records arriving out of that line are
//! skipped (already in the lake) or trigger a seek back (never lose one).

use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::gt;
use sluice_core::schema::OFFSET_COLUMN;

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

/// How many seeks in a row must land beyond the lane's next offset before the jump is taken
/// for a real gap in the log (compaction, transaction markers). A seek can be overtaken — one
/// issued just after an assignment, while librdkafka still fetches the group's committed
/// offset, was seen to be — so one landing beyond the target proves nothing.
const SEEKS_TO_CONFIRM_A_GAP: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    None,
    /// Sought (`attempts` times in a row) while processing the current batch: what follows in
    /// it predates the seek.
    ThisBatch {
        attempts: u8,
    },
    /// Sought in an earlier batch: a record beyond the target now means the seek was overtaken
    /// or, once confirmed by [`SEEKS_TO_CONFIRM_A_GAP`] seeks, that the log has a real gap.
    Earlier {
        attempts: u8,
    },
}

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

/// What a table has to commit from one lane.
#[derive(Debug)]
pub struct Pending {
    /// Buffered rows.
    pub batches: Vec<RecordBatch>,
    /// The offset the table holds now.
    pub previous: Option<i64>,
    /// The last offset the commit covers.
    pub last_offset: i64,
}

impl TableBuffer {
    fn new(committed: Option<i64>) -> Self {
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
        })
    }
}

/// The state of one assigned partition.
#[derive(Debug)]
pub struct Lane {
    next: i64,
    seek: Seek,
    /// One buffer per table fed by the lane's stream, in the stream's table order.
    pub tables: Vec<TableBuffer>,
}

impl Lane {
    /// A lane whose tables hold `committed` offsets; `log_start` is where a table with
    /// nothing committed begins.
    pub fn new(committed: &[Option<i64>], log_start: i64) -> Self {
        let next = committed
            .iter()
            .map(|c| c.map_or(log_start, |c| c + 1))
            .min()
            .unwrap_or(log_start);
        Self {
            next,
            seek: Seek::None,
            tables: committed.iter().map(|c| TableBuffer::new(*c)).collect(),
        }
    }

    /// The next offset the lane expects.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// Records that the consumer was just moved to [`Self::next_offset`] outside of
    /// [`Self::admit`] (after a refused commit).
    pub fn sought(&mut self) {
        self.seek = Seek::ThisBatch { attempts: 1 };
    }

    /// Marks the start of a new batch of records.
    pub fn begin_batch(&mut self) {
        if let Seek::ThisBatch { attempts } = self.seek {
            self.seek = Seek::Earlier { attempts };
        }
    }

    /// Decides about the record at `offset`.
    ///
    /// A record beyond the target seeks back again; only when [`SEEKS_TO_CONFIRM_A_GAP`] seeks
    /// in a row land beyond it is the jump taken as a real gap (transaction markers,
    /// compaction, retention).
    pub fn admit(&mut self, offset: i64) -> Admit {
        if offset < self.next {
            return Admit::Skip;
        }
        if offset > self.next {
            match self.seek {
                Seek::None => {
                    self.seek = Seek::ThisBatch { attempts: 1 };
                    return Admit::SeekTo(self.next);
                }
                Seek::ThisBatch { .. } => return Admit::Skip,
                Seek::Earlier { attempts } if attempts < SEEKS_TO_CONFIRM_A_GAP => {
                    self.seek = Seek::ThisBatch {
                        attempts: attempts + 1,
                    };
                    return Admit::SeekTo(self.next);
                }
                Seek::Earlier { .. } => {
                    tracing::warn!(
                        expected = self.next,
                        offset,
                        seeks = SEEKS_TO_CONFIRM_A_GAP,
                        "Offsets jump after repeated seeks; the log has a gap here."
                    );
                }
            }
        }
        self.seek = Seek::None;
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

/// Where a partition resumes given what each of its tables holds: after the lowest committed
/// offset, or at the log start (`None`) when a table holds nothing yet.
pub fn resume_offset(committed: &[Option<i64>]) -> Option<i64> {
    committed.iter().map(|c| c.map(|c| c + 1)).min().flatten()
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
        assert_eq!(Lane::new(&[Some(9), Some(4)], 0).next_offset(), 5);
        assert_eq!(Lane::new(&[Some(9), None], 3).next_offset(), 3);
        assert_eq!(Lane::new(&[], 7).next_offset(), 7);
    }

    #[test]
    fn old_records_are_skipped_and_a_gap_seeks_back_once_per_batch() {
        let mut lane = Lane::new(&[Some(9)], 0);
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
    fn a_real_gap_is_accepted_only_after_repeated_seeks_land_beyond_it() {
        let mut lane = Lane::new(&[Some(0)], 0);
        for _ in 0..SEEKS_TO_CONFIRM_A_GAP {
            lane.begin_batch();
            assert_eq!(lane.admit(5), Admit::SeekTo(1));
        }
        lane.begin_batch();
        assert_eq!(lane.admit(5), Admit::Take);
        assert_eq!(lane.admit(6), Admit::Take);
    }

    #[test]
    fn an_overtaken_seek_is_repeated_and_the_record_is_not_lost() {
        let mut lane = Lane::new(&[Some(1132)], 0);
        lane.begin_batch();
        assert_eq!(lane.admit(1134), Admit::SeekTo(1133));
        lane.begin_batch();
        // The seek was overtaken: the consumer delivers from 1134 again.
        assert_eq!(lane.admit(1134), Admit::SeekTo(1133));
        lane.begin_batch();
        assert_eq!(lane.admit(1133), Admit::Take);
        assert_eq!(lane.admit(1134), Admit::Take);
    }

    #[test]
    fn tables_keep_only_rows_beyond_what_they_hold_and_commit_their_progress() {
        let mut lane = Lane::new(&[Some(4), None], 0);
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
    //! Position jumps come with a new lane (restart, rebalance: the position comes from Kafka's
    //! committed offset or auto.offset.reset) and from overtaken seeks (the consumer keeps
    //! delivering from where it was), up to one fewer in a row than the seeks that confirm a
    //! real gap.

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
        /// starts wherever Kafka puts it.
        Crash(i64),
        /// The next seek is overtaken: the consumer stays where it was.
        OvertakeNextSeek,
    }

    const LOG: i64 = 200;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1usize..40).prop_map(Step::Deliver),
            2 => Just(Step::Commit),
            1 => (0..LOG).prop_map(Step::Crash),
            1 => Just(Step::OvertakeNextSeek),
        ]
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
        fn committed_offsets_never_go_backwards_and_cover_each_offset_once(steps in prop::collection::vec(step(), 1..120)) {
            let mut committed: Option<i64> = None;
            let mut times_committed = vec![0u32; LOG as usize];
            let mut lane = Lane::new(&[committed], 0);
            let mut position: i64 = 0;
            let mut taken: Vec<i64> = Vec::new();
            let (mut overtake, mut overtaken_in_a_row) = (false, 0);
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
            // The random steps, then a drain: deliver and commit until the log is consumed.
            let drain = std::iter::repeat_n([Step::Deliver(50), Step::Commit], 10).flatten();
            for step in steps.into_iter().chain(drain) {
                match step {
                    Step::Deliver(count) => {
                        lane.begin_batch();
                        let mut last = None;
                        for offset in position..(position + count as i64).min(LOG) {
                            match lane.admit(offset) {
                                Admit::Take => {
                                    taken.push(offset);
                                    last = Some(offset);
                                }
                                Admit::Skip => {}
                                Admit::SeekTo(next) => {
                                    if overtake && overtaken_in_a_row + 1 < SEEKS_TO_CONFIRM_A_GAP {
                                        overtaken_in_a_row += 1;
                                    } else {
                                        overtaken_in_a_row = 0;
                                        position = next;
                                    }
                                    overtake = false;
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
                    Step::OvertakeNextSeek => overtake = true,
                    Step::Crash(at) => {
                        taken.clear();
                        lane = Lane::new(&[committed], 0);
                        position = at;
                    }
                }
            }
            prop_assert_eq!(committed, Some(LOG - 1), "the drain commits the whole log");
            prop_assert!(times_committed.iter().all(|&n| n == 1), "{:?}", times_committed);
        }
    }
}
