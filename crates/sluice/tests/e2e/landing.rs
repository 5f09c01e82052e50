//! A 4-partition topic, 100,000 generated sensor events, `sluice stream` until caught up: the
//! lake holds every produced offset exactly once, in the right date/hour partitions — checked by
//! our SQL, by the producer report, and by the Python `deltalake` reader. Once on the local
//! filesystem and once on s3s-fs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const EVENTS: u64 = 100_000;

#[test]
fn hundred_thousand_events_land_exactly_once_on_the_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let table_dir = dir.path().join("lake/sensor_events");
    land_and_check(dir.path(), table_dir.to_str().unwrap());
    // The date=/hour= directories on disk are exactly the ones the rows' event times give.
    let mut on_disk = std::collections::BTreeSet::new();
    for date in std::fs::read_dir(&table_dir).unwrap() {
        let date = date.unwrap();
        let name = date.file_name().into_string().unwrap();
        if name.starts_with('_') {
            continue;
        }
        for hour in std::fs::read_dir(date.path()).unwrap() {
            on_disk.insert(format!(
                "{name}/{}",
                hour.unwrap().file_name().into_string().unwrap()
            ));
        }
    }
    let pipeline = dir.path().join("pipeline.toml");
    let expected: std::collections::BTreeSet<String> = query(
        &pipeline,
        "select distinct 'date=' || cast(cast(ts as date) as varchar) || '/hour=' || cast(extract(hour from ts) as varchar) as d from sensor_events",
    )
    .iter()
    .map(|row| row["d"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(on_disk, expected);
    assert!(
        expected.len() >= 3,
        "the run spans several hours: {expected:?}"
    );

    // A file no commit references (what a crash between upload and commit leaves) is invisible
    // to readers, reported by verify and removed by --repair.
    let parquet_in = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .unwrap()
    };
    let hour_dir = table_dir.join(on_disk.iter().next().unwrap());
    let orphan = hour_dir.join("part-00000-never-committed.zstd.parquet");
    std::fs::copy(parquet_in(&hour_dir), &orphan).unwrap();
    assert_eq!(
        query(&pipeline, "select count(*) as n from sensor_events")[0]["n"],
        EVENTS
    );
    let verify = |extra: &[&str]| -> Value {
        let out = run_ok(
            sluice()
                .args(["verify", "--json", "--min-age", "0s"])
                .args(extra)
                .arg("--pipeline")
                .arg(&pipeline),
            Duration::from_secs(120),
        );
        serde_json::from_str(&out).unwrap()
    };
    let found = verify(&[]);
    assert_eq!(found["clean"], true, "{found}");
    let listed = found["tables"][0]["uncommitted_files"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{found}");
    assert!(
        listed[0]
            .as_str()
            .unwrap()
            .ends_with("part-00000-never-committed.zstd.parquet"),
        "{found}"
    );
    assert!(orphan.exists(), "a plain verify removes nothing");
    verify(&["--repair"]);
    assert!(!orphan.exists(), "--repair removes the uncommitted file");
    let after = verify(&[]);
    assert_eq!(
        after["tables"][0]["uncommitted_files"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "{after}"
    );
    assert_eq!(
        query(&pipeline, "select count(*) as n from sensor_events")[0]["n"],
        EVENTS
    );

    // verify notices a damaged file and names it.
    let victim = parquet_in(&hour_dir);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let stderr = run_err(
        sluice().args(["verify", "--pipeline"]).arg(&pipeline),
        Duration::from_secs(120),
    );
    assert!(stderr.contains("not clean"), "{stderr}");
    let out = run(
        sluice().args(["verify", "--pipeline"]).arg(&pipeline),
        Duration::from_secs(120),
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        summary.contains("1 unreadable") && summary.contains(name),
        "{summary}"
    );
}

#[test]
fn hundred_thousand_events_land_exactly_once_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("s3://{}/{}/sensor_events", s3_bucket(), unique("lake"));
    land_and_check(dir.path(), &uri);
}

fn land_and_check(dir: &Path, table_uri: &str) {
    let topic = unique("sensors");
    create_topic(&topic, 4);
    let report_file = dir.join("report.json");
    // 100 ms apart from 08:30: the events span 08:30–11:16 on one day, four hour partitions.
    let report = produce_sensor(
        &topic,
        EVENTS,
        42,
        "2026-11-22T08:30:00Z",
        "100ms",
        &report_file,
    );
    assert_eq!(report["records"], EVENTS);
    assert_eq!(
        report["partitions"].as_object().unwrap().len(),
        4,
        "keys spread over all partitions: {report}"
    );

    let pipeline = write_pipeline(
        dir,
        &topic,
        &unique("group"),
        table_uri,
        r#"{ max_rows = 30000, max_latency = "2s" }"#,
    );
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(600),
    );

    let count = query(&pipeline, "select count(*) as n from sensor_events");
    assert_eq!(count[0]["n"], EVENTS);

    // Per partition: exactly the produced offset range, no gap, no duplicate.
    let per_partition = query(
        &pipeline,
        "select _partition as p, count(*) as n, count(distinct _offset) as d, min(_offset) as lo, max(_offset) as hi \
         from sensor_events group by _partition order by _partition",
    );
    let produced: BTreeMap<String, Value> = report["partitions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(per_partition.len(), produced.len());
    for row in &per_partition {
        let expected = &produced[&row["p"].to_string()];
        assert_eq!(row["n"], expected["records"], "{row}");
        assert_eq!(row["d"], row["n"], "duplicates in {row}");
        assert_eq!(row["lo"], expected["first_offset"], "{row}");
        assert_eq!(row["hi"], expected["last_offset"], "{row}");
        assert_eq!(
            row["hi"].as_i64().unwrap() - row["lo"].as_i64().unwrap() + 1,
            row["n"].as_i64().unwrap(),
            "gap in {row}"
        );
    }

    // Rows sit in the partition of their own event time.
    let misplaced = query(
        &pipeline,
        "select count(*) as n from sensor_events where date <> cast(ts as date) or hour <> extract(hour from ts)",
    );
    assert_eq!(misplaced[0]["n"], 0);

    // The independent reader sees the same rows, in the right directories.
    let python = python_check(table_uri);
    assert_eq!(python["partition_dirs_match"], true, "{python}");
    assert_reader_matches_report(&python, &report, table_uri);

    // verify agrees: every produced offset once, every footer readable.
    let verified = verify_clean(&pipeline, &report_file, table_uri);
    assert_eq!(
        verified["tables"][0]["partitions"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "{verified}"
    );

    // A second run finds everything committed and adds nothing.
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    assert_eq!(
        query(&pipeline, "select count(*) as n from sensor_events")[0]["n"],
        EVENTS
    );
}

#[test]
fn a_tight_memory_budget_commits_early_and_still_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("budget");
    create_topic(&topic, 2);
    let report = dir.path().join("report.json");
    produce_sensor(&topic, 20_000, 3, "2026-11-22T12:00:00Z", "10ms", &report);
    // Row and latency limits that never trigger: only the budget can commit before the end.
    let flush = r#"{ max_rows = 10000000, max_bytes = "1GiB", max_latency = "1h" }"#;
    let stream = |name: &str, extra: &[&str]| {
        let table = dir.path().join("lake").join(name);
        let pipeline = write_pipeline(
            &dir.path().join(name),
            &topic,
            &unique("group"),
            table.to_str().unwrap(),
            flush,
        );
        let output = run(
            sluice()
                .args(["stream", "--until-caught-up"])
                .args(extra)
                .arg("--pipeline")
                .arg(&pipeline),
            Duration::from_secs(300),
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        verify_clean(&pipeline, &report, name);
        let commits: u64 = stderr
            .lines()
            .find_map(|l| {
                l.split(" rows committed in ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
        commits
    };
    assert_eq!(
        stream("roomy", &[]),
        1,
        "the default budget holds everything until the end"
    );
    // 20,000 records arrive in three decode batches of up to 8,192; each is over 256 KiB.
    let tight = stream("tight", &["--memory-budget", "256KiB"]);
    assert!(
        tight >= 3,
        "the budget should commit after every batch, got {tight}"
    );
}

/// A derived column lands in every table of its stream, and a table's filter keeps exactly the
/// rows it matches: checked against an unfiltered table of the same stream with DuckDB over
/// the Python reader. `verify` stays clean (offsets without rows are expected in a filtered
/// table).
#[test]
fn derived_columns_land_and_a_filtered_table_keeps_exactly_its_rows() {
    let dir = test_dir("derive_filter");
    let topic = unique("derive_filter");
    create_topic(&topic, 2);
    let report = dir.join("report.json");
    produce_sensor(&topic, 20_000, 3, "2026-11-22T00:00:00Z", "1s", &report);
    let all = dir.join("lake/sensor_events").display().to_string();
    let warnings = dir.join("lake/warnings").display().to_string();
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &all,
        r#"{ max_latency = "1s" }"#,
    );
    extend_pipeline(
        &pipeline,
        r#"derive = { temp_f = "temperature_c * 1.8 + 32", hot = "temp_f > 150" }"#,
        &format!(
            r#"
[[tables]]
name = "warnings"
from = "sensor_events"
uri = "{warnings}"
filter = "status <> 'ok' OR hot"
"#
        ),
    );
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );
    verify_clean(&pipeline, &report, "derive and filter");
    let expected = python_query(
        &all,
        "select _partition as p, _offset as o from t where status <> 'ok' or temperature_c * 1.8 + 32 > 150 order by 1, 2",
    );
    let kept = python_query(
        &warnings,
        "select _partition as p, _offset as o from t order by 1, 2",
    );
    assert!(expected.len() > 100, "{} warnings", expected.len());
    assert_eq!(kept, expected);
    let wrong = python_query(
        &all,
        "select count(*) as n from t where abs(temp_f - (temperature_c * 1.8 + 32)) > 1e-9 or hot <> (temp_f > 150)",
    );
    assert_eq!(wrong[0]["n"], 0);
}
