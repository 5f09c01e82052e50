//! `sluice produce`: generated events or NDJSON lines into a topic, idempotently with acks=all,
//! at a steady rate if asked, ending with a report of what was acknowledged.

mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use sluice_kafka::ClientOptions;
use sluice_kafka::producer::{Delivered, Producer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

pub use report::{PartitionReport, ProducerReport};

use crate::generators::{self, Generator};

/// Records awaiting acknowledgement at most; bounds memory, keeps librdkafka's batches full.
const MAX_IN_FLIGHT: usize = 50_000;

/// Where records come from.
pub enum Source {
    /// A generator.
    Generator {
        /// Which one.
        kind: generators::Kind,
        /// Its seed: the same seed gives the same records.
        seed: u64,
        /// Salt of the users generator's zip hash.
        salt: Option<String>,
    },
    /// NDJSON lines from a file, or stdin for "-"; each line is sent as it is (bytes, not
    /// checked: judging records is the stream's job).
    Ndjson(PathBuf),
}

/// Event time of generated records.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The wall clock when each record is made.
    Now,
    /// A fixed start plus a fixed step per record: with a seed, fully deterministic output.
    Fixed {
        /// Event time of the first record (epoch ms).
        start_ms: i64,
        /// Milliseconds between records.
        step_ms: i64,
    },
}

/// What to produce and how.
pub struct ProduceOptions {
    /// The cluster.
    pub client: ClientOptions,
    /// Target topic.
    pub topic: String,
    /// Records' origin.
    pub source: Source,
    /// Stop after this many records (generators run until Ctrl-C without it).
    pub count: Option<u64>,
    /// Records per second; as fast as acknowledgements allow without it.
    pub rate: Option<f64>,
    /// The field whose value keys each record; `None` uses the generator's default.
    pub key: Option<String>,
    /// Send records without a key.
    pub no_key: bool,
    /// Event time of generated records.
    pub clock: Clock,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// Produces until the source ends, `count` is reached or `shutdown` fires; returns the report.
/// A failed record stops the run with an error after the report's counts are final.
pub async fn run(options: ProduceOptions, shutdown: CancellationToken) -> Result<ProducerReport> {
    let client = options.client.clone();
    let topic = options.topic.clone();
    let producer =
        tokio::task::spawn_blocking(move || Producer::connect(&client, &topic)).await??;
    let mut records = Records::open(&options).await?;
    let key_field = match (&options.key, options.no_key) {
        (_, true) => None,
        (Some(field), false) => Some(field.clone()),
        (None, false) => records.default_key().map(String::from),
    };
    let bar = progress_bar(options.progress, options.count);
    let started = Instant::now();
    let mut report = ProducerReport::new(&options.topic);
    let mut first_error = None;
    let mut in_flight = FuturesUnordered::new();
    let mut sent: u64 = 0;
    while options.count.is_none_or(|count| sent < count)
        && !shutdown.is_cancelled()
        && first_error.is_none()
    {
        let Some((payload, key)) = records
            .next(sent, &options.clock, key_field.as_deref())
            .await?
        else {
            break;
        };
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        let delivery = producer
            .enqueue(key.as_deref().map(str::as_bytes), &payload)
            .await?;
        in_flight.push(async move { (key, delivery.await) });
        sent += 1;
        while in_flight.len() >= MAX_IN_FLIGHT {
            if let Some((key, result)) = in_flight.next().await {
                settle(&mut report, &mut first_error, key, result, &bar);
            }
        }
        // Count what is already acknowledged without waiting, so the bar moves.
        while let Some(Some((key, result))) = in_flight.next().now_or_never() {
            settle(&mut report, &mut first_error, key, result, &bar);
        }
    }
    while let Some((key, result)) = in_flight.next().await {
        settle(&mut report, &mut first_error, key, result, &bar);
    }
    bar.finish_and_clear();
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(err) = first_error {
        return Err(err).with_context(|| {
            format!(
                "{} record(s) acknowledged before the failure",
                report.records
            )
        });
    }
    Ok(report)
}

/// Counts an acknowledgement, or keeps the first failure.
fn settle(
    report: &mut ProducerReport,
    first_error: &mut Option<anyhow::Error>,
    key: Option<String>,
    result: Result<Delivered, sluice_kafka::KafkaError>,
    bar: &ProgressBar,
) {
    match result {
        Ok(delivered) => {
            report.acknowledged(key.as_deref(), delivered.partition, delivered.offset);
            bar.inc(1);
        }
        Err(err) => {
            report.failed += 1;
            first_error.get_or_insert_with(|| err.into());
        }
    }
}

/// A field's value as key text (strings as they are, other values as JSON; null is no key).
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn progress_bar(enabled: bool, count: Option<u64>) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = count.map_or_else(ProgressBar::no_length, ProgressBar::new);
    let template = if count.is_some() {
        "{spinner} {pos}/{len} records acknowledged [{elapsed_precise}] {per_sec} (eta {eta})"
    } else {
        "{spinner} {pos} records acknowledged [{elapsed_precise}] {per_sec}"
    };
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The records of a run, one payload at a time.
enum Records {
    Generated(Box<dyn Generator>),
    Lines(
        tokio::io::Split<BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>>,
        String,
    ),
}

impl Records {
    async fn open(options: &ProduceOptions) -> Result<Self> {
        Ok(match &options.source {
            Source::Generator { kind, seed, salt } => {
                Self::Generated(kind.build(*seed, salt.clone()))
            }
            Source::Ndjson(path) => {
                let (reader, name): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, String) =
                    if path.as_os_str() == "-" {
                        (Box::new(tokio::io::stdin()), "stdin".into())
                    } else {
                        let file = tokio::fs::File::open(path).await.with_context(|| {
                            format!("cannot open NDJSON input {}", path.display())
                        })?;
                        (Box::new(file), path.display().to_string())
                    };
                Self::Lines(BufReader::new(reader).split(b'\n'), name)
            }
        })
    }

