//! The web console in a real browser: `sluice up` serves it, and Debian's headless Chromium,
//! driven by selenium through chromedriver (tests/browser/console.py), finds the pipeline
//! graph, a lag chart with points, a SQL count equal to `sluice query`'s, a chart of a result
//! with a time column, a planted bad record on the dead-letter page with its reason, writes
//! refused, an SQL error in DataFusion's words and a query cancelled at its time limit. Then
//! `sluice console` alone over the same lake, with its brokers down and keys required: the API
//! refuses calls without the key, says Kafka is down with the error, and still lists the
//! tables and answers SQL. Screenshots of each page are kept with the test's output.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::up::{Up, lake_count, lake_rows};

/// The query the browser runs and `sluice query` checks, counting rows older than `cutoff`
/// (all of them committed by then: the generator stamps events with the wall clock).
fn count_before(cutoff: &str) -> String {
    format!("select count(*) as n from sensor_events where ts < TIMESTAMP '{cutoff}'")
}

#[test]
fn the_console_shows_the_pipeline_its_lag_sql_and_dead_letters_in_a_real_browser() {
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or("/usr/bin/chromedriver".into());
    assert!(
        Path::new(&chromedriver).exists(),
        "{chromedriver} is missing: install chromium and chromium-driver (.ci/run does)"
    );
    let dir = test_dir("console");
    let console = format!("127.0.0.1:{}", free_port());
    let mut up = Up::start(
        &dir,
        &[
            "--rate",
            "50",
            "--console-listen",
            &console,
            "--sql-timeout",
            "3s",
        ],
    );
    let lake = dir.join("data/lake");
    let started = Instant::now();
    while lake_rows(&lake).unwrap_or(0) == 0 {
        up.still_running("landing a row");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            up.logged()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // A record without its event time goes to the dead-letter topic.
    let bad = dir.join("bad.ndjson");
    std::fs::write(
        &bad,
        "{\"device_id\": \"planted-bad-record\", \"temperature_c\": 20}\n",
    )
    .unwrap();
    run_ok(
        sluice()
            .args([
                "produce",
                "--topic",
                "sensor_events",
                "--brokers",
                &up.broker,
            ])
            .arg("--input")
            .arg(&bad),
        Duration::from_secs(60),
    );
    let cutoff = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let screenshots = dir.join("console-screenshots");
    let found = browse(
        &format!("http://{console}/"),
        &screenshots,
        &[
            ("--cutoff", cutoff.as_str()),
            ("--dead-letter-reason", "required field ts"),
            (
                "--sql-timeout-query",
                "select sum(value) from generate_series(1, 100000000000)",
            ),
            ("--verify", ""),
        ],
    );
    let names: Vec<&str> = (found["pipeline_names"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "sensor_events",
        "device_1m",
        "sensor_alerts",
        "sensor_events_dlq",
    ] {
        assert!(
            names.contains(&name),
            "{name} not on the pipeline page: {names:?}"
        );
    }
    let read = &found["edge_rates"]["topic:sensor_events>stream:sensor_events"];
    let rate: f64 = (read.as_str().and_then(|r| r.strip_suffix("/s")))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate on the topic's edge: {found}"));
    assert!(rate > 0.0, "{found}");
    assert!(found["lag_points"].as_u64().unwrap() >= 3, "{found}");
    let counted = lake_count(&lake, &count_before(&cutoff)).expect("sluice query answers");
    assert!(counted > 0, "rows before {cutoff}");
    assert_eq!(found["sql_count"].as_u64(), Some(counted), "{found}");
    assert!(found["sql_chart_points"].as_u64().unwrap() >= 1, "{found}");
    for (statement, says) in [
        ("delete_error", "DML not supported"),
        ("create_error", "DDL not supported"),
    ] {
        assert_eq!(found[statement]["kind"], "refused", "{found}");
        let text = found[statement]["text"].as_str().unwrap();
        assert!(text.contains(says), "{statement}: {text}");
    }
    let missing = found["missing_table_error"].as_str().unwrap();
    assert!(missing.contains("no_such_table"), "{missing}");
    assert_eq!(found["timeout_error"]["kind"], "timeout", "{found}");
    let reason = found["dead_letter_reason"].as_str().unwrap();
    assert!(reason.contains("required field ts"), "{reason}");
    assert_eq!(found["js_errors"], serde_json::json!([]), "{found}");
    assert_eq!(found["verify"]["state"], "clean", "{found}");
    for page in [
        "pipeline",
        "lag",
        "sql",
        "sql-chart",
        "dead-letters",
        "tables",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "{shot:?}"
        );
    }
    keep_screenshots(&screenshots);
    up.stop();
    a_console_alone_with_kafka_down_keeps_its_tables_and_sql_behind_a_key(&dir, &lake);
}

/// Runs the browser test against `url`; its findings.
fn browse(url: &str, out: &Path, flags: &[(&str, &str)]) -> Value {
    let python = std::env::var("SLUICE_BROWSER_PYTHON")
        .expect("SLUICE_BROWSER_PYTHON (scripts/test.sh sets it: scripts/python-env.sh browser)");
    let mut command = Command::new(python);
    command
        .arg(repo_file("tests/browser/console.py"))
        .args(["--url", url, "--out"])
        .arg(out);
    for (flag, value) in flags {
        command.arg(flag);
        if !value.is_empty() {
            command.arg(value);
        }
    }
    let stdout = run_ok(&mut command, Duration::from_secs(600));
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

/// Copies the screenshots next to the build's output, where they outlive the test directory.
fn keep_screenshots(from: &Path) {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or("target".into());
    let kept = Path::new(&target).join("console-screenshots");
    std::fs::create_dir_all(&kept).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), kept.join(entry.file_name())).unwrap();
    }
}

