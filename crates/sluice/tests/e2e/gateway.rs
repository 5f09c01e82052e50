//! `sluice gateway` against the test broker: the bad-input matrix (every case gets its documented
//! status and error; the topic then holds exactly the accepted records), idempotent retries,
//! the rate limit and HTTPS. The outage tests are in `gateway_outages.rs`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::kafka::{Stored, read_all_at};
use crate::members::Member;

/// The API key every test sends with, scoped to `sensor_events`.
pub const SHOP_KEY: &str = "sk_test_shop_0123456789abcdef";
/// A key scoped to another stream.
const OTHER_KEY: &str = "sk_test_other_0123456789abcdef";
/// A key of its own for the rate-limit case.
const BURST_KEY: &str = "sk_test_burst_0123456789abcdef";

/// A running `sluice gateway`.
pub struct Gateway {
    pub member: Member,
    pub url: String,
}

impl Gateway {
    /// Starts `command` (a `sluice gateway …` listening on `port`) and waits until it listens.
    pub fn start(command: &mut Command, port: u16, log: PathBuf) -> Self {
        let mut member = Member::start_with(
            command.args(["--listen", &format!("127.0.0.1:{port}")]),
            log,
        );
        member.wait_for_log("listening on", 1, Duration::from_secs(60));
        let scheme = if member.logged().contains("https://") {
            "https"
        } else {
            "http"
        };
        Self {
            member,
            url: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// `POST /v1/streams/{stream}/events`.
    pub fn post(&self, client: &Client, stream: &str) -> RequestBuilder {
        client.post(format!("{}/v1/streams/{stream}/events", self.url))
    }

    /// A metric's value from `/metrics` (0 when it has no sample yet).
    pub fn metric(&self, client: &Client, name: &str) -> f64 {
        let text = client
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The `[[gateway.keys]]` entry of a key.
pub fn key_entry(name: &str, key: &str, streams: &str) -> String {
    format!(
        "[[gateway.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nstreams = {streams}\n",
        hex(&Sha256::digest(key.as_bytes()))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A sensor event with a unique `site` marker, so the topic can be checked record by record.
pub fn event(marker: &str) -> Value {
    json!({
        "device_id": format!("dev-{}", marker.len() % 7),
        "ts": "2026-11-22T10:00:00Z",
        "temperature_c": 21.5,
        "site": marker,
    })
}

/// Records of a topic by their `site` marker.
pub fn markers(stored: &[Stored]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for record in stored {
        let value: Value = serde_json::from_slice(&record.payload).unwrap();
        let marker = value["site"].as_str().unwrap_or("(none)").to_string();
        assert_eq!(
            record.key.as_deref(),
            Some(value["device_id"].as_str().unwrap().as_bytes()),
            "a record keyed by its device_id"
        );
        *seen.entry(marker).or_default() += 1;
    }
    seen
}

fn ndjson(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// Compresses with the `gzip` or `zstd` command, so the test shares no compression code with
/// sluice.
fn compress(tool: &str, bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(["-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "{tool} failed");
    output.stdout
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    compress("gzip", bytes)
}

struct Case {
    name: &'static str,
    response: Response,
    status: u16,
    error: &'static str,
}

fn check(case: Case) -> Value {
    let status = case.response.status().as_u16();
    let headers = case.response.headers().clone();
    let body: Value = case.response.json().unwrap_or(Value::Null);
    assert_eq!(status, case.status, "{}: {body}", case.name);
    let text = body.to_string();
    assert!(
        text.contains(case.error),
        "{}: expected {:?} in {text}",
        case.name,
        case.error
    );
    if status == 401 {
        assert_eq!(headers["www-authenticate"], "Bearer", "{}", case.name);
    }
    if status == 429 {
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait >= 1, "{}: Retry-After {wait}", case.name);
    }
    body
}

fn gateway_pipeline(dir: &Path, topic: &str, gateway: &str) -> PathBuf {
    let pipeline = write_pipeline(
        dir,
        topic,
        &unique("group"),
        &dir.join("lake").display().to_string(),
        "{}",
    );
    extend_pipeline(&pipeline, "max_record_size = \"2KiB\"", gateway);
    pipeline
}

#[test]
fn every_bad_input_gets_its_status_and_the_topic_holds_exactly_the_accepted_records() {
    let dir = test_dir("gateway_matrix");
    let topic = unique("gateway_matrix");
    create_topic(&topic, 4);
    let other_topic = unique("gateway_other");
    let pipeline = gateway_pipeline(
        &dir,
        &topic,
        &format!(
            r#"
[[streams]]
name = "other_events"
topic = "{other_topic}"
fields = [{{ name = "ts", type = "timestamp" }}]
event_time = "ts"

[gateway]
spool = {{ dir = "{spool}" }}
limits = {{ max_body = "64KiB", max_decompressed_body = "256KiB", max_records = 600, max_depth = 6, rate_per_key = "100/s" }}

{shop}
{other}
{burst}
"#,
            spool = dir.join("spool").display(),
            shop = key_entry("shop", SHOP_KEY, r#"["sensor_events"]"#),
            other = key_entry("other", OTHER_KEY, r#"["other_events"]"#),
            burst = key_entry("burst", BURST_KEY, r#"["*"]"#),
        ),
    );
    let port = free_port();
    let gateway = Gateway::start(
        sluice().args(["gateway", "--pipeline"]).arg(&pipeline),
        port,
        dir.join("gateway.log"),
    );
    let client = Client::new();
    let shop = |stream: &str| gateway.post(&client, stream).bearer_auth(SHOP_KEY);
    let json_body = |values: &[Value]| serde_json::to_string(values).unwrap();
    let nd = "application/x-ndjson";
    let mut accepted: Vec<String> = Vec::new();

    // Whole requests refused: nothing of them may reach the topic.
    let refused = [
        Case {
            name: "no API key",
            response: gateway
                .post(&client, "sensor_events")
                .header("content-type", nd)
                .body(ndjson(&[event("r-1")]))
                .send()
                .unwrap(),
            status: 401,
            error: "missing API key",
        },
        Case {
            name: "unknown API key",
            response: gateway
                .post(&client, "sensor_events")
                .bearer_auth("sk_wrong")
                .header("content-type", nd)
                .body(ndjson(&[event("r-2")]))
                .send()
                .unwrap(),
            status: 401,
            error: "unknown API key",
        },
        Case {
            name: "a key scoped to another stream",
            response: gateway
                .post(&client, "sensor_events")
                .bearer_auth(OTHER_KEY)
                .header("content-type", nd)
                .body(ndjson(&[event("r-3")]))
                .send()
                .unwrap(),
            status: 403,
            error: "may not send to stream \\\"sensor_events\\\"",
        },
        Case {
            name: "an unknown stream",
            response: shop("nope")
                .header("content-type", nd)
                .body(ndjson(&[event("r-4")]))
                .send()
                .unwrap(),
            status: 404,
            error: "no stream is named \\\"nope\\\"",
        },
        Case {
            name: "text/plain",
            response: shop("sensor_events")
                .header("content-type", "text/plain")
                .body(ndjson(&[event("r-5")]))
                .send()
                .unwrap(),
            status: 415,
            error: "unsupported Content-Type",
        },
        Case {
            name: "no content type",
            response: shop("sensor_events")
                .body(ndjson(&[event("r-6")]))
                .send()
                .unwrap(),
            status: 415,
            error: "unsupported Content-Type",
        },
        Case {
            name: "brotli",
            response: shop("sensor_events")
                .header("content-type", nd)
                .header("content-encoding", "br")
                .body(ndjson(&[event("r-7")]))
                .send()
                .unwrap(),
            status: 415,
            error: "unsupported Content-Encoding \\\"br\\\"",
        },
        Case {
            name: "a body over 64 KiB",
            response: shop("sensor_events")
                .header("content-type", nd)
                .body(ndjson(&vec![json!({"status": "x".repeat(1000)}); 100]))
                .send()
                .unwrap(),
            status: 413,
            error: "larger than 65536 bytes",
        },
        Case {
            name: "a gzip bomb",
            response: shop("sensor_events")
                .header("content-type", nd)
                .header("content-encoding", "gzip")
                .body(gzip(&vec![b' '; 8 << 20]))
                .send()
                .unwrap(),
            status: 413,
            error: "decompresses to more than 262144 bytes",
        },
        Case {
            name: "601 records",
            response: shop("sensor_events")
                .header("content-type", nd)
                .body(ndjson(&vec![json!({}); 601]))
                .send()
                .unwrap(),
            status: 413,
            error: "601 records, more than the 600",
        },
        Case {
            name: "an empty body",
            response: shop("sensor_events")
                .header("content-type", "application/json")
                .body("  ")
                .send()
                .unwrap(),
            status: 400,
            error: "holds no records",
        },
        Case {
            name: "a broken JSON array",
            response: shop("sensor_events")
                .header("content-type", "application/json")
                .body(format!("[{},", event("r-9")))
                .send()
                .unwrap(),
            status: 400,
            error: "not a JSON object or array",
        },
        Case {
            name: "damaged gzip",
            response: shop("sensor_events")
                .header("content-type", nd)
                .header("content-encoding", "gzip")
                .body("not gzip at all")
                .send()
                .unwrap(),
            status: 400,
            error: "cannot be decompressed",
        },
        Case {
            name: "an overlong Idempotency-Key",
            response: shop("sensor_events")
                .header("content-type", nd)
                .header("idempotency-key", "k".repeat(300))
                .body(ndjson(&[event("r-10")]))
                .send()
                .unwrap(),
            status: 400,
            error: "Idempotency-Key must be 1 to 255",
        },
        Case {
            name: "every record bad",
            response: shop("sensor_events")
                .header("content-type", nd)
                .body("{\"ts\": 1}\nnope\n")
                .send()
                .unwrap(),
            status: 422,
            error: "\"index\":1",
        },
    ];
    for case in refused {
        check(case);
    }
    let get = client
        .get(format!("{}/v1/streams/sensor_events/events", gateway.url))
        .bearer_auth(SHOP_KEY)
        .send()
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);

    // Accepted: an object, an array, NDJSON, gzip and zstd.
    let ok = |name, response: Response, status, markers: &[&str], accepted: &mut Vec<String>| {
        let body = check(Case {
            name,
            response,
            status,
            error: "",
        });
        assert_eq!(body["accepted"], markers.len(), "{name}: {body}");
        accepted.extend(markers.iter().map(|m| m.to_string()));
        body
    };
    ok(
        "an object",
        shop("sensor_events")
            .header("content-type", "application/json")
            .body(event("a-1").to_string())
            .send()
            .unwrap(),
        200,
        &["a-1"],
        &mut accepted,
    );
    ok(
        "an array",
        shop("sensor_events")
            .header("content-type", "application/json; charset=utf-8")
            .body(json_body(&[event("a-2"), event("a-3")]))
            .send()
            .unwrap(),
        200,
        &["a-2", "a-3"],
        &mut accepted,
    );
    ok(
        "NDJSON",
        shop("sensor_events")
            .header("content-type", nd)
            .body(ndjson(&[event("a-4"), event("a-5")]))
            .send()
            .unwrap(),
        200,
        &["a-4", "a-5"],
        &mut accepted,
    );
    ok(
        "gzip",
        shop("sensor_events")
            .header("content-type", nd)
            .header("content-encoding", "gzip")
            .body(gzip(ndjson(&[event("a-6")]).as_bytes()))
            .send()
            .unwrap(),
        200,
        &["a-6"],
        &mut accepted,
    );
    let zstd = compress("zstd", ndjson(&[event("a-7")]).as_bytes());
    ok(
        "zstd",
        shop("sensor_events")
            .header("content-type", nd)
            .header("content-encoding", "zstd")
            .body(zstd)
            .send()
            .unwrap(),
        200,
        &["a-7"],
        &mut accepted,
    );

    // Some records bad: each is named by index, the others land.
    let mut deep = event("x-deep");
    deep["extra"] = json!([[[[[[1]]]]]]);
    let mut large = event("x-large");
    large["status"] = json!("x".repeat(3000));
    let mut typed = event("x-type");
    typed["temperature_c"] = json!("hot");
    let mut no_ts = event("x-no-ts");
    no_ts.as_object_mut().unwrap().remove("ts");
    let mixed = format!(
        "{}\n{{\"device_id\": \"d\", \"ts\": \n{}\n{}\n{}\n{}\n{}\n{}\n",
        event("m-0"),
        typed,
        event("m-3"),
        deep,
        large,
        no_ts,
        event("m-7")
    );
    let body = ok(
        "mixed",
        shop("sensor_events")
            .header("content-type", nd)
            .body(mixed)
            .send()
            .unwrap(),
        207,
        &["m-0", "m-3", "m-7"],
        &mut accepted,
    );
    let errors: BTreeMap<u64, String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (1, "not valid JSON"),
        (2, "/temperature_c: \"hot\" is not of type \"number\""),
        (4, "nests 7 levels deep, more than the limit of 6"),
        (5, "more than the stream's max_record_size of 2048"),
        (6, "\"ts\" is a required property"),
    ];
    assert_eq!(errors.len(), expected.len(), "{body}");
    for (index, text) in expected {
        assert!(
            errors[&index].contains(text),
            "record {index}: {}",
            errors[&index]
        );
    }
    assert_eq!(body["rejected"], 5);

    // The rate limit: one key may overdraw once, then waits.
    let burst = |marker: &str| {
        let records: Vec<Value> = (0..600).map(|i| event(&format!("{marker}-{i}"))).collect();
        gateway
            .post(&client, "sensor_events")
            .bearer_auth(BURST_KEY)
            .header("content-type", nd)
            .body(ndjson(&records))
            .send()
            .unwrap()
    };
    let first = burst("b1");
    assert_eq!(first.status().as_u16(), 200);
    accepted.extend((0..600).map(|i| format!("b1-{i}")));
    let first_at = Instant::now();
    let second = burst("b2");
    if second.status().as_u16() == 200 {
        // Only possible if the two requests were more than 5 s apart (the debt was paid).
        assert!(first_at.elapsed() > Duration::from_secs(5));
        accepted.extend((0..600).map(|i| format!("b2-{i}")));
    } else {
        // 600 records at 100/s, with one second's worth in the bucket: 5 s of debt.
        check(Case {
            name: "over the rate",
            response: second,
            status: 429,
            error: "over its rate limit",
        });
    }
    // The other keys are not limited by it.
    ok(
        "another key meanwhile",
        shop("sensor_events")
            .header("content-type", nd)
            .body(ndjson(&[event("a-8")]))
            .send()
            .unwrap(),
        200,
        &["a-8"],
        &mut accepted,
    );

    let stored = read_all_at(&brokers(), &topic, Duration::from_secs(3));
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for marker in &accepted {
        *expected.entry(marker.clone()).or_default() += 1;
    }
    assert_eq!(
        markers(&stored),
        expected,
        "the topic holds exactly the accepted records"
    );
    assert!(read_all_at(&brokers(), &other_topic, Duration::from_secs(1)).is_empty());
    assert!(
        gateway.metric(
            &client,
            "sluice_gateway_records_total{stream=\"sensor_events\",outcome=\"rejected\"}"
        ) >= 7.0
    );
    gateway.member.stop(Duration::from_secs(30));
}

#[test]
fn a_retried_request_with_the_same_idempotency_key_is_answered_again_and_produced_once() {
    let dir = test_dir("gateway_idempotent");
    let topic = unique("gateway_idempotent");
    create_topic(&topic, 2);
    let pipeline = gateway_pipeline(
        &dir,
        &topic,
        &format!(
            "[gateway]\nspool = {{ dir = \"{}\" }}\n{}",
            dir.join("spool").display(),
            key_entry("shop", SHOP_KEY, r#"["*"]"#)
        ),
    );
    let gateway = Gateway::start(
        sluice().args(["gateway", "--pipeline"]).arg(&pipeline),
        free_port(),
        dir.join("gateway.log"),
    );
    let client = Client::new();
    let body = ndjson(&[event("i-1"), event("i-2"), json!({"device_id": "bad"})]);
    let send = |key: &str, body: &str| {
        gateway
            .post(&client, "sensor_events")
            .bearer_auth(SHOP_KEY)
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let first = send("order-42", &body);
    assert_eq!(first.status().as_u16(), 207);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().unwrap();
    for _ in 0..3 {
        let again = send("order-42", &body);
        assert_eq!(again.status().as_u16(), 207);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.json::<Value>().unwrap(), first);
    }
    let changed = send("order-42", &ndjson(&[event("i-3")]));
    assert_eq!(changed.status().as_u16(), 422);
    assert!(
        changed
            .text()
            .unwrap()
            .contains("used for a different request")
    );
    // Another key runs; no key at all runs every time.
    assert_eq!(
        send("order-43", &ndjson(&[event("i-4")])).status().as_u16(),
        200
    );
    for _ in 0..2 {
        let plain = gateway
            .post(&client, "sensor_events")
            .bearer_auth(SHOP_KEY)
            .header("content-type", "application/x-ndjson")
            .body(ndjson(&[event("i-5")]))
            .send()
            .unwrap();
        assert_eq!(plain.status().as_u16(), 200);
    }
    let stored = read_all_at(&brokers(), &topic, Duration::from_secs(3));
    let expected: BTreeMap<String, usize> = [("i-1", 1), ("i-2", 1), ("i-4", 1), ("i-5", 2)]
        .into_iter()
        .map(|(m, n)| (m.to_string(), n))
        .collect();
    assert_eq!(markers(&stored), expected);
    gateway.member.stop(Duration::from_secs(30));
}

#[test]
fn https_serves_with_the_configured_certificate() {
    let dir = test_dir("gateway_tls");
    let topic = unique("gateway_tls");
    create_topic(&topic, 1);
    // A test CA and a server certificate for 127.0.0.1 signed by it.
    run_ok(
        Command::new("bash").current_dir(&dir).args(["-c", "set -e
            openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=sluice-test-ca -keyout ca.key -out ca.pem 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > server.ext
            openssl x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile server.ext -out cert.pem 2>/dev/null"]),
        Duration::from_secs(30),
    );
    let pipeline = gateway_pipeline(
        &dir,
        &topic,
        &format!(
            "[gateway]\nspool = {{ dir = \"{}\" }}\ntls = {{ cert = \"{}\", key = \"{}\" }}\n{}",
            dir.join("spool").display(),
            dir.join("cert.pem").display(),
            dir.join("key.pem").display(),
            key_entry("shop", SHOP_KEY, r#"["*"]"#)
        ),
    );
    let gateway = Gateway::start(
        sluice().args(["gateway", "--pipeline"]).arg(&pipeline),
        free_port(),
        dir.join("gateway.log"),
    );
    assert!(gateway.url.starts_with("https://"), "{}", gateway.url);
    let cert = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let client = Client::builder()
        .add_root_certificate(cert)
        .build()
        .unwrap();
    let response = gateway
        .post(&client, "sensor_events")
        .bearer_auth(SHOP_KEY)
        .header("content-type", "application/json")
        .body(event("tls-1").to_string())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = Client::new()
        .get(gateway.url.replace("https://", "http://") + "/healthz")
        .send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert_eq!(
        markers(&read_all_at(&brokers(), &topic, Duration::from_secs(2))).len(),
        1
    );
    gateway.member.stop(Duration::from_secs(30));
}

#[test]
fn with_kafka_away_records_are_spooled_until_the_spool_is_full_then_503() {
    let dir = test_dir("gateway_spool_full");
    let topic = unique("gateway_spool_full");
    let pipeline = gateway_pipeline(
        &dir,
        &topic,
        &format!(
            "[gateway]\nproduce_timeout = \"500ms\"\nspool = {{ dir = \"{}\", max_size = \"3KiB\" }}\n{}",
            dir.join("spool").display(),
            key_entry("shop", SHOP_KEY, r#"["*"]"#)
        ),
    );
    // Nothing listens at this broker address: Kafka is away for the whole test.
    let gateway = Gateway::start(
        sluice()
            .env("SLUICE_BROKERS", format!("127.0.0.1:{}", free_port()))
            .args(["gateway", "--pipeline"])
            .arg(&pipeline),
        free_port(),
        dir.join("gateway.log"),
    );
    let client = Client::new();
    let send = |i: usize| {
        gateway
            .post(&client, "sensor_events")
            .bearer_auth(SHOP_KEY)
            .header("content-type", "application/x-ndjson")
            .body(ndjson(&[
                event(&format!("f-{i}-a")),
                event(&format!("f-{i}-b")),
            ]))
            .send()
            .unwrap()
    };
    let mut spooled = 0;
    let full = loop {
        let answer = send(spooled);
        if answer.status().as_u16() != 202 {
            break answer;
        }
        let body: Value = answer.json().unwrap();
        assert_eq!(
            (body["accepted"].as_u64(), body["spooled"].as_u64()),
            (Some(2), Some(2))
        );
        spooled += 1;
        assert!(spooled < 100, "3 KiB of spool never filled");
    };
    assert!(spooled >= 3, "{spooled} requests spooled");
    check(Case {
        name: "a full spool",
        response: full,
        status: 503,
        error: "the spool is full",
    });
    let ready = client
        .get(format!("{}/readyz", gateway.url))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().unwrap();
    assert_eq!(
        ready,
        json!({"kafka_reachable": false, "spool_has_room": false})
    );
    assert_eq!(
        client
            .get(format!("{}/healthz", gateway.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        gateway.metric(&client, "sluice_gateway_spool_pending_batches"),
        spooled as f64
    );
}
