//! `sluice broker`, the embedded tansu on its own, as `scripts/services.sh` runs it for the rest
//! of the suite: a port already taken is refused by name with the flag that moves it, and a
//! broker on SQLite stops cleanly on SIGTERM and keeps its topics across a restart.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::members::Member;

#[test]
fn a_taken_port_is_refused_with_the_port_and_the_flag_that_moves_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let stderr = run_err(
        sluice().args(["broker", "--listen", &address]),
        Duration::from_secs(30),
    );
    assert!(
        stderr.contains(&address) && stderr.contains("--listen"),
        "the error names neither the port nor --listen:\n{stderr}"
    );
}

#[test]
fn a_broker_on_sqlite_stops_on_sigterm_and_keeps_its_topics() {
    let dir = test_dir("broker");
    let address = format!("127.0.0.1:{}", free_port());
    let topic = unique("kept");
    let topics = |args: &[&str]| {
        run_ok(
            sluice()
                .env("SLUICE_BROKERS", &address)
                .arg("topics")
                .args(args),
            Duration::from_secs(60),
        )
    };

    let broker = start_broker(&dir, &address, "first.log");
    let second = format!("{topic}_dlq");
    let created = topics(&["create", &topic, &second, "--partitions", "2"]);
    assert_eq!(created.lines().count(), 2, "{created}");
    broker.stop(Duration::from_secs(15));
    assert!(
        dir.join("kafka.db").exists(),
        "no SQLite log in the working directory"
    );

    let broker = start_broker(&dir, &address, "second.log");
    let listed = topics(&["list"]);
    for kept in [&topic, &second] {
        assert!(
            listed.lines().any(|line| line == kept),
            "{kept} is gone after a restart:\n{listed}"
        );
    }
    broker.stop(Duration::from_secs(15));
}

/// `sluice broker` on `address` with its log at `dir`/kafka.db, once it accepts connections.
fn start_broker(dir: &Path, address: &str, log: &str) -> Member {
    let mut broker = Member::start_with(
        sluice().current_dir(dir).args([
            "broker",
            "--listen",
            address,
            "--storage",
            "sqlite://kafka.db",
        ]),
        dir.join(log),
    );
    let started = Instant::now();
    while TcpStream::connect(address).is_err() {
        if let Some(status) = broker.child.try_wait().unwrap() {
            panic!("sluice broker exited ({status}):\n{}", broker.logged());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sluice broker not accepting connections on {address} after 30 s:\n{}",
            broker.logged()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}
