//! Several `sluice stream` processes in one consumer group: rebalances (a member joins, one is
//! killed with -9 and restarted) and a zombie (a member stopped past the session timeout while
//! its partitions move on) lose and double nothing, and no partition's committed offset ever
//! moves backwards in the Delta log.
//!
//! tansu 0.6 keeps the old assignment when a member expires (docs/DESIGN.md, "tansu 0.6
//! consumer groups"): the expired member's partitions stay with nobody. So the killed member is
//! a static one (`--instance-id`, as in a Kubernetes StatefulSet) and comes back under its name,
//! which hands it its partitions at once; and the zombie's partitions move to a replacement in
//! a fresh group — the pod a scheduler restarts while the old one is only frozen. tansu also completes a rebalance without waiting for every member to rejoin, so for a
//! moment two members can hold the same partition: the commit-time fence keeps that safe.

use std::time::Duration;

use crate::helpers::*;
use crate::members::Member;

const START: &str = "2026-11-22T00:00:00Z";

#[test]
fn members_joining_and_a_member_killed_and_restarted_lose_and_double_nothing() {
    let dir = test_dir("rebalance");
    let topic = unique("rebalance");
    create_topic(&topic, 8);
    let table = dir.join("lake/sensor_events");
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &table.display().to_string(),
        r#"{ max_rows = 10000, max_latency = "1s" }"#,
    );
    let report = dir.join("report.json");
    // Traffic through every rebalance: 100,000 events over about 25 s.
    let producer = spawn_producer(
        sensor_producer(&topic, 100_000, 11, START, "10ms", &report).args(["--rate", "4000"]),
    );
    let log = |name: &str| dir.join(format!("{name}.log"));
    let join = Duration::from_secs(60);

    // b is a static member, so that its restart takes its partitions back; a and c join
    // dynamically (tansu 0.6 was seen not to assign a static member joining a formed group).
    let static_member = |name: &str, log: std::path::PathBuf| {
        Member::start_with(
            sluice()
                .args(["stream", "--instance-id", name, "--pipeline"])
                .arg(&pipeline),
            log,
        )
    };
    let mut a = Member::start(&pipeline, log("a"));
    let mut b = static_member("b", log("b"));
    a.wait_for_log("Partitions assigned", 1, join);
    b.wait_for_log("Partitions assigned", 1, join);
    a.wait_for_log("Committed", 1, join);

    let mut c = Member::start(&pipeline, log("c"));
    // Not necessarily a commit of its own: under load, the others may have committed its
    // partitions up to the end by the time it holds them.
    c.wait_for_log("Partitions assigned", 1, join);

    b.kill();
    let mut b2 = static_member("b", log("b2"));
    if !b2.logs_within("Partitions assigned", join) {
        // tansu 0.6 sometimes never assigns a static member that restarts at once (seen in 3 of
        // 8 runs on 2026-11-22; the group then rebalances every 12 s without it). The data must
        // still land exactly once: a dynamic member takes its place.
        eprintln!("tansu did not assign the restarted static member b; a dynamic member joins");
        b2.kill();
        b2 = Member::start(&pipeline, log("b3"));
        b2.wait_for_log("Partitions assigned", 1, join);
    }

    finish_producer(producer, &report);
    wait_until_clean(&sluice, &pipeline, &report, Duration::from_secs(120));
    for member in [a, c, b2] {
        member.stop(Duration::from_secs(30));
    }
    let landed = Landed {
        pipeline: &pipeline,
        report: &report,
        uri: &table.display().to_string(),
        dir: &table,
    };
    landed.assert_exactly_once(&|_| {}, "rebalances");
}

#[test]
fn a_frozen_member_whose_partitions_moved_on_cannot_commit_when_it_wakes() {
    let dir = test_dir("zombie");
    let topic = unique("zombie");
    create_topic(&topic, 4);
    let table = dir.join("lake/sensor_events");
    // A long latency limit: the zombie holds several seconds of rows when it is frozen.
    let flush = r#"{ max_rows = 1000000, max_latency = "4s" }"#;
    let uri = table.display().to_string();
    let zombie_pipeline =
        write_pipeline(&dir.join("zombie"), &topic, &unique("group"), &uri, flush);
    let report = dir.join("report.json");
    let producer = spawn_producer(
        sensor_producer(&topic, 60_000, 12, START, "10ms", &report).args(["--rate", "2000"]),
    );
    let log = |name: &str| dir.join(format!("{name}.log"));
    let join = Duration::from_secs(60);

    let mut zombie = Member::start(&zombie_pipeline, log("zombie"));
    zombie.wait_for_log("Committed", 2, join);
    std::thread::sleep(Duration::from_secs(2)); // The zombie buffers rows.

    zombie.signal("STOP");
    std::thread::sleep(Duration::from_secs(12)); // Past the 10 s session timeout.
    // The partitions move on to a replacement (a restarted pod under a fresh group, as the
    // chaos test restarts), which commits past what the zombie holds.
    let replacement_pipeline = write_pipeline(
        &dir.join("replacement"),
        &topic,
        &unique("group"),
        &uri,
        flush,
    );
    let mut replacement = Member::start(&replacement_pipeline, log("replacement"));
    replacement.wait_for_log("Committed", 1, join);
    zombie.signal("CONT");
    zombie.wait_for_log("Another member committed these partitions", 1, join);

    finish_producer(producer, &report);
    wait_until_clean(
        &sluice,
        &replacement_pipeline,
        &report,
        Duration::from_secs(120),
    );
    for member in [zombie, replacement] {
        member.stop(Duration::from_secs(30));
    }
    let landed = Landed {
        pipeline: &replacement_pipeline,
        report: &report,
        uri: &uri,
        dir: &table,
    };
    landed.assert_exactly_once(&|_| {}, "zombie");
}
