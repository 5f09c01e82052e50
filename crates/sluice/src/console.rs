//! The web console wired to the binary: its keys, its SQL limits, and `sluice verify` for the
//! tables page; served beside `up` and `stream` (on a runtime of its own, so that it cannot
//! slow the stream) or alone by `sluice console`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sluice_console::{ConsoleOptions, MetricsSource, Verifier};
use sluice_core::Pipeline;
use sluice_core::config::ApiKey;
use sluice_gateway::auth::Keys;
use sluice_kafka::ClientOptions;
use sluice_query::read_only::Limits;
use tokio_util::sync::CancellationToken;

use crate::cli::ConsoleFlags;
use crate::verify::{self, VerifyOptions};

/// Unreferenced files younger than this are not reported by the console's verify: a commit
/// may be in flight while the stream runs.
const VERIFY_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What the console needs besides its flags.
pub struct Serve {
    /// The pipeline it shows.
    pub pipeline: Pipeline,
    /// The cluster.
    pub client: ClientOptions,
    /// The lake's storage options.
    pub storage_options: HashMap<String, String>,
    /// Where the metrics come from.
    pub metrics: MetricsSource,
}

/// A console that is serving.
pub struct Serving {
    /// Where.
    pub address: SocketAddr,
    /// The key made for this run, when it is not on loopback and no keys file was given.
    pub key: Option<String>,
    /// Its thread.
    pub thread: std::thread::JoinHandle<()>,
}

impl Serving {
    /// How `up` and `console` say where it is.
    pub fn greeting(&self) -> String {
        match &self.key {
            Some(key) => format!(
                "http://{}/ (not loopback: API calls need the key {key}; plain HTTP sends it in clear)",
                self.address
            ),
            None => format!("http://{}/", self.address),
        }
    }
}

/// Binds `listen` and serves the console there on its own runtime until `shutdown`.
pub async fn start(
    listen: &str,
    flags: &ConsoleFlags,
    serve: Serve,
    shutdown: CancellationToken,
) -> Result<Serving> {
    let listener = sluice_console::bind(listen).await?;
    let address = listener.local_addr()?;
    let (keys, key) = keys(flags, &serve.pipeline, address)?;
    if flags.sql_rows == 0 {
        bail!("--sql-rows must be at least 1");
    }
    let options = ConsoleOptions {
        verify: verifier(&serve),
        pipeline: serve.pipeline,
        client: serve.client,
        storage_options: serve.storage_options,
        metrics: serve.metrics,
        keys,
        sql: Limits {
            timeout: flags.sql_timeout,
            rows: flags.sql_rows,
        },
        sql_memory: usize::try_from(flags.sql_memory).unwrap_or(usize::MAX),
    };
    let thread = sluice_console::spawn(listener, options, shutdown)?;
    Ok(Serving {
        address,
        key,
        thread,
    })
}

/// The keys that open the API: those of `--console-keys`; else, beyond loopback, one made for
/// this run (returned to be printed); else none.
fn keys(
    flags: &ConsoleFlags,
    pipeline: &Pipeline,
    address: SocketAddr,
) -> Result<(Option<Keys>, Option<String>)> {
    if let Some(file) = &flags.console_keys {
        let keys = sluice_core::config::load_keys(file, pipeline)
            .with_context(|| format!("--console-keys {}", file.display()))?;
        if keys.is_empty() {
            bail!("--console-keys {} holds no key", file.display());
        }
        return Ok((Some(Keys::new(keys)), None));
    }
    if !sluice_console::is_exposed(address) {
        return Ok((None, None));
    }
    let (key, sha256) = sluice_gateway::auth::generate();
    let keys = Keys::new(vec![ApiKey {
        name: "console".into(),
        sha256,
        streams: None,
    }]);
    Ok((Some(keys), Some(key)))
}

