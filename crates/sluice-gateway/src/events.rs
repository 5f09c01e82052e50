//! What the gateway observes, in one place, as the engine's events do: each event is a type
//! whose `emit` writes its log line and moves its metrics together, so the log and `/metrics`
//! never drift apart. Metric names are the constants of [`crate::metrics`].

use std::path::Path;
use std::time::Duration;

use tracing::{debug, error, info};

use crate::metrics::{Metrics, OutcomeLabels, RecordLabels, RequestLabels};

/// One thing the gateway observed.
pub trait Event {
    /// Logs it and moves its metrics.
    fn emit(self, metrics: &Metrics);
}

/// A request answered.
pub struct RequestAnswered<'a> {
    /// The stream in the path (`(unknown)` for a stream the pipeline does not have).
    pub stream: &'a str,
    /// The HTTP status.
    pub status: u16,
    /// From its arrival to its answer.
    pub took: Duration,
}

impl Event for RequestAnswered<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(stream = self.stream, status = self.status, took = ?self.took, "Answered.");
        let labels = RequestLabels {
            stream: self.stream.to_string(),
            status: self.status,
        };
        metrics.requests.get_or_create(&labels).inc();
        metrics.request_seconds.observe(self.took.as_secs_f64());
    }
}

/// The records of one request, by what became of them.
pub struct RecordsTaken<'a> {
    /// Their stream.
    pub stream: &'a str,
    /// Acknowledged by Kafka.
    pub to_kafka: usize,
    /// Written to the spool, for the drainer to deliver.
    pub spooled: usize,
    /// Refused (schema, limits, or Kafka refusing them).
    pub rejected: usize,
}

impl Event for RecordsTaken<'_> {
    fn emit(self, metrics: &Metrics) {
        debug!(
            stream = self.stream,
            to_kafka = self.to_kafka,
            spooled = self.spooled,
            rejected = self.rejected,
            "Took records."
        );
        for (outcome, n) in [
            ("kafka", self.to_kafka),
            ("spooled", self.spooled),
            ("rejected", self.rejected),
        ] {
            if n > 0 {
                let labels = RecordLabels {
                    stream: self.stream.to_string(),
                    outcome,
                };
                metrics.records.get_or_create(&labels).inc_by(n as u64);
            }
        }
    }
}

/// The spool after an append or a delivery.
pub struct SpoolHolds {
    /// Batches not yet delivered.
    pub pending: usize,
    /// Its bytes.
    pub bytes: u64,
}

impl Event for SpoolHolds {
    fn emit(self, metrics: &Metrics) {
        metrics.spool_pending.set(self.pending as i64);
        metrics.spool_bytes.set(self.bytes as i64);
    }
}

/// The spool as found at start.
pub struct SpoolOpened<'a> {
    /// Its directory.
    pub dir: &'a Path,
    /// Batches from before, not yet delivered.
    pub pending: usize,
    /// Whether a torn tail (a write cut short by a crash) was cut back.
    pub torn_tail: bool,
    /// The bytes cut.
    pub torn_bytes: u64,
}

impl Event for SpoolOpened<'_> {
    fn emit(self, metrics: &Metrics) {
        if self.torn_tail {
            metrics.spool_torn_tails.inc();
        }
        if self.pending > 0 || self.torn_tail {
            info!(
                dir = %self.dir.display(),
                pending_batches = self.pending,
                torn_bytes_cut = self.torn_bytes,
                "the spool holds batches from before: delivering them first"
            );
        }
    }
}

/// A broker probe's answer.
pub struct KafkaProbed {
    /// Whether the broker answered.
    pub up: bool,
    /// Whether the previous probe said otherwise.
    pub changed: bool,
}

impl Event for KafkaProbed {
    fn emit(self, metrics: &Metrics) {
        if self.changed {
            info!(reachable = self.up, "Kafka reachability changed");
        }
        metrics.kafka_up.set(i64::from(self.up));
    }
}

/// Records in doubt (in flight when their producer was replaced) looked for in their topic.
pub struct InDoubtSettled<'a> {
    /// Their topic.
    pub topic: &'a str,
    /// Found there: delivered, not sent again.
    pub landed: usize,
    /// Not found: sent again.
    pub resent: usize,
}

impl Event for InDoubtSettled<'_> {
    fn emit(self, metrics: &Metrics) {
        info!(
            topic = self.topic,
            landed = self.landed,
            resent = self.resent,
            "records in doubt looked for: those found count as delivered, the rest are sent again"
        );
        for (outcome, n) in [("landed", self.landed), ("resent", self.resent)] {
            metrics
                .in_doubt_records
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(n as u64);
        }
    }
}

/// The API keys re-read from their files (SIGHUP).
pub struct KeysReloaded<'a> {
    /// The files read.
    pub files: &'a str,
    /// How many keys are in place now, or why the file was not taken (the old keys stay).
    pub outcome: Result<usize, String>,
}

impl Event for KeysReloaded<'_> {
    fn emit(self, metrics: &Metrics) {
        let outcome = match self.outcome {
            Ok(keys) => {
                info!(files = self.files, keys, "API keys reloaded");
                "ok"
            }
            Err(reason) => {
                error!(files = self.files, %reason, "API keys not reloaded: the keys in place stay");
                "failed"
            }
        };
        metrics
            .key_reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

impl Metrics {
    /// Logs `event` and moves its metrics.
    pub fn emit(&self, event: impl Event) {
        event.emit(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_moves_its_metrics() {
        let metrics = Metrics::default();
        metrics.emit(RecordsTaken {
            stream: "s",
            to_kafka: 3,
            spooled: 2,
            rejected: 0,
        });
        metrics.emit(RequestAnswered {
            stream: "s",
            status: 202,
            took: Duration::from_millis(3),
        });
        metrics.emit(SpoolHolds {
            pending: 4,
            bytes: 1000,
        });
        metrics.emit(SpoolOpened {
            dir: Path::new("/tmp/spool"),
            pending: 0,
            torn_tail: true,
            torn_bytes: 7,
        });
        metrics.emit(KafkaProbed {
            up: true,
            changed: true,
        });
        metrics.emit(KeysReloaded {
            files: "pipeline.toml",
            outcome: Err("line 3: expected a table".into()),
        });
        let text = metrics.render();
        for line in [
            "sluice_gateway_records_total{stream=\"s\",outcome=\"kafka\"} 3",
            "sluice_gateway_records_total{stream=\"s\",outcome=\"spooled\"} 2",
            "sluice_gateway_requests_total{stream=\"s\",status=\"202\"} 1",
            "sluice_gateway_request_seconds_count 1",
            "sluice_gateway_spool_pending_batches 4",
            "sluice_gateway_spool_bytes 1000",
            "sluice_gateway_spool_torn_tails_total 1",
            "sluice_gateway_kafka_up 1",
            "sluice_gateway_key_reloads_total{outcome=\"failed\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("outcome=\"rejected\""), "{text}");
    }
}
