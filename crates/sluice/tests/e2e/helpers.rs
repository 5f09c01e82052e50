//! Shared helpers: running the binary with a deadline, unique names, pipeline files, and the
//! independent Python reader.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The broker the services script started; the suite refuses to run without it rather than
/// pass vacuously.
pub fn brokers() -> String {
    std::env::var("SLUICE_TEST_BROKERS").expect(
        "SLUICE_TEST_BROKERS is not set: run the suite with scripts/test.sh, which starts tansu and s3s-fs",
    )
}

/// The S3 bucket of the services script's s3s-fs server.
pub fn s3_bucket() -> String {
    std::env::var("SLUICE_TEST_S3_BUCKET")
        .expect("SLUICE_TEST_S3_BUCKET is not set: run scripts/test.sh")
}

/// A file of the repository the tests run in: `CARGO_MANIFEST_DIR` as cargo sets it when it
/// runs the test, not as it was at compile time (clones sharing one target dir reuse one test
/// binary, which would read another clone's files, or a deleted one's).
pub fn repo_file(path: &str) -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    Path::new(&crate_dir).join("../..").join(path)
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `sluice` with the test broker in its environment, metrics on a free port (tests run many
/// stream processes at once), logging at its default levels, or at `SLUICE_TEST_LOG` (a
/// `SLUICE_LOG` filter) when that is set, to debug a test.
pub fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .env("SLUICE_BROKERS", brokers())
        .env("SLUICE_METRICS_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null());
    match std::env::var("SLUICE_TEST_LOG") {
        Ok(filter) => command.env("SLUICE_LOG", filter),
        Err(_) => command.env_remove("SLUICE_LOG"),
    };
    command
}

/// Runs `command`, killing it after `limit`; returns its output whatever the exit status.
pub fn run(command: &mut Command, limit: Duration) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    wait(child, limit)
}

/// Waits for a child with a deadline, then collects its output. The pipes are drained while
/// waiting: a child whose logs fill a pipe would otherwise block forever on its next write.
pub fn wait(mut child: Child, limit: Duration) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes).ok();
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            let stderr = stderr.join().unwrap();
            panic!(
                "command still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `command` and insists that it succeeds; returns stdout.
pub fn run_ok(command: &mut Command, limit: Duration) -> String {
    let output = run(command, limit);
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs `command` and insists that it fails; returns stderr.
pub fn run_err(command: &mut Command, limit: Duration) -> String {
    let output = run(command, limit);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{command:?} succeeded but should have failed; stderr:\n{stderr}"
    );
    stderr
}

/// Creates a topic through `sluice topics create`.
pub fn create_topic(topic: &str, partitions: u32) {
    run_ok(
        sluice().args([
            "topics",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]),
        Duration::from_secs(30),
    );
}

/// Writes the sensor JSON Schema and a pipeline file for one topic → one table into `dir`.
pub fn write_pipeline(
    dir: &Path,
    topic: &str,
    group: &str,
    table_uri: &str,
    flush: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::write(
        dir.join("schemas/sensor_event.schema.json"),
        include_str!("../../../../examples/schemas/sensor_event.schema.json"),
    )
    .unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka]
group = "{group}"

[[streams]]
name = "sensor_events"
topic = "{topic}"
schema = "schemas/sensor_event.schema.json"
event_time = "ts"
key = "device_id"

[[tables]]
name = "sensor_events"
from = "sensor_events"
uri = "{table_uri}"
flush = {flush}
"#
        ),
    )
    .unwrap();
    file
}

/// Runs SQL through `sluice query --format json` and parses the rows.
pub fn query(pipeline: &Path, sql: &str) -> Vec<Value> {
    query_using(&sluice, pipeline, sql)
}

/// [`query`] with `sluice` building the command (e.g. with credentials in its environment).
pub fn query_using(sluice: &dyn Fn() -> Command, pipeline: &Path, sql: &str) -> Vec<Value> {
    let out = run_ok(
        sluice()
            .args(["query", "--format", "json", "--pipeline"])
            .arg(pipeline)
            .arg(sql),
        Duration::from_secs(120),
    );
    out.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON row"))
        .collect()
}

/// Reads a Delta table with the Python `deltalake` package (scripts/check_delta.py).
pub fn python_check(table_uri: &str) -> Value {
    python_check_with(table_uri, |_| {})
}

/// [`python_check`], with `setup` adjusting the reader's command (its environment).
pub fn python_check_with(table_uri: &str, setup: impl FnOnce(&mut Command)) -> Value {
    let python = std::env::var("SLUICE_TEST_PYTHON")
        .expect("SLUICE_TEST_PYTHON is not set: run scripts/test.sh");
    let script = repo_file("scripts/check_delta.py");
    let mut command = Command::new(python);
    command.arg(script).arg(table_uri);
    setup(&mut command);
    let out = run_ok(&mut command, Duration::from_secs(180));
    serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("check_delta.py printed no JSON ({err}): {out}"))
}

