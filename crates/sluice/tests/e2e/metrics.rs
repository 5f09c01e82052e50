//! `sluice stream`'s `/metrics`, `/healthz` and `/readyz`, scraped by a real Prometheus and
//! asked through PromQL: lag, landed rows, freshness, and refused and late counts that match
//! what the topic holds; the exposition passes `promtool check metrics`, deploy/'s alert rules
//! load and fire, and every panel of deploy/'s dashboard queries without error.

use std::time::Duration;

use crate::helpers::*;
use crate::kafka::{Outgoing, produce_raw};
use crate::members::Member;
use crate::prometheus::{Prometheus, promtool};

/// Events produced first, spread over the topic's four partitions by device.
const EVENTS: u64 = 2_000;

#[test]
fn prometheus_sees_lag_zero_landed_rows_freshness_and_exact_refused_and_late_counts() {
    let dir = test_dir("metrics");
    let topic = unique("metrics_src");
    let dlq = unique("metrics_dlq");
    let alerts = unique("metrics_alerts");
    create_topic(&topic, 4);
    create_topic(&dlq, 1);
    create_topic(&alerts, 1);
    let table = format!("s3://{}/{}", s3_bucket(), unique("metrics_table"));
    let pipeline = write_pipeline(
        &dir,
        &topic,
        &unique("metrics_group"),
        &table,
        r#"{ max_latency = "1s" }"#,
    );
    extend_pipeline(
        &pipeline,
        &format!("dead_letter_topic = \"{dlq}\""),
        &format!(
            r#"
[[windows]]
name = "device_1m"
from = "sensor_events"
group_by = ["device_id"]
tumble = "1m"
allowed_lateness = "30s"
idle_timeout = "30s"
aggregates = {{ n = "count(*)" }}
uri = "{table}_1m"
flush = {{ max_latency = "1s" }}

[[alerts]]
name = "every_reading"
from = "sensor_events"
when = "temperature_c > -1000"
topic = "{alerts}"
"#
        ),
    );
    // Event times end a few minutes before now: freshness is about that old.
    let start = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    produce_sensor(&topic, EVENTS, 7, &start, "10ms", &dir.join("report.json"));

    let metrics = format!("127.0.0.1:{}", free_port());
    let mut member = Member::start_with(
        sluice()
            .args(["stream", "--metrics-listen", &metrics, "--pipeline"])
            .arg(&pipeline),
        dir.join("stream.log"),
    );
    member.wait_for_log("Serving /metrics", 1, Duration::from_secs(60));
    let rules = repo_file("deploy/prometheus/sluice-rules.yml");
    let prometheus = Prometheus::start(&dir, std::slice::from_ref(&metrics), &[&rules]);
    let landed = "sum(sluice_rows_landed_total{table=\"sensor_events\"})".to_string();
    let long = Duration::from_secs(180);
    prometheus.wait_for(&landed, long, |r| {
        r.first().is_some_and(|(_, v)| *v == EVENTS as f64)
    });
    let lag = format!("sluice_consumer_lag{{topic=\"{topic}\"}}");
    prometheus.wait_for(&lag, long, |r| {
        r.len() == 4 && r.iter().all(|(_, v)| *v == 0.0)
    });
    let freshness = prometheus.query("sluice_table_freshness_seconds{table=\"sensor_events\"}");
    let (_, freshness) = freshness.first().expect("freshness of sensor_events");
    // The newest event is 5 min − 20 s old when produced; scraping and landing add seconds.
    assert!(
        (200.0..900.0).contains(freshness),
        "freshness {freshness} s, expected the newest event's age (~280 s)"
    );
    let ready = reqwest::blocking::get(format!("http://{metrics}/readyz")).unwrap();
    assert_eq!(
        ready.status().as_u16(),
        200,
        "holding partitions, commits fine"
    );
    let live = reqwest::blocking::get(format!("http://{metrics}/healthz")).unwrap();
    assert_eq!(live.status().as_u16(), 200);

    // A burst of bad records and of events hours behind the closed windows, on every partition.
    let bad: Vec<&[u8]> = vec![b"not json", b"{\"device_id\":\"d\"}", b"", b"[1,2", b"{}"];
    let hours_ago = (chrono::Utc::now() - chrono::Duration::hours(3)).to_rfc3339();
    let late: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"device_id":"late-{i}","ts":"{hours_ago}","temperature_c":1.0}}"#))
        .collect();
    let records: Vec<Outgoing<'_>> = bad
        .iter()
        .copied()
        .chain(late.iter().map(|l| l.as_bytes()))
        .enumerate()
        .map(|(i, payload)| Outgoing {
            partition: (i % 4) as i32,
            key: None,
            payload,
            headers: &[],
        })
        .collect();
    produce_raw(&topic, &records);
    let refused = format!("sum(sluice_records_refused_total{{topic=\"{topic}\"}})");
    prometheus.wait_for(&refused, long, |r| {
        r.first().is_some_and(|(_, v)| *v == bad.len() as f64)
    });
    let late_count = "sum(sluice_late_events_total{window=\"device_1m\"})";
    prometheus.wait_for(late_count, long, |r| {
        r.first().is_some_and(|(_, v)| *v == late.len() as f64)
    });
    let dead = format!("sum(sluice_dead_letters_total{{topic=\"{topic}\"}})");
    prometheus.wait_for(&dead, long, |r| {
        r.first().is_some_and(|(_, v)| *v == bad.len() as f64)
    });
    // sluice's own latency is timed: each alert and dead letter from its record's receipt to
    // Kafka's acknowledgement, each commit from its oldest row's receipt.
    let acknowledged = |kind: &str| {
        format!("sum(sluice_received_to_acknowledged_seconds_count{{kind=\"{kind}\"}})")
    };
    let every_event = EVENTS as f64 + late.len() as f64;
    prometheus.wait_for(&acknowledged("alert"), long, |r| {
        r.first().is_some_and(|(_, v)| *v == every_event)
    });
    prometheus.wait_for(&acknowledged("dead_letter"), long, |r| {
        r.first().is_some_and(|(_, v)| *v == bad.len() as f64)
    });
    // Each is also timed when handed to the producer, before its acknowledgement.
    let sent = "sum(sluice_received_to_sent_seconds_count{kind=\"alert\"})";
    prometheus.wait_for(sent, long, |r| {
        r.first().is_some_and(|(_, v)| *v == every_event)
    });
    prometheus.wait_for(
        "sum(sluice_received_to_committed_seconds_count)",
        long,
        |r| r.first().is_some_and(|(_, v)| *v > 0.0),
    );
    // Late events still land in the stream's table; the lag closes again.
    let total = EVENTS as f64 + late.len() as f64;
    prometheus.wait_for(&landed, long, |r| {
        r.first().is_some_and(|(_, v)| *v == total)
    });
    prometheus.wait_for(&lag, long, |r| {
        r.len() == 4 && r.iter().all(|(_, v)| *v == 0.0)
    });

    let exposition = reqwest::blocking::get(format!("http://{metrics}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let (ok, report) = promtool(&["check", "metrics"], &exposition);
    assert!(ok, "promtool check metrics:\n{report}\n{exposition}");

    // The alert rules are live: dead letters arrived in the last minutes.
    prometheus.wait_for("ALERTS{alertname=\"SluiceDeadLettersRising\"}", long, |r| {
        !r.is_empty()
    });
    let (ok, report) = promtool(&["check", "rules", rules.to_str().unwrap()], "");
    assert!(ok, "promtool check rules:\n{report}");
    let dashboard = repo_file("deploy/grafana/sluice-stream.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap()).unwrap();
    let panel_exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| {
            target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
        })
        .collect();
    assert!(panel_exprs.len() >= 10, "{panel_exprs:?}");
    // Every panel's query runs in Prometheus (its metric names are checked against what
    // sluice exports by sluice-engine's test `deploy_files`).
    for expr in &panel_exprs {
        prometheus.query(expr);
    }
    member.stop(Duration::from_secs(30));
}
