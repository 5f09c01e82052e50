//! The lanes' bookkeeping: worked examples, and properties over a broker that serves fetches
//! from record batch starts.

mod examples {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::super::*;

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

    use super::super::*;

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