/// Runs SQL with DuckDB over a table read by a Python reader (scripts/query_table.py; the
/// table is `t`): an independent oracle. `table` is a Delta table's URI, `parquet:URI` of a
/// plain-files Parquet table, or `iceberg:CATALOG_DB#CATALOG#NAMESPACE.TABLE`.
pub fn python_query(table: &str, sql: &str) -> Vec<Value> {
    let python = std::env::var("SLUICE_TEST_PYTHON")
        .expect("SLUICE_TEST_PYTHON is not set: run scripts/test.sh");
    let script = repo_file("scripts/query_table.py");
    let out = run_ok(
        Command::new(python).arg(script).arg(table).arg(sql),
        Duration::from_secs(180),
    );
    out.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON row"))
        .collect()
}

/// [`python_query`], or no rows while the table has no Delta log yet.
pub fn python_query_if_exists(table_uri: &str, sql: &str) -> Vec<Value> {
    if Path::new(table_uri).join("_delta_log").is_dir() {
        python_query(table_uri, sql)
    } else {
        Vec::new()
    }
}

/// Adds lines to the `[[streams]]` entry of a pipeline written by [`write_pipeline`], and
/// sections at its end.
pub fn extend_pipeline(file: &Path, stream_lines: &str, sections: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let anchor = "key = \"device_id\"\n";
    assert!(text.contains(anchor), "{text}");
    let text = text.replacen(anchor, &format!("{anchor}{stream_lines}\n"), 1);
    std::fs::write(file, format!("{text}\n{sections}\n")).unwrap();
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Produces `count` deterministic sensor events (`seed`, event times from `start`, `spacing`
/// apart) and returns the producer report, also written to `report`.
pub fn produce_sensor(
    topic: &str,
    count: u64,
    seed: u64,
    start: &str,
    spacing: &str,
    report: &Path,
) -> Value {
    run_ok(
        &mut sensor_producer(topic, count, seed, start, spacing, report),
        Duration::from_secs(600),
    );
    serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap()
}

/// The `sluice produce` command of [`produce_sensor`], to run in the background (add `--rate`).
pub fn sensor_producer(
    topic: &str,
    count: u64,
    seed: u64,
    start: &str,
    spacing: &str,
    report: &Path,
) -> Command {
    let mut command = sluice();
    command
        .args(["produce", "--topic", topic, "--generator", "sensor"])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args([
            "--start-time",
            start,
            "--event-spacing",
            spacing,
            "--report",
        ])
        .arg(report);
    command
}

/// The Python reader's view of a table holds each produced offset exactly once.
pub fn assert_reader_matches_report(python: &Value, report: &Value, context: &str) {
    assert_eq!(python["rows"], report["records"], "{context}: {python}");
    for (partition, expected) in report["partitions"].as_object().unwrap() {
        let seen = &python["partitions"][partition];
        assert_eq!(seen["count"], expected["records"], "{context}: {python}");
        assert_eq!(
            seen["distinct_offsets"], expected["records"],
            "{context}: {python}"
        );
        assert_eq!(
            seen["min_offset"], expected["first_offset"],
            "{context}: {python}"
        );
        assert_eq!(
            seen["max_offset"], expected["last_offset"],
            "{context}: {python}"
        );
    }
}

/// `sluice verify --json` against a producer report; insists on a clean lake and returns the
/// result for further checks. `context` goes into the failure message.
pub fn verify_clean(pipeline: &Path, report: &Path, context: &str) -> Value {
    verify_clean_using(&sluice, pipeline, report, context)
}

/// [`verify_clean`] with `sluice` building the command (e.g. pointed at private services).
pub fn verify_clean_using(
    sluice: &dyn Fn() -> Command,
    pipeline: &Path,
    report: &Path,
    context: &str,
) -> Value {
    let out = run_ok(
        sluice()
            .args(["verify", "--json", "--pipeline"])
            .arg(pipeline)
            .arg("--report")
            .arg(report),
        Duration::from_secs(300),
    );
    let verified: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verified["clean"], true, "{context}: {verified}");
    verified
}

/// `sluice verify` against a producer report, repeated until it is clean (the streams under test
/// are still catching up) or `limit` passes. Duplicates never go away, so a clean result is final.
pub fn wait_until_clean(
    sluice: &dyn Fn() -> Command,
    pipeline: &Path,
    report: &Path,
    limit: Duration,
) {
    let started = Instant::now();
    loop {
        let output = run(
            sluice()
                .args(["verify", "--pipeline"])
                .arg(pipeline)
                .arg("--report")
                .arg(report),
            Duration::from_secs(120),
        );
        if output.status.success() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "not clean after {limit:?}:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Reads a table's Delta log as stored (`_delta_log/NNN.json`, in version order) and insists
/// that every `txn` action moves its partition's committed offset strictly forward. Returns
/// how many commits carried offsets.
pub fn assert_offsets_only_move_forward(table_dir: &Path) -> usize {
    let log = table_dir.join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap_or_else(|err| panic!("{}: {err}", log.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    let mut with_offsets = 0;
    for commit in &commits {
        let text = std::fs::read_to_string(commit).unwrap();
        let mut carried = false;
        for line in text.lines() {
            let action: Value = serde_json::from_str(line).unwrap();
            let Some(txn) = action.get("txn") else {
                continue;
            };
            let app = txn["appId"].as_str().unwrap().to_string();
            let version = txn["version"].as_i64().unwrap();
            if let Some(&before) = last.get(&app) {
                assert!(
                    version > before,
                    "{}: {app} moved from {before} to {version}",
                    commit.display()
                );
            }
            last.insert(app, version);
            carried = true;
        }
        with_offsets += usize::from(carried);
    }
    with_offsets
}

/// A directory for one test's files (pipeline, logs, local lake) under the run directory of
/// `scripts/test.sh`, which keeps it when the suite fails and removes it otherwise.
pub fn test_dir(name: &str) -> PathBuf {
    let run =
        std::env::var("SLUICE_RUN_DIR").expect("SLUICE_RUN_DIR is not set: run scripts/test.sh");
    let dir = Path::new(&run).join("tests").join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A test-only server under tests/ (a stand-in for a service that cannot be installed here),
/// stopped when dropped.
pub struct StandIn {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl StandIn {
    /// Starts `command`, which prints the port it listens on as its first line.
    pub fn start(command: &mut Command, what: &str) -> Self {
        use std::io::BufRead;
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {what}: {err}"));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = (line.trim().parse())
            .unwrap_or_else(|_| panic!("{what} prints its port first; it printed {line:?}"));
        Self { child, port }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a producer command (see [`sensor_producer`]) in the background.
pub fn spawn_producer(command: &mut Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sluice produce")
}

/// Waits for a background producer, insists that it succeeded, and returns its report.
pub fn finish_producer(producer: Child, report: &Path) -> Value {
    let output = wait(producer, Duration::from_secs(300));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap()
}

/// A table an exactly-once test wrote, and what it must hold.
pub struct Landed<'a> {
    /// The pipeline that wrote it.
    pub pipeline: &'a Path,
    /// The producer report it must match.
    pub report: &'a Path,
    /// The table's URI, for the Python reader.
    pub uri: &'a str,
    /// Where its files are on this machine (for s3s-fs, under the server's root).
    pub dir: &'a Path,
}

impl Landed<'_> {
    /// The end of every exactly-once test: `verify` is clean against the producer report, the
    /// Python reader sees every produced offset exactly once, and the stored Delta log moves
    /// each partition's offset strictly forward. `point_at` adjusts each command (to reach
    /// private services). Returns the Python reader's view.
    pub fn assert_exactly_once(&self, point_at: &dyn Fn(&mut Command), context: &str) -> Value {
        let sluice = || {
            let mut command = sluice();
            point_at(&mut command);
            command
        };
        verify_clean_using(&sluice, self.pipeline, self.report, context);
        let produced: Value =
            serde_json::from_str(&std::fs::read_to_string(self.report).unwrap()).unwrap();
        let python = python_check_with(self.uri, point_at);
        assert_reader_matches_report(&python, &produced, context);
        assert!(
            assert_offsets_only_move_forward(self.dir) > 0,
            "{context}: no offsets in the log"
        );
        python
    }
}

/// `sluice stream --until-caught-up --pipeline FILE`.
pub fn stream_until_caught_up_command(pipeline: &Path) -> Command {
    let mut command = sluice();
    command
        .args(["stream", "--until-caught-up", "--pipeline"])
        .arg(pipeline);
    command
}

/// Runs `command(n)` for n = 0, 1, … and kills each run with SIGKILL after a random delay in
/// `delay_ms`, `kills` times; run n logs to `logs/run{n}.log`. Fails if a run finishes by itself
/// before all the kills are made (a chaos test must not pass without its kills). Returns the
/// random seed, which callers print on failure.
pub fn kill_at_random_moments(
    kills: usize,
    delay_ms: std::ops::Range<u64>,
    logs: &Path,
    mut command: impl FnMut(usize) -> Command,
) -> u64 {
    use rand::{Rng, SeedableRng};
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut made = Vec::new();
    while made.len() < kills {
        std::fs::create_dir_all(logs).unwrap();
        let log = std::fs::File::create(logs.join(format!("run{}.log", made.len()))).unwrap();
        let mut child = command(made.len())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let after = Duration::from_millis(rng.random_range(delay_ms.clone()));
        let started = std::time::Instant::now();
        while started.elapsed() < after && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "seed {seed}: run {} ended by itself ({status}) after {} kills of {kills} \
                 (after {made:?}); the kills must come sooner",
                made.len(),
                made.len()
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        made.push(after);
    }
    eprintln!("seed {seed}: killed {} times, after {made:?}", made.len());
    seed
}
