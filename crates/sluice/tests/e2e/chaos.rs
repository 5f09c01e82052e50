//! kill -9 of `sluice stream` at random moments of a 300,000-event run on s3s-fs, restarting it
//! each time: `sluice verify` is clean against the producer report, and the Python `deltalake`
//! reader sees every produced (partition, offset) exactly once.
//!
//! Each restart joins under a fresh consumer-group id: what is under test is the lake's resume
//! (offsets in the Delta log), and tansu 0.6's group coordinator did not re-form a group whose
//! members were killed mid-join (the restarted member waited past 10 minutes for an
//! assignment). Group recovery belongs to the rebalance tests.

use std::time::Duration;

use crate::helpers::*;

const EVENTS: u64 = 300_000;
const KILLS: usize = 10;

#[test]
fn kill_minus_nine_at_random_moments_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("chaos");
    create_topic(&topic, 4);
    let report = dir.path().join("report.json");
    let produced = produce_sensor(&topic, EVENTS, 7, "2026-11-22T00:00:00Z", "50ms", &report);
    let uri = format!("s3://{}/{}/sensor_events", s3_bucket(), unique("chaos"));
    // Small, frequent commits so that kills land mid-write, between upload and commit, and
    // during commits.
    let flush = r#"{ max_rows = 15000, max_latency = "1s" }"#;
    let pipeline = |run: usize| {
        let dir = dir.path().join(format!("run{run}"));
        write_pipeline(&dir, &topic, &unique("group"), &uri, flush)
    };
    let (seed, kills) = kill_at_random_moments(KILLS, 300..4_000, |run| {
        stream_until_caught_up_command(&pipeline(run))
    });
    assert!(
        kills.len() >= KILLS,
        "the stream finished after only {} kills (seed {seed})",
        kills.len()
    );
    let last = pipeline(KILLS + 1);
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&last),
        Duration::from_secs(600),
    );

    verify_clean(&last, &report, &format!("seed {seed}"));

    assert_reader_matches_report(&python_check(&uri), &produced, &format!("seed {seed}"));
}

/// A restart in the same consumer group starts reading at the group's committed offsets, which
/// fall inside record batches; tansu 0.6 serves a fetch from the first batch starting at or
/// after the offset asked for, so the lane has to seek back below the batch start, and, with
/// no new traffic arriving, notice by itself that it is parked.
#[test]
fn a_restart_in_the_same_group_resumes_inside_a_record_batch_and_loses_nothing() {
    let dir = test_dir("same_group");
    let topic = unique("same_group");
    create_topic(&topic, 2);
    let report = dir.join("report.json");
    produce_sensor(&topic, 100_000, 8, "2026-11-22T00:00:00Z", "50ms", &report);
    let table = dir.join("lake/sensor_events");
    // Commits end wherever a read of up to 8,192 records ends: rarely on a batch boundary of
    // the producer's.
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &table.display().to_string(),
        r#"{ max_rows = 3001, max_latency = "10s" }"#,
    );
    // Static membership: tansu 0.6 would keep the killed member's partitions assigned to it
    // (docs/DESIGN.md); under the same instance id the restart takes them over.
    let mut first = crate::members::Member::start_with(
        sluice()
            .args(["stream", "--instance-id", "same", "--pipeline"])
            .arg(&pipeline),
        dir.join("first.log"),
    );
    first.wait_for_log("Committed", 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500)); // Let the async group commit land.
    first.kill();

    let resumed = run(
        sluice()
            .args([
                "stream",
                "--until-caught-up",
                "--instance-id",
                "same",
                "--pipeline",
            ])
            .arg(&pipeline),
        Duration::from_secs(180),
    );
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    // For the record: how the lanes found their records back on this broker.
    for line in log
        .lines()
        .filter(|l| l.contains("Seeking") || l.contains("Behind"))
    {
        eprintln!("{line}");
    }
    let landed = Landed {
        pipeline: &pipeline,
        report: &report,
        uri: &table.display().to_string(),
        dir: &table,
    };
    landed.assert_exactly_once(&|_| {}, "same-group restart");
}
