//! A window grouped by something other than the topic's key (`site`, while records are keyed
//! by device), run by two processes in one group, each reading half of the partitions of both
//! the stream's topic and the repartition topic: every window row equals DuckDB's `GROUP BY`
//! over the raw table minus the late events, and each window is written once. A window keyed
//! by device beside it sends its late events to the same topic under its own name.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::kafka::{Outgoing, produce_raw, read_all};
use crate::members::Member;
use crate::windows::{SENTINEL_AFTER, WindowFixture, assert_same_average, not_in};

const MINUTE_US: i64 = 60_000_000;
const LATENESS_US: i64 = 30_000_000;
const SITES: [&str; 3] = [
    "plant-north-assembly",
    "plant-south-assembly",
    "plant-east-foundry",
];

#[test]
fn a_repartitioned_window_is_right_with_two_processes_in_the_group() {
    let dir = test_dir("repartition");
    let fixture = WindowFixture::new("repartition", &dir, 40_000, 4);
    // A far-future event per site from every partition: each repartition partition holding a
    // site hears from every source partition that it is done.
    let sentinels: Vec<String> = SITES
        .iter()
        .map(|site| {
            format!(r#"{{"device_id":"sentinel","site":"{site}","ts":"{SENTINEL_AFTER}"}}"#)
        })
        .collect();
    let records: Vec<Outgoing<'_>> = (0..4)
        .flat_map(|partition| {
            sentinels.iter().map(move |payload| Outgoing {
                partition,
                key: Some(b"sentinel"),
                payload: payload.as_bytes(),
                headers: &[],
            })
        })
        .collect();
    produce_raw(&fixture.topic, &records);
    let raw = dir.join("lake/sensor_events").display().to_string();
    let windows = dir.join("lake/site_1m").display().to_string();
    let device_windows = dir.join("lake/device_1m").display().to_string();
    let pipeline = write_pipeline(
        &dir,
        &fixture.topic,
        &unique("group"),
        &raw,
        r#"{ max_latency = "1s" }"#,
    );
    extend_pipeline(
        &pipeline,
        "",
        &format!(
            "{}{}",
            fixture.site_section(&windows),
            fixture.tumbling_section(&device_windows)
        ),
    );
    let mut first = Member::start(&pipeline, dir.join("first.log"));
    let mut second = Member::start(&pipeline, dir.join("second.log"));
    for member in [&mut first, &mut second] {
        member.wait_for_log("-site_1m-repartition", 2, Duration::from_secs(60));
    }

    // Done when the raw table holds every event and the windows stopped changing for longer
    // than the idle timeout.
    let real_windows =
        format!("select count(*) as n from t where window_start < '{SENTINEL_AFTER}'");
    let started = Instant::now();
    let (mut last, mut unchanged) = (usize::MAX, 0);
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let rows = python_query_if_exists(&raw, "select count(*) as n from t");
        let landed = rows.first().and_then(|r| r["n"].as_u64()).unwrap_or(0);
        let windows_now = python_query_if_exists(&windows, &real_windows)
            .first()
            .and_then(|r| r["n"].as_u64())
            .unwrap_or(0) as usize;
        unchanged = if windows_now == last {
            unchanged + 1
        } else {
            0
        };
        if landed == 40_016 && windows_now > 0 && unchanged >= 4 {
            break;
        }
        last = windows_now;
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "not done: {landed} events, {windows_now} windows\n{}\n{}",
            first.logged(),
            second.logged()
        );
    }
    let (first_log, second_log) = (first.logged(), second.logged());
    first.stop(Duration::from_secs(60));
    second.stop(Duration::from_secs(60));
    for log in [&first_log, &second_log] {
        assert!(
            log.contains("Partitions assigned") && log.contains("Committed"),
            "each process read and committed partitions:\n{log}"
        );
    }

    // Late events carry their origin in the stream's topic; each is really late there.
    let mut late = BTreeSet::new();
    for record in read_all(&fixture.late_topic, Duration::from_secs(3)) {
        if record.header("sluice.late.window").as_deref() != Some("site_1m") {
            continue;
        }
        let number = |header: &str| {
            record
                .header(header)
                .unwrap_or_else(|| panic!("late event without {header}"))
                .parse::<i64>()
                .unwrap()
        };
        let id = (
            number("sluice.origin.partition"),
            number("sluice.origin.offset"),
        );
        assert!(late.insert(id), "late event {id:?} reported twice");
    }
    let lags = WindowFixture::lags(&raw);
    for id in &late {
        let lag = lags[id].unwrap_or(i64::MIN);
        assert!(lag > LATENESS_US, "{id:?} is late with a lag of {lag} µs");
    }

    let oracle = python_query(
        &raw,
        &format!(
            "select epoch_us(ts) // {MINUTE_US} * {MINUTE_US} as ws, site, count(*) as n, \
             avg(temperature_c) as avg_temp, max(vibration_g) as max_vib \
             from t where device_id <> 'sentinel' {} group by all",
            not_in(&late)
        ),
    );
    let landed = python_query(
        &windows,
        &format!(
            "select epoch_us(window_start) as ws, site, n, avg_temp, max_vib from t \
             where window_start < '{SENTINEL_AFTER}' and site is not null"
        ),
    );
    let key = |row: &Value| {
        (
            row["ws"].as_i64().unwrap(),
            row["site"].as_str().unwrap().to_string(),
        )
    };
    let mut written: BTreeMap<(i64, String), &Value> = BTreeMap::new();
    for row in &landed {
        assert!(
            written.insert(key(row), row).is_none(),
            "window {row} written twice"
        );
    }
    assert_eq!(
        written.len(),
        oracle.len(),
        "window count ({} late)",
        late.len()
    );
    for want in &oracle {
        let have = written
            .get(&key(want))
            .unwrap_or_else(|| panic!("window {want} missing"));
        assert_eq!(have["n"], want["n"], "{want} vs {have}");
        assert_eq!(have["max_vib"], want["max_vib"], "{want} vs {have}");
        assert_same_average(have, want, "two processes");
    }
    fixture.assert_windows_match_oracle(&raw, &device_windows, "beside a repartitioned window");
}

