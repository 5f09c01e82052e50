//! The object store reached with credentials from the AWS credential chain rather than static
//! keys: a shared credentials file chosen by `AWS_PROFILE`, for `stream` (writing) and for
//! `query`/`tables --lake s3://…` (reading, tables found by listing the prefix).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

const EVENTS: u64 = 1_500;

/// `command` with no AWS keys in its environment, and the profile `profile` of the
/// credentials file `credentials` instead (no config file, no instance metadata to probe).
fn with_profile<'a>(
    command: &'a mut Command,
    credentials: &Path,
    profile: &str,
) -> &'a mut Command {
    command
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_CONFIG_FILE", credentials.with_file_name("no-config"))
        .env("AWS_PROFILE", profile)
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

#[test]
fn a_profile_from_the_shared_credentials_file_writes_and_queries_an_s3_lake() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("s3_profile");
    create_topic(&topic, 2);
    let report = produce_sensor(
        &topic,
        EVENTS,
        11,
        "2026-11-22T08:30:00Z",
        "10ms",
        &dir.path().join("report.json"),
    );
    assert_eq!(report["records"], EVENTS);
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("run scripts/test.sh");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("run scripts/test.sh");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = not-this-one\naws_secret_access_key = nor-this\n\n\
             [lake-writer]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n\
             [wrong-secret]\naws_access_key_id = {key}\naws_secret_access_key = not-the-secret\n"
        ),
    )
    .unwrap();
    let lake = format!("s3://{}/{}", s3_bucket(), unique("lake"));
    let pipeline = write_pipeline(
        dir.path(),
        &topic,
        &unique("group"),
        &format!("{lake}/sensor_events"),
        "{}",
    );

    run_ok(
        with_profile(
            sluice()
                .args(["stream", "--until-caught-up", "--pipeline"])
                .arg(&pipeline),
            &credentials,
            "lake-writer",
        ),
        Duration::from_secs(300),
    );

    // Read back through the same chain, tables found by listing the prefix.
    let tables = run_ok(
        with_profile(
            sluice().args(["tables", "--lake", &lake]),
            &credentials,
            "lake-writer",
        ),
        Duration::from_secs(120),
    );
    assert!(tables.contains("sensor_events"), "{tables}");
    let counted = run_ok(
        with_profile(
            sluice().args([
                "query",
                "--format",
                "csv",
                "--lake",
                &lake,
                "select count(*) as n, count(distinct _partition) as p from sensor_events",
            ]),
            &credentials,
            "lake-writer",
        ),
        Duration::from_secs(120),
    );
    assert_eq!(counted.lines().nth(1), Some(format!("{EVENTS},2").as_str()));

    // The profile is what is used: the one with a wrong secret is refused by the store, and
    // the error names the lake.
    let refused = run_err(
        with_profile(
            sluice().args(["tables", "--lake", &lake]),
            &credentials,
            "wrong-secret",
        ),
        Duration::from_secs(120),
    );
    assert!(refused.contains(&lake), "{refused}");
}

#[test]
fn an_empty_prefix_or_a_missing_directory_is_named() {
    let lake = format!("s3://{}/{}", s3_bucket(), unique("empty_lake"));
    let err = run_err(
        sluice().args(["query", "--lake", &lake, "select 1"]),
        Duration::from_secs(60),
    );
    assert!(err.contains(&format!("no tables under {lake}")), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let err = run_err(
        sluice().args(["tables", "--lake"]).arg(&missing),
        Duration::from_secs(60),
    );
    assert!(
        err.contains(&format!("no lake at {}", missing.display())),
        "{err}"
    );
}
