//! `sluice gateway`'s bad-input matrix against the test broker: every case gets its documented
//! status and error body (README, "The HTTP gateway"), the rate limit holds one key back and not
//! the others, and the topic then holds exactly the accepted records — nothing accepted lost,
//! nothing rejected produced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::gateway::*;
use crate::helpers::*;
use crate::kafka::read_all_at;

/// A key scoped to another stream.
const OTHER_KEY: &str = "sk_test_other_0123456789abcdef";
/// A key of its own for the rate-limit case.
const BURST_KEY: &str = "sk_test_burst_0123456789abcdef";

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
