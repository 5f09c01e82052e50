//! Window lanes: arrival order, lateness, and restarts from commit marks.

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

/// A window job: its kind, and whether its query keeps the rows of open windows.
type Job = (WindowKind, bool);

/// Counts and sums per window and device; with `rows`, open windows keep their rows.
fn aggregation((kind, rows): Job) -> WindowAggregation {
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
    let sessions = matches!(kind, WindowKind::Session { .. });
    assert_eq!(aggregation.is_incremental(), !sessions);
    if rows {
        aggregation.keeping_rows()
    } else {
        aggregation
    }
}

/// Adds the windows of committed rows to `windows`; a window emitted twice fails.
fn collect(windows: &mut Emitted, pending: Pending) {
    for emitted in pending.batches {
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
}

/// After how many batches the stream's watermark jumps to the lane's own (as when the other
/// partitions catch up), and whether the lane restarts there.
#[derive(Clone, Copy)]
struct Jump {
    after: usize,
    restart: bool,
}

/// Feeds `arrivals` (offsets = positions) in batches of the given sizes, advancing after
/// each to the lane's own watermark less that batch's hold (the stream's watermark is the
/// lowest over partitions, often behind this one), then closes everything the lane may
/// close. At the jump, with a restart, commits, drops the lane, opens one from the commit's
/// marks, moves it to the jumped watermark (a restarted stream knows every partition's
/// committed marks at once), replays from its replay offset up to the commit in one batch,
/// moves it there again (the stream does after every batch) and goes on with the same
/// batches as before. Returns the windows and the number of late events.
fn run(
    job: Job,
    arrivals: &[(u8, i64, i64)],
    (splits, holds): (&[usize], &[i64]),
    jump: Option<Jump>,
) -> (Emitted, usize) {
    let aggregation = aggregation(job);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut lane = WindowLane::new(WindowMarks::default(), LATENESS, &aggregation);
    let mut windows = BTreeMap::new();
    let mut late = 0;
    let own_watermark = |lane: &WindowLane| {
        let LaneWatermark::At(watermark) = lane.watermark(Instant::now()) else {
            panic!("a lane that read events has a watermark");
        };
        watermark
    };
    let advance = |lane: &mut WindowLane, to: i64| {
        runtime.block_on(lane.advance(&aggregation, to)).unwrap();
    };
    let mut feed = |lane: &mut WindowLane, from: usize, to: usize, hold: i64| {
        let rows = batch(&arrivals[from..to], from as i64);
        late += lane
            .ingest(&aggregation, (&rows, None), to as i64 - 1, Instant::now())
            .unwrap()
            .len();
        advance(lane, own_watermark(lane) - hold);
    };
    let mut sizes = splits.iter().copied().chain(std::iter::repeat(usize::MAX));
    let (mut at, mut batches) = (0, 0);
    while at < arrivals.len() {
        let end = at
            .saturating_add(sizes.next().unwrap().max(1))
            .min(arrivals.len());
        let hold = holds.get(batches).copied().unwrap_or(0);
        feed(&mut lane, at, end, hold);
        at = end;
        batches += 1;
        let Some(jump) = jump.filter(|j| j.after == batches) else {
            continue;
        };
        let jumped = own_watermark(&lane);
        if jump.restart {
            let pending = lane.take_pending().unwrap();
            let mark = |name: &str| {
                pending
                    .marks
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| *v)
            };
            let marks = WindowMarks {
                committed: Some(pending.last_offset),
                replay_from: mark(REPLAY_FROM),
                replay_max_us: mark(REPLAY_MAX_US),
                close_us: mark(CLOSE_US),
                max_event_us: mark(MAX_EVENT_US),
            };
            collect(&mut windows, pending);
            lane = WindowLane::new(marks, LATENESS, &aggregation);
            advance(&mut lane, jumped);
            let from = WindowLane::resume_offset(&marks).unwrap() as usize;
            if from < end {
                feed(&mut lane, from, end, hold);
            }
        }
        advance(&mut lane, jumped);
    }
    advance(&mut lane, i64::MAX / 4);
    if let Some(pending) = lane.take_pending() {
        collect(&mut windows, pending);
    }
    (windows, late)
}

