//! `sluice gateway`: HTTP ingest in front of Kafka, for senders without a Kafka client (the API
//! Gateway + SQS + producer-Lambda front of the classic pipelines, in one process).
//!
//! A request carries JSON records for one stream of the pipeline file. Each record is checked
//! against the stream's JSON Schema and limits; accepted records are produced to the stream's
//! topic with an idempotent acks=all producer, keyed by the stream's key field, and the answer
//! comes once they are acknowledged — or, when Kafka is down or slow, once they are in the
//! spool, a write-ahead log on local disk that the drainer empties into Kafka in order. API keys
//! scope senders to streams; an `Idempotency-Key` makes a retried request harmless.

pub mod auth;
pub mod body;
pub mod delivery;
pub mod events;
pub mod idempotency;
pub mod in_doubt;
pub mod metrics;
pub mod rate;
pub mod records;
mod routes;
pub mod spool;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioTimer;
use sluice_core::Pipeline;
use sluice_core::config::{ApiKey, FsyncPolicy, GatewayLimits};
use sluice_kafka::{ClientOptions, KafkaError};
use tokio_util::sync::CancellationToken;

use crate::delivery::Delivery;
use crate::events::{KafkaProbed, KeysReloaded, SpoolOpened};
use crate::metrics::Metrics;
use crate::routes::AppState;
use crate::spool::{Spool, SpoolError};

/// How often the broker is probed for `/readyz`.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Failed probes in a row that make an outage (and a fresh producer).
const OUTAGE_PROBES: u32 = 3;
/// How long a probe waits for the broker's answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// How long in-flight requests get to finish at shutdown.
const GRACE: Duration = Duration::from_secs(10);
/// How long the spool gets to empty into Kafka at shutdown (what is left stays for next time).
const SETTLE: Duration = Duration::from_secs(10);

/// One record to produce: its key and its bytes, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The Kafka key (the stream's key field), if the record has one.
    pub key: Option<Vec<u8>>,
    /// The record's JSON text.
    pub value: Vec<u8>,
}

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A stream's JSON Schema or the listen address is unusable.
    #[error("{0}")]
    Config(String),
    /// The spool could not be opened.
    #[error("cannot open the spool")]
    Spool(#[from] SpoolError),
    /// The Kafka producer could not be created.
    #[error("cannot create the Kafka producer")]
    Kafka(#[from] KafkaError),
    /// The server failed.
    #[error("cannot serve on {addr}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What `sluice gateway` runs.
pub struct GatewayOptions {
    /// The pipeline: its streams and its `[gateway]` section.
    pub pipeline: Pipeline,
    /// The Kafka cluster.
    pub client: ClientOptions,
    /// Overrides `[gateway] listen`.
    pub listen: Option<String>,
    /// Where the API keys come from besides `pipeline`, re-read on SIGHUP.
    pub key_files: KeyFiles,
}

/// The files API keys are read from: the pipeline file's `[[gateway.keys]]` and a keys file's
/// `[[keys]]` (`--keys`, for keys kept apart from the pipeline, in a Kubernetes Secret say).
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    /// The pipeline file the gateway runs, if it came from one.
    pub pipeline: Option<PathBuf>,
    /// A keys file.
    pub keys: Option<PathBuf>,
}

impl KeyFiles {
    /// The keys of `pipeline` and of the keys file (whose names must not repeat the
    /// pipeline's).
    fn keys_of(&self, pipeline: &Pipeline) -> Result<Vec<ApiKey>, String> {
        let mut keys = pipeline.gateway.keys.clone();
        if let Some(file) = &self.keys {
            keys.extend(
                sluice_core::config::load_keys(file, pipeline).map_err(|e| format!("{e:#}"))?,
            );
        }
        Ok(keys)
    }

    /// The keys as the files hold them now (`running` stands for a pipeline not from a file).
    fn reload(&self, running: &Pipeline) -> Result<Vec<ApiKey>, String> {
        match &self.pipeline {
            Some(file) => self.keys_of(&Pipeline::load(file).map_err(|e| format!("{e:#}"))?),
            None => self.keys_of(running),
        }
    }

    /// What a reload reads, for messages.
    fn describe(&self) -> String {
        let files: Vec<String> = [&self.pipeline, &self.keys]
            .into_iter()
            .flatten()
            .map(|file| file.display().to_string())
            .collect();
        files.join(" and ")
    }
}

/// Serves until `shutdown`, then lets running requests finish and gives the spool a few seconds
/// to empty into Kafka.
pub async fn run(options: GatewayOptions, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let config = options.pipeline.gateway.clone();
    let listen = options.listen.unwrap_or(config.listen.clone());
    let addr: SocketAddr = tokio::net::lookup_host(&listen)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            GatewayError::Config(format!("cannot resolve the listen address {listen:?}"))
        })?;
    let metrics = Arc::new(Metrics::default());
    let (spool, recovery) = Spool::open(&config.spool)?;
    metrics.emit(SpoolOpened {
        dir: &config.spool.dir,
        pending: recovery.pending,
        torn_tail: recovery.torn_tail,
        torn_bytes: recovery.torn_bytes,
    });
    let mut streams = HashMap::new();
    for stream in &options.pipeline.streams {
        let wire = wire::WireFormat::of_stream(stream)
            .await
            .map_err(GatewayError::Config)?;
        let checks = records::StreamChecks::new(stream, config.limits.max_depth, wire)
            .map_err(GatewayError::Config)?;
        streams.insert(stream.name.clone(), checks);
    }
    let delivery = Arc::new(Delivery::new(
        &options.client,
        spool,
        config.produce_timeout,
        metrics.clone(),
    )?);
    let keys = options
        .key_files
        .keys_of(&options.pipeline)
        .map_err(GatewayError::Config)?;
    let state = Arc::new(AppState {
        keys: auth::Keys::new(keys),
        streams,
        limits: config.limits,
        rate: config.limits.rate_per_key.map(rate::RateLimits::new),
        idempotency: idempotency::Idempotency::new(config.idempotency_window),
        delivery: delivery.clone(),
        metrics: metrics.clone(),
        kafka_up: AtomicBool::new(false),
        in_flight: tokio::sync::Semaphore::new(config.limits.max_concurrent),
        require_key_for_metrics: config.require_key_for_metrics,
    });
    let background = CancellationToken::new();
    let drainer = tokio::spawn({
        let (delivery, stop) = (delivery.clone(), background.clone());
        async move { delivery.drain(stop).await }
    });
    tokio::spawn(probe_broker(state.clone(), background.clone()));
    if state.keys.is_empty() {
        tracing::warn!("no API keys ([[gateway.keys]], --keys): every request will get 401");
    }
    if options.key_files.pipeline.is_some() || options.key_files.keys.is_some() {
        tokio::spawn(reload_keys_on_hangup(
            state.clone(),
            options.key_files,
            options.pipeline.clone(),
            background.clone(),
        ));
    }
    if let FsyncPolicy::Every(interval) = config.spool.fsync {
        tokio::spawn(sync_spool(delivery.clone(), interval, background.clone()));
    }

    let handle = axum_server::Handle::new();
    tokio::spawn({
        let (handle, shutdown) = (handle.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(GRACE));
        }
    });
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tokio::spawn({
        let handle = handle.clone();
        async move {
            if let Some(bound) = handle.listening().await {
                tracing::info!("sluice gateway: listening on {scheme}://{bound}");
            }
        }
    });
    let app = routes::router(state).into_make_service();
    let served = match &config.tls {
        Some(tls) => {
            // Several crypto providers are linked (the AWS SDK's and reqwest's): pick one.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .map_err(|err| {
                    GatewayError::Config(format!(
                        "cannot load the TLS certificate {} and key {}: {err}",
                        tls.cert.display(),
                        tls.key.display()
                    ))
                })?;
            with_timeouts(axum_server::bind_rustls(addr, rustls), &config.limits)
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            with_timeouts(axum_server::bind(addr), &config.limits)
                .handle(handle)
                .serve(app)
                .await
        }
    };
    served.map_err(|source| GatewayError::Serve { addr, source })?;
    delivery.settle(SETTLE).await;
    background.cancel();
    let _ = drainer.await;
    if let Err(err) = delivery.sync_spool().await {
        tracing::error!(error = %format!("{err:#}"), "the spool could not be synced at shutdown");
    }
    Ok(())
}

