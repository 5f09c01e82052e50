//! The gateway's guards against slow and greedy clients, and its operations without a restart:
//! header and body read timeouts, the cap on requests served at once, API keys (of the pipeline
//! and of a keys file) reloaded on SIGHUP, and `/metrics` behind a key.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};

use crate::gateway::{Gateway, SHOP_KEY, event, gateway_setup, key_entry, ndjson};
use crate::helpers::*;

/// A second key, for the reload.
const OPS_KEY: &str = "sk_test_ops_fedcba9876543210";
/// A key of the keys file.
const CI_KEY: &str = "sk_test_ci_00112233445566778899";

/// What the server sends on `stream` until it closes the connection, and how long that took;
/// fails if it keeps the connection open for `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!(
                "the connection was still open after {:?} ({err}); got {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn post(gateway: &Gateway, client: &Client, key: &str, marker: &str) -> Response {
    gateway
        .post(client, "sensor_events")
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(&[event(marker)]))
        .send()
        .unwrap()
}

#[test]
fn slow_clients_lose_their_connection_and_requests_past_the_cap_get_503() {
    let setup = gateway_setup(
        "gateway_guards",
        1,
        "limits = { max_concurrent = 1, header_timeout = \"1s\", body_timeout = \"3s\" }",
    );
    let gateway = setup.start();
    let address = gateway.url.trim_start_matches("http://").to_string();
    let client = Client::new();
    assert_eq!(post(&gateway, &client, SHOP_KEY, "g-1").status(), 200);

    // Headers that never end: the connection is closed after about header_timeout.
    let mut slowloris = TcpStream::connect(&address).unwrap();
    slowloris
        .write_all(b"POST /v1/streams/sensor_events/events HTTP/1.1\r\nhost: sluice\r\n")
        .unwrap();
    let (answer, took) = read_until_closed(&mut slowloris, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // A body that stops arriving holds the one permit until body_timeout; meanwhile another
    // request is turned away at once, and afterwards served again.
    let mut slow_body = TcpStream::connect(&address).unwrap();
    write!(
        slow_body,
        "POST /v1/streams/sensor_events/events HTTP/1.1\r\nhost: sluice\r\n\
         authorization: Bearer {SHOP_KEY}\r\ncontent-type: application/x-ndjson\r\n\
         content-length: 1000\r\n\r\n{{\"device_id\":"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let turned_away = post(&gateway, &client, SHOP_KEY, "g-2");
    assert_eq!(turned_away.status(), 503);
    assert_eq!(turned_away.headers()["retry-after"], "1");
    let text = turned_away.text().unwrap();
    assert!(text.contains("its limit of 1 requests at once"), "{text}");
    let (answer, took) = read_until_closed(&mut slow_body, Duration::from_secs(15));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 3s"), "{answer}");
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    assert_eq!(post(&gateway, &client, SHOP_KEY, "g-3").status(), 200);

    // Only the two whole requests reached Kafka.
    let stored = crate::kafka::read_all_at(&brokers(), &setup.topic, Duration::from_secs(3));
    let markers = crate::gateway::markers(&stored);
    assert_eq!(markers.keys().collect::<Vec<_>>(), ["g-1", "g-3"]);
    gateway.member.stop(Duration::from_secs(30));
}

#[test]
fn api_keys_reload_on_sighup_and_metrics_can_require_a_key() {
    let setup = gateway_setup("gateway_reload", 1, "require_key_for_metrics = true");
    let (pipeline, shop) = (&setup.pipeline, key_entry("shop", SHOP_KEY, r#"["*"]"#));
    // One more key kept apart from the pipeline, in a keys file.
    let keys_file = setup.dir.join("keys.toml");
    let ci_entry = key_entry("ci", CI_KEY, r#"["sensor_events"]"#).replace("gateway.keys", "keys");
    std::fs::write(&keys_file, &ci_entry).unwrap();
    let mut gateway = setup.start_with(|command| {
        command.arg("--keys").arg(&keys_file);
    });
    let client = Client::new();
    let metrics_url = format!("{}/metrics", gateway.url);
    let metrics = |key: Option<&str>| {
        let request = client.get(&metrics_url);
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
        .send()
        .unwrap()
    };
    assert_eq!(metrics(None).status(), 401);
    assert_eq!(metrics(Some(OPS_KEY)).status(), 401);
    let scraped = metrics(Some(SHOP_KEY));
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().unwrap().contains("sluice_gateway_kafka_up"));
    assert_eq!(post(&gateway, &client, SHOP_KEY, "r-1").status(), 200);
    assert_eq!(post(&gateway, &client, CI_KEY, "r-ci").status(), 200);

    // The shop key is revoked and an ops key issued, in the file; SIGHUP puts them in place.
    let text = std::fs::read_to_string(pipeline).unwrap();
    let rotated = text.replace(&shop, &key_entry("ops", OPS_KEY, r#"["sensor_events"]"#));
    assert_ne!(rotated, text);
    std::fs::write(pipeline, &rotated).unwrap();
    gateway.member.signal("HUP");
    gateway
        .member
        .wait_for_log("API keys reloaded", 1, Duration::from_secs(10));
    assert_eq!(post(&gateway, &client, SHOP_KEY, "r-2").status(), 401);
    assert_eq!(post(&gateway, &client, OPS_KEY, "r-3").status(), 200);
    // A key named in both the pipeline and the keys file is refused, and changes nothing.
    std::fs::write(
        &keys_file,
        format!(
            "{ci_entry}\n{}",
            key_entry("ops", "sk_other", "[\"*\"]").replace("gateway.keys", "keys")
        ),
    )
    .unwrap();
    gateway.member.signal("HUP");
    gateway.member.wait_for_log(
        "\"ops\" is also a key of the pipeline's [[gateway.keys]]",
        1,
        Duration::from_secs(10),
    );
    assert_eq!(post(&gateway, &client, CI_KEY, "r-ci2").status(), 200);
    std::fs::write(&keys_file, &ci_entry).unwrap();

    // A file that does not load changes nothing: the ops key still works.
    std::fs::write(pipeline, format!("{rotated}\n[[[not toml")).unwrap();
    gateway.member.signal("HUP");
    gateway
        .member
        .wait_for_log("API keys not reloaded", 2, Duration::from_secs(10));
    assert_eq!(post(&gateway, &client, OPS_KEY, "r-4").status(), 200);
    let scraped = metrics(Some(OPS_KEY)).text().unwrap();
    for line in [
        "sluice_gateway_key_reloads_total{outcome=\"ok\"} 1",
        "sluice_gateway_key_reloads_total{outcome=\"failed\"} 2",
    ] {
        assert!(scraped.contains(line), "{line} not in\n{scraped}");
    }
    assert!(
        gateway
            .member
            .logged()
            .contains(&pipeline.display().to_string()),
        "the failed reload names the file"
    );

    let stored = crate::kafka::read_all_at(&brokers(), &setup.topic, Duration::from_secs(3));
    let markers = crate::gateway::markers(&stored);
    assert_eq!(
        markers.keys().collect::<Vec<_>>(),
        ["r-1", "r-3", "r-4", "r-ci", "r-ci2"]
    );
    gateway.member.stop(Duration::from_secs(30));
}
