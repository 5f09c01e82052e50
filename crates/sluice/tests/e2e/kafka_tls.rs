//! Kafka over TLS: a private tansu reached only through stunnel4 (tansu has no TLS listener),
//! with a certificate signed by a test CA. Every command that talks to Kafka goes through
//! `[kafka.security]`; a wrong CA or plaintext to the TLS port fails fast and says why.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::gateway::{Gateway, SHOP_KEY, event, gateway_pipeline, key_entry, ndjson};
use crate::helpers::*;
use crate::private::PrivateServices;

const EVENTS: u64 = 3_000;

/// `sluice` against the TLS port, with the shared broker's address out of its environment.
fn over_tls(services: &PrivateServices) -> Command {
    let mut command = sluice();
    command.env("SLUICE_BROKERS", services.tls_brokers());
    command
}

/// Runs `command`, which must fail within 10 s naming the TLS port's broker; returns stderr.
fn refused_fast(services: &PrivateServices, command: &mut Command) -> String {
    let started = Instant::now();
    let stderr = run_err(command, Duration::from_secs(60));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}: {stderr}");
    assert!(stderr.contains(&services.tls_brokers()), "{stderr}");
    stderr
}

/// The environment variable the SCRAM tests' password comes from.
const PASSWORD_VARIABLE: &str = "TEST_SCRAM_PASSWORD";

/// A file whose `[kafka]` section reaches the cluster with `security`.
fn kafka_file(dir: &Path, name: &str, security: &str) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, format!("[kafka]\n[kafka.security]\n{security}\n")).unwrap();
    file
}

/// Creates a topic, produces to it, streams it into a local lake, verifies the lake against
/// the producer report and counts its rows, every command reaching the broker through its TLS
/// port with `security` (a `[kafka.security]` body) and `password` in [`PASSWORD_VARIABLE`];
/// returns the topic.
fn round_trip(services: &PrivateServices, dir: &Path, security: &str, password: &str) -> String {
    let kafka = kafka_file(dir, "kafka.toml", security);
    let topic = unique("secure");
    let sluice = || {
        let mut command = over_tls(services);
        command.env(PASSWORD_VARIABLE, password);
        command
    };
    run_ok(
        sluice()
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
    let report = dir.join("report.json");
    let mut producer = sensor_producer(&topic, EVENTS, 3, "2026-11-22T08:30:00Z", "10ms", &report);
    producer
        .env("SLUICE_BROKERS", services.tls_brokers())
        .env(PASSWORD_VARIABLE, password)
        .arg("--kafka-config")
        .arg(&kafka);
    run_ok(&mut producer, Duration::from_secs(300));

    let lake = dir.join("lake/sensor_events");
    let pipeline = write_pipeline(dir, &topic, &unique("group"), lake.to_str().unwrap(), "{}");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, format!("{text}\n[kafka.security]\n{security}\n")).unwrap();
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );
    run_ok(
        sluice()
            .args(["verify", "--min-age", "0s", "--report"])
            .arg(&report)
            .arg("--pipeline")
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    let out = run_ok(
        sluice()
            .args(["query", "--format", "json", "--pipeline"])
            .arg(&pipeline)
            .arg("select count(*) as n from sensor_events"),
        Duration::from_secs(120),
    );
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["n"], EVENTS, "{out}");
    topic
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
    round_trip(&services, dir.path(), &tls, "");

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
    let stderr = refused_fast(
        &services,
        over_tls(&services)
            .args(["topics", "list", "--kafka-config"])
            .arg(&wrong_ca),
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");

    // Plaintext to the TLS port.
    refused_fast(&services, over_tls(&services).args(["topics", "list"]));
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

#[test]
fn every_command_works_over_sasl_ssl_with_scram_and_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let password = format!("pw-{}", unique("scram"));
    let services = PrivateServices::behind_tls(dir.path())
        .with_sasl_users(&format!("alice:{password},bob:other-{password}"));
    services.start("kafka");
    services.start("tls");
    let sasl = |user: &str| {
        format!(
            "protocol = \"SASL_SSL\"\nca_file = \"{}\"\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
             username = \"{user}\"\npassword = \"${{{PASSWORD_VARIABLE}}}\"",
            services.tls_ca().display()
        )
    };
    let topic = round_trip(&services, dir.path(), &sasl("alice"), &password);

    // The gateway's producer goes through the same settings: a 200 is Kafka's acknowledgement
    // (a record it could not deliver would be spooled and answered 202).
    let gateway_dir = dir.path().join("gateway");
    std::fs::create_dir_all(&gateway_dir).unwrap();
    let pipeline = gateway_pipeline(
        &gateway_dir,
        &topic,
        &format!(
            "[gateway]\nspool = {{ dir = \"{}\" }}\nproduce_timeout = \"20s\"\n{}",
            gateway_dir.join("spool").display(),
            key_entry("shop", SHOP_KEY, r#"["*"]"#)
        ),
    );
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let security = sasl("alice");
    std::fs::write(&pipeline, format!("{text}\n[kafka.security]\n{security}\n")).unwrap();
    let gateway = Gateway::start(
        over_tls(&services)
            .env(PASSWORD_VARIABLE, &password)
            .args(["gateway", "--pipeline"])
            .arg(&pipeline),
        free_port(),
        gateway_dir.join("gateway.log"),
    );
    let answer = gateway
        .post(&reqwest::blocking::Client::new(), "sensor_events")
        .bearer_auth(SHOP_KEY)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(&[event("scram-1"), event("scram-2")]))
        .send()
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text());
    gateway.member.stop(Duration::from_secs(30));

    for (user, given, why) in [
        ("alice", "wrong", "a wrong password"),
        ("mallory", password.as_str(), "an unknown user"),
    ] {
        let file = kafka_file(dir.path(), &format!("{user}.toml"), &sasl(user));
        let stderr = refused_fast(
            &services,
            over_tls(&services)
                .args(["topics", "list", "--kafka-config"])
                .arg(&file)
                .env(PASSWORD_VARIABLE, given),
        );
        assert!(stderr.contains("refused authentication"), "{why}: {stderr}");
        assert!(
            !stderr.contains(&password),
            "{why}: the password is in the error"
        );
    }
}

