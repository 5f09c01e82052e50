//! Event-time windows against an oracle: every window row (tumbling and session) equals the
//! same aggregation computed by DuckDB (batch SQL over the Python `deltalake` reader of the raw
//! table) over the events that were not late, and every event is either in a window or in the
//! late topic — once (under kill -9 too: chaos.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::kafka::{Outgoing, produce_raw, read_all};

const MINUTE_US: i64 = 60_000_000;
const LATENESS_US: i64 = 30_000_000;
const SESSION_GAP_US: i64 = 5_000_000;
/// Sentinel events this far after the data close every window of real events.
pub const SENTINEL_AFTER: &str = "2026-11-23T12:00:00Z";

/// `dir/events.ndjson` from bench/gen_sensor.py: `events` sensor events of 50 devices over
/// half an hour.
fn generate_events(dir: &Path, events: u64) -> PathBuf {
    let input = dir.join("events.ndjson");
    let python = std::env::var("SLUICE_TEST_PYTHON").expect("run scripts/test.sh");
    let generator = repo_file("bench/gen_sensor.py");
    run_ok(
        Command::new(python)
            .arg(generator)
            .args(["--events", &events.to_string(), "--devices", "50"])
            .args(["--hours", "0.5", "--seed", "5", "--out"])
            .arg(&input),
        Duration::from_secs(120),
    );
    input
}

/// A topic filled by bench/gen_sensor.py (5 % of events up to 30 s out of order, 0.5 % 2–10
/// minutes late), keyed by device, then one sentinel event per partition far in the future.
pub struct WindowFixture {
    pub topic: String,
    pub late_topic: String,
    /// Where `sluice load` writes the late topic's records instead, if it does.
    pub late_file: Option<PathBuf>,
}

