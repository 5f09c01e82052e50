//! `sluice up` smoke test: it starts its embedded broker, produces, takes records through its
//! gateway with the API key it printed, lands rows that `sluice query` sees, and exits 0 on
//! Ctrl-C (SIGINT); a port it wants that is taken is refused before anything starts, by
//! address and the flag that moves it.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;

/// A running `sluice up`: its stdout read as it comes (the API key is printed at start), its
/// logs in a file (a pipe nobody reads while the test polls would stop `up` at its first write
/// once full, with nothing landing from then on).
pub(crate) struct Up {
    pub(crate) child: std::process::Child,
    printed: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
    log: std::path::PathBuf,
    gateway: String,
    metrics: String,
    /// The embedded broker's address.
    pub(crate) broker: String,
}

impl Up {
    /// `sluice up` with `args`, its data under `dir`, on free ports.
    pub(crate) fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        let gateway = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let broker = format!("127.0.0.1:{}", free_port());
        // `up` serves the console on 127.0.0.1:8090 unless told otherwise: tests run side by side.
        let console = format!("127.0.0.1:{}", free_port());
        let console: &[&str] = match args.contains(&"--console-listen") {
            true => &[],
            false => &["--console-listen", &console],
        };
        let log = dir.join("up.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("up")
            .args(args)
            .args(["--listen", &broker])
            .args(console)
            .args(["--gateway-listen", &gateway, "--metrics-listen", &metrics])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env_remove("SLUICE_BROKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let printed = Arc::new(Mutex::new(String::new()));
        let reader = {
            let (stdout, printed) = (child.stdout.take().unwrap(), printed.clone());
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut printed = printed.lock().unwrap();
                    printed.push_str(&line);
                    printed.push('\n');
                }
            })
        };
        Self {
            child,
            printed,
            reader,
            log,
            gateway,
            metrics,
            broker,
        }
    }

    pub(crate) fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test if `up` has exited.
    pub(crate) fn still_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("up exited ({status}) before {what}:\n{}", self.logged());
        }
    }

    /// The gateway's API key `up` printed, once it has.
    fn api_key(&mut self) -> String {
        let started = Instant::now();
        loop {
            let found = self
                .printed
                .lock()
                .unwrap()
                .split_whitespace()
                .find_map(|word| {
                    word.strip_prefix("sk_")
                        .map(|k| format!("sk_{}", k.trim_end_matches(')')))
                });
            if let Some(key) = found {
                return key;
            }
            self.still_running("printing its API key");
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no API key printed"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// POSTs NDJSON `records` to `stream` through the gateway; the status.
    fn send(&mut self, stream: &str, records: String) -> u16 {
        let key = self.api_key();
        let answer = reqwest::blocking::Client::new()
            .post(format!(
                "http://{}/v1/streams/{stream}/events",
                self.gateway
            ))
            .bearer_auth(&key)
            .header("content-type", "application/x-ndjson")
            .body(records)
            .send()
            .unwrap();
        answer.status().as_u16()
    }

    /// Ctrl-C (SIGINT), then insists on exit 0 within a minute; what `up` printed.
    pub(crate) fn stop(self) -> String {
        run_ok(
            Command::new("kill").args(["-INT", &self.child.id().to_string()]),
            Duration::from_secs(5),
        );
        let log = self.log.clone();
        let output = wait(self.child, Duration::from_secs(60));
        self.reader.join().unwrap();
        let stdout = self.printed.lock().unwrap().clone();
        assert!(
            output.status.success(),
            "exit {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(stdout.contains("sluice up: stopped"), "{stdout}");
        stdout
    }
}

#[test]
fn up_runs_lands_rows_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &["--rate", "1000"]);
    let lake = dir.path().join("data/lake");
    let started = Instant::now();
    let rows = loop {
        let rows = lake_rows(&lake).unwrap_or(0);
        if rows > 0 {
            break rows;
        }
        up.still_running("landing a row");
        if started.elapsed() > Duration::from_secs(120) {
            up.child.kill().ok();
            panic!("no rows in the lake after 2 minutes:\n{}", up.logged());
        }
        std::thread::sleep(Duration::from_millis(1000));
    };
    assert!(rows > 0);
    // The stream's metrics answer while it runs and count what landed.
    let scraped = reqwest::blocking::get(format!("http://{}/metrics", up.metrics))
        .unwrap()
        .text()
        .unwrap();
    let landed: f64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("sluice_rows_landed_total{table=\"sensor_events\"} "))
        .unwrap_or_else(|| panic!("no rows landed in /metrics:\n{scraped}"))
        .parse()
        .unwrap();
    assert!(landed > 0.0, "{scraped}");
    let records: String = (0..3)
        .map(|i| {
            format!(
                "{{\"device_id\": \"via-gateway\", \"ts\": \"{}\", \"temperature_c\": {}}}\n",
                chrono::Utc::now().to_rfc3339(),
                90 + i
            )
        })
        .collect();
    assert_eq!(up.send("sensor_events", records), 200);
    let stdout = up.stop();
    assert!(
        stdout.contains("sluice up: running") && stdout.contains("sluice query"),
        "{stdout}"
    );
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
    assert_eq!(
        committed,
        produced + 3,
        "the generator's events and the gateway's: {stdout}"
    );
    let via_gateway = lake_count(
        &lake,
        "select count(*) as n from sensor_events where device_id = 'via-gateway'",
    );
    assert_eq!(via_gateway, Some(3));
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

