//! Avro, Protobuf and JSON Schema records in the Confluent wire format, written by Confluent's
//! own serializers (confluent-kafka's `AvroSerializer`, `ProtobufSerializer`,
//! `JSONSerializer`) against a Schema
//! Registry, landed by `sluice stream` and read back by the Python `deltalake` package. The
//! registry is the stand-in under tests/registry (no Confluent registry can be installed
//! here); see the README.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::kafka::{Outgoing, produce_raw, read_all};

/// How long a dead-letter topic must stay quiet before it is taken as read whole.
const QUIET: Duration = Duration::from_secs(3);

/// The registry's user and password; sluice reads the password from the environment.
const USER: &str = "sluice-test";
const PASSWORD: &str = "registry-secret-4711";

/// Starts the stand-in registry on `port` (0: any), keeping its registrations in `state`,
/// asking every request for HTTP Basic auth as [`USER`] and [`PASSWORD`].
fn start_registry(port: u16, state: &Path) -> StandIn {
    StandIn::start(
        Command::new(python())
            .arg(repo_file("tests/registry/standin.py"))
            .args(["--port", &port.to_string()])
            .args(["--user", USER, "--password", PASSWORD])
            .arg("--state")
            .arg(state),
        "the stand-in registry",
    )
}

fn python() -> String {
    std::env::var("SLUICE_TEST_PYTHON").expect("SLUICE_TEST_PYTHON is not set: run scripts/test.sh")
}

/// `sluice` with the registry's password in its environment.
fn sluice_with_registry() -> Command {
    let mut command = sluice();
    command.env("TEST_REGISTRY_PASSWORD", PASSWORD);
    command
}

/// `tests/registry/records.py` for records of `kind` ("orders": Avro, "parcels": Protobuf,
/// "readings": JSON Schema), with `args`.
fn records(kind: &str, args: &[&str]) -> String {
    run_ok(
        Command::new(python())
            .arg(repo_file("tests/registry/records.py"))
            .args(["--kind", kind])
            .args(args),
        Duration::from_secs(600),
    )
}

/// Produces `count` records of `kind` to `topic` with Confluent's serializer.
fn produce(kind: &str, registry: &str, topic: &str, count: usize) {
    produce_version(kind, registry, topic, (0, count), 1);
}

/// Produces records `first..first + count` of `kind`, schema `version`, to `topic`.
fn produce_version(
    kind: &str,
    registry: &str,
    topic: &str,
    (first, count): (usize, usize),
    version: u32,
) {
    let auth = format!("{USER}:{PASSWORD}");
    let (first, count, version) = (first.to_string(), count.to_string(), version.to_string());
    let bootstrap = brokers();
    let args = [
        "produce",
        "--bootstrap",
        &bootstrap,
        "--registry",
        registry,
        "--auth",
        &auth,
        "--topic",
        topic,
        "--count",
        &count,
        "--first",
        &first,
        "--version",
        &version,
    ];
    records(kind, &args);
}

/// Checks, with the Python `deltalake` reader, that `table` holds records 0 to `count` of
/// `kind` once each, every value as produced.
fn check(kind: &str, table: &Path, count: usize) {
    check_with(kind, table.to_str().unwrap(), count, &[]);
}

/// [`check`] of the table `records.py check --table` reads as `table`, with further arguments.
fn check_with(kind: &str, table: &str, count: usize, more: &[&str]) {
    let count = count.to_string();
    let mut args = vec!["check", "--table", table, "--count", &count];
    args.extend(more);
    let checked = records(kind, &args);
    assert!(checked.contains("every value as produced"), "{checked}");
}

/// A pipeline reading records of `kind` from `topic` through the registry at `registry` into
/// the table at `table`, bad records to `dead_letters`, with `sections` at its end.
fn registry_pipeline(
    dir: &Path,
    kind: &str,
    topic: &str,
    dead_letters: &str,
    registry: &str,
    table: &Path,
    sections: &str,
) -> PathBuf {
    let (format, schema, message) = match kind {
        "orders" => ("avro", "order.avsc", ""),
        // Its file defines Parcel and Address: the message is named.
        "parcels" => ("protobuf", "parcel.proto", r#"message = "shipping.Parcel""#),
        _ => ("json_schema", "reading.schema.json", ""),
    };
    std::fs::write(dir.join(schema), records(kind, &["schema"])).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka]
group = "{group}"

[[streams]]
name = "records"
topic = "{topic}"
format = "{format}"
schema = "{schema}"
{message}
registry = {{ url = "{registry}", user = "{USER}", password = "${{TEST_REGISTRY_PASSWORD}}" }}
event_time = "ts"
dead_letter_topic = "{dead_letters}"

[[tables]]
name = "records"
from = "records"
uri = "{table}"

{sections}
"#,
            group = unique("group"),
            table = table.display(),
        ),
    )
    .unwrap();
    file
}