/// A client that has not sent a request's headers within `header_timeout` loses its
/// connection (HTTP/1; the body's timeout is the handler's).
fn with_timeouts<A>(
    mut server: axum_server::Server<A>,
    limits: &GatewayLimits,
) -> axum_server::Server<A> {
    server
        .http_builder()
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    server
}

/// On SIGHUP, puts the keys the files hold now in place of the keys in use. Files that do not
/// load (or hold no keys) change nothing, and say why.
async fn reload_keys_on_hangup(
    state: Arc<AppState>,
    files: KeyFiles,
    running: Pipeline,
    stop: CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP: API keys cannot be reloaded");
            return;
        }
    };
    let described = files.describe();
    loop {
        tokio::select! {
            _ = hangups.recv() => {}
            () = stop.cancelled() => return,
        }
        let outcome = match files.reload(&running) {
            Ok(keys) if keys.is_empty() => {
                Err("they hold no API keys: that would refuse every request".to_string())
            }
            Ok(keys) => {
                let count = keys.len();
                state.keys.replace(keys);
                Ok(count)
            }
            Err(err) => Err(err),
        };
        state.metrics.emit(KeysReloaded {
            files: &described,
            outcome,
        });
    }
}

/// Keeps `kafka_up` (for `/readyz` and the metric) current.
async fn probe_broker(state: Arc<AppState>, stop: CancellationToken) {
    let mut failures = 0;
    loop {
        let producer = state.delivery.producer();
        let up = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer as _;
            producer
                .client()
                .fetch_metadata(None, PROBE_TIMEOUT)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        let changed = up != state.kafka_up.swap(up, Ordering::Relaxed);
        state.metrics.emit(KafkaProbed { up, changed });
        failures = if up { 0 } else { failures + 1 };
        // Only an outage, not one slow answer, costs the producer its session.
        if failures == OUTAGE_PROBES
            && let Err(err) = state.delivery.replace_producer().await
        {
            tracing::error!(error = %format!("{err:#}"), "cannot create a fresh Kafka producer");
        }
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The `fsync = "<interval>"` policy.
async fn sync_spool(delivery: Arc<Delivery>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        if let Err(err) = delivery.sync_spool().await {
            tracing::error!(error = %format!("{err:#}"), "the spool could not be synced");
        }
    }
}
