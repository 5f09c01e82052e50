//! The last minutes of the stream's metrics, for the console's charts and edge rates: every
//! [`PERIOD`] the exposition is taken (rendered in process, or scraped from each member's
//! `/metrics`: a member exports its own partitions only, so their samples are merged) and its
//! samples kept, [`KEPT`] samples deep. A sample costs one render and one parse.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sluice_engine::events::Metrics;
use tokio_util::sync::CancellationToken;
use url::Url;

mod openmetrics;

/// How often the metrics are sampled.
pub(crate) const PERIOD: Duration = Duration::from_secs(5);

/// How many samples are kept (15 minutes).
const KEPT: usize = 180;

/// How long a scrape of one member may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the metrics come from.
#[derive(Clone)]
pub enum MetricsSource {
    /// The stream in this process.
    InProcess(Arc<Metrics>),
    /// Running members' `/metrics` endpoints.
    Scrape(Vec<Url>),
    /// None: the console shows the lake and the topics only.
    None,
}

/// A series: its name and labels.
type Key = (String, Vec<(String, String)>);

#[derive(Default)]
struct Ring {
    times: VecDeque<f64>,
    samples: VecDeque<BTreeMap<Key, f64>>,
    error: Option<String>,
}

/// The samples taken so far, shared with the handlers.
pub(crate) struct History {
    ring: Mutex<Ring>,
    source: MetricsSource,
}

/// One series over the kept samples, as the API answers it.
#[derive(Serialize)]
pub(crate) struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    values: Vec<Option<f64>>,
}

/// The kept samples, as the API answers them.
#[derive(Serialize)]
pub(crate) struct Snapshot {
    period_s: u64,
    pub(crate) up: bool,
    pub(crate) error: Option<String>,
    pub(crate) sources: Vec<String>,
    times: Vec<f64>,
    series: Vec<Series>,
}

impl History {
    /// Starts sampling `source` until `shutdown`.
    pub(crate) fn start(source: MetricsSource, shutdown: CancellationToken) -> Arc<Self> {
        let history = Arc::new(Self {
            ring: Mutex::default(),
            source,
        });
        if !matches!(history.source, MetricsSource::None) {
            let sampling = history.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(PERIOD);
                loop {
                    tokio::select! {
                        _ = every.tick() => sampling.sample().await,
                        _ = shutdown.cancelled() => return,
                    }
                }
            });
        }
        history
    }

    async fn sample(&self) {
        let (text, error) = match &self.source {
            MetricsSource::InProcess(metrics) => (metrics.render(), None),
            MetricsSource::Scrape(urls) => scrape(urls).await,
            MetricsSource::None => return,
        };
        let mut sample = BTreeMap::new();
        for s in openmetrics::parse(&text) {
            *sample.entry((s.name, s.labels)).or_insert(0.0) += s.value;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut ring = self.ring.lock().expect("no panics while holding the lock");
        ring.times.push_back(now);
        ring.samples.push_back(sample);
        ring.error = error;
        if ring.times.len() > KEPT {
            ring.times.pop_front();
            ring.samples.pop_front();
        }
    }

    /// Every series over the kept samples, `null` where a sample lacks it.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let ring = self.ring.lock().expect("no panics while holding the lock");
        let mut keys: Vec<&Key> = ring.samples.iter().flat_map(|s| s.keys()).collect();
        keys.sort();
        keys.dedup();
        let series = keys
            .into_iter()
            .map(|key| Series {
                name: key.0.clone(),
                labels: key.1.iter().cloned().collect(),
                values: ring.samples.iter().map(|s| s.get(key).copied()).collect(),
            })
            .collect();
        let (up, sources) = match &self.source {
            MetricsSource::InProcess(_) => (true, vec!["in-process".to_string()]),
            MetricsSource::Scrape(urls) => (
                ring.error.is_none(),
                urls.iter().map(Url::to_string).collect(),
            ),
            MetricsSource::None => (false, Vec::new()),
        };
        let error = match &self.source {
            MetricsSource::None => Some("no metrics source (--metrics URL names one)".into()),
            _ => ring.error.clone(),
        };
        Snapshot {
            period_s: PERIOD.as_secs(),
            up,
            error,
            sources,
            times: ring.times.iter().copied().collect(),
            series,
        }
    }
}

/// The members' expositions, concatenated (a member's samples are summed with the others'
/// under the same labels), and what failed.
async fn scrape(urls: &[Url]) -> (String, Option<String>) {
    let client = reqwest::Client::builder()
        .timeout(SCRAPE_TIMEOUT)
        .build()
        .expect("an HTTP client");
    let (mut text, mut errors) = (String::new(), Vec::new());
    for url in urls {
        let body = async {
            client
                .get(url.clone())
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        };
        match body.await {
            Ok(body) => text.push_str(&body),
            Err(err) => errors.push(format!("{url}: {err}")),
        }
    }
    (text, (!errors.is_empty()).then(|| errors.join("; ")))
}

#[cfg(test)]
mod tests {
    use sluice_engine::events::PartitionLag;

    use super::*;

    #[tokio::test]
    async fn samples_line_up_by_series_with_gaps_as_null() {
        let metrics = Metrics::shared();
        let history = History {
            ring: Mutex::default(),
            source: MetricsSource::InProcess(metrics.clone()),
        };
        history.sample().await;
        metrics.emit(PartitionLag {
            topic: "sensor_events",
            partition: 3,
            log_end: 17,
            committed_next: 10,
        });
        history.sample().await;
        let snapshot = history.snapshot();
        assert_eq!(snapshot.times.len(), 2);
        let lag = snapshot
            .series
            .iter()
            .find(|s| s.name == "sluice_consumer_lag")
            .expect("the lag series");
        assert_eq!(lag.values, vec![None, Some(7.0)]);
        assert_eq!(lag.labels["partition"], "3");
        assert!(snapshot.up);
    }

    #[tokio::test]
    async fn a_member_that_does_not_answer_is_named() {
        let url = Url::parse("http://127.0.0.1:9/metrics").unwrap();
        let history = History {
            ring: Mutex::default(),
            source: MetricsSource::Scrape(vec![url]),
        };
        history.sample().await;
        let snapshot = history.snapshot();
        assert!(!snapshot.up);
        assert!(
            snapshot.error.unwrap().contains("127.0.0.1:9"),
            "the member is named"
        );
    }
}
