//! The services failing under a running `sluice stream`: the object store stopped for 10 s
//! (commits retry with backoff and nothing is committed before its files are durable), and the
//! broker restarted on its SQLite log after 15 s down (past the consumer session timeout, so the
//! member must rejoin the group), and SIGTERM while commits fail (the process exits within its
//! shutdown timeout, committing nothing, and a restart lands everything once). Each runs on
//! private instances started by the repo's services script, so the other tests keep theirs.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::helpers::*;
use crate::members::Member;
use crate::private::PrivateServices;

const START: &str = "2026-11-22T00:00:00Z";

/// A stream on a private object store over a fresh 4-partition topic, fed by a background
/// producer, caught after two commits with the store stopped and its commits retrying.
struct StoreDown {
    services: PrivateServices,
    pipeline: PathBuf,
    report: PathBuf,
    uri: String,
    prefix: String,
    producer: Option<Child>,
    stream: Member,
}

impl StoreDown {
    /// `events` sensor events at `rate`/s, tables flushed every `max_rows`; `stream_args` go
    /// before `--pipeline`.
    fn start(name: &str, (events, rate, max_rows): (u64, u32, u32), stream_args: &[&str]) -> Self {
        let dir = test_dir(name);
        let services = PrivateServices::new(&dir);
        services.start("s3");
        let topic = unique(name);
        create_topic(&topic, 4);
        let prefix = unique(name);
        let uri = format!("s3://lake/{prefix}/sensor_events");
        let flush = format!(r#"{{ max_rows = {max_rows}, max_latency = "1s" }}"#);
        let pipeline = write_pipeline(&dir, &topic, &unique("group"), &uri, &flush);
        let report = dir.join("report.json");
        let producer = spawn_producer(
            sensor_producer(&topic, events, 21, START, "10ms", &report)
                .args(["--rate", &rate.to_string()]),
        );
        let mut stream = Member::start_with(
            services
                .sluice()
                .arg("stream")
                .args(stream_args)
                .arg("--pipeline")
                .arg(&pipeline),
            dir.join("stream.log"),
        );
        stream.wait_for_log("Committed", 2, Duration::from_secs(60));
        services.stop("s3");
        stream.wait_for_log("Commit failed; retrying", 1, Duration::from_secs(30));
        Self {
            services,
            pipeline,
            report,
            uri,
            prefix,
            producer: Some(producer),
            stream,
        }
    }

    /// Starts the store again and waits for the producer to finish.
    fn store_back(&mut self) {
        self.services.start("s3");
        let producer = self
            .producer
            .take()
            .expect("the producer is waited for once");
        finish_producer(producer, &self.report);
    }

    /// `verify` against the producer report passes within `limit`.
    fn wait_until_clean(&self, limit: Duration) {
        let sluice = || self.services.sluice();
        wait_until_clean(&sluice, &self.pipeline, &self.report, limit);
    }

    /// The table holds each produced record once, by our reader and the independent one.
    fn assert_exactly_once(&self, context: &str) {
        let landed = Landed {
            pipeline: &self.pipeline,
            report: &self.report,
            uri: &self.uri,
            dir: &self
                .services
                .s3_root()
                .join(&self.prefix)
                .join("sensor_events"),
        };
        landed.assert_exactly_once(&|command| self.services.point_at(command), context);
    }
}
#[test]
fn sigterm_while_commits_fail_exits_within_the_shutdown_timeout_and_a_restart_lands_all_once() {
    let args = ["--shutdown-timeout", "5s"];
    let mut down = StoreDown::start("shutdown_timeout", (20_000, 2000, 5000), &args);
    // Commits now retry for up to 2 minutes; SIGTERM must not wait for that.
    down.stream.signal("TERM");
    let signalled = std::time::Instant::now();
    let status = loop {
        if let Some(status) = down.stream.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM with a 5 s shutdown timeout:\n{}",
            down.stream.logged()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "exited after {took:?}, before the timeout"
    );
    assert!(
        !status.success(),
        "a shutdown that committed nothing says so"
    );
    let logged = down.stream.logged();
    assert!(logged.contains("Shutdown timeout passed"), "{logged}");

    down.store_back();
    run_ok(
        down.services
            .sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&down.pipeline),
        Duration::from_secs(300),
    );
    down.wait_until_clean(Duration::from_secs(60));
    down.assert_exactly_once("SIGTERM while commits fail");
}

#[test]
fn the_object_store_down_for_ten_seconds_delays_commits_and_loses_nothing() {
    let mut down = StoreDown::start("store_outage", (60_000, 3000, 10_000), &[]);
    std::thread::sleep(Duration::from_secs(10));
    down.store_back();
    down.wait_until_clean(Duration::from_secs(120));
    down.stream.terminate(Duration::from_secs(30));
    down.assert_exactly_once("store outage");
}

#[test]
fn a_broker_restarted_on_its_sqlite_log_mid_run_loses_and_doubles_nothing() {
    let dir = test_dir("broker_restart");
    let services = PrivateServices::new(&dir);
    services.start("kafka");
    let topic = unique("broker_restart");
    run_ok(
        services
            .sluice()
            .args(["topics", "create", &topic, "--partitions", "4"]),
        Duration::from_secs(60),
    );
    let table = dir.join("lake/sensor_events");
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &table.display().to_string(),
        r#"{ max_rows = 5000, max_latency = "1s" }"#,
    );
    let report = dir.join("report.json");
    let mut producer = sensor_producer(&topic, 80_000, 22, START, "10ms", &report);
    services.point_at(&mut producer);
    run_ok(&mut producer, Duration::from_secs(300));

    let mut stream = Member::start_with(
        services
            .sluice()
            .args(["stream", "--pipeline"])
            .arg(&pipeline),
        dir.join("stream.log"),
    );
    stream.wait_for_log("Committed", 2, Duration::from_secs(60));
    // Down for longer than the consumer's session timeout (10 s), as a restart on a busy
    // machine was: the member is dropped from the group and must get its partitions back.
    services.stop("kafka");
    std::thread::sleep(Duration::from_secs(15));
    services.start("kafka");

    let sluice = || services.sluice();
    wait_until_clean(&sluice, &pipeline, &report, Duration::from_secs(180));
    stream.stop(Duration::from_secs(30));

    let landed = Landed {
        pipeline: &pipeline,
        report: &report,
        uri: &table.display().to_string(),
        dir: &table,
    };
    landed.assert_exactly_once(&|command| services.point_at(command), "broker restart");
}
