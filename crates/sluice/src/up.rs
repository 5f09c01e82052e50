//! `sluice up`: the whole pipeline in one process on embedded defaults — a tansu broker with
//! SQLite storage, the sensor generator, the HTTP gateway (with an API key made for this run),
//! the sensor pipeline into a local Delta lake, and the web console. Ctrl-C stops the generator and the gateway,
//! commits what is buffered and exits 0.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use sluice_core::Pipeline;
use sluice_core::config::KafkaConfig;
use sluice_kafka::ClientOptions;
use sluice_kafka::admin;
use sluice_kafka::broker::EmbeddedBroker;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cli::UpArgs;
use crate::produce::{self, Clock, ProduceOptions, Source};
use crate::{builtin, generators};
use sluice_engine::events::Metrics;
use sluice_engine::observe;
use sluice_engine::stream::{self, StreamOptions};

/// How long Ctrl-C waits for the stream to catch up with the generator before it stops anyway.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Sensor events per second of the built-in job's generator.
const DEFAULT_RATE: f64 = 200.0;

/// How long the stream may then take to commit what it holds before `up` exits without it.
const UP_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// Runs everything until `shutdown` fires.
pub async fn run(args: UpArgs, shutdown: CancellationToken) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    ensure_free(&args.gateway_listen, "the gateway", "--gateway-listen")?;
    let console_listen =
        (args.console.console_listen.as_deref()).unwrap_or(sluice_console::DEFAULT_LISTEN);
    ensure_free(console_listen, "the console", "--console-listen")?;
    let metrics_listener = observe::bind(&args.metrics_listen).await?;
    let metrics_address = metrics_listener.local_addr()?;
    let (brokers, embedded) = match &args.brokers {
        Some(brokers) => (brokers.clone(), None),
        None => {
            let log = args.data_dir.join("kafka.db");
            let storage = Url::parse(&format!("sqlite:{}", relative_to_cwd(&log)?.display()))?;
            let broker = EmbeddedBroker::start(args.listen, None, storage).await?;
            (broker.bootstrap(), Some(broker))
        }
    };
    let mut pipeline = match &args.pipeline {
        Some(file) => Pipeline::load(file)?,
        None => builtin::sensor_pipeline(
            &args
                .lake
                .clone()
                .unwrap_or_else(|| args.data_dir.join("lake").display().to_string()),
        )?,
    };
    // A cluster of the user's is reached as the file says; the embedded broker is plaintext.
    let client = match (&args.kafka_config, &args.pipeline, &embedded) {
        (Some(file), _, _) => ClientOptions::of_pipeline(&brokers, &KafkaConfig::load(file)?)?,
        (None, Some(_), None) => ClientOptions::of_pipeline(&brokers, &pipeline.kafka)?,
        _ => ClientOptions::new(&brokers),
    };
    // The built-in job feeds itself; a user's pipeline is fed by its user.
    let generated = match args.pipeline {
        Some(_) => None,
        None => Some((
            pipeline.streams[0].topic.clone(),
            args.rate.unwrap_or(DEFAULT_RATE),
        )),
    };
    // Create topics only when missing: the embedded broker logs an error for a duplicate.
    let existing = {
        let client = client.clone();
        tokio::task::spawn_blocking(move || admin::list_topics(&client)).await??
    };
    for needed in pipeline.topics() {
        if !existing.contains(&needed) {
            admin::create_topic(&client, &needed, args.partitions, 1).await?;
        }
    }
    // The gateway: a key for this run only, the spool under the data directory.
    let (api_key, sha256) = sluice_gateway::auth::generate();
    pipeline.gateway.keys.push(sluice_core::config::ApiKey {
        name: "up".into(),
        sha256,
        streams: None,
    });
    pipeline.gateway.spool.dir = args.data_dir.join("spool");
    // A gateway that cannot run (its port taken since the check above, say) is reported; the
    // rest goes on.
    let gateway = tokio::spawn({
        let options = sluice_gateway::GatewayOptions {
            pipeline: pipeline.clone(),
            client: client.clone(),
            listen: Some(args.gateway_listen.clone()),
            key_files: sluice_gateway::KeyFiles::default(),
        };
        let shutdown = shutdown.clone();
        async move {
            if let Err(err) = sluice_gateway::run(options, shutdown).await {
                eprintln!("sluice up: the gateway is not running: {err:#}");
            }
        }
    });
    until_listening(&args.gateway_listen, &gateway).await;
    let metrics = Metrics::shared();
    let console = crate::console::start(
        console_listen,
        &args.console,
        crate::console::Serve {
            pipeline: pipeline.clone(),
            client: client.clone(),
            storage_options: sluice_lake::location::storage_options(&pipeline.storage_options),
            metrics: sluice_console::MetricsSource::InProcess(metrics.clone()),
        },
        shutdown.clone(),
    )
    .await?;
    print_running(
        &args,
        &pipeline,
        &Running {
            brokers: &brokers,
            embedded: embedded.is_some(),
            generated: generated.as_ref(),
            api_key: &api_key,
            metrics: metrics_address,
            console: console.greeting(),
        },
    );
    let storage_options = sluice_lake::location::storage_options(&pipeline.storage_options);
    let stream_stop = CancellationToken::new();
    let serving = tokio::spawn(observe::serve(
        metrics_listener,
        metrics.clone(),
        stream_stop.clone(),
    ));
    let mut streaming = tokio::spawn(stream::run(
        StreamOptions {
            pipeline,
            client: client.clone(),
            storage_options,
            until_caught_up: false,
            instance_id: None,
            drain: shutdown.clone(),
            memory_budget: sluice_core::config::parse_size(
                sluice_core::config::defaults::MEMORY_BUDGET,
            )
            .expect("the default budget parses"),
            metrics,
            shutdown_timeout: UP_SHUTDOWN_TIMEOUT,
        },
        stream_stop.clone(),
    ));
    let mut producing = tokio::spawn(generate(client, generated, shutdown.clone()));
    let (produced, streamed) = tokio::select! {
        produced = &mut producing => {
            // Ctrl-C (or a generator failure): the stream catches up with what was produced,
            // commits and stops; if that takes too long, it commits what it has and stops.
            shutdown.cancel();
            let stop = stream_stop.clone();
            let deadline = tokio::spawn(async move {
                tokio::time::sleep(DRAIN_LIMIT).await;
                stop.cancel();
            });
            let streamed = streaming.await;
            deadline.abort();
            (produced, streamed)
        }
        streamed = &mut streaming => {
            shutdown.cancel();
            (producing.await, streamed)
        }
    };
    serving.abort();
    gateway.await.context("the gateway panicked")?;
    let report = produced?.context("the sensor generator failed")?;
    let summary = streamed?.context("the stream failed")?;
    let produced = report.map_or_else(String::new, |r| format!("{} events produced, ", r.records));
    println!(
        "sluice up: stopped; {produced}{} rows committed in {} commits, {} alerts sent",
        summary.rows, summary.commits, summary.alerts
    );
    drop(embedded);
    Ok(())
}

