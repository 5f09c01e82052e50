//! `sluice up` smoke test: it starts its embedded broker, produces, lands rows that
//! `sluice query` sees, and exits 0 on Ctrl-C (SIGINT).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

#[test]
fn up_runs_lands_rows_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "up",
            "--rate",
            "1000",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("SLUICE_BROKERS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lake = data.join("lake");
    let started = Instant::now();
    let rows = loop {
        let rows = lake_rows(&lake).unwrap_or(0);
        if rows > 0 {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no rows in the lake after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(rows > 0);
    run_ok(
        Command::new("kill").args(["-INT", &child.id().to_string()]),
        Duration::from_secs(5),
    );
    let output = wait(child, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("sluice up: running") && stdout.contains("sluice query"),
        "{stdout}"
    );
    assert!(stdout.contains("sluice up: stopped"), "{stdout}");
    // Everything produced before Ctrl-C was committed on the way out.
    let committed = lake_rows(&lake).expect("the lake answers after the stop");
    let produced: u64 = stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("sluice up: stopped; ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("the stop line names the events produced");
    assert_eq!(committed, produced, "{stdout}");
    // One alert per reading that matches the example's rule, counted in the lake.
    assert!(stdout.contains("alerts  sensor_alerts"), "{stdout}");
    let alerts: u64 = stdout
        .lines()
        .find_map(|line| {
            line.strip_suffix(" alerts sent")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("the stop line counts alerts");
    let matching = lake_count(
        &lake,
        "select count(*) as n from sensor_events where temperature_c > 85 OR vibration_g > 0.5",
    );
    assert_eq!(Some(alerts), matching, "{stdout}");
}

/// Rows in the `up` lake's sensor table, if it can be queried yet.
fn lake_rows(lake: &std::path::Path) -> Option<u64> {
    lake_count(lake, "select count(*) as n from sensor_events")
}

/// The single number a counting query over the `up` lake returns, if it answers.
fn lake_count(lake: &std::path::Path, sql: &str) -> Option<u64> {
    let output = run(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["query", "--format", "csv", "--lake"])
            .arg(lake)
            .arg(sql),
        Duration::from_secs(60),
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)?
        .parse()
        .ok()
}
