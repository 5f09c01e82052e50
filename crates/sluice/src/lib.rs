//! sluice, the binary's library: every role is a `run(options, shutdown)` that a test can call
//! in-process; `main.rs` only parses arguments.
//!
//! # Layout
//! - [`cli`]: the command line (clap).
//! - [`produce`]: `sluice produce` and its report.
//! - [`generators`]: the sensor, retail and users event generators.
//! - `stream` and `load` run [`sluice_engine`]'s roles.
//! - [`query`]: `sluice query` and `sluice tables`.
//! - [`topics`]: `sluice topics`.
//! - [`catalog_sync`]: `sluice catalog sync`, the tables registered in AWS Glue.
//! - [`verify`]: `sluice verify`, the lake checked against Kafka and the producer report.
//! - [`up`]: `sluice up`, everything in one process on embedded defaults.
//! - [`builtin`]: the sensor pipeline `up` runs.
//! - [`broker`]: `sluice broker`, the embedded Kafka-compatible broker on its own.
//! - [`console`]: the web console, on its own (`sluice console`) or beside `up` and `stream`.

pub mod broker;
pub mod builtin;
pub mod catalog_sync;
pub mod check;
pub mod cli;
pub mod compact;
pub mod console;
pub mod generators;
pub mod probe;
pub mod produce;
pub mod query;
pub mod topics;
pub mod up;
pub mod verify;

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first Ctrl-C or SIGTERM, so roles drain and exit cleanly. A
/// second signal exits at once, committing nothing more (progress lives in the lake's commits,
/// so a restart resumes from the last one).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        let mut signal = async || {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        signal().await;
        tracing::info!("Shutting down: draining and committing what is buffered.");
        cancel.cancel();
        signal().await;
        tracing::warn!("Second signal: exiting without committing what is buffered.");
        std::process::exit(130);
    });
    token
}
