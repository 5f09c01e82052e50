//! The services failing under a running `sluice stream`: the object store stopped for 10 s
//! (commits retry with backoff and nothing is committed before its files are durable), and the
//! broker restarted on its SQLite log after 15 s down (past the consumer session timeout, so the
//! member must rejoin the group), and SIGTERM while commits fail (the process exits within its
//! shutdown timeout, committing nothing, and a restart lands everything once). Each runs on
//! private instances started by the repo's services script, so the other tests keep theirs.

use std::time::Duration;

use crate::helpers::*;
use crate::members::Member;
use crate::private::PrivateServices;

const START: &str = "2026-11-22T00:00:00Z";

#[test]
fn sigterm_while_commits_fail_exits_within_the_shutdown_timeout_and_a_restart_lands_all_once() {
    let dir = test_dir("shutdown_timeout");
    let services = PrivateServices::new(&dir);
    services.start("s3");
    let topic = unique("shutdown_timeout");
    create_topic(&topic, 4);
    let prefix = unique("shutdown");
    let uri = format!("s3://lake/{prefix}/sensor_events");
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &uri,
        r#"{ max_rows = 5000, max_latency = "1s" }"#,
    );
    let report = dir.join("report.json");
    let producer = spawn_producer(
        sensor_producer(&topic, 20_000, 5, START, "10ms", &report).args(["--rate", "2000"]),
    );
    let mut stream = Member::start_with(
        services
            .sluice()
            .args(["stream", "--shutdown-timeout", "5s", "--pipeline"])
            .arg(&pipeline),
        dir.join("stream.log"),
    );
    stream.wait_for_log("Committed", 2, Duration::from_secs(60));
    services.stop("s3");
    // Commits now retry for up to 2 minutes; SIGTERM must not wait for that.
    stream.wait_for_log("Commit failed; retrying", 1, Duration::from_secs(30));
    stream.signal("TERM");
    let signalled = std::time::Instant::now();
    let status = loop {
        if let Some(status) = stream.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM with a 5 s shutdown timeout:\n{}",
            stream.logged()
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
    assert!(
        stream.logged().contains("Shutdown timeout passed"),
        "{}",
        stream.logged()
    );

    services.start("s3");
    finish_producer(producer, &report);
    run_ok(
        services
            .sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );
    let sluice = || services.sluice();
    wait_until_clean(&sluice, &pipeline, &report, Duration::from_secs(60));
    let landed = Landed {
        pipeline: &pipeline,
        report: &report,
        uri: &uri,
        dir: &services.s3_root().join(&prefix).join("sensor_events"),
    };
    landed.assert_exactly_once(
        &|command| services.point_at(command),
        "SIGTERM while commits fail",
    );
}

#[test]
fn the_object_store_down_for_ten_seconds_delays_commits_and_loses_nothing() {
    let dir = test_dir("store_outage");
    let services = PrivateServices::new(&dir);
    services.start("s3");
    let topic = unique("store_outage");
    create_topic(&topic, 4);
    let prefix = unique("outage");
    let uri = format!("s3://lake/{prefix}/sensor_events");
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &uri,
        r#"{ max_rows = 10000, max_latency = "1s" }"#,
    );
    let report = dir.join("report.json");
    let producer = spawn_producer(
        sensor_producer(&topic, 60_000, 21, START, "10ms", &report).args(["--rate", "3000"]),
    );
    let mut stream = Member::start_with(
        services
            .sluice()
            .args(["stream", "--pipeline"])
            .arg(&pipeline),
        dir.join("stream.log"),
    );
    stream.wait_for_log("Committed", 2, Duration::from_secs(60));

    services.stop("s3");
    stream.wait_for_log("Commit failed; retrying", 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(10));
    services.start("s3");

    finish_producer(producer, &report);
    let sluice = || services.sluice();
    wait_until_clean(&sluice, &pipeline, &report, Duration::from_secs(120));
    stream.stop(Duration::from_secs(30));
    let landed = Landed {
        pipeline: &pipeline,
        report: &report,
        uri: &uri,
        dir: &services.s3_root().join(&prefix).join("sensor_events"),
    };
    landed.assert_exactly_once(&|command| services.point_at(command), "store outage");
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