impl WindowFixture {
    pub fn new(name: &str, dir: &Path, events: u64, partitions: i32) -> Self {
        let fixture = Self {
            topic: unique(name),
            late_topic: unique(&format!("{name}_late")),
            late_file: None,
        };
        create_topic(&fixture.topic, partitions as u32);
        // Fewer late partitions than source partitions: sources share them (p mod 3).
        create_topic(&fixture.late_topic, 3);
        let input = generate_events(dir, events);
        run_ok(
            sluice()
                .args(["produce", "--key", "device_id", "--topic", &fixture.topic])
                .arg("--input")
                .arg(&input),
            Duration::from_secs(300),
        );
        let sentinel = format!(r#"{{"device_id":"sentinel","ts":"{SENTINEL_AFTER}"}}"#);
        let sentinels: Vec<Outgoing<'_>> = (0..partitions)
            .map(|partition| Outgoing {
                partition,
                key: Some(b"sentinel"),
                payload: sentinel.as_bytes(),
                headers: &[],
            })
            .collect();
        produce_raw(&fixture.topic, &sentinels);
        fixture
    }

    /// The same events in `dir/events.ndjson` for `sluice load`, whose side outputs go to
    /// `side_dir`; no topic.
    pub fn in_a_file(name: &str, dir: &Path, events: u64, side_dir: &Path) -> (Self, PathBuf) {
        let late_topic = unique(&format!("{name}_late"));
        let fixture = Self {
            topic: unique(name),
            late_file: Some(side_dir.join(format!("{late_topic}.ndjson"))),
            late_topic,
        };
        (fixture, generate_events(dir, events))
    }

    /// The pipeline's `[[windows]]` sections writing to `uri` (tumbling, `device_1m`) and
    /// `{uri}_sessions`.
    pub fn window_section(&self, uri: &str) -> String {
        self.stored_window_section(uri, ["", ""])
    }

    /// [`Self::window_section`], with lines saying how each window table is stored (such as
    /// `format = "parquet"`): the tumbling window's, then the sessions'.
    pub fn stored_window_section(&self, uri: &str, [tumbling, sessions]: [&str; 2]) -> String {
        format!(
            r#"{tumbling}
[[windows]]
name = "device_sessions"
from = "sensor_events"
group_by = ["device_id"]
session = "5s"                       # SESSION_GAP_US
allowed_lateness = "30s"
idle_timeout = "5s"
aggregates = {{ n = "count(*)", avg_temp = "avg(temperature_c)", max_vib = "max(vibration_g)" }}
uri = "{uri}_sessions"
late_topic = "{late}"
flush = {{ max_latency = "1s" }}
{sessions}
"#,
            tumbling = format!("{}{tumbling}\n", self.tumbling_section(uri)),
            late = self.late_topic,
        )
    }

    /// The `[[windows]]` section of `site_1m`, grouped by `site` (not the records' key, so
    /// repartitioned under `sluice stream`), writing to `uri`; with the tumble and lateness of
    /// `device_1m`, so that under `sluice load` the same events are late for both.
    pub fn site_section(&self, uri: &str) -> String {
        self.one_minute_section(
            ("site_1m", "site"),
            r#"n = "count(*)", avg_temp = "avg(temperature_c)", max_vib = "max(vibration_g)""#,
            uri,
        )
    }

    /// The `[[windows]]` section of `device_1m` alone, writing to `uri`.
    pub fn tumbling_section(&self, uri: &str) -> String {
        self.one_minute_section(
            ("device_1m", "device_id"),
            r#"n = "count(*)", avg_temp = "avg(temperature_c)", max_vib = "max(vibration_g)", first_status = "first_value(status ORDER BY ts, _offset)""#,
            uri,
        )
    }

    /// A 1-minute tumbling window `name` grouped by `column`, with 30 s of lateness and the
    /// fixture's late topic. A partition silent for `idle_timeout` no longer holds the
    /// watermark back, so its next events can close late; the oracle counts as late only
    /// events behind their own partition's line, so the timeout must outlast every pause in
    /// delivery: 30 s, as under a CPU hog tansu took 2.5–4.5 s per fetch and filled each from
    /// one or two partitions (a 5 s timeout sent in-order events to the late topic there).
    fn one_minute_section(
        &self,
        (name, column): (&str, &str),
        aggregates: &str,
        uri: &str,
    ) -> String {
        format!(
            r#"
[[windows]]
name = "{name}"
from = "sensor_events"
group_by = ["{column}"]
tumble = "1m"
allowed_lateness = "30s"
idle_timeout = "30s"
aggregates = {{ {aggregates} }}
uri = "{uri}"
late_topic = "{late}"
flush = {{ max_latency = "1s" }}
"#,
            late = self.late_topic,
        )
    }

    /// The late events of `window` by source (partition, offset); each must be reported once.
    pub fn late_events(&self, window: &str, context: &str) -> BTreeSet<(i64, i64)> {
        let headers: Vec<BTreeMap<String, String>> = match &self.late_file {
            None => read_all(&self.late_topic, Duration::from_secs(3))
                .iter()
                .map(|record| {
                    record
                        .headers
                        .keys()
                        .map(|name| (name.clone(), record.header(name).unwrap_or_default()))
                        .collect()
                })
                .collect(),
            Some(file) => std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .map(|line| {
                    let record: Value = serde_json::from_str(line).unwrap();
                    serde_json::from_value(record["headers"].clone()).unwrap()
                })
                .collect(),
        };
        let mut ids = BTreeSet::new();
        for record in &headers {
            if record.get("sluice.late.window").map(String::as_str) != Some(window) {
                continue;
            }
            let number = |header: &str| record[header].parse::<i64>().unwrap();
            let id = (
                number("sluice.source.partition"),
                number("sluice.source.offset"),
            );
            assert!(
                ids.insert(id),
                "{context}: late event {id:?} of {window} reported twice"
            );
        }
        ids
    }

    /// Per event of the raw table at `raw_uri`, (partition, offset) → how far its event time
    /// is behind the newest one before it in its partition (µs; `None` for a partition's first).
    pub fn lags(raw_uri: &str) -> BTreeMap<(i64, i64), Option<i64>> {
        python_query(
            raw_uri,
            "select _partition as p, _offset as o, \
             epoch_us(max(ts) over (partition by _partition order by _offset rows between unbounded preceding and 1 preceding)) - epoch_us(ts) as lag \
             from t",
        )
        .iter()
        .map(|row| {
            (
                (row["p"].as_i64().unwrap(), row["o"].as_i64().unwrap()),
                row["lag"].as_i64(),
            )
        })
        .collect()
    }

    /// Checks the session table (`sessions`, as [`python_query`] reads it) against DuckDB's
    /// sessions (gaps by `lag()`, numbered by a running `sum()`) over the raw table minus the
    /// late events; the late events must be exactly those more than the allowed lateness behind
    /// their partition.
    pub fn assert_sessions_match_oracle(&self, raw_uri: &str, sessions: &str, context: &str) {
        let late = self.late_events("device_sessions", context);
        let should_be_late: BTreeSet<(i64, i64)> = Self::lags(raw_uri)
            .into_iter()
            .filter(|(_, lag)| lag.is_some_and(|lag| lag > LATENESS_US))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            late, should_be_late,
            "{context}: late events of the sessions"
        );
        let exclude = not_in(&late);
        let oracle = python_query(
            raw_uri,
            &format!(
                "with e as (select *, epoch_us(ts) as t from t where device_id <> 'sentinel' {exclude}), \
                 b as (select *, case when t - lag(t) over (partition by device_id order by t, _partition, _offset) \
                     < {SESSION_GAP_US} then 0 else 1 end as brk from e), \
                 s as (select *, sum(brk) over (partition by device_id order by t, _partition, _offset \
                     rows unbounded preceding) as sid from b) \
                 select device_id, min(t) as ws, max(t) + {SESSION_GAP_US} as we, count(*) as n, \
                 avg(temperature_c) as avg_temp, max(vibration_g) as max_vib from s group by device_id, sid"
            ),
        );
        let landed = python_query(
            sessions,
            "select device_id, epoch_us(window_start) as ws, epoch_us(window_end) as we, n, avg_temp, max_vib \
             from t where device_id <> 'sentinel'",
        );
        let key = |row: &Value| {
            (
                row["device_id"].as_str().unwrap().to_string(),
                row["ws"].as_i64().unwrap(),
            )
        };
        let mut sessions: BTreeMap<(String, i64), &Value> = BTreeMap::new();
        for row in &landed {
            assert!(
                sessions.insert(key(row), row).is_none(),
                "{context}: session {row} emitted twice"
            );
        }
        assert_eq!(sessions.len(), oracle.len(), "{context}: session count");
        for want in &oracle {
            let have = sessions
                .get(&key(want))
                .unwrap_or_else(|| panic!("{context}: session {want} missing"));
            for column in ["we", "n", "max_vib"] {
                assert_eq!(have[column], want[column], "{context}: {want} vs {have}");
            }
            assert_same_average(have, want, context);
        }
    }

