//! The Grafana dashboard and the Prometheus alert rules under `deploy/` refer only to metrics
//! that sluice exports: with every event emitted once, each `sluice_…` name in them must be a
//! sample of a family the exposition declares. (The e2e test `metrics` runs both against a
//! real Prometheus scraping a stream.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_core::{RejectKind, Rejected};
use sluice_engine::events::*;

/// A Metrics in which every event has happened once.
fn every_event_once() -> Metrics {
    let metrics = Metrics::default();
    let error = anyhow::anyhow!("example");
    let partitions = [("t".to_string(), 0)];
    let refused = [Rejected {
        partition: 0,
        offset: 1,
        kind: RejectKind::Schema,
        reason: "example".into(),
    }];
    metrics.emit(RecordsRead {
        topic: "t",
        records: 2,
        bytes: 20,
        already_landed: 0,
    });
    metrics.emit(RecordsRefused {
        topic: "t",
        refused: &refused,
        dead_letter_topic: Some("d"),
    });
    metrics.emit(DeadLettersSent {
        topic: "t",
        count: 1,
    });
    metrics.emit(LateEvents {
        topic: "t",
        partition: 0,
        window: "w",
        offsets: &[1],
    });
    metrics.emit(AlertsSent {
        rule: "r",
        count: 1,
    });
    metrics.emit(EventsForwarded {
        window: "w",
        count: 1,
    });
    metrics.emit(Committed {
        table: "x",
        kind: TableKind::Rows,
        version: 1,
        rows: 1,
        files: 1,
        bytes: 100,
        partitions: 1,
        to_line: None,
        took: Duration::from_millis(5),
        newest_event_us: Some(0),
        newest_by_partition: &[("x", 0, 0)],
        since_received: Some(Duration::from_millis(7)),
    });
    metrics.emit(SideAcknowledged {
        kind: sluice_kafka::side::SideKind::Alert,
        after: Duration::from_millis(2),
    });
    metrics.emit(SideSent {
        kind: sluice_kafka::side::SideKind::Alert,
        after: Duration::from_millis(1),
    });
    metrics.emit(CommitFenced {
        table: "x",
        error: &error,
    });
    metrics.emit(CommitRetried {
        table: "x",
        error: &error,
        retry_in: Duration::ZERO,
    });
    metrics.emit(RegistryUnavailable {
        topic: "t",
        id: 1,
        error: &error,
        retry_in: Duration::ZERO,
    });
    metrics.emit(PartitionsAssigned {
        partitions: &partitions,
        holding: 1,
    });
    metrics.emit(PartitionsRevoked {
        partitions: &partitions,
        holding: 0,
        lanes: 1,
    });
    metrics.emit(LaneOpened {
        topic: "t",
        partition: 0,
        next: 0,
        committed: &[],
        side: &(),
    });
    metrics.emit(LanesFenced { lanes: 1 });
    metrics.emit(OverMemoryBudget {
        table: "x",
        bytes: 1,
    });
    metrics.emit(Buffered {
        bytes: 1,
        window_state: 1,
        budget: 2,
    });
    metrics.emit(WatermarkMoved {
        window: "w",
        watermark_us: 0,
    });
    metrics.emit(PartitionLag {
        topic: "t",
        partition: 0,
        log_end: 2,
        committed_next: 1,
    });
    metrics
}

/// A file of the repository the test runs in: `CARGO_MANIFEST_DIR` as cargo sets it when it
/// runs the test, not as it was at compile time (clones sharing one target dir reuse one test
/// binary, which would read another clone's files, or a deleted one's).
fn repo_file(path: &str) -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    Path::new(&crate_dir).join("../..").join(path)
}

/// The families an OpenMetrics exposition declares, with their types.
fn families(exposition: &str) -> Vec<(String, String)> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// Whether `name` is a sample of the family `(family, kind)`: a counter's `_total`, a
/// histogram's `_bucket`, `_sum` and `_count`, a gauge's own name.
fn sample_of(name: &str, (family, kind): &(String, String)) -> bool {
    let suffixes: &[&str] = match kind.as_str() {
        "counter" => &["_total"],
        "histogram" => &["_bucket", "_sum", "_count"],
        _ => &[""],
    };
    name.strip_prefix(family.as_str())
        .is_some_and(|suffix| suffixes.contains(&suffix))
}

/// The `sluice_…` names in a text.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("sluice_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_exported_metrics() {
    let exposition = every_event_once().render();
    let declared = families(&exposition);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/grafana/sluice-stream.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules = std::fs::read_to_string(repo_file("deploy/prometheus/sluice-rules.yml")).unwrap();
    let mut used = 0;
    for (file, text) in exprs
        .iter()
        .map(|e| ("the dashboard", e.as_str()))
        .chain([("the rules", rules.as_str())])
    {
        for name in metric_names(text) {
            used += 1;
            assert!(
                declared.iter().any(|family| sample_of(&name, family)),
                "{file} uses {name}, which is not exported:\n{exposition}"
            );
        }
    }
    assert!(used > 20, "only {used} metric names found");
}

#[test]
fn a_name_that_is_not_exported_is_caught() {
    let declared = families(&every_event_once().render());
    assert!(
        declared
            .iter()
            .any(|f| sample_of("sluice_commits_total", f))
    );
    assert!(!declared.iter().any(|f| sample_of("sluice_commit_total", f)));
    assert!(
        !declared
            .iter()
            .any(|f| sample_of("sluice_consumer_lag_total", f))
    );
}
