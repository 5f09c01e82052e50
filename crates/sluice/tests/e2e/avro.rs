//! Avro records in the Confluent wire format, written by Confluent's own serializer
//! (confluent-kafka's `AvroSerializer`) against a Schema Registry, landed by `sluice stream`
//! and read back by the Python `deltalake` package. The registry is the stand-in under
//! tests/registry (no Confluent registry can be installed here); see the README.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::kafka::{Outgoing, produce_raw, read_all};

/// How long a dead-letter topic must stay quiet before it is taken as read whole.
const QUIET: Duration = Duration::from_secs(3);

/// The registry's user and password; sluice reads the password from the environment.
const USER: &str = "sluice-test";
const PASSWORD: &str = "registry-secret-4711";

/// The stand-in registry, stopped when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    /// Starts the stand-in on `port` (0: any), keeping its registrations in `state`, asking
    /// every request for HTTP Basic auth as [`USER`] and [`PASSWORD`].
    fn start(port: u16, state: &Path) -> Self {
        let mut child = Command::new(python())
            .arg(repo_file("tests/registry/standin.py"))
            .args([
                "--port",
                &port.to_string(),
                "--user",
                USER,
                "--password",
                PASSWORD,
            ])
            .arg("--state")
            .arg(state)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the stand-in registry");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the stand-in prints its port");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `tests/registry/avro_orders.py` with `args`.
fn orders(args: &[&str]) -> String {
    run_ok(
        Command::new(python())
            .arg(repo_file("tests/registry/avro_orders.py"))
            .args(args),
        Duration::from_secs(600),
    )
}

/// A pipeline reading Avro orders from `topic` through the registry at `registry` into the
/// table at `table`, bad records to `dead_letters`.
fn avro_pipeline(
    dir: &Path,
    topic: &str,
    dead_letters: &str,
    registry: &str,
    table: &Path,
) -> PathBuf {
    std::fs::write(dir.join("order.avsc"), orders(&["schema"])).unwrap();
    let file = dir.join("pipeline.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[kafka]
group = "{group}"

[[streams]]
name = "orders"
topic = "{topic}"
format = "avro"
schema = "order.avsc"
registry = {{ url = "{registry}", user = "{USER}", password = "${{TEST_REGISTRY_PASSWORD}}" }}
event_time = "ts"
dead_letter_topic = "{dead_letters}"

[[tables]]
name = "orders"
from = "orders"
uri = "{table}"
"#,
            group = unique("group"),
            table = table.display(),
        ),
    )
    .unwrap();
    file
}

#[test]
fn avro_from_confluents_serializer_lands_every_value_and_bad_records_become_dead_letters() {
    let dir = test_dir("avro_orders");
    let registry = Registry::start(0, &dir.join("registry.json"));
    let (topic, dead_letters) = (unique("orders"), unique("orders_dlq"));
    create_topic(&topic, 4);
    create_topic(&dead_letters, 1);
    let count = 100_000;
    orders(&[
        "produce",
        "--bootstrap",
        &brokers(),
        "--registry",
        &registry.url(),
        "--auth",
        &format!("{USER}:{PASSWORD}"),
        "--topic",
        &topic,
        "--count",
        &count.to_string(),
    ]);
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
    let planted: Vec<Outgoing<'_>> = bad
        .iter()
        .map(|(payload, _)| Outgoing {
            partition: 2,
            key: None,
            payload,
            headers: &[],
        })
        .collect();
    produce_raw(&topic, &planted);

    let table = dir.join("lake/orders");
    let pipeline = avro_pipeline(&dir, &topic, &dead_letters, &registry.url(), &table);
    let checked = run_ok(
        sluice_with_registry()
            .args(["check", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(30),
    );
    assert!(!checked.contains(PASSWORD), "{checked}");
    assert!(
        checked.contains(&format!(
            "registry {:?}, basic auth as {USER:?}, password [REDACTED]",
            registry.url()
        )),
        "{checked}"
    );
    let out = run(
        sluice_with_registry()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(600),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("(4 sent to a dead-letter topic)"),
        "{stderr}"
    );

    let checked = orders(&[
        "check",
        "--table",
        table.to_str().unwrap(),
        "--count",
        &count.to_string(),
    ]);
    assert!(checked.contains("every value as produced"), "{checked}");

    let letters = read_all(&dead_letters, QUIET);
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad record");
    for (payload, reason) in bad {
        let letter = letters
            .iter()
            .find(|l| l.payload == payload)
            .unwrap_or_else(|| panic!("no dead letter holds {payload:?}"));
        let error = letter.header("sluice.error").unwrap_or_default();
        assert!(error.contains(reason), "{error:?} lacks {reason:?}");
    }
    let verified = run_ok(
        sluice_with_registry()
            .args(["verify", "--json", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(300),
    );
    let verified: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["clean"], true, "{verified:#}");
}

#[test]
fn records_wait_for_a_registry_that_is_down_and_none_become_dead_letters() {
    let dir = test_dir("avro_registry_down");
    let state = dir.join("registry.json");
    let registry = Registry::start(0, &state);
    let (url, port) = (registry.url(), registry.port);
    let (topic, dead_letters) = (unique("orders"), unique("orders_dlq"));
    create_topic(&topic, 2);
    create_topic(&dead_letters, 1);
    let count = 2_000;
    orders(&[
        "produce",
        "--bootstrap",
        &brokers(),
        "--registry",
        &url,
        "--auth",
        &format!("{USER}:{PASSWORD}"),
        "--topic",
        &topic,
        "--count",
        &count.to_string(),
    ]);
    drop(registry);

    let table = dir.join("lake/orders");
    let pipeline = avro_pipeline(&dir, &topic, &dead_letters, &url, &table);
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
    let _registry = Registry::start(port, &state);
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
    let checked = orders(&[
        "check",
        "--table",
        table.to_str().unwrap(),
        "--count",
        &count.to_string(),
    ]);
    assert!(checked.contains("every value as produced"), "{checked}");
    assert!(read_all(&dead_letters, QUIET).is_empty());
}