/// `sluice console` over the lake `up` left, its brokers down, one more table on a store that
/// does not answer, and keys required: checked through the API and in the browser.
fn a_console_alone_with_kafka_down_keeps_its_tables_and_sql_behind_a_key(dir: &Path, lake: &Path) {
    let key = "sk_console_test_key";
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    let keys = dir.join("console-keys.toml");
    let entry = format!("[[keys]]\nname = \"ops\"\nsha256 = \"{sha256}\"\nstreams = [\"*\"]\n");
    std::fs::write(&keys, entry).unwrap();
    let table = lake.join("sensor_events").display().to_string();
    let pipeline = write_pipeline(&dir.join("alone"), "sensor_events", "g", &table, "{}");
    let down_store = format!("http://127.0.0.1:{}", free_port());
    extend_pipeline(
        &pipeline,
        "dead_letter_topic = \"sensor_events_dlq\"",
        &format!(
            "[[tables]]\nname = \"archive\"\nfrom = \"sensor_events\"\nuri = \"s3://down-bucket/archive\"\n\n\
             [lake.storage_options]\naws_endpoint_url = \"{down_store}\"\naws_allow_http = \"true\"\n"
        ),
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let closed = format!("127.0.0.1:{}", free_port());
    let log = dir.join("console.log");
    let _console = Killed(
        sluice()
            .args(["console", "--brokers", &closed, "--console-listen", &listen])
            .arg("--pipeline")
            .arg(&pipeline)
            .arg("--console-keys")
            .arg(&keys)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let api = |path: &str, key: Option<&str>| {
        let url = format!("http://{listen}/api/{path}");
        let mut request = reqwest::blocking::Client::new().get(url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.timeout(Duration::from_secs(60)).send()
    };
    let started = Instant::now();
    while api("overview", None).is_err() {
        let waited = started.elapsed() < Duration::from_secs(30);
        assert!(
            waited,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(api("overview", None).unwrap().status(), 401);
    assert_eq!(api("overview", Some("sk_wrong")).unwrap().status(), 401);
    let page = reqwest::blocking::get(format!("http://{listen}/")).unwrap();
    assert_eq!(page.status(), 200, "the page itself needs no key");
    let overview: Value = api("overview", Some(key)).unwrap().json().unwrap();
    assert_eq!(overview["kafka"]["up"], false, "{overview}");
    let error = overview["kafka"]["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{overview}");
    let tables: Value = api("tables", Some(key)).unwrap().json().unwrap();
    let rows = lake_rows(lake).unwrap();
    let listed = |name: &str| {
        (tables.as_array().unwrap().iter())
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {tables}"))
            .clone()
    };
    assert_eq!(
        listed("sensor_events")["rows"].as_u64(),
        Some(rows),
        "{tables}"
    );
    let archive = listed("archive");
    assert_eq!(archive["up"], false, "{archive}");
    let side: Value = api("side/dead_letters", Some(key)).unwrap().json().unwrap();
    assert_eq!(side["up"], false, "{side}");
    let shots = dir.join("console-screenshots");
    let found = browse(
        &format!("http://{listen}/"),
        &shots,
        &[("--down", ""), ("--key", key)],
    );
    let status = found["kafka_status"].as_str().unwrap().to_lowercase();
    assert!(
        status.contains("down") && status.contains(&closed),
        "{found}"
    );
    assert!(found["tables_down"]["archive"].is_string(), "{found}");
    assert!(
        found["tables_down"].get("sensor_events").is_none(),
        "{found}"
    );
    assert_eq!(found["sql_count"].as_u64(), Some(rows), "{found}");
    keep_screenshots(&shots);
}

/// A child process killed when the test ends, passed or failed.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}
