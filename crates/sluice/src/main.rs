//! The `sluice` binary: parses the command line and runs one role of the library.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use sluice::cli::{Cli, Command};
use sluice::produce::{self, Clock, ProduceOptions, Source};
use sluice_core::Pipeline;
use sluice_core::config::KafkaConfig;
use sluice_engine::events::Metrics;
use sluice_engine::observe;
use sluice_engine::stream::{self, StreamOptions};
use sluice_kafka::ClientOptions;
use tracing_subscriber::EnvFilter;

/// sluice's own progress at info, everything else at warn. delta-kernel logs an ERROR when it
/// looks for a table that does not exist yet, which sluice then creates: not an error to users.
const DEFAULT_LOG: &str = "warn,sluice=info,sluice_kafka=info,sluice_lake=info,sluice_core=info,\
sluice_query=info,sluice_gateway=info,buoyant_kernel::snapshot::builder=off";

#[tokio::main]
async fn main() -> ExitCode {
    let filter =
        EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let shutdown = sluice::shutdown_on_signals();
    match cli.command {
        Command::Up(args) => sluice::up::run(args, shutdown).await,
        Command::Produce(args) => {
            let clock = match &args.start_time {
                None => Clock::Now,
                Some(start) => Clock::Fixed {
                    start_ms: chrono::DateTime::parse_from_rfc3339(start)
                        .with_context(|| format!("--start-time {start:?} is not RFC 3339"))?
                        .timestamp_millis(),
                    step_ms: sluice_core::config::parse_duration(&args.event_spacing)
                        .map_err(|err| anyhow::anyhow!("--event-spacing: {err}"))?
                        .as_millis() as i64,
                },
            };
            let source = match (args.generator, args.input) {
                (Some(kind), _) => Source::Generator {
                    kind,
                    seed: args.seed,
                    salt: args.salt,
                },
                (None, Some(path)) => Source::Ndjson(path),
                (None, None) => unreachable!("clap requires --generator or --input"),
            };
            let options = ProduceOptions {
                client: client_of(&args.kafka, args.kafka_config.as_deref())?,
                topic: args.topic,
                source,
                count: args.count,
                rate: args.rate,
                key: args.key,
                no_key: args.no_key,
                clock,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            produce::check(&options)?;
            let report = produce::run(options, shutdown).await?;
            let json = serde_json::to_string_pretty(&report)?;
            match &args.report {
                Some(path) => std::fs::write(path, json + "\n")
                    .with_context(|| format!("writing the report to {}", path.display()))?,
                None => println!("{json}"),
            }
            eprintln!(
                "produced {} records to {} in {:.1} s ({:.0}/s)",
                report.records,
                report.topic,
                report.seconds,
                report.records as f64 / report.seconds.max(1e-9)
            );
            Ok(())
        }
        Command::Stream(args) => {
            let pipeline = Pipeline::load(&args.pipeline)?;
            let (client, storage_options) = connections(&args.kafka, &pipeline)?;
            let listener = observe::bind(&args.metrics_listen).await?;
            let metrics = Metrics::shared();
            let serving = tokio::spawn(observe::serve(
                listener,
                metrics.clone(),
                shutdown.child_token(),
            ));
            let _console = match &args.console.console_listen {
                Some(listen) => {
                    let serve = sluice::console::Serve {
                        pipeline: pipeline.clone(),
                        client: client.clone(),
                        storage_options: storage_options.clone(),
                        metrics: sluice_console::MetricsSource::InProcess(metrics.clone()),
                    };
                    let serving = sluice::console::start(
                        listen,
                        &args.console,
                        serve,
                        shutdown.child_token(),
                    )
                    .await?;
                    eprintln!("stream: console on {}", serving.greeting());
                    Some(serving)
                }
                None => None,
            };
            let syncing = args.catalog_sync_every.map(|every| {
                tokio::spawn(sluice::catalog_sync::every(
                    pipeline.clone(),
                    storage_options.clone(),
                    every,
                    shutdown.child_token(),
                ))
            });
            let options = StreamOptions {
                pipeline,
                client,
                storage_options,
                until_caught_up: args.until_caught_up,
                instance_id: args.instance_id,
                drain: tokio_util::sync::CancellationToken::new(),
                memory_budget: sluice_core::config::parse_size(&args.memory_budget)
                    .map_err(|err| anyhow::anyhow!("--memory-budget: {err}"))?,
                metrics,
                shutdown_timeout: args.shutdown_timeout,
            };
            let summary = stream::run(options, shutdown).await;
            serving.abort();
            if let Some(syncing) = syncing {
                syncing.abort();
            }
            let summary = summary?;
            eprintln!(
                "stream: {} rows committed in {} commits; {} records rejected ({} sent to a dead-letter topic); {} alerts sent; {} window rows; {} events repartitioned; {} late events; {} commits fenced",
                summary.rows,
                summary.commits,
                summary.rejected,
                summary.dead_lettered,
                summary.alerts,
                summary.windows,
                summary.forwarded,
                summary.late,
                summary.fenced
            );
            Ok(())
        }
        Command::Gateway(args) => match args.command {
            Some(sluice::cli::GatewayCommand::Keygen { name, streams }) => {
                let (key, sha256) = sluice_gateway::auth::generate();
                eprintln!(
                    "API key for {name} (shown once; the pipeline file keeps only its hash):"
                );
                println!("{key}");
                eprintln!("\nAdd to the pipeline file:\n");
                eprintln!(
                    "[[gateway.keys]]\nname = {name:?}\nsha256 = \"{}\"\nstreams = {streams:?}",
                    hex::encode(sha256)
                );
                Ok(())
            }
            None => {
                let file = args.pipeline.context("--pipeline is required")?;
                let pipeline = Pipeline::load(&file)?;
                let (client, _) = connections(&args.kafka, &pipeline)?;
                sluice_gateway::run(
                    sluice_gateway::GatewayOptions {
                        pipeline,
                        client,
                        listen: args.listen,
                        key_files: sluice_gateway::KeyFiles {
                            pipeline: Some(file),
                            keys: args.keys,
                        },
                    },
                    shutdown,
                )
                .await?;
                Ok(())
            }
        },
        Command::Load(args) => {
            let pipeline = Pipeline::load(&args.pipeline)?;
            let storage_options = sluice_lake::location::storage_options(&pipeline.storage_options);
            let started = std::time::Instant::now();
            let summary = sluice_engine::load::run(sluice_engine::load::LoadOptions {
                pipeline,
                stream: args.stream,
                files: args.files,
                storage_options,
                side_dir: args.side_outputs,
            })
            .await?;
            eprintln!(
                "load: {} lines in {:.1} s ({} already landed); {} rows committed in {} commits; {} rejected; {} alerts; {} window rows; {} late events",
                summary.records,
                started.elapsed().as_secs_f64(),
                summary.already_landed,
                summary.rows,
                summary.commits,
                summary.rejected,
                summary.alerts,
                summary.windows,
                summary.late
            );
            Ok(())
        }
        Command::Verify(args) => {
            let pipeline = Pipeline::load(&args.pipeline)?;
            let (client, storage_options) = connections(&args.kafka, &pipeline)?;
            let report = match &args.report {
                Some(path) => Some(
                    serde_json::from_str(
                        &std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )
                    .with_context(|| format!("{} is not a producer report", path.display()))?,
                ),
                None => None,
            };
            let verification = sluice::verify::run(&sluice::verify::VerifyOptions {
                pipeline,
                client,
                storage_options,
                report,
                min_age: sluice_core::config::parse_duration(&args.min_age)
                    .map_err(|err| anyhow::anyhow!("--min-age: {err}"))?,
                repair: args.repair,
            })
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&verification)?);
            } else {
                print!("{}", sluice::verify::summary(&verification));
            }
            anyhow::ensure!(verification.clean, "the lake is not clean");
            Ok(())
        }
        Command::Compact(args) => {
            let pipeline = Pipeline::load(&args.pipeline)?;
            let storage_options = sluice_lake::location::storage_options(&pipeline.storage_options);
            let target_size = sluice_core::config::parse_size(&args.target_size)
                .ok()
                .and_then(std::num::NonZeroU64::new)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--target-size: expected a size like 128MiB, got {:?}",
                        args.target_size
                    )
                })?;
            let done = sluice::compact::run(&sluice::compact::CompactOptions {
                pipeline,
                storage_options,
                tables: args.tables,
                target_size,
                min_age: sluice_core::config::parse_duration(&args.min_age)
                    .map_err(|err| anyhow::anyhow!("--min-age: {err}"))?,
                retain: args
                    .retain
                    .as_deref()
                    .map(sluice::compact::parse_retain)
                    .transpose()?,
            })
            .await?;
            if args.json {
                let json: serde_json::Map<String, serde_json::Value> = done
                    .iter()
                    .map(|(table, c)| Ok((table.clone(), serde_json::to_value(c)?)))
                    .collect::<Result<_>>()?;
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else {
                print!("{}", sluice::compact::summary(&done));
            }
            Ok(())
        }
        Command::Query(args) => sluice::query::run_query(&args.lake, &args.sql, args.format).await,
        Command::Tables(args) => sluice::query::run_tables(&args).await,
        Command::Console(args) => sluice::console::run(args, shutdown).await,
        Command::Catalog(args) => match args.command {
            sluice::cli::CatalogCommand::Sync {
                pipeline,
                catalog,
                json,
            } => {
                let pipeline = Pipeline::load(&pipeline)?;
                let storage_options =
                    sluice_lake::location::storage_options(&pipeline.storage_options);
                let synced =
                    sluice::catalog_sync::run(&pipeline, &storage_options, catalog.as_deref())
                        .await?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&synced)?),
                    false => print!("{}", sluice::catalog_sync::summary(&synced)),
                }
                sluice::catalog_sync::refusals(&synced)
            }
        },
        Command::Topics(args) => {
            let client = client_of(&args.kafka, args.kafka_config.as_deref())?;
            sluice::topics::run(client, args.command).await
        }
        Command::Broker(args) => sluice::broker::run(args, shutdown).await,
        Command::Probe(args) => sluice::probe::run(&args.url, args.timeout).await,
        Command::Check(args) => {
            let pipeline = Pipeline::load(&args.pipeline)?;
            let (client, _) = connections(&args.kafka, &pipeline)?;
            print!("{}", sluice::check::describe(&pipeline, &client)?);
            eprintln!("{}: valid", args.pipeline.display());
            Ok(())
        }
    }
}

/// The Kafka client of a command that runs no pipeline: flag or SLUICE_BROKERS over the
/// `--kafka-config` file's brokers, with that file's `[kafka.security]` and options.
fn client_of(kafka: &sluice::cli::KafkaArgs, config: Option<&Path>) -> Result<ClientOptions> {
    let Some(file) = config else {
        return Ok(ClientOptions::new(kafka.resolve(None)));
    };
    let config = KafkaConfig::load(file)?;
    let brokers = kafka.resolve(config.brokers.as_deref());
    Ok(ClientOptions::of_pipeline(brokers, &config)?)
}

/// The Kafka client (flag or SLUICE_BROKERS over the file's brokers, plus the file's
/// `[kafka.security]` and librdkafka options) and the lake's storage options of a pipeline.
fn connections(
    kafka: &sluice::cli::KafkaArgs,
    pipeline: &Pipeline,
) -> Result<(ClientOptions, std::collections::HashMap<String, String>)> {
    let brokers = kafka.resolve(pipeline.kafka.brokers.as_deref());
    Ok((
        ClientOptions::of_pipeline(brokers, &pipeline.kafka)?,
        sluice_lake::location::storage_options(&pipeline.storage_options),
    ))
}
