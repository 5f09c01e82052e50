//! `sluice load`: the sensor job over an NDJSON file with no broker. Its raw table holds every
//! good line once, its windows equal DuckDB's over the on-time events (as for `sluice
//! stream`), each alert and dead letter is written once, and loading the file again lands
//! nothing twice. A window grouped by another column than the key (repartitioned under
//! `stream`, in place here) sends its late events under its own name.

use std::io::Write;
use std::time::Duration;

use crate::helpers::*;
use crate::windows::WindowFixture;

const ALERT: &str = r#"
[[alerts]]
name = "overheat"
from = "sensor_events"
when = "temperature_c > 85"
topic = "alerts"
"#;

#[test]
fn loading_a_file_lands_rows_windows_and_alerts_once_and_again_nothing() {
    let dir = test_dir("load");
    let side = dir.join("side");
    let (fixture, input) = WindowFixture::in_a_file("load", &dir, 30_000, &side);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap()
        .write_all(b"not json\n")
        .unwrap();
    let raw = dir.join("lake/sensor_events").display().to_string();
    let windows = dir.join("lake/device_1m").display().to_string();
    let pipeline = write_pipeline(&dir, "unused", "unused", &raw, "{ max_rows = 10000 }");
    extend_pipeline(
        &pipeline,
        "dead_letter_topic = \"dlq\"",
        // The window grouped by site comes first: its late events used to be looked up by a
        // position that no other window has.
        &format!(
            "{}{}{ALERT}",
            fixture.site_section(&format!("{windows}_site")),
            fixture.window_section(&windows)
        ),
    );
    let load = || {
        run_ok(
            sluice()
                .args(["load", "--pipeline"])
                .arg(&pipeline)
                .arg("--side-outputs")
                .arg(&side)
                .arg(&input),
            Duration::from_secs(300),
        )
    };
    load();
    let count = |uri: &str, filter: &str| {
        python_query(uri, &format!("select count(*) as n from t {filter}"))[0]["n"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count(&raw, ""), 30_000);
    let side_lines = |topic: &str| {
        std::fs::read_to_string(side.join(format!("{topic}.ndjson")))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    let dead = side_lines("dlq");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], "not json");
    assert_eq!(dead[0]["headers"]["sluice.source.offset"], "30000");
    let alerts = side_lines("alerts");
    let hot = count(&raw, "where temperature_c > 85");
    assert!(hot > 0);
    assert_eq!(alerts.len() as i64, hot);
    let late = fixture.assert_windows_match_oracle(&raw, &windows, "load");
    assert!(late > 0, "no event was late");
    fixture.assert_sessions_match_oracle(&raw, &format!("{windows}_sessions"), "load");
    assert_eq!(
        fixture.late_events("site_1m", "load"),
        fixture.late_events("device_1m", "load"),
        "the late events of the window grouped by site"
    );

    let window_rows = count(&windows, "");
    load();
    assert_eq!(count(&raw, ""), 30_000);
    assert_eq!(count(&windows, ""), window_rows);
}