    /// Checks the window table `windows` (as [`python_query`] reads it) against DuckDB over
    /// the raw table at `raw_uri` minus the late events; returns how many events were late.
    pub fn assert_windows_match_oracle(
        &self,
        raw_uri: &str,
        windows: &str,
        context: &str,
    ) -> usize {
        let late_ids = self.late_events("device_1m", context);
        // Late events are really late: more than the allowed lateness behind the newest event
        // time of their partition before them. (The converse does not hold: the stream's
        // watermark is the lowest over its partitions, so an event far behind in a partition
        // read ahead of the others can still be on time.)
        let lags = Self::lags(raw_uri);
        for id in &late_ids {
            let lag = lags[id].unwrap_or(i64::MIN);
            assert!(
                lag > LATENESS_US,
                "{context}: {id:?} is late with a lag of {lag} µs"
            );
        }
        let exclude = not_in(&late_ids);
        let oracle = python_query(
            raw_uri,
            &format!(
                "select epoch_us(ts) // {MINUTE_US} * {MINUTE_US} as ws, device_id, count(*) as n, \
                 avg(temperature_c) as avg_temp, max(vibration_g) as max_vib, \
                 arg_min(status, (epoch_us(ts), _offset)) as first_status \
                 from t where device_id <> 'sentinel' {exclude} group by all"
            ),
        );
        let landed = python_query(
            windows,
            "select epoch_us(window_start) as ws, epoch_us(window_end) - epoch_us(window_start) as size, \
             device_id, n, avg_temp, max_vib, first_status from t",
        );
        let key = |row: &Value| {
            (
                row["ws"].as_i64().unwrap(),
                row["device_id"].as_str().unwrap().to_string(),
            )
        };
        let mut windows: BTreeMap<(i64, String), &Value> = BTreeMap::new();
        for row in &landed {
            assert_eq!(row["size"].as_i64(), Some(MINUTE_US), "{row}");
            if row["device_id"] == "sentinel" {
                continue;
            }
            assert!(
                windows.insert(key(row), row).is_none(),
                "{context}: window {row} emitted twice"
            );
        }
        assert_eq!(windows.len(), oracle.len(), "{context}: window count");
        for want in &oracle {
            let have = windows
                .get(&key(want))
                .unwrap_or_else(|| panic!("{context}: window {want} missing"));
            assert_eq!(have["n"], want["n"], "{context}: {want} vs {have}");
            assert_eq!(
                have["max_vib"], want["max_vib"],
                "{context}: {want} vs {have}"
            );
            assert_eq!(
                have["first_status"], want["first_status"],
                "{context}: {want} vs {have}"
            );
            assert_same_average(have, want, context);
        }
        late_ids.len()
    }
}

/// A window's `avg_temp` against the oracle's, to floating-point summation order.
pub fn assert_same_average(have: &Value, want: &Value, context: &str) {
    let (a, b) = (
        have["avg_temp"].as_f64().unwrap(),
        want["avg_temp"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{context}: {want} vs {have}"
    );
}

/// An SQL condition leaving out the events at `ids` (partition, offset).
pub fn not_in(ids: &BTreeSet<(i64, i64)>) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ids.iter().map(|(p, o)| format!("({p}, {o})")).collect();
    format!("and (_partition, _offset) not in ({})", list.join(", "))
}