/// Streams `pipeline` until caught up; returns its log.
fn stream_until_caught_up(pipeline: &Path) -> String {
    let out = run(
        sluice_with_registry()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(pipeline),
        Duration::from_secs(600),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

/// Produces `bad` (payload, reason) records to partition 0 of `topic`.
fn plant(topic: &str, bad: &[(&[u8], &str)]) {
    let planted: Vec<Outgoing<'_>> = bad
        .iter()
        .map(|(payload, _)| Outgoing {
            partition: 0,
            key: None,
            payload,
            headers: &[],
        })
        .collect();
    produce_raw(topic, &planted);
}

/// Every planted record is on `dead_letters` once, with its reason.
fn assert_dead_letters(dead_letters: &str, bad: &[(&[u8], &str)]) {
    let letters = read_all(dead_letters, QUIET);
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad record");
    for (payload, reason) in bad {
        let letter = letters
            .iter()
            .find(|l| l.payload == *payload)
            .unwrap_or_else(|| panic!("no dead letter holds {payload:?}"));
        let error = letter.header("sluice.error").unwrap_or_default();
        assert!(error.contains(reason), "{error:?} lacks {reason:?}");
    }
}

fn assert_verify_clean(pipeline: &Path) {
    let verified = run_ok(
        sluice_with_registry()
            .args(["verify", "--json", "--pipeline"])
            .arg(pipeline),
        Duration::from_secs(300),
    );
    let verified: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["clean"], true, "{verified:#}");
}

/// A registry-backed stream of `kind` under test: `count` records produced with Confluent's
/// serializer to a 4-partition topic, and `bad` records planted after them.
struct Produced {
    dir: PathBuf,
    registry: StandIn,
    topic: String,
    dead_letters: String,
    table: PathBuf,
}

impl Produced {
    fn new(kind: &str, count: usize, bad: &[(&[u8], &str)]) -> Self {
        let dir = test_dir(&format!("registry_{kind}"));
        let registry = start_registry(0, &dir.join("registry.json"));
        let (topic, dead_letters) = (unique(kind), unique(&format!("{kind}_dlq")));
        create_topic(&topic, 4);
        create_topic(&dead_letters, 1);
        produce(kind, &registry.url(), &topic, count);
        plant(&topic, bad);
        let table = dir.join(format!("lake/{kind}"));
        Self {
            dir,
            registry,
            topic,
            dead_letters,
            table,
        }
    }

    /// The stream's pipeline, with `sections` at its end.
    fn pipeline(&self, kind: &str, sections: &str) -> PathBuf {
        let url = self.registry.url();
        registry_pipeline(
            &self.dir,
            kind,
            &self.topic,
            &self.dead_letters,
            &url,
            &self.table,
            sections,
        )
    }

    /// Streams `pipeline` until caught up, then checks that every value landed, every bad
    /// record is a dead letter with its reason, and `verify` is clean.
    fn lands_every_value(&self, kind: &str, count: usize, bad: &[(&[u8], &str)], pipeline: &Path) {
        let log = stream_until_caught_up(pipeline);
        let sent = format!("({} sent to a dead-letter topic)", bad.len());
        assert!(log.contains(&sent), "{log}");
        check(kind, &self.table, count);
        assert_dead_letters(&self.dead_letters, bad);
        assert_verify_clean(pipeline);
    }
}

#[test]
fn avro_from_confluents_serializer_lands_every_value_and_bad_records_become_dead_letters() {
    let count = 100_000;
    // Schema id 1 is the orders' (the first the registry gave); 404 is none.
    let bad: [(&[u8], &str); 4] = [
        (br#"{"order_id": 1}"#, "magic byte 0x7b"),
        (&[0, 0, 0], "shorter than the Confluent wire format"),
        (&[0, 0, 0, 1, 0x94, 2], "not in the registry"),
        (
            &[0, 0, 0, 0, 1, 2],
            "not an Avro record of writer schema id 1",
        ),
    ];
    let produced = Produced::new("orders", count, &bad);
    // A rule over a nested field.
    let alerts = unique("vip_paid");
    create_topic(&alerts, 1);
    let sections = format!(
        r#"
[[alerts]]
name = "vip_paid"
from = "records"
when = "status = 'PAID' AND customer.vip"
topic = "{alerts}"
"#
    );
    let pipeline = produced.pipeline("orders", &sections);
    let checked = run_ok(
        sluice_with_registry()
            .args(["check", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(30),
    );
    assert!(!checked.contains(PASSWORD), "{checked}");
    let described = format!(
        "format = \"avro\" (Confluent wire format; registry {:?}, basic auth as {USER:?}, password [REDACTED])",
        produced.registry.url()
    );
    assert!(checked.contains(&described), "{checked}");
    produced.lands_every_value("orders", count, &bad, &pipeline);
    // Order i is PAID when i % 3 == 1, and its customer a VIP when i % 5 == 0.
    let vip_paid = (0..count).filter(|i| i % 3 == 1 && i % 5 == 0).count();
    assert_eq!(read_all(&alerts, QUIET).len(), vip_paid);
}

/// Mid-run, the producer registers version 2 of the orders' schema (an added optional field):
/// its records keep flowing and the table gains the column, null in the rows before; then an
/// incompatible version 3 (order_id as text): its records become dead letters with the reason,
/// and the partitions keep moving.
#[test]
fn a_newer_writer_version_adds_its_column_and_an_incompatible_one_becomes_dead_letters() {
    newer_writer_versions("orders", ("order_id", "channel"), Lake::Delta);
}

/// The same into an Iceberg table (a SQL catalog in SQLite): the table gains the column in a
/// schema change of its own, the run after it opens the table that has a column its stream
/// lacks, and pyiceberg reads null before version 2 and the value after.
#[test]
fn a_newer_writer_version_adds_its_column_to_an_iceberg_table() {
    newer_writer_versions("orders", ("order_id", "channel"), Lake::Iceberg);
}

/// The same into a plain Parquet table: objects before version 2 lack the column, those after
/// have it, and pyarrow's dataset reader (the objects' columns merged, as a crawler does) reads
/// null before and the value after.
#[test]
fn a_newer_writer_version_adds_its_column_to_a_plain_parquet_table() {
    newer_writer_versions("orders", ("order_id", "channel"), Lake::Parquet);
}

/// The same with Protobuf: version 2 of the parcels' message adds `optional string carrier`,
/// version 3 makes parcel_id a string.
#[test]
fn a_newer_protobuf_message_adds_its_column_and_an_incompatible_one_becomes_dead_letters() {
    newer_writer_versions("parcels", ("parcel_id", "carrier"), Lake::Delta);
}

/// The same with JSON Schema: version 2 of the readings' schema adds an optional `site`,
/// version 3 makes `ok` a string.
#[test]
fn a_newer_json_schema_adds_its_column_and_an_incompatible_one_becomes_dead_letters() {
    newer_writer_versions("readings", ("reading_id", "site"), Lake::Delta);
}

/// The table format a test lands in.
enum Lake {
    Delta,
    /// Through a SQL catalog in a SQLite file beside the table.
    Iceberg,
    /// Plain Parquet objects.
    Parquet,
}

impl Lake {
    /// The lines of the `[[tables]]` section, and the sections after it, that land the table
    /// in this format.
    fn sections(&self, produced: &Produced) -> String {
        match self {
            Lake::Delta => String::new(),
            Lake::Parquet => "format = \"parquet\"\n".to_string(),
            Lake::Iceberg => format!(
                "format = \"iceberg\"\ncatalog = \"lake\"\n\n[catalogs.lake]\ntype = \"sql\"\n\
                 uri = \"sqlite:///{}\"\nwarehouse = \"file://{}\"\n",
                produced.dir.join("catalog.db").display(),
                produced.dir.join("warehouse").display()
            ),
        }
    }

    /// The table as `records.py check --table` reads it.
    fn reader_spec(&self, produced: &Produced) -> String {
        match self {
            Lake::Delta => produced.table.display().to_string(),
            Lake::Parquet => format!("parquet:{}", produced.table.display()),
            Lake::Iceberg => format!(
                "iceberg:{}#lake#sluice.records",
                produced.dir.join("catalog.db").display()
            ),
        }
    }
}

/// Records of `kind` (keyed by `id`) of versions 1, 2 (adding the text column `column`), 3
/// (incompatible) and 2 again, produced before and while `sluice stream` runs, landing in
/// `lake`.
fn newer_writer_versions(kind: &str, (id, column): (&str, &str), lake: Lake) {
    let (v1, v2, v3) = (4_000, 4_000, 300);
    let produced = Produced::new(kind, v1, &[]);
    let pipeline = produced.pipeline(kind, &lake.sections(&produced));
    let mut stream = crate::members::Member::start_with(
        sluice_with_registry()
            .args(["stream", "--pipeline"])
            .arg(&pipeline),
        produced.dir.join("stream.log"),
    );
    stream.wait_for_log("Committed", 1, Duration::from_secs(120));
    let url = produced.registry.url();
    produce_version(kind, &url, &produced.topic, (v1, v2), 2);
    // Version 3's ids lie apart from the others, which stay contiguous.
    produce_version(kind, &url, &produced.topic, (1_000_000, v3), 3);
    // A last v2 batch after the incompatible records: the partitions kept moving past them.
    produce_version(kind, &url, &produced.topic, (v1 + v2, 100), 2);
    stream.stop(Duration::from_secs(60));
    stream_until_caught_up(&pipeline);

    let table = lake.reader_spec(&produced);
    // Every row as produced: version 2's (with the column) from id v1 on, none of version 3's.
    check_with(kind, &table, v1 + v2 + 100, &["--v2-from", &v1.to_string()]);
    let late = run_ok(
        sluice_with_registry().args([
            "query",
            "--format",
            "csv",
            "--pipeline",
            pipeline.to_str().unwrap(),
            &format!(
                "select count(*) as n, count({column}) as c from records where {id} >= {}",
                v1 + v2
            ),
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(late.lines().nth(1), Some("100,100"), "{late}");
    let letters = read_all(&produced.dead_letters, QUIET);
    assert_eq!(letters.len(), v3, "one dead letter per version-3 record");
    for letter in &letters {
        let error = letter.header("sluice.error").unwrap_or_default();
        assert!(
            error.contains("cannot be read as the stream's"),
            "{error:?}"
        );
    }
    assert_verify_clean(&pipeline);
    let tables = run_ok(
        sluice_with_registry()
            .args(["tables", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(60),
    );
    assert!(
        tables.contains("schema change at") && tables.contains(&format!("added {column} (Utf8)")),
        "{tables} ({table})"
    );
}

#[test]
fn protobuf_from_confluents_serializer_lands_every_value_and_bad_records_become_dead_letters() {
    let count = 100_000;
    // Schema id 1 is the Address file the parcels' schema (id 2) references (Timestamp is
    // protobuf's own: no reference); 404 is none. After the id: the message indexes, then
    // the message.
    let bad: [(&[u8], &str); 5] = [
        (br#"{"parcel_id": 1}"#, "magic byte 0x7b"),
        (&[0, 0, 0], "shorter than the Confluent wire format"),
        (&[0, 0, 0, 1, 0x94, 0, 8, 1], "not in the registry"),
        // Message index [5]: the file has one message.
        (&[0, 0, 0, 0, 2, 2, 10, 8, 1], "has no message at index [5]"),
        // parcel_id's varint cut short.
        (
            &[0, 0, 0, 0, 2, 0, 8, 0x80],
            "not a Protobuf message shipping.Parcel",
        ),
    ];
    let produced = Produced::new("parcels", count, &bad);
    let pipeline = produced.pipeline("parcels", "");
    produced.lands_every_value("parcels", count, &bad, &pipeline);
}

#[test]
fn json_schema_from_confluents_serializer_lands_every_value_and_bad_records_become_dead_letters() {
    let count = 50_000;
    let bad: [(&[u8], &str); 3] = [
        (br#"{"reading_id": 1}"#, "magic byte 0x7b"),
        (b"\0\0\0\x01\x94{}", "not in the registry"),
        (
            b"\0\0\0\0\x01{\"reading_id\": 1}",
            "missing or null required fields device_id",
        ),
    ];
    let produced = Produced::new("readings", count, &bad);
    let pipeline = produced.pipeline("readings", "");
    produced.lands_every_value("readings", count, &bad, &pipeline);
}

#[test]
fn records_wait_for_a_registry_that_is_down_and_none_become_dead_letters() {
    let dir = test_dir("avro_registry_down");
    let state = dir.join("registry.json");
    let registry = start_registry(0, &state);
    let (url, port) = (registry.url(), registry.port);
    let (topic, dead_letters) = (unique("orders"), unique("orders_dlq"));
    create_topic(&topic, 2);
    create_topic(&dead_letters, 1);
    let count = 2_000;
    produce("orders", &url, &topic, count);
    drop(registry);

    let table = dir.join("lake/orders");
    let pipeline = registry_pipeline(&dir, "orders", &topic, &dead_letters, &url, &table, "");
    let stream = sluice_with_registry()
        .args(["stream", "--until-caught-up", "--pipeline"])
        .arg(&pipeline)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        !table.join("_delta_log/00000000000000000001.json").exists(),
        "nothing lands while the registry is down"
    );
    let _registry = start_registry(port, &state);
    let out = wait(stream, Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("The Schema Registry did not give a writer schema"),
        "the wait is logged: {stderr}"
    );
    assert!(
        stderr.contains("(0 sent to a dead-letter topic)"),
        "{stderr}"
    );
    check("orders", &table, count);
    assert!(read_all(&dead_letters, QUIET).is_empty());
}

/// `sluice gateway` takes `count` records of `kind` as JSON, produces them in the stream's
/// wire format under the stream's schema id (registered by the gateway), Confluent's own
/// deserializer reads each back as sent, and `sluice stream` lands them all.
fn gateway_round_trip(kind: &str, count: usize) {
    use crate::gateway::{Gateway, SHOP_KEY, key_entry};

    let dir = test_dir(&format!("gateway_{kind}"));
    let registry = start_registry(0, &dir.join("registry.json"));
    let (topic, dead_letters) = (unique(kind), unique(&format!("{kind}_dlq")));
    create_topic(&topic, 2);
    create_topic(&dead_letters, 1);
    let table = dir.join(format!("lake/{kind}"));
    let gateway_lines = format!(
        "[gateway]\nspool = {{ dir = \"{}\" }}\n{}",
        dir.join("spool").display(),
        key_entry("shop", SHOP_KEY, "[\"records\"]")
    );
    let pipeline = registry_pipeline(
        &dir,
        kind,
        &topic,
        &dead_letters,
        &registry.url(),
        &table,
        &gateway_lines,
    );
    let gateway = Gateway::start(
        sluice_with_registry()
            .args(["gateway", "--pipeline"])
            .arg(&pipeline),
        free_port(),
        dir.join("gateway.log"),
    );
    let lines = records(kind, &["json", "--count", &count.to_string()]);
    let lines: Vec<&str> = lines.lines().collect();
    let client = reqwest::blocking::Client::new();
    for chunk in lines.chunks(500) {
        let response = gateway
            .post(&client, "records")
            .bearer_auth(SHOP_KEY)
            .header("content-type", "application/x-ndjson")
            .body(chunk.join("\n"))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(status, 200, "{}", response.text().unwrap());
    }
    let refused = gateway
        .post(&client, "records")
        .bearer_auth(SHOP_KEY)
        .header("content-type", "application/x-ndjson")
        .body(lines[1].replacen("\"ts\": \"", "\"ts\": \"not a time ", 1))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    assert!(refused.text().unwrap().contains("ts"));

    let auth = format!("{USER}:{PASSWORD}");
    let bootstrap = brokers();
    let consumed = records(
        kind,
        &[
            "consume",
            "--bootstrap",
            &bootstrap,
            "--registry",
            &registry.url(),
            "--auth",
            &auth,
            "--topic",
            &topic,
            "--count",
            &count.to_string(),
        ],
    );
    assert!(consumed.contains("each as sent"), "{consumed}");
    let log = stream_until_caught_up(&pipeline);
    assert!(log.contains("0 records rejected"), "{log}");
    check(kind, &table, count);
}

#[test]
fn the_gateway_produces_avro_that_confluents_deserializer_reads_and_the_stream_lands() {
    gateway_round_trip("orders", 3_000);
}

#[test]
fn the_gateway_produces_protobuf_that_confluents_deserializer_reads_and_the_stream_lands() {
    gateway_round_trip("parcels", 3_000);
}