/// What `up` runs, for its greeting.
struct Running<'a> {
    brokers: &'a str,
    embedded: bool,
    generated: Option<&'a (String, f64)>,
    api_key: &'a str,
    metrics: std::net::SocketAddr,
    console: String,
}

/// The sensor generator at its rate until `shutdown`, for the built-in job; for a user's
/// pipeline, nothing until `shutdown`.
async fn generate(
    client: ClientOptions,
    generated: Option<(String, f64)>,
    shutdown: CancellationToken,
) -> Result<Option<produce::ProducerReport>> {
    let Some((topic, rate)) = generated else {
        shutdown.cancelled().await;
        return Ok(None);
    };
    let options = ProduceOptions {
        client,
        topic,
        source: Source::Generator {
            kind: generators::Kind::Sensor,
            seed: rand::random(),
            salt: None,
        },
        count: None,
        rate: Some(rate),
        key: None,
        no_key: false,
        clock: Clock::Now,
        progress: false,
    };
    produce::run(options, shutdown).await.map(Some)
}

/// How long `up` waits for its gateway to listen before printing where it is.
const GATEWAY_START_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the gateway at `address` accepts connections (or has stopped, or
/// [`GATEWAY_START_LIMIT`] passed), so that the URL printed next answers at once.
async fn until_listening(address: &str, gateway: &tokio::task::JoinHandle<()>) {
    let started = std::time::Instant::now();
    while !gateway.is_finished() && started.elapsed() < GATEWAY_START_LIMIT {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What runs where, and what to try.
fn print_running(args: &UpArgs, pipeline: &Pipeline, running: &Running<'_>) {
    let (brokers, api_key, gateway) = (running.brokers, running.api_key, &args.gateway_listen);
    println!("sluice up: running");
    match running.embedded {
        true => println!(
            "  broker  {brokers} (embedded tansu, log in {})",
            args.data_dir.join("kafka.db").display()
        ),
        false => println!("  broker  {brokers}"),
    }
    match running.generated {
        Some((topic, rate)) => {
            println!("  topic   {topic}: {rate} sensor events/s from the generator")
        }
        None => {
            for stream in &pipeline.streams {
                println!("  topic   {} (stream {})", stream.topic, stream.name);
            }
        }
    }
    for table in &pipeline.tables {
        println!(
            "  lake    {} (Delta, partitioned by {})",
            table.uri,
            table.partition_by.join("/")
        );
    }
    for window in &pipeline.windows {
        println!(
            "  windows {} ({} per {})",
            window.uri,
            window.kind(),
            window.group_by.join(", ")
        );
    }
    for alert in &pipeline.alerts {
        println!(
            "  alerts  {}: {} ({})",
            alert.topic,
            alert.when.sql(),
            alert.name
        );
    }
    for dlq in pipeline
        .streams
        .iter()
        .filter_map(|s| s.dead_letter_topic.as_ref())
    {
        println!("  dlq     {dlq}: records that do not fit the schema");
    }
    let stream = &pipeline.streams[0].name;
    println!(
        "  gateway http://{gateway}/v1/streams/{stream}/events (API key for this run: {api_key})"
    );
    println!(
        "  console {}  (the pipeline live, the tables, SQL, dead letters)",
        running.console
    );
    println!("Try, in another terminal:");
    let table = &pipeline.tables[0].name;
    match &args.pipeline {
        None => {
            println!(
                "  curl -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\\n       -d '{{\"device_id\": \"dev-1\", \"ts\": \"{}\", \"temperature_c\": 99}}' http://{gateway}/v1/streams/{stream}/events",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            );
            let lake_flag = args.lake.as_ref().map_or_else(
                || {
                    if args.data_dir == Path::new(crate::cli::DEFAULT_DATA_DIR) {
                        String::new()
                    } else {
                        format!(" --lake {}", args.data_dir.join("lake").display())
                    }
                },
                |lake| format!(" --lake {lake}"),
            );
            println!(
                "  sluice query{lake_flag} \"select device_id, count(*) as n, round(avg(temperature_c), 1) as avg_c from {table} group by device_id order by n desc limit 5\""
            );
        }
        Some(file) => {
            println!(
                "  curl -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/x-ndjson' --data-binary @events.ndjson http://{gateway}/v1/streams/{stream}/events"
            );
            println!(
                "  sluice query --pipeline {} \"select count(*) as n from {table}\"",
                file.display()
            );
        }
    }
    println!(
        "  curl http://{}/metrics    (the stream's lag, freshness and counts)",
        running.metrics
    );
    println!("Ctrl-C drains, commits and stops.");
}

/// Refuses an address already taken before anything starts, naming the flag that moves it (the
/// embedded broker checks its own `--listen`).
fn ensure_free(listen: &str, what: &str, flag: &str) -> Result<()> {
    std::net::TcpListener::bind(listen)
        .map(drop)
        .with_context(|| format!("{what} cannot listen on {listen} ({flag} moves it)"))
}

/// `path` relative to the current directory: tansu resolves its SQLite path against it.
fn relative_to_cwd(path: &Path) -> Result<PathBuf> {
    if path.is_relative() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir()?;
    let ups = cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let mut relative: PathBuf = std::iter::repeat_n("..", ups).collect();
    relative.extend(
        path.components()
            .filter(|c| matches!(c, Component::Normal(_))),
    );
    Ok(relative)
}
