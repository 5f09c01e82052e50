//! The web console: one page served by the binary, every asset embedded at build time
//! ([`assets`]), over a JSON API ([`routes`]) that reads what is already there:
//! - the stream's metrics, sampled every few seconds into a short history ([`sampler`]), from
//!   the process it runs in or scraped from members' `/metrics`;
//! - the pipeline as configured, for its graph;
//! - the lake's tables, their partitions and commits ([`tables`]), and read-only SQL
//!   ([`sluice_query::read_only`]);
//! - the tails of the side topics: dead letters, alerts and late events ([`side`]).
//!
//! Nothing is read until someone asks, except the metrics sample (one render and parse every
//! few seconds). Each source fails on its own: a broker that is down shows as down on the
//! pages that need it, while the tables and SQL keep working, and the other way round.
//! Bound to a loopback address it needs no key (and checks the `Host` header against DNS
//! rebinding); bound elsewhere, every API call needs a bearer key ([`access`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::future::BoxFuture;
use sluice_core::Pipeline;
use sluice_gateway::auth::Keys;
use sluice_kafka::ClientOptions;
use sluice_query::read_only::Limits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod access;
mod assets;
mod routes;
mod sampler;
mod side;
mod sql;
mod tables;

pub use sampler::MetricsSource;

/// The address `--console-listen` defaults to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// Runs `sluice verify` on one table (by name) and answers its JSON report; the binary supplies
/// it, since verifying needs more than this crate knows.
pub type Verifier =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<serde_json::Value>> + Send + Sync>;

/// What the console shows and how it may be reached.
pub struct ConsoleOptions {
    /// The pipeline whose graph, tables and side topics it shows.
    pub pipeline: Pipeline,
    /// The cluster holding its topics.
    pub client: ClientOptions,
    /// Storage options of the lake.
    pub storage_options: HashMap<String, String>,
    /// Where the stream's metrics come from.
    pub metrics: MetricsSource,
    /// `sluice verify` for one table.
    pub verify: Verifier,
    /// Keys of which one must be presented on every API call; required when bound to an
    /// address that is not loopback.
    pub keys: Option<Keys>,
    /// How far one SQL query may go.
    pub sql: Limits,
    /// Memory one SQL query may hold, in bytes (past it, it fails; nothing spills to disk).
    pub sql_memory: usize,
}

/// Binds `listen`, so that a taken port fails the start with its address.
pub async fn bind(listen: &str) -> Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!("the console cannot listen on {listen} (--console-listen moves it)")
    })
}

/// Whether an API call from outside this machine could reach `address`.
pub fn is_exposed(address: SocketAddr) -> bool {
    !address.ip().is_loopback()
}

/// Serves the console on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    options: ConsoleOptions,
    shutdown: CancellationToken,
) -> Result<()> {
    let address = listener.local_addr()?;
    if is_exposed(address) && options.keys.is_none() {
        bail!("the console on {address} is not loopback-only, so it needs keys (--console-keys)");
    }
    let history = sampler::History::start(options.metrics.clone(), shutdown.clone());
    let router = routes::router(routes::Console::new(options, history));
    tracing::info!(%address, "Serving the console.");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .with_context(|| format!("serving the console on {address}"))
}

/// Serves the console on a runtime of its own (one worker thread), so that a heavy query or a
/// slow page cannot delay the stream's tasks in the process it shares.
pub fn spawn(
    listener: TcpListener,
    options: ConsoleOptions,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let listener = listener.into_std()?;
    std::thread::Builder::new()
        .name("sluice-console".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sluice-console")
                .enable_all()
                .build()
                .expect("a runtime for the console");
            let served = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                serve(listener, options, shutdown).await
            });
            if let Err(err) = served {
                tracing::error!("The console stopped: {err:#}");
            }
        })
        .context("starting the console's thread")
}