    fn default_key(&self) -> Option<&'static str> {
        match self {
            Self::Generated(generator) => generator.default_key(),
            Self::Lines(..) => None,
        }
    }

    /// The payload of record number `index` and the value of its `key_field`, or `None` at the
    /// end of the input. A generated event gives its key before it is serialized; an input line
    /// is parsed only when a key is asked for.
    async fn next(
        &mut self,
        index: u64,
        clock: &Clock,
        key_field: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Option<String>)>> {
        match self {
            Self::Generated(generator) => {
                let event_time_ms = match *clock {
                    Clock::Now => chrono::Utc::now().timestamp_millis(),
                    Clock::Fixed { start_ms, step_ms } => start_ms + index as i64 * step_ms,
                };
                let event = generator.next_event(event_time_ms);
                let key = key_field.and_then(|field| key_text(event.get(field)?));
                Ok(Some((serde_json::to_vec(&event)?, key)))
            }
            Self::Lines(lines, name) => loop {
                match lines
                    .next_segment()
                    .await
                    .with_context(|| format!("reading {name}"))?
                {
                    None => return Ok(None),
                    Some(line) if line.trim_ascii().is_empty() => continue,
                    Some(mut line) => {
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        let key = key_field.and_then(|field| {
                            let value: Value = serde_json::from_slice(&line).ok()?;
                            key_text(value.get(field)?)
                        });
                        return Ok(Some((line, key)));
                    }
                }
            },
        }
    }
}

/// Refuses option combinations that cannot work, before connecting.
pub fn check(options: &ProduceOptions) -> Result<()> {
    if options.rate.is_some_and(|rate| !(rate > 0.0)) {
        bail!("--rate must be above 0 records per second");
    }
    if options.count == Some(0) {
        bail!("--count must be above 0");
    }
    Ok(())
}
