//! Secrets in a pipeline file: taken from the environment with `${NAME}`, used, and never
//! written to the logs, even at debug level; an unset one stops the run before it connects;
//! a setting exactly-once rests on is refused by name.

use std::path::Path;
use std::time::Duration;

use crate::helpers::*;

const EVENTS: u64 = 2_000;

/// Appends `extra` to the test pipeline file at `pipeline`.
fn append(pipeline: &Path, extra: &str) {
    let text = std::fs::read_to_string(pipeline).unwrap();
    std::fs::write(pipeline, format!("{text}\n{extra}\n")).unwrap();
}

#[test]
fn secrets_from_the_environment_reach_the_store_and_never_the_debug_log() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("secrets");
    create_topic(&topic, 2);
    let report = produce_sensor(
        &topic,
        EVENTS,
        7,
        "2026-11-22T08:30:00Z",
        "10ms",
        &dir.path().join("report.json"),
    );
    assert_eq!(report["records"], EVENTS);
    let uri = format!("s3://{}/{}/sensor_events", s3_bucket(), unique("lake"));
    let pipeline = write_pipeline(dir.path(), &topic, &unique("group"), &uri, "{}");
    append(
        &pipeline,
        r#"[lake.storage_options]
aws_secret_access_key = "${TEST_LAKE_SECRET}"

[kafka.options]
"client.id" = "${TEST_CLIENT_ID:-sluice-secrets-test}"
"ssl.keystore.password" = "${TEST_KAFKA_PASSWORD}""#,
    );
    // The store's secret key comes only from the file (through the variable), not from the
    // AWS_* environment the suite runs in.
    let store_secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("run scripts/test.sh");
    let kafka_password = format!("pw-{}", unique("x"));
    let with_secrets = |command: &mut std::process::Command| {
        command
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("TEST_LAKE_SECRET", &store_secret)
            .env("TEST_KAFKA_PASSWORD", &kafka_password)
            .env("SLUICE_LOG", "debug");
    };

    let mut stream = sluice();
    stream
        .args(["stream", "--until-caught-up", "--pipeline"])
        .arg(&pipeline);
    with_secrets(&mut stream);
    let output = run(&mut stream, Duration::from_secs(300));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stream failed:\n{log}");
    assert!(
        log.lines().count() > 50,
        "a debug run logs more than this:\n{log}"
    );
    for (what, secret) in [("store key", &store_secret), ("password", &kafka_password)] {
        assert!(
            !log.contains(secret.as_str()),
            "the {what} is in the debug log"
        );
    }

    let mut query = sluice();
    query
        .args(["query", "--format", "json", "--pipeline"])
        .arg(&pipeline)
        .arg("select count(*) as n from sensor_events");
    with_secrets(&mut query);
    let out = run_ok(&mut query, Duration::from_secs(120));
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        row["n"], EVENTS,
        "every event landed through the file's key"
    );

    // The key in use is the file's: a wrong one is refused by the store.
    query.env("TEST_LAKE_SECRET", "not-the-key");
    let refused = run(&mut query, Duration::from_secs(120));
    assert!(
        !refused.status.success(),
        "a wrong store key was accepted: the key does not come from the file"
    );
}

#[test]
fn an_unset_variable_or_a_guarded_option_stops_the_run_before_it_connects() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &unique("never"),
        &unique("group"),
        "s3://nowhere/t",
        "{}",
    );
    append(
        &pipeline,
        r#"[lake.storage_options]
aws_secret_access_key = "${TEST_SURELY_UNSET_VARIABLE}"

[kafka.options]
"enable.auto.commit" = "true""#,
    );
    let started = std::time::Instant::now();
    let stderr = run_err(
        sluice()
            .args(["stream", "--pipeline"])
            .arg(&pipeline)
            .env_remove("TEST_SURELY_UNSET_VARIABLE"),
        Duration::from_secs(30),
    );
    assert!(
        stderr.contains(
            "lake.storage_options.aws_secret_access_key: environment variable \
             TEST_SURELY_UNSET_VARIABLE is not set"
        ),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");

    // With the variable set, the guarded option is what stops it.
    let stderr = run_err(
        sluice()
            .args(["stream", "--pipeline"])
            .arg(&pipeline)
            .env("TEST_SURELY_UNSET_VARIABLE", "x"),
        Duration::from_secs(30),
    );
    assert!(
        stderr.contains(
            "kafka.options.\"enable.auto.commit\": sluice sets enable.auto.commit itself"
        ),
        "{stderr}"
    );
}

#[test]
fn check_prints_the_resolved_pipeline_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        &unique("t"),
        &unique("group"),
        "s3://lake/t",
        "{}",
    );
    append(
        &pipeline,
        r#"[lake.storage_options]
aws_secret_access_key = "${TEST_CHECK_SECRET}"
aws_region = "${TEST_CHECK_REGION:-eu-west-1}"

[kafka.security]
protocol = "SASL_PLAINTEXT"
sasl_mechanism = "SCRAM-SHA-512"
username = "alice"
password = "${TEST_CHECK_SECRET}""#,
    );
    let secret = format!("secret-{}", unique("x"));
    let out = run_ok(
        sluice()
            .args(["check", "--pipeline"])
            .arg(&pipeline)
            .env("TEST_CHECK_SECRET", &secret)
            .env_remove("TEST_CHECK_REGION")
            .env("SLUICE_BROKERS", "127.0.0.1:1"),
        Duration::from_secs(30),
    );
    assert!(!out.contains(&secret), "{out}");
    for expected in [
        "brokers = \"127.0.0.1:1\"",
        "protocol = \"SASL_PLAINTEXT\"",
        "username = \"alice\"",
        "password = \"[REDACTED]\"",
        "\"aws_secret_access_key\": \"[REDACTED]\"",
        "\"aws_region\": \"eu-west-1\"",
        "[[tables]] sensor_events (from sensor_events)",
    ] {
        assert!(out.contains(expected), "{expected} not in\n{out}");
    }
}
