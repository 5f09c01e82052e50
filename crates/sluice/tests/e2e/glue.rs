//! AWS Glue, through moto's server mode (no AWS here: moto stands in, speaking Glue's API;
//! see the README): an Iceberg table whose catalog is Glue, landed by `sluice stream` and read
//! back by pyiceberg's own GlueCatalog; `sluice catalog sync` registers the Delta table and a
//! plain Parquet and a CSV table beside it as Athena reads them (Delta's `table_type`,
//! partition projection on `date`/`hour`), a second sync changes nothing, and a Glue table of
//! the same name that sluice did not register is refused, not overwritten. `sluice compact`
//! replaces the Iceberg table's small files through Glue, and pyiceberg reads the same rows.
//! `sluice stream --catalog-sync-every` registers again a table Glue lost.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const EVENTS: u64 = 20_000;
const PARTITIONS: u32 = 4;

/// moto's server, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(log: &Path) -> Self {
        let port = free_port();
        let child = Command::new(glue_python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start moto's server");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not listen within 60 s: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn glue_python() -> String {
    std::env::var("SLUICE_GLUE_PYTHON")
        .expect("SLUICE_GLUE_PYTHON is not set: run scripts/test.sh (scripts/python-env.sh glue)")
}

/// scripts/check_glue.py with `args`, its JSON.
fn check_glue(args: &[&str]) -> Value {
    let out = run_ok(
        Command::new(glue_python())
            .arg(repo_file("scripts/check_glue.py"))
            .args(args),
        Duration::from_secs(300),
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|err| panic!("check_glue.py printed no JSON ({err}): {out}"))
}

fn sync(pipeline: &Path) -> Value {
    serde_json::from_str(&run_ok(
        sluice()
            .args(["catalog", "sync", "--json", "--pipeline"])
            .arg(pipeline),
        Duration::from_secs(300),
    ))
    .unwrap()
}

