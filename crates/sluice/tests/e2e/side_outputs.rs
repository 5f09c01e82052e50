//! Side outputs: the dead-letter topic receives every bad record once, with its original bytes,
//! key and headers plus the reason and source position; alert rules give exactly one alert per
//! matching event, across kill -9 and restarts. Topics are read back with a plain librdkafka
//! consumer; the matching events come from DuckDB over the Python `deltalake` reader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::kafka::{Outgoing, produce_raw, produce_raw_at, read_all, watermark_high};
use crate::private::PrivateServices;

/// How long a topic must stay quiet before reading it back is done.
const QUIET: Duration = Duration::from_secs(3);

#[test]
fn every_bad_record_reaches_the_dead_letter_topic_once_with_reason_bytes_and_headers() {
    let dir = test_dir("dead_letters");
    let topic = unique("dlq_source");
    let dlq = unique("dlq");
    create_topic(&topic, 2);
    // One partition for two source partitions: side records share it (p mod N).
    create_topic(&dlq, 1);
    let good = |n: u32| {
        format!(r#"{{"device_id":"d{n}","ts":"2026-11-22T10:00:0{n}Z","temperature_c":20.5}}"#)
    };
    let huge = format!(
        r#"{{"device_id":"{}","ts":"2026-11-22T10:00:00Z"}}"#,
        "x".repeat(1_000_000)
    );
    let deep = format!(
        r#"{{"device_id":"d","ts":"2026-11-22T10:00:00Z","x":{}0{}}}"#,
        "[".repeat(129),
        "]".repeat(129)
    );
    // (payload, what the reason must mention); None = a good record.
    let matrix: Vec<(Vec<u8>, Option<&str>)> = vec![
        (good(1).into_bytes(), None),
        (b"this is not json".to_vec(), Some("not valid JSON")),
        (
            br#"{"device_id":"d","ts":"2026-11-22T10:00:00Z","temperature_c":"hot"}"#.to_vec(),
            Some("temperature_c"),
        ),
        (
            br#"{"device_id":"d","temperature_c":1.0}"#.to_vec(),
            Some("required field ts"),
        ),
        (
            b"{\"device_id\":\"\xff\xfe\",\"ts\":\"2026-11-22T10:00:00Z\"}".to_vec(),
            Some("UTF-8"),
        ),
        (huge.into_bytes(), Some("max_record_size of 262144 bytes")),
        (deep.into_bytes(), Some("nested deeper than 128")),
        (
            br#"{"device_id":"d","ts":"2026-11-22T10:00:00Z","temperature_c":1e999}"#.to_vec(),
            Some("in field temperature_c: number out of range"),
        ),
        (
            br#"{"device_id":"d","ts":99999999999999999999}"#.to_vec(),
            Some("out of range for timestamp field ts"),
        ),
        (good(2).into_bytes(), None),
    ];
    let labels: Vec<String> = (0..matrix.len()).map(|i| format!("case-{i}")).collect();
    let outgoing: Vec<Outgoing<'_>> = matrix
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, ((payload, _), label))| Outgoing {
            partition: (i % 2) as i32,
            key: Some(label.as_bytes()),
            payload,
            headers: &[("origin", "side-outputs-test")],
        })
        .collect();
    produce_raw(&topic, &outgoing);

    let table = dir.join("lake/sensor_events");
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("group"),
        &table.display().to_string(),
        r#"{ max_latency = "1s" }"#,
    );
    extend_pipeline(&pipeline, &format!("dead_letter_topic = \"{dlq}\""), "");
    // The second run finds everything in the lake: nothing is sent again.
    for sent in [8, 0] {
        let out = run(
            sluice()
                .args(["stream", "--until-caught-up", "--pipeline"])
                .arg(&pipeline),
            Duration::from_secs(120),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("({sent} sent to a dead-letter topic)")),
            "{stderr}"
        );
    }

    let letters = read_all(&dlq, QUIET);
    assert_eq!(
        letters.len(),
        8,
        "one dead letter per bad record, no repeat after a restart"
    );
    for (i, (payload, reason)) in matrix.iter().enumerate() {
        let (partition, offset) = ((i % 2) as i32, (i / 2) as i64);
        let found: Vec<_> = letters
            .iter()
            .filter(|l| {
                l.header("sluice.source.partition") == Some(partition.to_string())
                    && l.header("sluice.source.offset") == Some(offset.to_string())
            })
            .collect();
        let Some(reason) = reason else {
            assert!(found.is_empty(), "good record {i} was dead-lettered");
            continue;
        };
        assert_eq!(found.len(), 1, "case {i}");
        let letter = found[0];
        let error = letter.header("sluice.error").unwrap_or_default();
        assert!(
            error.contains(reason),
            "case {i}: {error:?} lacks {reason:?}"
        );
        match letter.header("sluice.original_size") {
            // Cut to 512 KiB so that the broker takes it; the size says so.
            Some(size) => {
                assert_eq!(size, payload.len().to_string());
                assert_eq!(
                    letter.payload,
                    payload[..512 * 1024],
                    "case {i}: first bytes"
                );
            }
            None => assert_eq!(&letter.payload, payload, "case {i}: original bytes"),
        }
        assert_eq!(
            letter.key.as_deref(),
            Some(labels[i].as_bytes()),
            "case {i}"
        );
        assert_eq!(
            letter.header("origin").as_deref(),
            Some("side-outputs-test")
        );
        assert_eq!(letter.header("sluice.source.topic"), Some(topic.clone()));
        assert_eq!(
            letter.header("sluice.stream").as_deref(),
            Some("sensor_events")
        );
        assert!(letter.header("sluice.time").is_some());
    }
    let rows = query(
        &pipeline,
        "select device_id from sensor_events order by device_id",
    );
    let devices: Vec<&str> = rows
        .iter()
        .map(|r| r["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["d1", "d2"]);
    // verify counts dead letters as landed: nothing is missing.
    let verified = run_ok(
        sluice()
            .args(["verify", "--json", "--pipeline"])
            .arg(&pipeline),
        Duration::from_secs(120),
    );
    let verified: Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(verified["clean"], true, "{verified:#}");
    let dead: i64 = verified["tables"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["dead_lettered"].as_i64().unwrap())
        .sum();
    assert_eq!(dead, 8, "{verified:#}");
}

const ALERT_EVENTS: u64 = 100_000;
const ALERT_KILLS: usize = 5;

#[test]
fn kill_minus_nine_gives_exactly_one_alert_per_matching_event() {
    let dir = test_dir("alerts_chaos");
    let topic = unique("alerts_source");
    let alerts = unique("alerts");
    create_topic(&topic, 4);
    // Fewer alert partitions than source partitions: two sources share one.
    create_topic(&alerts, 3);
    let report = dir.join("report.json");
    produce_sensor(
        &topic,
        ALERT_EVENTS,
        11,
        "2026-11-22T00:00:00Z",
        "50ms",
        &report,
    );
    let uri = format!("s3://{}/{}/sensor_events", s3_bucket(), unique("alerts"));
    let rules = format!(
        r#"
[[alerts]]
name = "overheat"
from = "sensor_events"
when = "temperature_c > 85"
topic = "{alerts}"

[[alerts]]
name = "shaking"
from = "sensor_events"
when = "vibration_g > 0.5"
topic = "{alerts}"
"#
    );
    let pipeline = |run: usize| {
        let file = write_pipeline(
            &dir.join(format!("run{run}")),
            &topic,
            &unique("group"),
            &uri,
            r#"{ max_rows = 7000, max_latency = "1s" }"#,
        );
        extend_pipeline(&file, "", &rules);
        file
    };
    // Kills within 1.5 s: on a fast machine a run given 3 s landed the rest of the 100,000
    // events before its kill came (run 3 of 5 ended by itself), and a chaos test must not end
    // short of its kills.
    let seed = kill_at_random_moments(ALERT_KILLS, 300..1_500, &dir.join("logs"), |run| {
        stream_until_caught_up_command(&pipeline(run))
    });
    let last = pipeline(ALERT_KILLS + 1);
    run_ok(
        sluice()
            .args(["stream", "--until-caught-up", "--pipeline"])
            .arg(&last),
        Duration::from_secs(600),
    );
    verify_clean(&last, &report, &format!("seed {seed}"));

    let mut expected: BTreeMap<&str, BTreeSet<(i64, i64)>> = BTreeMap::new();
    for (rule, condition) in [
        ("overheat", "temperature_c > 85"),
        ("shaking", "vibration_g > 0.5"),
    ] {
        let rows = python_query(
            &uri,
            &format!("select _partition as p, _offset as o from t where {condition}"),
        );
        expected.insert(
            rule,
            rows.iter()
                .map(|r| (r["p"].as_i64().unwrap(), r["o"].as_i64().unwrap()))
                .collect(),
        );
    }
    assert!(
        expected.values().all(|set| set.len() > 100),
        "the generator should raise hundreds of alerts per rule"
    );

    let stored = read_all(&alerts, QUIET);
    let mut ids = BTreeSet::new();
    let mut got: BTreeMap<String, BTreeSet<(i64, i64)>> = BTreeMap::new();
    for record in &stored {
        let alert: Value = serde_json::from_slice(&record.payload).unwrap();
        let id = alert["id"].as_str().unwrap().to_string();
        assert!(ids.insert(id.clone()), "seed {seed}: alert {id} sent twice");
        let (p, o) = (
            alert["source"]["partition"].as_i64().unwrap(),
            alert["source"]["offset"].as_i64().unwrap(),
        );
        assert_eq!(
            i64::from(record.partition),
            p % 3,
            "alerts of partition p go to p mod 3"
        );
        assert_eq!(alert["key"], alert["event"]["device_id"], "{alert}");
        assert_eq!(
            record.key.as_deref(),
            alert["key"].as_str().map(str::as_bytes)
        );
        got.entry(alert["rule"].as_str().unwrap().to_string())
            .or_default()
            .insert((p, o));
    }
    for (rule, want) in &expected {
        let have = got.remove(*rule).unwrap_or_default();
        let missing: Vec<_> = want.difference(&have).take(5).collect();
        let extra: Vec<_> = have.difference(want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "seed {seed}, rule {rule}: {} expected, {} sent; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
            want.len(),
            have.len()
        );
    }
    assert!(got.is_empty(), "alerts of unknown rules: {got:?}");
}

/// A side partition whose last record batch holds more records than the first tail read (256):
/// tansu 0.6 answers a fetch from inside that batch with nothing at all, and a restarting
/// stream used to wait for a record that never came, then exit ("not read to their ends in
/// time") — at every restart. The tail scan must move back and find the last mark. tansu keeps
/// batches whole only in memory (on SQLite it stores records one per row), so the test has a
/// broker of its own in memory whatever the suite's broker stores.
#[test]
fn the_last_mark_is_found_inside_a_large_last_record_batch() {
    const RECORDS: i64 = 3_000;
    let side = unique("large_batch_side");
    let services = PrivateServices::in_memory(&test_dir("large_batch"));
    services.start("kafka");
    run_ok(
        services
            .sluice()
            .args(["topics", "create", &side, "--partitions", "1"]),
        Duration::from_secs(60),
    );
    let offsets: Vec<String> = (0..RECORDS).map(|o| o.to_string()).collect();
    let headers: Vec<[(&str, &str); 4]> = offsets
        .iter()
        .map(|offset| {
            [
                ("sluice.source.topic", "the_source"),
                ("sluice.source.partition", "0"),
                ("sluice.source.offset", offset.as_str()),
                ("sluice.ordinal", "0"),
            ]
        })
        .collect();
    let records: Vec<Outgoing<'_>> = headers
        .iter()
        .map(|headers| Outgoing {
            partition: 0,
            key: None,
            payload: b"{}",
            headers,
        })
        .collect();
    produce_raw_at(&services.brokers(), &side, &records);
    // The precondition: the last batch starts more than 256 records before the end. tansu
    // 0.6 reports its base offset + 1 as the high watermark.
    let high = watermark_high(&services.brokers(), &side, 0);
    assert!(
        high <= RECORDS - 256,
        "the last batch starts at {}: produce it in larger batches",
        high - 1
    );
    let client = sluice_kafka::ClientOptions::new(services.brokers());
    let started = std::time::Instant::now();
    let marks = sluice_kafka::side::last_marks(&client, &side, "the_source", &[0]).unwrap();
    assert_eq!(
        marks.get(&0).map(|m| (m.offset, m.ordinal)),
        Some((RECORDS - 1, 0)),
        "{marks:?}"
    );
    eprintln!("last mark found in {:?}", started.elapsed());
}