/// Tumbling and hopping windows held as partial aggregates or as rows, and sessions.
fn jobs() -> impl Strategy<Value = Job> {
    let fixed = prop_oneof![
        Just(WindowKind::Tumble {
            size_us: 60 * SECOND
        }),
        Just(WindowKind::Hop {
            size_us: 60 * SECOND,
            slide_us: 20 * SECOND,
        }),
    ];
    prop_oneof![
        (fixed, any::<bool>()),
        Just((WindowKind::Session { gap_us: 4 * SECOND }, false)),
    ]
}

/// Events one second apart from 3 devices, with values.
fn in_order(events: &[(u8, i64)]) -> Vec<(u8, i64, i64)> {
    events
        .iter()
        .enumerate()
        .map(|(i, (device, value))| (*device, 1_795_000_000 * SECOND + i as i64 * SECOND, *value))
        .collect()
}

/// The in-order events, each moved back in event time by its delay.
fn moved_back(events: &[(u8, i64)], delays: &[i64]) -> Vec<(u8, i64, i64)> {
    in_order(events)
        .iter()
        .zip(delays)
        .map(|(event, delay)| (event.0, event.1 - delay, event.2))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Events one second apart, each delayed by less than the allowed lateness: whatever
    /// the order they arrive in and however the batches fall, no event is late and the
    /// windows are those of the in-order run.
    #[test]
    fn any_arrival_order_within_the_lateness_gives_the_same_windows(
        job in jobs(),
        events in prop::collection::vec((0u8..3, 0i64..100), 50..400),
        delays in prop::collection::vec(0i64..LATENESS, 400),
        splits in prop::collection::vec(1usize..60, 0..40),
    ) {
        let in_order = in_order(&events);
        let mut shuffled: Vec<(i64, (u8, i64, i64))> = in_order
            .iter()
            .zip(&delays)
            .map(|(event, delay)| (event.1 + delay, *event))
            .collect();
        shuffled.sort_by_key(|(arrival, event)| (*arrival, event.1));
        let shuffled: Vec<(u8, i64, i64)> = shuffled.into_iter().map(|(_, e)| e).collect();

        let (expected, none_late) = run(job, &in_order, (&[], &[]), None);
        let (got, late) = run(job, &shuffled, (&splits, &[]), None);
        prop_assert_eq!(none_late, 0);
        prop_assert_eq!(late, 0);
        prop_assert_eq!(got, expected);
    }

    /// Which events are late and what the windows hold does not depend on how far the
    /// stream's watermark (the other partitions) holds the lane's close back.
    #[test]
    fn the_stream_watermark_decides_when_windows_close_not_what_is_late(
        job in jobs(),
        events in prop::collection::vec((0u8..3, 0i64..100), 50..400),
        delays in prop::collection::vec(0i64..3 * LATENESS, 400),
        splits in prop::collection::vec(1usize..60, 1..40),
        holds in prop::collection::vec(0i64..2 * LATENESS, 40),
    ) {
        let arrivals = moved_back(&events, &delays);
        let (expected, expected_late) = run(job, &arrivals, (&splits, &[]), None);
        let (got, late) = run(job, &arrivals, (&splits, &holds), None);
        prop_assert_eq!(late, expected_late);
        prop_assert_eq!(got, expected);
    }

    /// Events moved back by up to three times the lateness (so some are late), the stream's
    /// watermark held behind the lane's by up to twice the lateness: a commit after any
    /// batch, then a restart from its marks into a stream whose watermark jumped ahead,
    /// gives the windows and late events of the run without a restart, each once.
    #[test]
    fn a_restart_after_any_commit_gives_the_same_windows_and_late_events(
        job in jobs(),
        events in prop::collection::vec((0u8..3, 0i64..100), 50..400),
        delays in prop::collection::vec(0i64..3 * LATENESS, 400),
        splits in prop::collection::vec(1usize..60, 1..40),
        holds in prop::collection::vec(0i64..2 * LATENESS, 40),
        restart_after in 1usize..40,
    ) {
        let arrivals = moved_back(&events, &delays);
        let jump = |restart| Some(Jump { after: restart_after, restart });
        let (expected, expected_late) = run(job, &arrivals, (&splits, &holds), jump(false));
        let (got, late) = run(job, &arrivals, (&splits, &holds), jump(true));
        prop_assert_eq!(late, expected_late);
        prop_assert_eq!(got, expected);
    }

    /// Open windows held as partial aggregates give the windows and late events of the same
    /// run holding rows, with a restart after any commit.
    #[test]
    fn partial_aggregates_give_the_windows_of_rows(
        hopping in any::<bool>(),
        events in prop::collection::vec((0u8..3, 0i64..100), 50..400),
        delays in prop::collection::vec(0i64..3 * LATENESS, 400),
        splits in prop::collection::vec(1usize..60, 1..40),
        holds in prop::collection::vec(0i64..2 * LATENESS, 40),
        restart_after in 1usize..40,
    ) {
        let kind = if hopping {
            WindowKind::Hop { size_us: 60 * SECOND, slide_us: 20 * SECOND }
        } else {
            WindowKind::Tumble { size_us: 60 * SECOND }
        };
        let arrivals = moved_back(&events, &delays);
        let jump = Some(Jump { after: restart_after, restart: true });
        let (expected, expected_late) = run((kind, true), &arrivals, (&splits, &holds), jump);
        let (got, late) = run((kind, false), &arrivals, (&splits, &holds), jump);
        prop_assert_eq!(late, expected_late);
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
    for rows in [false, true] {
        let (windows, late) = run((kind, rows), &arrivals, (&[1, 1, 1, 1], &[]), None);
        assert_eq!(late, 1);
        let d0 = |start: i64| windows.get(&(start, "d0".to_string())).copied();
        assert_eq!(d0(t0), Some((1, 1)));
        assert_eq!(d0(t0 + 60 * SECOND), Some((1, 8)));
        assert_eq!(d0(t0 + 120 * SECOND), Some((1, 2)));
    }
}

#[test]
fn a_partition_that_never_delivers_stops_holding_the_watermark_back_once_assigned_that_long() {
    let idle = Duration::from_secs(30);
    let assigned = Instant::now();
    let at = |secs: u64| assigned + Duration::from_secs(secs);
    let aggregation = aggregation((
        WindowKind::Tumble {
            size_us: 60 * SECOND,
        },
        false,
    ));
    let t0 = 1_795_000_000 * SECOND;
    // A partition read to its end at 2 s; another with nothing to read, whose lane opened
    // later (opening it is not hearing from it).
    let mut read = WindowLane::new(WindowMarks::default(), LATENESS, &aggregation);
    read.ingest(&aggregation, (&batch(&[(0, t0, 1)], 0), None), 0, at(2))
        .unwrap();
    let empty = WindowLane::new(WindowMarks::default(), LATENESS, &aggregation);
    let watermark = |now| {
        let partitions = [(assigned, Some(&read)), (assigned, Some(&empty))];
        super::stream_watermark(partitions.into_iter(), idle, now)
    };
    assert_eq!(watermark(at(10)), None, "held back by the empty partition");
    // 30 s after the assignment the empty partition no longer counts, while the other has
    // been silent for 29 s only: the watermark moves (it used to wait until 30 s after the
    // lane opened, when both were idle, so no window ever closed).
    assert_eq!(watermark(at(31)), Some(t0 - LATENESS));
    assert_eq!(watermark(at(32)), None, "every partition idle");
    // What a run that ends when caught up waits for: only the partition not heard from, and
    // only until its idle timeout.
    let held = |now| {
        let partitions = [(assigned, Some(&read)), (assigned, Some(&empty))];
        super::held_by_silence(partitions.into_iter(), idle, now)
    };
    assert!(held(at(10)));
    assert!(!held(at(31)));
    assert!(!held(at(32)), "idle partitions hold nothing back");
}
