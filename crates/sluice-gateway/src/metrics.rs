//! The gateway's metrics, served at `/metrics` in the Prometheus text format. Names are
//! constants here so that dashboards and alerts have one place to look; only the events of
//! [`crate::events`] move them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Requests answered, by stream and status.
pub const REQUESTS: &str = "sluice_gateway_requests";
/// Records by stream and outcome (`kafka`, `spooled`, `rejected`).
pub const RECORDS: &str = "sluice_gateway_records";
/// Seconds from a request's arrival to its answer.
pub const REQUEST_SECONDS: &str = "sluice_gateway_request_seconds";
/// Bytes in the spool.
pub const SPOOL_BYTES: &str = "sluice_gateway_spool_bytes";
/// Batches in the spool not yet delivered to Kafka.
pub const SPOOL_PENDING: &str = "sluice_gateway_spool_pending_batches";
/// Torn spool tails cut back at start.
pub const SPOOL_TORN_TAILS: &str = "sluice_gateway_spool_torn_tails";
/// Whether the last broker probe succeeded.
pub const KAFKA_UP: &str = "sluice_gateway_kafka_up";
/// API key reloads (SIGHUP), by outcome (`ok`, `failed`).
pub const KEY_RELOADS: &str = "sluice_gateway_key_reloads";
/// Records in doubt after a broker outage, by what their search found (`landed`: in the topic
/// already, not sent again; `resent`).
pub const IN_DOUBT_RECORDS: &str = "sluice_gateway_in_doubt_records";

/// Labels of [`REQUESTS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The stream in the path.
    pub stream: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// Labels of [`RECORDS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RecordLabels {
    /// The stream.
    pub stream: String,
    /// `kafka`, `spooled` or `rejected`.
    pub outcome: &'static str,
}

/// Labels of [`KEY_RELOADS`] and [`IN_DOUBT_RECORDS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    /// `ok` or `failed`; `landed` or `resent`.
    pub outcome: &'static str,
}

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    /// [`REQUESTS`]
    pub(crate) requests: Family<RequestLabels, Counter>,
    /// [`RECORDS`]
    pub(crate) records: Family<RecordLabels, Counter>,
    /// [`REQUEST_SECONDS`]
    pub(crate) request_seconds: Histogram,
    /// [`SPOOL_BYTES`]
    pub(crate) spool_bytes: Gauge,
    /// [`SPOOL_PENDING`]
    pub(crate) spool_pending: Gauge,
    /// [`SPOOL_TORN_TAILS`]
    pub(crate) spool_torn_tails: Counter,
    /// [`KAFKA_UP`]
    pub(crate) kafka_up: Gauge,
    /// [`KEY_RELOADS`]
    pub(crate) key_reloads: Family<OutcomeLabels, Counter>,
    /// [`IN_DOUBT_RECORDS`]
    pub(crate) in_doubt_records: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let records = Family::<RecordLabels, Counter>::default();
        let request_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let (spool_bytes, spool_pending, kafka_up) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        let spool_torn_tails = Counter::default();
        let key_reloads = Family::<OutcomeLabels, Counter>::default();
        let in_doubt_records = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            REQUESTS,
            "Requests answered, by stream and status",
            requests.clone(),
        );
        registry.register(
            RECORDS,
            "Records by stream and outcome (kafka, spooled, rejected)",
            records.clone(),
        );
        registry.register(
            REQUEST_SECONDS,
            "Seconds from a request's arrival to its answer",
            request_seconds.clone(),
        );
        registry.register(SPOOL_BYTES, "Bytes in the spool", spool_bytes.clone());
        registry.register(
            SPOOL_PENDING,
            "Spooled batches not yet delivered to Kafka",
            spool_pending.clone(),
        );
        registry.register(
            SPOOL_TORN_TAILS,
            "Torn spool tails cut back at start",
            spool_torn_tails.clone(),
        );
        registry.register(
            KAFKA_UP,
            "1 when the last broker probe succeeded",
            kafka_up.clone(),
        );
        registry.register(
            KEY_RELOADS,
            "API key reloads (SIGHUP), by outcome (ok, failed)",
            key_reloads.clone(),
        );
        registry.register(
            IN_DOUBT_RECORDS,
            "Records in doubt after a broker outage, by what their search found (landed, resent)",
            in_doubt_records.clone(),
        );
        Self {
            registry,
            requests,
            records,
            request_seconds,
            spool_bytes,
            spool_pending,
            spool_torn_tails,
            kafka_up,
            key_reloads,
            in_doubt_records,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}
