//! `sluice compact` while `sluice stream` commits into the same table: the compaction commit
//! changes no data (`dataChange = false`), the table keeps exactly the produced rows, and small
//! files become fewer.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::members::Member;

#[test]
fn compacting_while_the_stream_commits_keeps_every_row_and_leaves_fewer_files() {
    let dir = test_dir("compact");
    let topic = unique("compact");
    create_topic(&topic, 4);
    let table = dir.join("lake/sensor_events");
    let uri = table.display().to_string();
    // Frequent small commits: many small files to compact.
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &uri,
        r#"{ max_rows = 1000000, max_latency = "300ms" }"#,
    );
    let report = dir.join("report.json");
    let producer = spawn_producer(
        sensor_producer(&topic, 40_000, 31, "2026-11-22T00:00:00Z", "10ms", &report)
            .args(["--rate", "4000"]),
    );
    let mut stream = Member::start(&pipeline, dir.join("stream.log"));
    stream.wait_for_log("Committed", 8, Duration::from_secs(60));

    let compact = || -> Value {
        let out = run_ok(
            sluice()
                .args(["compact", "--json", "--pipeline"])
                .arg(&pipeline),
            Duration::from_secs(120),
        );
        serde_json::from_str::<Value>(&out).unwrap()["sensor_events"].clone()
    };
    let during = compact();
    let (removed, added) = (
        during["files_removed"].as_u64().unwrap(),
        during["files_added"].as_u64().unwrap(),
    );
    assert!(removed > added && added >= 1, "{during}");

    finish_producer(producer, &report);
    wait_until_clean(&sluice, &pipeline, &report, Duration::from_secs(120));
    stream.stop(Duration::from_secs(30));
    compact();

    let landed = Landed {
        pipeline: &pipeline,
        report: &report,
        uri: &uri,
        dir: &table,
    };
    let python = landed.assert_exactly_once(&|_| {}, "compaction");
    // 40,000 events 10 ms apart fall in one date/hour partition: one file once compacted.
    assert_eq!(python["files"], 1, "{python}");
    assert_compactions_change_no_data(&table, 2);
}

/// The Delta log holds `expected` OPTIMIZE commits, and every add and remove in them says
/// `dataChange: false`.
fn assert_compactions_change_no_data(table: &std::path::Path, expected: usize) {
    let mut found = 0;
    for entry in std::fs::read_dir(table.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let actions: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let optimize = actions
            .iter()
            .any(|a| a["commitInfo"]["operation"] == "OPTIMIZE");
        if !optimize {
            continue;
        }
        found += 1;
        for action in &actions {
            for kind in ["add", "remove"] {
                if let Some(file) = action.get(kind) {
                    assert_eq!(file["dataChange"], false, "{}: {action}", path.display());
                }
            }
        }
    }
    assert_eq!(found, expected, "OPTIMIZE commits in the log");
}
