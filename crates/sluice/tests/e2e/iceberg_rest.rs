//! An Iceberg table on s3s-fs registered in an Iceberg REST catalog: the stand-in under
//! tests/iceberg_rest (no REST catalog server can be installed here; every request it answers
//! is pyiceberg's own SqlCatalog's), whose OAuth2 tokens expire every few seconds and which
//! goes down for a while mid-run. `sluice stream` exchanges its client credentials again when
//! a token is refused, waits the outage out, resumes after a kill -9 from the offsets the
//! catalog's table holds; pyiceberg, through the same REST catalog with its own client, reads
//! every produced offset exactly once; `sluice verify` is clean; `sluice compact` refuses the
//! table, saying why.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::iceberg::{CATALOG, TABLE, pyiceberg_check, write_iceberg_pipeline};

const EVENTS: u64 = 60_000;
const PARTITIONS: u32 = 4;
/// The OAuth2 client credentials the stand-in accepts; sluice reads them from the environment.
const CREDENTIAL: &str = "sluice-test:rest-secret-0815";
/// Seconds each token the stand-in issues is valid for: several expire within a run.
const TOKEN_TTL: &str = "3";
/// Events per second: the topic fills over two minutes, beyond the outage.
const PRODUCE_RATE: &str = "500";
/// How long the catalog is down.
const OUTAGE: Duration = Duration::from_secs(6);

/// The stand-in REST catalog.
struct RestCatalog(StandIn);

impl RestCatalog {
    /// Starts the stand-in on `port` (0: any) over the SQLite file `db`.
    fn start(port: u16, db: &Path, warehouse: &str, log: &Path) -> Self {
        Self(StandIn::start(
            Command::new(python())
                .arg(repo_file("tests/iceberg_rest/standin.py"))
                .args(["--port", &port.to_string(), "--warehouse", warehouse])
                .args(["--credential", CREDENTIAL, "--token-ttl", TOKEN_TTL])
                .arg("--db")
                .arg(db)
                .stderr(std::fs::File::create(log).unwrap()),
            "the stand-in REST catalog",
        ))
    }

    fn url(&self) -> String {
        self.0.url()
    }

    /// What the stand-in counted: tokens issued, expired tokens refused, commits, conflicts.
    fn stats(&self) -> Value {
        reqwest::blocking::get(format!("{}/stats", self.url()))
            .and_then(|r| r.json())
            .expect("the stand-in's /stats")
    }

    /// Stops it; the port it listened on.
    fn stop(self) -> u16 {
        self.0.port
    }
}

fn python() -> String {
    std::env::var("SLUICE_TEST_PYTHON").expect("SLUICE_TEST_PYTHON is not set: run scripts/test.sh")
}

/// `sluice` with the catalog's client credentials in its environment.
fn sluice_with_credential() -> Command {
    let mut command = sluice();
    command.env("TEST_ICEBERG_CREDENTIAL", CREDENTIAL);
    command
}

