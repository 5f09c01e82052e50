//! Kafka over TLS: a private tansu reached only through stunnel4 (tansu has no TLS listener),
//! with a certificate signed by a test CA. Every command that talks to Kafka goes through
//! `[kafka.security]`; a wrong CA or plaintext to the TLS port fails fast and says why.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::private::PrivateServices;

const EVENTS: u64 = 3_000;

/// `sluice` against the TLS port, with the shared broker's address out of its environment.
fn over_tls(services: &PrivateServices) -> Command {
    let mut command = sluice();
    command.env("SLUICE_BROKERS", services.tls_brokers());
    command
}

/// A file whose `[kafka]` section reaches the cluster with `security`.
fn kafka_file(dir: &Path, name: &str, security: &str) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, format!("[kafka]\n[kafka.security]\n{security}\n")).unwrap();
    file
}

#[test]
fn every_command_works_over_tls_and_the_lake_holds_exactly_what_was_produced() {
    let dir = tempfile::tempdir().unwrap();
    let services = PrivateServices::behind_tls(dir.path());
    services.start("kafka");
    services.start("tls");
    let tls = format!(
        "protocol = \"SSL\"\nca_file = \"{}\"",
        services.tls_ca().display()
    );
    let kafka = kafka_file(dir.path(), "kafka.toml", &tls);
    let topic = unique("tls");

    run_ok(
        over_tls(&services)
            .args([
                "topics",
                "create",
                &topic,
                "--partitions",
                "2",
                "--kafka-config",
            ])
            .arg(&kafka),
        Duration::from_secs(60),
    );
    let report = dir.path().join("report.json");
    let mut producer = sensor_producer(&topic, EVENTS, 3, "2026-11-22T08:30:00Z", "10ms", &report);
    producer
        .env("SLUICE_BROKERS", services.tls_brokers())
        .arg("--kafka-config")
        .arg(&kafka);
    run_ok(&mut producer, Duration::from_secs(300));

    let lake = dir.path().join("lake/sensor_events");
    let pipeline = write_pipeline(
        dir.path(),
        &topic,
        &unique("group"),
        lake.to_str().unwrap(),
        "{}",
    );
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, format!("{text}\n[kafka.security]\n{tls}\n")).unwrap();
    run_ok(
        over_tls(&services)
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );
    run_ok(
        over_tls(&services)
            .args(["verify", "--min-age", "0s", "--report"])
            .arg(&report)
            .arg("--pipeline")
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    let count = query(
        &pipeline,
        "select count(*) as n, count(distinct _offset) as d from sensor_events",
    );
    assert_eq!(count[0]["n"], EVENTS, "{count:?}");

    // A CA that did not sign the broker's certificate: refused, fast, saying why.
    let other_ca = dir.path().join("other-ca.pem");
    run_ok(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=not-the-ca", "-keyout"])
            .arg(dir.path().join("other-ca.key"))
            .arg("-out")
            .arg(&other_ca),
        Duration::from_secs(30),
    );
    let wrong_ca = kafka_file(
        dir.path(),
        "wrong-ca.toml",
        &format!("protocol = \"SSL\"\nca_file = \"{}\"", other_ca.display()),
    );
    let started = Instant::now();
    let stderr = run_err(
        over_tls(&services)
            .args(["topics", "list", "--kafka-config"])
            .arg(&wrong_ca),
        Duration::from_secs(60),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains(&services.tls_brokers()), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // Plaintext to the TLS port.
    let started = Instant::now();
    let stderr = run_err(
        over_tls(&services).args(["topics", "list"]),
        Duration::from_secs(60),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(stderr.contains(&services.tls_brokers()), "{stderr}");
}

#[test]
fn a_security_file_that_cannot_serve_is_refused_by_field_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let cert_as_key = dir.path().join("cert.pem");
    std::fs::write(
        &cert_as_key,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cases = [
        (
            "protocol = \"SSL\"\nca_file = \"/nonexistent/ca.pem\"".to_string(),
            "kafka.security.ca_file: /nonexistent/ca.pem: cannot read it",
        ),
        (
            format!(
                "protocol = \"SSL\"\ncert_file = \"{0}\"\nkey_file = \"{0}\"",
                cert_as_key.display()
            ),
            "kafka.security.key_file",
        ),
        (
            "protocol = \"SASL_SSL\"\nsasl_mechanism = \"GSSAPI\"\nusername = \"u\"\npassword = \"p\"".to_string(),
            "GSSAPI (Kerberos) is not built into sluice",
        ),
        (
            "protocol = \"SASL_PLAINTEXT\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nusername = \"u\"\npassword = \"${TEST_UNSET_KAFKA_PASSWORD}\"".to_string(),
            "kafka.security.password: environment variable TEST_UNSET_KAFKA_PASSWORD is not set",
        ),
        (
            "protocol = \"TLS\"".to_string(),
            "kafka.security.protocol: unknown protocol \"TLS\"",
        ),
    ];
    for (index, (security, expected)) in cases.iter().enumerate() {
        let file = kafka_file(dir.path(), &format!("case{index}.toml"), security);
        let started = Instant::now();
        let stderr = run_err(
            sluice()
                .args(["topics", "list", "--kafka-config"])
                .arg(&file)
                .env_remove("TEST_UNSET_KAFKA_PASSWORD")
                .env("SLUICE_BROKERS", "127.0.0.1:1"),
            Duration::from_secs(30),
        );
        assert!(stderr.contains(expected), "case {index}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "case {index} connected first"
        );
    }
}
