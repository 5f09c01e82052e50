//! A real Prometheus (Debian's `prometheus` package, installed by `.ci/run`) scraping sluice
//! processes on 127.0.0.1 every second, asked through its HTTP API; and `promtool`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::free_port;

/// A Prometheus server with its own data directory, stopped when dropped.
pub struct Prometheus {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping `targets` ("host:port") every second, with the
    /// rule files `rules`; waits until it is ready.
    pub fn start(dir: &Path, targets: &[String], rules: &[&Path]) -> Self {
        let config = dir.join("prometheus.yml");
        let rule_files: Vec<String> = rules.iter().map(|r| format!("{:?}", r)).collect();
        let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files: [{}]\n\
                 scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [{}]\n",
                rule_files.join(", "),
                targets.join(", ")
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus on PATH (Debian's package; .ci/run installs it)");
        let mut prometheus = Self {
            child,
            address,
            log,
        };
        let started = Instant::now();
        loop {
            let ready = reqwest::blocking::get(format!("http://{}/-/ready", prometheus.address));
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", prometheus.logged());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "prometheus not ready in 60 s:\n{}",
                prometheus.logged()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// What Prometheus logged.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query's result: each series' labels and value.
    pub fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let answer: Value = reqwest::blocking::Client::new()
            .get(format!("http://{}/api/v1/query", self.address))
            .query(&[("query", promql)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits until `check` accepts the result of `promql`; panics with the last result.
    pub fn wait_for(
        &self,
        promql: &str,
        limit: Duration,
        check: impl Fn(&[(Value, f64)]) -> bool,
    ) -> Vec<(Value, f64)> {
        let started = Instant::now();
        loop {
            let result = self.query(promql);
            if check(&result) {
                return result;
            }
            assert!(
                started.elapsed() < limit,
                "{promql} after {limit:?}: {result:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `promtool <args…>` with `input` on stdin; returns (success, stdout + stderr).
pub fn promtool(args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (Debian's prometheus package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
