//! `sluice gateway` against the test broker: idempotent retries, HTTPS, a full spool; and the
//! helpers of the other gateway tests (`gateway_matrix.rs`: every bad input; `gateway_outages.rs`:
//! the broker and the gateway failing).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::kafka::{Stored, read_all_at};
use crate::members::Member;

/// The API key every test sends with, scoped to `sensor_events`.
pub const SHOP_KEY: &str = "sk_test_shop_0123456789abcdef";

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

pub fn ndjson(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

/// Compresses with the `gzip` or `zstd` command, so the test shares no compression code with
/// sluice.
pub fn compress(tool: &str, bytes: &[u8]) -> Vec<u8> {
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

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    compress("gzip", bytes)
}

pub struct Case {
    pub name: &'static str,
    pub response: Response,
    pub status: u16,
    pub error: &'static str,
}

pub fn check(case: Case) -> Value {
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

pub fn gateway_pipeline(dir: &Path, topic: &str, gateway: &str) -> PathBuf {
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

/// A test's directory, a topic on the test broker, and a gateway pipeline for it.
pub struct GatewaySetup {
    pub dir: PathBuf,
    pub topic: String,
    pub pipeline: PathBuf,
}

/// A topic of `partitions` named after `name`, and a pipeline whose `[gateway]` holds a spool
/// in the test's directory, `gateway_lines`, and the shop key on every stream.
pub fn gateway_setup(name: &str, partitions: u32, gateway_lines: &str) -> GatewaySetup {
    let dir = test_dir(name);
    let topic = unique(name);
    create_topic(&topic, partitions);
    let pipeline = gateway_pipeline(
        &dir,
        &topic,
        &format!(
            "[gateway]\nspool = {{ dir = \"{}\" }}\n{gateway_lines}\n{}",
            dir.join("spool").display(),
            key_entry("shop", SHOP_KEY, r#"["*"]"#)
        ),
    );
    GatewaySetup {
        dir,
        topic,
        pipeline,
    }
}

impl GatewaySetup {
    /// `sluice gateway` on the pipeline, on a free port.
    pub fn start(&self) -> Gateway {
        self.start_with(|_| {})
    }

    /// [`Self::start`], with `adjust` adding to its command line or environment.
    pub fn start_with(&self, adjust: impl FnOnce(&mut Command)) -> Gateway {
        let mut command = sluice();
        command.args(["gateway", "--pipeline"]).arg(&self.pipeline);
        adjust(&mut command);
        Gateway::start(&mut command, free_port(), self.dir.join("gateway.log"))
    }
}

#[test]
fn a_retried_request_with_the_same_idempotency_key_is_answered_again_and_produced_once() {
    let setup = gateway_setup("gateway_idempotent", 2, "");
    let topic = &setup.topic;
    let gateway = setup.start();
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
    let stored = read_all_at(&brokers(), topic, Duration::from_secs(3));
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
    // Kafka away, the spool empty: ready, for the spool is there to take the records.
    let ready = client
        .get(format!("{}/readyz", gateway.url))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(
        ready.json::<Value>().unwrap(),
        json!({"kafka_reachable": false, "spool_has_room": true})
    );
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
    // The image's health check says the same: live, not ready; nothing listening is a failure.
    let probe = |url: String| run(sluice().args(["probe", &url]), Duration::from_secs(30));
    assert!(probe(format!("{}/healthz", gateway.url)).status.success());
    let not_ready = probe(format!("{}/readyz", gateway.url));
    assert!(!not_ready.status.success());
    let said = String::from_utf8_lossy(&not_ready.stderr);
    assert!(said.contains("answered 503"), "{said}");
    let nobody = probe(format!("http://127.0.0.1:{}/healthz", free_port()));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no answer from"));
    assert_eq!(
        gateway.metric(&client, "sluice_gateway_spool_pending_batches"),
        spooled as f64
    );
}