/// `sluice verify` of one stream table, for the tables page.
fn verifier(serve: &Serve) -> Verifier {
    let (pipeline, client, storage_options) = (
        serve.pipeline.clone(),
        serve.client.clone(),
        serve.storage_options.clone(),
    );
    Arc::new(move |table: String| {
        let mut pipeline = pipeline.clone();
        let (client, storage_options) = (client.clone(), storage_options.clone());
        Box::pin(async move {
            if pipeline.windows.iter().any(|w| w.name == table) {
                bail!("verify checks the tables of streams; {table} is a window table");
            }
            pipeline.tables.retain(|t| t.name == table);
            let verification = verify::run(&VerifyOptions {
                pipeline,
                client,
                storage_options,
                report: None,
                min_age: VERIFY_MIN_AGE,
                repair: false,
            })
            .await?;
            Ok(serde_json::json!({
                "clean": verification.clean,
                "summary": verify::summary(&verification),
                "report": verification,
            }))
        })
    })
}

/// `sluice console`: serves until `shutdown`.
pub async fn run(args: crate::cli::ConsoleArgs, shutdown: CancellationToken) -> Result<()> {
    let pipeline = match &args.pipeline {
        Some(file) => Pipeline::load(file)?,
        None => {
            let default = std::path::Path::new(crate::cli::DEFAULT_DATA_DIR).join("lake");
            let lake = (args.lake.clone()).unwrap_or_else(|| default.display().to_string());
            crate::builtin::sensor_pipeline(&lake)?
        }
    };
    let brokers = args.kafka.resolve(pipeline.kafka.brokers.as_deref());
    let serve = Serve {
        client: ClientOptions::of_pipeline(brokers, &pipeline.kafka)?,
        storage_options: sluice_lake::location::storage_options(&pipeline.storage_options),
        metrics: match args.metrics.is_empty() {
            true => MetricsSource::None,
            false => MetricsSource::Scrape(args.metrics.clone()),
        },
        pipeline,
    };
    let listen = (args.console.console_listen.as_deref()).unwrap_or(sluice_console::DEFAULT_LISTEN);
    let serving = start(listen, &args.console, serve, shutdown.clone()).await?;
    println!("sluice console: {}", serving.greeting());
    shutdown.cancelled().await;
    tokio::task::spawn_blocking(move || serving.thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the console's thread panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(keys: Option<std::path::PathBuf>) -> ConsoleFlags {
        ConsoleFlags {
            console_listen: None,
            console_keys: keys,
            sql_timeout: std::time::Duration::from_secs(30),
            sql_rows: 10,
            sql_memory: 1 << 20,
        }
    }

    #[test]
    fn beyond_loopback_a_key_is_made_for_the_run_and_on_loopback_none_is_needed() {
        let pipeline = crate::builtin::sensor_pipeline("/tmp/lake").unwrap();
        let exposed: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        let (keys, key) = keys(&flags(None), &pipeline, exposed).unwrap();
        let key = key.expect("a key is printed");
        let authorization = format!("Bearer {key}");
        let keys = keys.expect("keys are required");
        assert!(keys.authenticate(Some(authorization.as_bytes())).is_ok());
        let loopback: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        let (keys, key) = super::keys(&flags(None), &pipeline, loopback).unwrap();
        assert!(keys.is_none() && key.is_none());
    }

    #[test]
    fn a_keys_file_is_required_everywhere_once_given_and_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = crate::builtin::sensor_pipeline("/tmp/lake").unwrap();
        let loopback: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        let file = dir.path().join("keys.toml");
        std::fs::write(&file, "keys = []\n").unwrap();
        let Err(err) = keys(&flags(Some(file.clone())), &pipeline, loopback) else {
            panic!("an empty keys file is refused");
        };
        assert!(format!("{err:#}").contains("holds no key"), "{err:#}");
        let sha256 = "37a9e46a64418fdd2d73ae824cc84858691d3ee91bf6fd0347bbe8a3e25e0493";
        let entry = format!("[[keys]]\nname = \"ops\"\nsha256 = \"{sha256}\"\nstreams = [\"*\"]\n");
        std::fs::write(&file, entry).unwrap();
        let (keys, key) = keys(&flags(Some(file)), &pipeline, loopback).unwrap();
        assert!(keys.is_some() && key.is_none());
    }
}
