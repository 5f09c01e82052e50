//! The last minutes of the stream's metrics, for the console's charts and edge rates: every
//! [`PERIOD`] the exposition is taken (rendered in process, or scraped from each member's
//! `/metrics`) and its samples kept, [`KEPT`] samples deep. A sample costs one render and one
//! parse.
//!
//! Members' samples are merged by what they mean: counters, and gauges of what each member
//! holds (partitions, buffered bytes), add up; any other gauge takes the lowest value among the
//! members — a partition's lag or freshness comes from the one member that holds it, a table's
//! freshness is that of its freshest member, a window's watermark is held back by its slowest.
//! A sample in which a member did not answer is not kept (its counters would seem to drop).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sluice_engine::events::{
    ASSIGNED_PARTITIONS, BUFFERED_BYTES, MEMORY_BUDGET, Metrics, WINDOW_STATE_BYTES,
};
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

/// Gauges that add up over members: each holds its own share.
const SUMMED_GAUGES: [&str; 4] = [
    ASSIGNED_PARTITIONS,
    BUFFERED_BYTES,
    WINDOW_STATE_BYTES,
    MEMORY_BUDGET,
];

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
    client: reqwest::Client,
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
        let history = Arc::new(Self::new(source));
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

    fn new(source: MetricsSource) -> Self {
        let client = reqwest::Client::builder().timeout(SCRAPE_TIMEOUT).build();
        Self {
            ring: Mutex::default(),
            source,
            client: client.unwrap_or_default(),
        }
    }

    async fn sample(&self) {
        let texts = match &self.source {
            MetricsSource::InProcess(metrics) => Ok(vec![metrics.render()]),
            MetricsSource::Scrape(urls) => self.scrape(urls).await,
            MetricsSource::None => return,
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut ring = self.ring.lock().expect("no panics while holding the lock");
        let texts = match texts {
            Ok(texts) => texts,
            Err(error) => {
                ring.error = Some(error);
                return;
            }
        };
        ring.times.push_back(now);
        ring.samples.push_back(merged(&texts));
        ring.error = None;
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

impl History {
    /// Every member's exposition, asked at once; or which did not answer.
    async fn scrape(&self, urls: &[Url]) -> Result<Vec<String>, String> {
        let asked = urls.iter().map(|url| async move {
            let sent = self.client.get(url.clone()).send().await;
            let body = async { sent?.error_for_status()?.text().await };
            body.await.map_err(|err| format!("{url}: {err}"))
        });
        let (texts, errors): (Vec<_>, Vec<_>) = futures::future::join_all(asked)
            .await
            .into_iter()
            .partition(Result::is_ok);
        match errors.is_empty() {
            true => Ok(texts.into_iter().filter_map(Result::ok).collect()),
            false => Err((errors.into_iter().filter_map(Result::err))
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }
}

/// The members' samples as one: see the module's documentation.
fn merged(texts: &[String]) -> BTreeMap<Key, f64> {
    let mut sample: BTreeMap<Key, f64> = BTreeMap::new();
    for s in texts.iter().flat_map(|text| openmetrics::parse(text)) {
        let adds_up = ["_total", "_count", "_sum"]
            .iter()
            .any(|end| s.name.ends_with(end))
            || SUMMED_GAUGES.contains(&s.name.as_str());
        match sample.entry((s.name, s.labels)) {
            std::collections::btree_map::Entry::Vacant(entry) => drop(entry.insert(s.value)),
            std::collections::btree_map::Entry::Occupied(mut entry) => {
                let value = entry.get_mut();
                *value = if adds_up {
                    *value + s.value
                } else {
                    value.min(s.value)
                };
            }
        }
    }
    sample
}

#[cfg(test)]
mod tests {
    use sluice_engine::events::PartitionLag;

    use super::*;

    #[tokio::test]
    async fn samples_line_up_by_series_with_gaps_as_null() {
        let metrics = Metrics::shared();
        let history = History::new(MetricsSource::InProcess(metrics.clone()));
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
        let history = History::new(MetricsSource::Scrape(vec![url]));
        history.sample().await;
        let snapshot = history.snapshot();
        assert!(!snapshot.up);
        assert!(
            snapshot.times.is_empty(),
            "no sample is kept without every member"
        );
        assert!(
            snapshot.error.unwrap().contains("127.0.0.1:9"),
            "the member is named"
        );
    }

    #[test]
    fn members_add_up_counters_and_shares_and_take_the_lowest_of_other_gauges() {
        let member = |read: u32, lag: u32, freshness: u32, held: u32| {
            format!(
                "sluice_records_read_total{{topic=\"t\"}} {read}\n\
                 sluice_consumer_lag{{topic=\"t\",partition=\"{lag}\"}} {lag}\n\
                 sluice_table_freshness_seconds{{table=\"x\"}} {freshness}\n\
                 sluice_assigned_partitions {held}\n"
            )
        };
        let sample = merged(&[member(10, 1, 30, 2), member(5, 2, 4, 3)]);
        let value = |name: &str, labels: &[(&str, &str)]| {
            let labels = (labels.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            sample[&(name.to_string(), labels)]
        };
        assert_eq!(value("sluice_records_read_total", &[("topic", "t")]), 15.0);
        assert_eq!(
            value("sluice_table_freshness_seconds", &[("table", "x")]),
            4.0
        );
        assert_eq!(value("sluice_assigned_partitions", &[]), 5.0);
        let lag = [("topic", "t"), ("partition", "2")];
        assert_eq!(value("sluice_consumer_lag", &lag), 2.0);
    }
}