/// A run that ends when caught up (`--until-caught-up`, as a scheduled batch run does) closes
/// the windows that repartition partitions with nothing to read, and source partitions that
/// sent nothing through a repartition partition, hold back: it waits for them to pass the idle
/// timeout, as a running stream does, instead of ending with every window open. Two sites, each
/// written to two of four partitions, over 8,000 s of event time in 30-minute windows: the four
/// windows the data closes are written, 900 events each.
#[test]
fn a_run_until_caught_up_closes_the_windows_that_silent_partitions_hold_back() {
    let dir = test_dir("repartition_until_caught_up");
    let topic = unique("repartition_caught_up");
    create_topic(&topic, 4);
    let payloads: Vec<(i32, String)> = (0..8_000i64)
        .map(|i| {
            let partition = (i % 4) as i32;
            let site = if partition < 2 { "west" } else { "east" };
            // From 2026-11-22T00:00:00Z, one second apart.
            let ts = 1_795_305_600_000 + i * 1000;
            let event = format!(r#"{{"device_id":"d{i}","site":"{site}","ts":{ts}}}"#);
            (partition, event)
        })
        .collect();
    let records: Vec<Outgoing<'_>> = payloads
        .iter()
        .map(|(partition, event)| Outgoing {
            partition: *partition,
            key: None,
            payload: event.as_bytes(),
            headers: &[],
        })
        .collect();
    produce_raw(&topic, &records);
    let windows = dir.join("lake/site_30m").display().to_string();
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &dir.join("lake/sensor_events").display().to_string(),
        r#"{ max_latency = "1s" }"#,
    );
    let section = format!(
        r#"
[[windows]]
name = "site_30m"
from = "sensor_events"
group_by = ["site"]
tumble = "30m"
allowed_lateness = "10s"
idle_timeout = "20s"
aggregates = {{ n = "count(*)" }}
uri = "{windows}"
"#
    );
    extend_pipeline(&pipeline, "", &section);
    let out = run(
        &mut stream_until_caught_up_command(&pipeline),
        Duration::from_secs(300),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("waiting for partitions that sent nothing"),
        "{log}"
    );
    let rows = python_query_if_exists(
        &windows,
        "select site, epoch_us(window_start) // 60000000 % 1440 as minute, n from t order by 1, 2",
    );
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            (
                text("site"),
                r["minute"].as_i64().unwrap(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64, i64)> = ["east", "west"]
        .iter()
        .flat_map(|site| [0, 30, 60, 90].map(|minute| (site.to_string(), minute, 900)))
        .collect();
    assert_eq!(got, want, "{log}");
}