/// Waits until the stand-in has taken `commits` commits.
fn wait_for_commits(catalog: &RestCatalog, commits: u64, stream: &mut Child, log: &Path) {
    let started = Instant::now();
    while catalog.stats()["commits"].as_u64().unwrap() < commits {
        assert!(
            stream.try_wait().unwrap().is_none(),
            "the stream ended: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "fewer than {commits} commits within 5 minutes: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_rest_catalog_with_expiring_tokens_and_an_outage_lands_every_offset_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let topic = unique("iceberg-rest");
    create_topic(&topic, PARTITIONS);
    // Produced while the members run, so that commits are still being made when the catalog
    // goes down.
    let report = dir.path().join("report.json");
    let producer = spawn_producer(
        sensor_producer(&topic, EVENTS, 29, "2026-12-04T00:00:00Z", "50ms", &report)
            .args(["--rate", PRODUCE_RATE]),
    );
    let prefix = format!("{}/{}", s3_bucket(), unique("iceberg-rest"));
    let warehouse = format!("s3://{prefix}/warehouse");
    let db = dir.path().join("rest-catalog.db");
    let catalog = RestCatalog::start(0, &db, &warehouse, &logs.join("catalog0.log"));
    let section = format!(
        "\n[catalogs.{CATALOG}]\ntype = \"rest\"\nuri = \"{}\"\nwarehouse = \"{warehouse}\"\n\
         credential = \"${{TEST_ICEBERG_CREDENTIAL}}\"\n",
        catalog.url()
    );
    let group = unique("group");
    let pipeline = write_iceberg_pipeline(&dir.path().join("p"), &topic, &group, &prefix, &section);
    let stream = |log: &str| {
        sluice_with_credential()
            .args(["stream", "--pipeline"])
            .arg(&pipeline)
            .stderr(std::fs::File::create(logs.join(log)).unwrap())
            .spawn()
            .unwrap()
    };

    // A first member lands a few commits and is killed with SIGKILL.
    let mut first = stream("first.log");
    wait_for_commits(&catalog, 3, &mut first, &logs.join("first.log"));
    first.kill().unwrap();
    first.wait().unwrap();

    // A second member resumes from the table's offsets; the catalog goes down under it.
    let second_log = logs.join("second.log");
    let mut second = stream("second.log");
    let landed = catalog.stats()["commits"].as_u64().unwrap();
    wait_for_commits(&catalog, landed + 2, &mut second, &second_log);
    let before_outage = catalog.stats();
    eprintln!("the stand-in before the outage: {before_outage}");
    assert!(
        before_outage["expired_tokens_refused"].as_u64().unwrap() >= 1
            && before_outage["tokens_issued"].as_u64().unwrap() >= 2,
        "no token expired under the streams: {before_outage}"
    );
    let port = catalog.stop();
    std::thread::sleep(OUTAGE);
    assert!(
        second.try_wait().unwrap().is_none(),
        "the stream ended while the catalog was down: {}",
        std::fs::read_to_string(&second_log).unwrap()
    );
    let catalog = RestCatalog::start(port, &db, &warehouse, &logs.join("catalog1.log"));
    let count = format!("select count(*) as n from {TABLE}");
    let started = Instant::now();
    while query_using(&sluice_with_credential, &pipeline, &count)[0]["n"] != EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the stream did not land every event within 5 minutes of the outage: {}",
            std::fs::read_to_string(&second_log).unwrap()
        );
        assert!(
            second.try_wait().unwrap().is_none(),
            "the stream ended: {}",
            std::fs::read_to_string(&second_log).unwrap()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let produced = finish_producer(producer, &report);

    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(
        log.contains("Commit failed; retrying."),
        "the stream said nothing of the outage: {log}"
    );
    assert!(
        log.contains("no longer accepts the token"),
        "no token was refused and fetched again: {log}"
    );
    assert!(
        !log.contains(CREDENTIAL.split(':').nth(1).unwrap()),
        "{log}"
    );
    let stats = catalog.stats();
    eprintln!("the stand-in after the outage: {stats}");
    assert!(stats["commits"].as_u64().unwrap() >= 1, "{stats}");

    let verified = verify_clean_using(&sluice_with_credential, &pipeline, &report, "REST catalog");
    let read = pyiceberg_check(catalog.url(), &prefix, |command| {
        command.env("ICEBERG_REST_CREDENTIAL", CREDENTIAL);
    });
    assert_reader_matches_report(&read, &produced, "REST catalog");
    assert_eq!(read["offsets_move_forward"], true, "{read}");
    assert_eq!(read["paths_live_twice"], serde_json::json!([]), "{read}");
    assert_eq!(read["files"], verified["tables"][0]["files"], "{verified}");

    let refused = run_err(
        sluice_with_credential()
            .args(["compact", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    assert!(
        refused.contains("compaction commits through a SQL or Glue catalog only"),
        "{refused}"
    );
}