/// AWS MSK IAM up to what can be had here: tansu takes no OAUTHBEARER, so no cluster accepts
/// the token. What is shown: the token is made from the AWS credential chain when the client
/// starts and offered over SASL_SSL (the broker's refusal ends the run, fast, naming it); no
/// credentials is refused with that reason; creating a topic says it is not built.
#[test]
fn aws_msk_iam_makes_a_token_from_the_credential_chain_and_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    let services = PrivateServices::behind_tls(dir.path()).with_sasl_users("alice:secret-pw");
    services.start("kafka");
    services.start("tls");
    let file = kafka_file(
        dir.path(),
        "iam.toml",
        &format!(
            "protocol = \"SASL_SSL\"\nca_file = \"{}\"\nsasl_mechanism = \"AWS_MSK_IAM\"\n\
             aws_region = \"eu-west-1\"",
            services.tls_ca().display()
        ),
    );
    let secret = format!("iam-secret-{}", unique("x"));
    let iam = |command: &mut Command, credentials: bool| {
        command
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.path().join("no-credentials"),
            )
            .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SLUICE_LOG", "warn,sluice_kafka=debug")
            .arg("--kafka-config")
            .arg(&file);
        if credentials {
            command
                .env("AWS_ACCESS_KEY_ID", "AKIDSLUICEE2E")
                .env("AWS_SECRET_ACCESS_KEY", &secret);
        }
    };

    let mut list = over_tls(&services);
    list.args(["topics", "list"]);
    iam(&mut list, true);
    let stderr = refused_fast(&services, &mut list);
    assert!(stderr.contains("AWS MSK IAM token made"), "{stderr}");
    assert!(
        stderr.contains("refused authentication") && stderr.contains("SASL"),
        "the broker's refusal: {stderr}"
    );
    assert!(!stderr.contains(&secret), "the secret key is in the output");

    let mut list = over_tls(&services);
    list.args(["topics", "list"]);
    iam(&mut list, false);
    let stderr = refused_fast(&services, &mut list);
    assert!(
        stderr.contains("cannot make an AWS MSK IAM token for eu-west-1"),
        "{stderr}"
    );

    let mut create = over_tls(&services);
    create.args(["topics", "create", "never"]);
    iam(&mut create, true);
    let stderr = run_err(&mut create, Duration::from_secs(30));
    assert!(
        stderr.contains("creating topic never is not built over AWS MSK IAM"),
        "{stderr}"
    );
}
