//! Bad input never crashes sluice nor loses accepted data, and every error names what was
//! tried: bad records (skipped with topic/partition/offset), unreachable brokers, unknown topics,
//! unwritable lakes, wrong credentials and bad pipeline files.

use std::time::{Duration, Instant};

use crate::helpers::*;

/// A wrong address or credential must fail "within seconds", not after minutes of retries.
const FAIL_FAST: Duration = Duration::from_secs(30);

#[test]
fn bad_records_are_skipped_with_their_offsets_and_the_partition_keeps_moving() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("bad_records");
    create_topic(&topic, 1);
    let input = dir.path().join("records.ndjson");
    let lines: [&[u8]; 7] = [
        br#"{"device_id":"d1","ts":"2026-11-22T10:00:00Z","temperature_c":20.5}"#,
        b"this is not json",
        br#"{"device_id":"d2","temperature_c":21.0}"#,
        br#"{"device_id":"d3","ts":"2026-11-22T10:00:02Z","temperature_c":"hot"}"#,
        b"{\"device_id\":\"\xff\xfe\",\"ts\":1795341600000}",
        br#"{"device_id":"d4","ts":"2026-11-22T10:00:04Z","temperature_c":22.5}"#,
        br#"{"device_id":"d5","ts":1795341605000}"#,
    ];
    std::fs::write(&input, lines.join(&b"\n"[..])).unwrap();
    run_ok(
        sluice()
            .args(["produce", "--no-key", "--topic", &topic, "--input"])
            .arg(&input),
        Duration::from_secs(60),
    );

    let table = dir.path().join("lake/sensor_events");
    let pipeline = write_pipeline(
        dir.path(),
        &topic,
        &unique("group"),
        table.to_str().unwrap(),
        r#"{ max_latency = "1s" }"#,
    );
    let output = run(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for (offset, reason) in [
        (1, "not valid JSON"),
        (2, "required field ts"),
        (3, "temperature_c"),
        (4, "UTF-8"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains("Skipped a record") && l.contains(&format!("offset={offset} ")))
            .unwrap_or_else(|| panic!("no log line for offset {offset}:\n{stderr}"));
        assert!(
            line.contains(&topic) && line.contains("partition=0") && line.contains(reason),
            "{line}"
        );
    }
    assert!(stderr.contains("4 records rejected"), "{stderr}");

    let offsets: Vec<i64> = query(
        &pipeline,
        "select _offset from sensor_events order by _offset",
    )
    .iter()
    .map(|row| row["_offset"].as_i64().unwrap())
    .collect();
    assert_eq!(offsets, [0, 5, 6]);
    // The lake's progress covers the bad records too: a restart re-reads nothing.
    let again = run(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success()
            && stderr.contains("0 rows committed")
            && stderr.contains("0 records rejected"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_broker_is_named_within_seconds() {
    let dead = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "t",
        "g",
        dir.path().join("lake/t").to_str().unwrap(),
        "{}",
    );
    let commands: Vec<Vec<String>> = vec![
        vec!["topics".into(), "list".into()],
        vec![
            "produce".into(),
            "--topic".into(),
            "t".into(),
            "--generator".into(),
            "sensor".into(),
            "--count".into(),
            "1".into(),
        ],
        vec![
            "stream".into(),
            "--pipeline".into(),
            pipeline.display().to_string(),
        ],
    ];
    for args in commands {
        let started = Instant::now();
        let stderr = run_err(
            sluice().env("SLUICE_BROKERS", &dead).args(&args),
            FAIL_FAST * 2,
        );
        assert!(
            started.elapsed() < FAIL_FAST,
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(
            stderr.contains(&dead) && stderr.contains("unreachable"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn an_unknown_topic_is_named() {
    let missing = unique("missing_topic");
    let stderr = run_err(
        sluice().args([
            "produce",
            "--topic",
            &missing,
            "--generator",
            "sensor",
            "--count",
            "1",
        ]),
        FAIL_FAST,
    );
    assert!(
        stderr.contains(&missing) && stderr.contains("does not exist"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &missing,
        "g",
        dir.path().join("lake/t").to_str().unwrap(),
        "{}",
    );
    let stderr = run_err(
        sluice().args(["stream", "--pipeline"]).arg(&pipeline),
        FAIL_FAST,
    );
    assert!(
        stderr.contains(&missing) && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn an_unwritable_lake_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "a file where the lake should be").unwrap();
    let uri = blocker.join("sensor_events");
    let pipeline = write_pipeline(dir.path(), "t", "g", uri.to_str().unwrap(), "{}");
    let stderr = run_err(
        sluice().args(["stream", "--pipeline"]).arg(&pipeline),
        FAIL_FAST,
    );
    assert!(
        stderr.contains("table sensor_events") && stderr.contains("not-a-directory"),
        "{stderr}"
    );
}

#[test]
fn wrong_s3_credentials_are_named_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("s3://{}/{}/sensor_events", s3_bucket(), unique("creds"));
    let pipeline = write_pipeline(dir.path(), "t", "g", &uri, "{}");
    let started = Instant::now();
    let stderr = run_err(
        sluice()
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            .args(["stream", "--pipeline"])
            .arg(&pipeline),
        FAIL_FAST * 2,
    );
    assert!(
        started.elapsed() < FAIL_FAST,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("table sensor_events") && stderr.contains(&uri),
        "{stderr}"
    );
}

#[test]
fn a_bad_pipeline_file_lists_every_problem_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[kafka]
group = "g"

[[streams]]
name = "s"
topic = "t"
fields = [{ name = "ts", type = "timestamp" }, { name = "n", type = "decimal" }]
event_time = "when"

[[tables]]
name = "t"
from = "nowhere"
uri = "/tmp/t"
partition_by = ["day"]
flush = { max_latency = "soon" }
"#,
    )
    .unwrap();
    // A dead broker address: had sluice connected before validating, the error would be about it.
    let stderr = run_err(
        sluice()
            .env("SLUICE_BROKERS", format!("127.0.0.1:{}", free_port()))
            .args(["stream", "--pipeline"])
            .arg(&file),
        FAIL_FAST,
    );
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    for field in [
        "streams.s.fields[1].type",
        "tables.t.from",
        "tables.t.partition_by[0]",
        "tables.t.flush.max_latency",
    ] {
        assert!(stderr.contains(field), "{field} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("unreachable"), "{stderr}");
}
