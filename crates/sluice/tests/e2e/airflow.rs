//! deploy/airflow's DAGs under real Airflow (2.10, its own venv: scripts/python-env.sh airflow):
//! the file imports without errors, and `airflow dags test sluice_verify` succeeds on a clean
//! lake and fails, with verify's account in its log, when a data file of the lake is taken away.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

const EVENTS: u64 = 600;

/// The first Parquet file under `dir`.
fn a_parquet_file(dir: &Path) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = a_parquet_file(&path) {
                return Some(found);
            }
        } else if path.extension().is_some_and(|e| e == "parquet") {
            return Some(path);
        }
    }
    None
}

#[test]
fn the_verify_dag_passes_a_clean_lake_and_fails_when_a_file_is_gone() {
    let airflow = std::env::var("SLUICE_AIRFLOW").expect("run scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("airflow");
    create_topic(&topic, 2);
    let report = dir.path().join("report.json");
    produce_sensor(&topic, EVENTS, 5, "2026-11-22T08:00:00Z", "1s", &report);
    let lake = dir.path().join("lake/sensor_events");
    let pipeline = write_pipeline(
        dir.path(),
        &topic,
        &unique("group"),
        lake.to_str().unwrap(),
        "{}",
    );
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );

    let home = dir.path().join("airflow");
    let af = |args: &[&str]| {
        let mut command = Command::new(&airflow);
        command
            .args(args)
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", repo_file("deploy/airflow"))
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
            .env("SLUICE_BROKERS", brokers())
            .env("SLUICE_PIPELINE", &pipeline)
            .env("SLUICE_VERIFY_REPORT", &report);
        command
    };
    run_ok(&mut af(&["db", "migrate"]), Duration::from_secs(180));
    let errors = run_ok(
        &mut af(&["dags", "list-import-errors"]),
        Duration::from_secs(120),
    );
    assert!(errors.contains("No data found"), "import errors:\n{errors}");
    let dags = run_ok(&mut af(&["dags", "list"]), Duration::from_secs(120));
    for dag in ["sluice_verify", "sluice_compact", "sluice_backfill"] {
        assert!(dags.contains(dag), "{dag} not in:\n{dags}");
    }

    // `airflow dags test` of the verify DAG for `date`: whether it passed, and its log.
    let verify_run = |date: &str| {
        let done = run(
            &mut af(&["dags", "test", "sluice_verify", date]),
            Duration::from_secs(180),
        );
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
        (done.status.success(), said)
    };
    let (passed, said) = verify_run("2026-12-01");
    assert!(passed, "the verify DAG failed on a clean lake:\n{said}");
    assert!(said.contains("verify: clean"), "{said}");

    // A planted gap: a data file of the table is gone; the run fails and its log says which.
    let gone = a_parquet_file(&lake).expect("the lake has data files");
    std::fs::remove_file(&gone).unwrap();
    let (passed, said) = verify_run("2026-12-02");
    assert!(
        !passed,
        "the verify DAG passed a lake with a file gone:\n{said}"
    );
    let name = gone.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        said.contains(&name),
        "the failure does not name {name}:\n{said}"
    );
    assert!(said.contains("Task failed"), "{said}");
}