/// Each table's outcome in a sync's JSON, by table name.
fn outcomes(synced: &Value) -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = (synced.as_array().unwrap().iter())
        .map(|s| {
            (
                s["table"].as_str().unwrap().to_string(),
                s["outcome"].clone(),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn parameter<'a>(table: &'a Value, key: &str) -> &'a str {
    table["parameters"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {table}"))
}

#[test]
fn catalog_sync_registers_delta_plain_and_iceberg_tables_in_glue_as_athena_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(&dir.path().join("moto.log"));
    let topic = unique("glue");
    create_topic(&topic, PARTITIONS);
    let report = dir.path().join("report.json");
    produce_sensor(&topic, EVENTS, 31, "2026-12-03T22:00:00Z", "1s", &report);
    let prefix = format!("s3://{}/{}", s3_bucket(), unique("glue"));
    let pipeline = write_pipeline(
        &dir.path().join("p"),
        &topic,
        &unique("group"),
        &format!("{prefix}/sensor_delta"),
        r#"{ max_rows = 5000, max_latency = "1s" }"#,
    );
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "name = \"sensor_events\"\nfrom",
        "name = \"sensor_delta\"\nfrom",
    );
    let flush = r#"flush = { max_rows = 5000, max_latency = "1s" }"#;
    let more = format!(
        r#"
[[tables]]
name = "sensor_parquet"
from = "sensor_events"
uri = "{prefix}/sensor_parquet"
format = "parquet"
{flush}

[[tables]]
name = "sensor_csv"
from = "sensor_events"
uri = "{prefix}/sensor_csv"
format = "csv"
compression = "gzip"
partition_by = ["date"]
{flush}

[[tables]]
name = "sensor_iceberg"
from = "sensor_events"
uri = "{prefix}/sensor_iceberg"
format = "iceberg"
catalog = "glue"
{flush}

[catalogs.glue]
type = "glue"
uri = "{}"
region = "us-east-1"
warehouse = "{prefix}/warehouse"
namespace = "lake"
"#,
        moto.url()
    );
    std::fs::write(&pipeline, text + more.as_str()).unwrap();
    run_ok(
        &mut stream_until_caught_up_command(&pipeline),
        Duration::from_secs(600),
    );
    verify_clean(&pipeline, &report, "glue");

    // The Iceberg table is in Glue already, written commit by commit; pyiceberg reads it there.
    let read = check_glue(&["iceberg", &moto.url(), "lake", "sensor_iceberg"]);
    assert_eq!(read["rows"], EVENTS, "{read}");
    assert_eq!(read["distinct_offsets"], EVENTS, "{read}");

    let first = sync(&pipeline);
    let created = serde_json::json!("created");
    assert_eq!(
        outcomes(&first),
        [
            ("lake.sensor_csv".to_string(), created.clone()),
            ("lake.sensor_delta".to_string(), created.clone()),
            (
                "lake.sensor_iceberg".to_string(),
                serde_json::json!("registered_by_stream")
            ),
            ("lake.sensor_parquet".to_string(), created),
        ],
        "{first}"
    );
    let tables = check_glue(&["tables", &moto.url(), "lake"]);
    let delta = &tables["sensor_delta"];
    assert_eq!(parameter(delta, "table_type"), "DELTA", "{delta}");
    assert_eq!(
        delta["location"],
        format!("{prefix}/sensor_delta/"),
        "{delta}"
    );
    assert!(
        delta["columns"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["_offset", "bigint"])),
        "{delta}"
    );

    let parquet = &tables["sensor_parquet"];
    assert_eq!(
        parameter(parquet, "projection.enabled"),
        "true",
        "{parquet}"
    );
    assert_eq!(
        parameter(parquet, "projection.hour.range"),
        "0,23",
        "{parquet}"
    );
    assert_eq!(
        parameter(parquet, "storage.location.template"),
        format!("{prefix}/sensor_parquet/date=${{date}}/hour=${{hour}}"),
        "{parquet}"
    );
    // The first day of the data, from the table's own date= partitions.
    assert_eq!(
        parameter(parquet, "projection.date.range"),
        "2026-12-03,NOW+1DAYS",
        "{parquet}"
    );
    assert_eq!(
        parquet["partition_keys"],
        serde_json::json!([["date", "date"], ["hour", "int"]]),
        "{parquet}"
    );
    let parquet_columns: Vec<&str> = (parquet["columns"].as_array().unwrap().iter())
        .map(|c| c[0].as_str().unwrap())
        .collect();
    assert!(
        parquet_columns.contains(&"device_id") && !parquet_columns.contains(&"date"),
        "{parquet}"
    );
    assert!(
        parquet["serde"]
            .as_str()
            .unwrap()
            .ends_with("ParquetHiveSerDe"),
        "{parquet}"
    );

    let csv = &tables["sensor_csv"];
    assert_eq!(parameter(csv, "skip.header.line.count"), "1", "{csv}");
    assert_eq!(
        csv["partition_keys"],
        serde_json::json!([["date", "date"]]),
        "{csv}"
    );
    assert!(
        csv["serde"].as_str().unwrap().ends_with("OpenCSVSerde"),
        "{csv}"
    );

    let iceberg = &tables["sensor_iceberg"];
    assert_eq!(
        parameter(iceberg, "table_type").to_uppercase(),
        "ICEBERG",
        "{iceberg}"
    );
    assert_eq!(
        parameter(iceberg, "metadata_location"),
        read["metadata_location"],
        "{iceberg}"
    );

    // Compaction of the Iceberg table commits through Glue: a replace snapshot, the same rows.
    let compacted: Value = serde_json::from_str(&run_ok(
        sluice()
            .args([
                "compact",
                "--json",
                "--table",
                "sensor_iceberg",
                "--pipeline",
            ])
            .arg(&pipeline),
        Duration::from_secs(300),
    ))
    .unwrap();
    let done = &compacted["sensor_iceberg"];
    let (removed, added) = (
        done["files_removed"].as_u64().unwrap(),
        done["files_added"].as_u64().unwrap(),
    );
    assert!(removed > added && added >= 1, "{compacted}");
    let reread = check_glue(&["iceberg", &moto.url(), "lake", "sensor_iceberg"]);
    assert_eq!(reread["distinct_offsets"], EVENTS, "{reread}");
    assert_eq!(reread["rows"], EVENTS, "{reread}");
    assert_eq!(
        reread["snapshots"],
        read["snapshots"].as_u64().unwrap() + 1,
        "{reread}"
    );
    assert_ne!(
        reread["metadata_location"], read["metadata_location"],
        "{reread}"
    );
    verify_clean(&pipeline, &report, "glue, after compaction");

    // Nothing changed: nothing is written again.
    let second = sync(&pipeline);
    for (table, outcome) in outcomes(&second) {
        let expected = if table.ends_with("iceberg") {
            "registered_by_stream"
        } else {
            "unchanged"
        };
        assert_eq!(outcome, expected, "{table}: {second}");
    }

    // A Glue table of that name that another tool registered is refused, not overwritten.
    check_glue(&["disown", &moto.url(), "lake", "sensor_parquet"]);
    let refused = run_err(
        sluice()
            .args(["catalog", "sync", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );
    assert!(
        refused.contains("lake.sensor_parquet exists and sluice did not register it"),
        "{refused}"
    );
    let after = check_glue(&["tables", &moto.url(), "lake"]);
    assert!(
        after["sensor_parquet"]["parameters"]
            .get("sluice.writer")
            .is_none(),
        "{after}"
    );

    // `stream --catalog-sync-every` registers again what Glue lost, while it streams, and
    // says why the disowned table is not.
    check_glue(&["drop", &moto.url(), "lake", "sensor_delta"]);
    let log = dir.path().join("syncing.log");
    let mut stream = sluice()
        .args(["stream", "--catalog-sync-every", "1s", "--pipeline"])
        .arg(&pipeline)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while check_glue(&["tables", &moto.url(), "lake"])
        .get("sensor_delta")
        .is_none()
    {
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the stream did not register sensor_delta again within 2 minutes: {log}"
        );
        assert!(stream.try_wait().unwrap().is_none(), "{log}");
        std::thread::sleep(Duration::from_millis(500));
    }
    stream.kill().unwrap();
    stream.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("Registered in Glue.") && log.contains("lake.sensor_delta"),
        "{log}"
    );
    assert!(
        log.contains("Not registered in Glue.") && log.contains("lake.sensor_parquet"),
        "{log}"
    );
}