fn stream_until_caught_up(pipeline: &Path) {
    run_ok(
        &mut stream_until_caught_up_command(pipeline),
        Duration::from_secs(600),
    );
}

/// A pipeline in `dir` with the raw table at `raw_uri` and the fixture's windows at
/// `window_uri`, in consumer group `group`.
pub fn window_pipeline(
    dir: &Path,
    fixture: &WindowFixture,
    group: &str,
    (raw_uri, window_uri): (&str, &str),
) -> PathBuf {
    let file = write_pipeline(
        dir,
        &fixture.topic,
        group,
        raw_uri,
        r#"{ max_latency = "1s" }"#,
    );
    extend_pipeline(&file, "", &fixture.window_section(window_uri));
    file
}

#[test]
fn tumbling_and_session_windows_equal_batch_sql_over_the_on_time_events() {
    let dir = test_dir("windows_oracle");
    let fixture = WindowFixture::new("windows_oracle", &dir, 60_000, 3);
    let raw = dir.join("lake/sensor_events").display().to_string();
    let windows = dir.join("lake/device_1m").display().to_string();
    let pipeline = window_pipeline(&dir, &fixture, &unique("group"), (&raw, &windows));
    stream_until_caught_up(&pipeline);
    let late = fixture.assert_windows_match_oracle(&raw, &windows, "one run");
    fixture.assert_sessions_match_oracle(&raw, &format!("{windows}_sessions"), "one run");
    // The generator moves 0.5 % of events 2-10 minutes back. How many of them arrive after
    // their window closed depends on how far the partitions are read apart (the stream's
    // watermark is their minimum); some always do.
    eprintln!("{late} late events");
    assert!(late > 0, "no event was late");
}

/// Two partitions; one falls silent after the first minute of event time while the other goes
/// on for five. With a 3 s idle timeout the silent one stops holding the stream's watermark:
/// the other's windows keep closing, and the silent one's last window closes with them.
#[test]
fn a_silent_partition_does_not_hold_back_the_windows_of_the_others() {
    let dir = test_dir("idle_partition");
    let topic = unique("idle");
    let late = unique("idle_late");
    create_topic(&topic, 2);
    create_topic(&late, 1);
    let event = |device: &str, second: i64| {
        format!(
            r#"{{"device_id":"{device}","ts":{},"temperature_c":20.0}}"#,
            1_795_305_600_000 + second * 1000 // 2026-11-22T00:00:00Z
        )
    };
    let send = |partition: i32, device: &str, seconds: std::ops::Range<i64>| {
        let payloads: Vec<String> = seconds.step_by(5).map(|s| event(device, s)).collect();
        let records: Vec<Outgoing<'_>> = payloads
            .iter()
            .map(|p| Outgoing {
                partition,
                key: Some(device.as_bytes()),
                payload: p.as_bytes(),
                headers: &[],
            })
            .collect();
        produce_raw(&topic, &records);
    };
    send(0, "busy", 0..60);
    send(1, "quiet", 0..60);
    let windows = dir.join("lake/device_1m").display().to_string();
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
name = "device_1m"
from = "sensor_events"
group_by = ["device_id"]
tumble = "1m"
allowed_lateness = "5s"
idle_timeout = "3s"
aggregates = {{ n = "count(*)" }}
uri = "{windows}"
late_topic = "{late}"
flush = {{ max_latency = "1s" }}
"#
    );
    extend_pipeline(&pipeline, "", &section);
    let mut member = crate::members::Member::start(&pipeline, dir.join("member.log"));
    member.wait_for_log("Committed", 1, Duration::from_secs(60));
    // Both partitions now fall silent for longer than the idle timeout; then only "busy" goes on.
    std::thread::sleep(Duration::from_secs(5));
    send(0, "busy", 60..300);
    let started = std::time::Instant::now();
    let emitted = loop {
        let rows = python_query_if_exists(
            &windows,
            "select device_id, epoch_us(window_start) // 60000000 % 1440 as minute, n from t order by 1, 2",
        );
        if rows
            .iter()
            .any(|r| r["device_id"] == "busy" && r["minute"] == 3)
        {
            break rows;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the busy partition's windows did not close: {rows:?}\n{}",
            member.logged()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    member.stop(Duration::from_secs(60));
    let has = |device: &str, minute: i64, n: i64| {
        emitted
            .iter()
            .any(|r| r["device_id"] == device && r["minute"] == minute && r["n"] == n)
    };
    assert!(has("quiet", 0, 12), "{emitted:?}");
    assert!(
        has("busy", 0, 12) && has("busy", 1, 12) && has("busy", 2, 12),
        "{emitted:?}"
    );
}
