//! An Iceberg table on s3s-fs through the SQL catalog (a SQLite file), landed exactly once
//! through kill -9 at random moments and compacted while the last stream runs: pyiceberg,
//! through the same catalog, reads every produced (partition, offset) exactly once, every
//! snapshot is an append but the compaction's replace, the summary offsets move forward, no
//! data file is live twice, every file sits in the hour partition of its rows, and `sluice
//! verify` and `sluice query` agree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const EVENTS: u64 = 300_000;
const PARTITIONS: u32 = 8;
const KILLS: usize = 10;
/// Kills come within 2 s of each start: a run left 4 s can land a quarter of the events, and
/// the topic must outlast all ten kills.
const KILL_AFTER_MS: std::ops::Range<u64> = 200..2_000;
pub(crate) const TABLE: &str = "sensor_iceberg";
pub(crate) const CATALOG: &str = "lake";

#[test]
fn kill_minus_nine_at_random_moments_lands_every_offset_once_in_iceberg() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("iceberg");
    create_topic(&topic, PARTITIONS);
    let report = dir.path().join("report.json");
    let produced = produce_sensor(&topic, EVENTS, 23, "2026-11-22T00:00:00Z", "50ms", &report);
    let prefix = format!("{}/{}", s3_bucket(), unique("iceberg"));
    let catalog_db = dir.path().join("catalog.db");
    let group = unique("group");
    let pipeline = |run: usize| {
        let dir = dir.path().join(format!("run{run}"));
        write_iceberg_pipeline(
            &dir,
            &topic,
            &group,
            &prefix,
            &sql_catalog(&catalog_db, &prefix),
        )
    };
    let seed = kill_at_random_moments(KILLS, KILL_AFTER_MS, &dir.path().join("logs"), |run| {
        stream_until_caught_up_command(&pipeline(run))
    });
    let last = pipeline(KILLS + 1);
    let context = format!("seed {seed}");
    // The last stream lands the rest in small commits and keeps running while they are
    // compacted.
    let mut stream = sluice()
        .args(["stream", "--pipeline"])
        .arg(&last)
        .stderr(std::fs::File::create(dir.path().join("logs/last.log")).unwrap())
        .spawn()
        .unwrap();
    let count = format!("select count(*) as n from {TABLE}");
    let started = std::time::Instant::now();
    while query(&last, &count)[0]["n"] != EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{context}: the last stream did not land every event within 10 minutes"
        );
        assert!(
            stream.try_wait().unwrap().is_none(),
            "{context}: the last stream ended"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let compacted: Value = serde_json::from_str(&run_ok(
        sluice()
            .args(["compact", "--json", "--pipeline"])
            .arg(&last),
        Duration::from_secs(300),
    ))
    .unwrap();
    assert!(
        stream.try_wait().unwrap().is_none(),
        "{context}: the last stream ended"
    );
    stream.kill().unwrap();
    stream.wait().unwrap();
    let done = &compacted[TABLE];
    let (removed, added) = (
        done["files_removed"].as_u64().unwrap(),
        done["files_added"].as_u64().unwrap(),
    );
    assert!(removed > added && added >= 1, "{context}: {compacted}");
    eprintln!("{context}: compaction during the stream: {done}");

    let verified = verify_clean(&last, &report, &context);
    let read = pyiceberg_check(&catalog_db, &prefix, |_| {});
    assert_reader_matches_report(&read, &produced, &context);
    assert_eq!(read["offsets_move_forward"], true, "{context}: {read}");
    assert_eq!(
        read["paths_live_twice"],
        serde_json::json!([]),
        "{context}: {read}"
    );
    assert_eq!(read["partition_values_match"], true, "{context}: {read}");
    let operations = read["operations"].as_array().unwrap();
    let replaces = operations.iter().filter(|op| *op == "replace").count();
    let appends = operations.iter().filter(|op| *op == "append").count();
    assert_eq!(replaces, 1, "{context}: {read}");
    assert_eq!(appends + replaces, operations.len(), "{context}: {read}");
    assert_eq!(
        read["snapshots_with_progress"].as_u64(),
        Some(operations.len() as u64),
        "{context}: {read}"
    );
    let files = verified["tables"][0]["files"].clone();
    assert_eq!(read["files"], files, "{context}: {verified}");

    let counted = query(
        &last,
        &format!(
            "select count(*) as n, count(distinct _partition * 1000000 + _offset) as d, \
             count(distinct hour) as hours from {TABLE}"
        ),
    );
    assert_eq!(counted[0]["n"], EVENTS, "{context}: {counted:?}");
    assert_eq!(counted[0]["d"], EVENTS, "{context}: {counted:?}");
    assert!(counted[0]["hours"].as_i64().unwrap() > 1, "{counted:?}");

    // Data files of commits the kills cut short are found and removed; nothing committed is.
    let repaired: Value = serde_json::from_str(&run_ok(
        sluice()
            .args([
                "verify",
                "--json",
                "--repair",
                "--min-age",
                "0s",
                "--pipeline",
            ])
            .arg(&last),
        Duration::from_secs(300),
    ))
    .unwrap();
    eprintln!(
        "{context}: verify --repair removed {} uncommitted data file(s)",
        repaired["tables"][0]["uncommitted_files"]
            .as_array()
            .unwrap()
            .len()
    );
    let after = verify_clean(&last, &report, &format!("{context}, after --repair"));
    assert_eq!(
        after["tables"][0]["uncommitted_files"],
        serde_json::json!([]),
        "{context}: {after}"
    );
    let reread = pyiceberg_check(&catalog_db, &prefix, |_| {});
    assert_reader_matches_report(&reread, &produced, &format!("{context}, after --repair"));
}

