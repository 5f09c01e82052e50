//! Plain Parquet, CSV (gzip) and JSON Lines tables on s3s-fs, landed exactly once through
//! kill -9 at random moments: an independent reader (pyarrow, Python's `csv` and `json`) finds
//! every produced (partition, offset) exactly once in the objects a Hive-style reader sees, the
//! store's log shows no object written twice, and `sluice verify` and `sluice query` agree,
//! before and after `sluice compact`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const EVENTS: u64 = 200_000;
const KILLS: usize = 10;
/// Kills come within 2 s of each start: the topic must outlast all ten kills (on a fresh CI
/// machine a run left up to 4 s landed the rest of it before the eighth).
const KILL_AFTER_MS: std::ops::Range<u64> = 200..2_000;
/// (table, format line of the pipeline file, format for check_files.py).
const TABLES: [(&str, &str, &str); 3] = [
    ("readings_parquet", r#"format = "parquet""#, "parquet"),
    (
        "readings_csv",
        r#"format = "csv"
compression = "gzip""#,
        "csv",
    ),
    ("readings_jsonl", r#"format = "jsonl""#, "jsonl"),
];

#[test]
fn kill_minus_nine_at_random_moments_lands_every_offset_once_in_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("plain");
    create_topic(&topic, 4);
    let report = dir.path().join("report.json");
    let produced = produce_sensor(&topic, EVENTS, 11, "2026-11-22T00:00:00Z", "50ms", &report);
    let prefix = format!("{}/{}", s3_bucket(), unique("plain"));
    let pipeline = |run: usize| {
        let dir = dir.path().join(format!("run{run}"));
        write_plain_pipeline(&dir, &topic, &unique("group"), &prefix)
    };
    let seed = kill_at_random_moments(KILLS, KILL_AFTER_MS, &dir.path().join("logs"), |run| {
        stream_until_caught_up_command(&pipeline(run))
    });
    let last = pipeline(KILLS + 1);
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&last),
        Duration::from_secs(600),
    );
    let context = format!("seed {seed}");

    let verified = verify_clean(&last, &report, &context);
    for (table, _, kind) in TABLES {
        let uri = format!("s3://{prefix}/{table}");
        let read = python_check_files(&uri, kind);
        assert_reader_matches_report(&read, &produced, &format!("{context}, {table}"));
        assert_eq!(
            read["partition_dirs_match"], true,
            "{context}, {table}: {read}"
        );
        assert_eq!(read["header_ok"], true, "{context}, {table}: {read}");
        let files = (verified["tables"].as_array().unwrap().iter())
            .find(|t| t["table"] == table)
            .map(|t| t["files"].clone());
        assert_eq!(Some(read["files"].clone()), files, "{context}: {verified}");
    }

    let counted = query(
        &last,
        "select count(*) as n, count(distinct _partition * 1000000 + _offset) as d, \
         count(distinct hour) as hours from readings_csv",
    );
    assert_eq!(counted[0]["n"], EVENTS, "{context}: {counted:?}");
    assert_eq!(counted[0]["d"], EVENTS, "{context}: {counted:?}");
    assert!(counted[0]["hours"].as_i64().unwrap() > 1, "{counted:?}");

    // Compaction rewrites the small objects of every table through its log: the same rows,
    // fewer objects, verify still clean.
    let compacted: Value = serde_json::from_str(&run_ok(
        sluice()
            .args(["compact", "--json", "--min-age", "0s", "--pipeline"])
            .arg(&last),
        Duration::from_secs(300),
    ))
    .unwrap();
    verify_clean(&last, &report, &format!("{context}, after compaction"));
    for (table, _, kind) in TABLES {
        let done = &compacted[table];
        let (removed, added) = (
            done["files_removed"].as_u64().unwrap(),
            done["files_added"].as_u64().unwrap(),
        );
        assert!(removed > added && added >= 1, "{context}, {table}: {done}");
        let read = python_check_files(&format!("s3://{prefix}/{table}"), kind);
        assert_reader_matches_report(&read, &produced, &format!("{context}, {table} compacted"));
        assert_eq!(
            read["partition_dirs_match"], true,
            "{context}, {table}: {read}"
        );
        assert_eq!(read["header_ok"], true, "{context}, {table}: {read}");
    }

    let written = writes_under(&prefix);
    let staged = written
        .keys()
        .filter(|p| p.contains("/_sluice/staging/"))
        .count();
    eprintln!(
        "{context}: {} objects written, {staged} of them staged copies, e.g. {:?}",
        written.len(),
        written.keys().find(|p| p.contains("/date="))
    );
    let twice: Vec<_> = written.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{context}: objects written more than once: {twice:?}"
    );
    assert!(
        written.keys().any(|path| path.contains("/date=")),
        "the store's log shows no data object of this test: {written:?}"
    );
}

/// A pipeline writing the sensor stream to the three plain tables under `s3://{prefix}/`,
/// committing small and often so that kills land between staging, the log entry and
/// publishing.
fn write_plain_pipeline(dir: &Path, topic: &str, group: &str, prefix: &str) -> std::path::PathBuf {
    let file = write_pipeline(
        dir,
        topic,
        group,
        &format!("s3://{prefix}/unused"),
        r#"{ max_rows = 15000, max_latency = "1s" }"#,
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let base = text.split("[[tables]]").next().unwrap().to_string();
    let tables: String = TABLES
        .iter()
        .map(|(name, format, _)| {
            format!(
                r#"
[[tables]]
name = "{name}"
from = "sensor_events"
uri = "s3://{prefix}/{name}"
{format}
flush = {{ max_rows = 15000, max_latency = "1s" }}
"#
            )
        })
        .collect();
    std::fs::write(&file, base + tables.as_str()).unwrap();
    file
}

/// Reads a plain-files table with scripts/check_files.py.
fn python_check_files(uri: &str, kind: &str) -> Value {
    let python = std::env::var("SLUICE_TEST_PYTHON")
        .expect("SLUICE_TEST_PYTHON is not set: run scripts/test.sh");
    let out = run_ok(
        std::process::Command::new(python)
            .arg(repo_file("scripts/check_files.py"))
            .args([uri, kind]),
        Duration::from_secs(300),
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("check_files.py printed no JSON ({err}): {out}"))
}

/// How many times s3s-fs wrote each object under `prefix` (bucket/path), from its log of
/// writes (scripts/test.sh runs it with `s3s_fs=debug`, which logs every object it writes).
fn writes_under(prefix: &str) -> HashMap<String, usize> {
    let run =
        std::env::var("SLUICE_RUN_DIR").expect("SLUICE_RUN_DIR is not set: run scripts/test.sh");
    let log = std::fs::read_to_string(Path::new(&run).join("s3.log")).unwrap();
    let mut written = HashMap::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if !line.contains("write file") {
            continue;
        }
        let Some(at) = line.find(prefix) else {
            continue;
        };
        let path: String = line[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ',')
            .collect();
        *written.entry(path).or_insert(0) += 1;
    }
    written
}