#[test]
fn up_runs_a_users_pipeline_file_through_its_gateway_into_its_lake() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("up_pipeline");
    let lake = dir.path().join("own-lake/readings");
    let pipeline = write_pipeline(
        dir.path(),
        &topic,
        &unique("group"),
        lake.to_str().unwrap(),
        "{ max_rows = 1000, max_latency = \"1s\" }",
    );
    let mut up = Up::start(dir.path(), &["--pipeline", pipeline.to_str().unwrap()]);
    let records: String = (0..40)
        .map(|i| {
            format!(
                "{{\"device_id\": \"own-{}\", \"ts\": \"2026-11-22T10:{:02}:00Z\", \"temperature_c\": 20}}\n",
                i % 4,
                i
            )
        })
        .collect();
    assert_eq!(up.send("sensor_events", records), 200, "{}", up.logged());
    let stdout = up.stop();
    assert!(
        stdout.contains(&format!("topic   {topic} (stream sensor_events)")),
        "{stdout}"
    );
    assert!(!stdout.contains("from the generator"), "{stdout}");
    assert!(stdout.contains("sluice query --pipeline"), "{stdout}");
    // The file's table, where the file put it, holds exactly what was sent.
    let rows = query(
        &pipeline,
        "select count(*) as n, count(distinct device_id) as d from sensor_events",
    );
    assert_eq!(
        (rows[0]["n"].as_u64(), rows[0]["d"].as_u64()),
        (Some(40), Some(4))
    );
    assert!(lake.join("_delta_log").is_dir(), "{}", lake.display());
}

#[test]
fn up_refuses_a_taken_port_by_address_and_the_flag_that_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let free = || format!("127.0.0.1:{}", free_port());
    for (broker, gateway, metrics, console, flag) in [
        (taken.clone(), free(), free(), free(), "--listen"),
        (free(), taken.clone(), free(), free(), "--gateway-listen"),
        (free(), free(), taken.clone(), free(), "--metrics-listen"),
        (free(), free(), free(), taken.clone(), "--console-listen"),
    ] {
        let stderr = run_err(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["up", "--listen", &broker, "--gateway-listen", &gateway])
                .args(["--metrics-listen", &metrics, "--console-listen", &console])
                .arg("--data-dir")
                .arg(dir.path())
                .env_remove("SLUICE_BROKERS"),
            Duration::from_secs(30),
        );
        assert!(
            stderr.contains(&taken) && stderr.contains(flag),
            "the error names neither {taken} nor {flag}:\n{stderr}"
        );
    }
}

/// Rows in the `up` lake's sensor table, if it can be queried yet.
pub(crate) fn lake_rows(lake: &std::path::Path) -> Option<u64> {
    lake_count(lake, "select count(*) as n from sensor_events")
}

/// The single number a counting query over the `up` lake returns, if it answers.
pub(crate) fn lake_count(lake: &std::path::Path, sql: &str) -> Option<u64> {
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