/// The `[catalogs.lake]` section of the SQL catalog in the SQLite file `catalog_db`.
pub(crate) fn sql_catalog(catalog_db: &Path, prefix: &str) -> String {
    format!(
        "\n[catalogs.{CATALOG}]\ntype = \"sql\"\nuri = \"sqlite:///{}\"\nwarehouse = \"s3://{prefix}/warehouse\"\n",
        catalog_db.display()
    )
}

/// A pipeline writing the sensor stream to one Iceberg table `sensor_iceberg` under
/// `s3://{prefix}/`, registered in the catalog of `catalog_section` (named `lake`), committing
/// small and often so that kills land between data files, metadata and the catalog's row.
pub(crate) fn write_iceberg_pipeline(
    dir: &Path,
    topic: &str,
    group: &str,
    prefix: &str,
    catalog_section: &str,
) -> PathBuf {
    let file = write_pipeline(
        dir,
        topic,
        group,
        &format!("s3://{prefix}/{TABLE}"),
        r#"{ max_rows = 15000, max_latency = "1s" }"#,
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            "name = \"sensor_events\"\nfrom",
            &format!("name = \"{TABLE}\"\nfrom"),
        )
        .replace(
            "\nflush = ",
            &format!("\nformat = \"iceberg\"\ncatalog = \"{CATALOG}\"\nflush = "),
        );
    assert!(text.contains("format = \"iceberg\""), "{text}");
    std::fs::write(&file, text + catalog_section).unwrap();
    file
}

/// Reads the table with pyiceberg through the same catalog (scripts/check_iceberg.py): the
/// SQLite file or the REST catalog's URL `catalog`, with `setup` adding to the command.
pub(crate) fn pyiceberg_check(
    catalog: impl AsRef<std::ffi::OsStr>,
    prefix: &str,
    setup: impl FnOnce(&mut std::process::Command),
) -> Value {
    let python = std::env::var("SLUICE_TEST_PYTHON")
        .expect("SLUICE_TEST_PYTHON is not set: run scripts/test.sh");
    let mut command = std::process::Command::new(python);
    setup(&mut command);
    let out = run_ok(
        command
            .arg(repo_file("scripts/check_iceberg.py"))
            .arg(catalog)
            .args([
                CATALOG,
                &format!("s3://{prefix}/warehouse"),
                &format!("sluice.{TABLE}"),
            ]),
        Duration::from_secs(600),
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("check_iceberg.py printed no JSON ({err}): {out}"))
}
