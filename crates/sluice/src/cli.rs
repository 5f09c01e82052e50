//! The command line: one subcommand per role, each with its own `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::generators;

/// Where `sluice up` keeps its broker log and lake unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
/// Kafka bootstrap servers when neither a flag, SLUICE_BROKERS nor the pipeline file says.
pub const DEFAULT_BROKERS: &str = "localhost:9092";

/// Real-time ingestion: Kafka in, processing on the way, an exactly-once Delta Lake out.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
pub struct Cli {
    /// The role to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process on embedded defaults: a Kafka-compatible broker (tansu,
    /// SQLite storage), the sensor generator and the sensor pipeline into a local Delta lake.
    Up(UpArgs),
    /// Send generated events or NDJSON lines to a topic (idempotent, acks=all) and print a
    /// report of what was acknowledged.
    Produce(ProduceArgs),
    /// Run a pipeline file as one member of its consumer group, landing rows in the lake.
    Stream(StreamArgs),
    /// Serve HTTP ingest for the pipeline's streams: JSON Schema validation, API keys, limits,
    /// a durable spool while Kafka is down, idempotent retries.
    Gateway(GatewayArgs),
    /// Run a stream's job over NDJSON files, with no broker: its tables, windows (all closed
    /// at the end of the input) and alert rules. Loading the same files again lands nothing
    /// twice.
    Load(LoadArgs),
    /// Check the lake against Kafka and a producer report: per partition the committed offsets,
    /// duplicates and missing offsets, and every file's Parquet footer. Exit 0 only when clean.
    Verify(VerifyArgs),
    /// Rewrite the small files of each date/hour partition into target-size files, in one Delta
    /// commit that changes no data; safe while `sluice stream` runs.
    Compact(CompactArgs),
    /// Run SQL over the lake's Delta tables.
    Query(QueryArgs),
    /// List the lake's tables with their Delta version and file count.
    Tables(LakeArgs),
    /// Serve the web console for a pipeline: its graph with live rates, lag and freshness,
    /// the lake's tables, read-only SQL with charts, dead letters, alerts and late events.
    Console(ConsoleArgs),
    /// Register the pipeline's tables in its AWS Glue catalogs, where Athena finds them: Delta
    /// tables as Athena's Delta tables, plain-files tables with partition projection.
    Catalog(CatalogArgs),
    /// Create, list and describe topics.
    Topics(TopicsArgs),
    /// Serve a Kafka-compatible broker (the tansu that `up` embeds) until Ctrl-C or SIGTERM:
    /// for development and tests, in memory by default.
    Broker(BrokerArgs),
    /// Validate a pipeline file as the other commands read it (`${NAME}` resolved, the
    /// `[kafka.security]` files read) and print what they would run with, secrets redacted;
    /// connects to nothing.
    Check(CheckArgs),
    /// Ask a sluice HTTP endpoint whether it is healthy: exit 0 on a 2xx answer within the
    /// timeout, 1 otherwise (the container image's HEALTHCHECK: the image has no curl).
    Probe(ProbeArgs),
}

/// `sluice probe`
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The endpoint: `stream`'s and `up`'s /healthz by default; the gateway's is on its listen
    /// address.
    #[arg(default_value = "http://127.0.0.1:9464/healthz")]
    pub url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = sluice_core::config::parse_duration)]
    pub timeout: std::time::Duration,
}

/// Where the Kafka cluster is.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers, "host:port,…" [default: the pipeline file's, else localhost:9092]
    #[arg(long, env = "SLUICE_BROKERS", global = true)]
    pub brokers: Option<String>,
}

impl KafkaArgs {
    /// The brokers to use: this flag (or SLUICE_BROKERS), else `fallback`, else localhost.
    pub fn resolve(&self, fallback: Option<&str>) -> String {
        self.brokers
            .clone()
            .or(fallback.map(String::from))
            .unwrap_or_else(|| DEFAULT_BROKERS.into())
    }
}

/// `sluice broker`
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: std::net::SocketAddr,
    /// "host:port" that clients are told to connect to [default: the listen address]
    #[arg(long)]
    pub advertise: Option<String>,
    /// Where the log lives: memory://tansu/ (lost on stop) or sqlite://FILE (relative to the
    /// working directory; survives restarts).
    #[arg(long, default_value = "memory://tansu/")]
    pub storage: url::Url,
    /// A SASL user, "NAME:PASSWORD" (repeatable; env: comma-separated): clients must then
    /// authenticate with SCRAM-SHA-256 or SCRAM-SHA-512. Needs --storage sqlite://FILE.
    #[arg(
        long = "sasl-user",
        env = "SLUICE_BROKER_SASL_USERS",
        value_delimiter = ','
    )]
    pub sasl_users: Vec<sluice_kafka::broker::ScramUser>,
}

/// `sluice up`
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Use this Kafka cluster instead of starting the embedded broker.
    #[arg(long, env = "SLUICE_BROKERS")]
    pub brokers: Option<String>,
    /// With --brokers: reach that cluster as this file's `[kafka]` section says
    /// (`[kafka.security]`, `[kafka.options]`; its brokers are not used).
    #[arg(long, env = "SLUICE_KAFKA_CONFIG", requires = "brokers")]
    pub kafka_config: Option<PathBuf>,
    /// Where the lake lives: a directory or s3://bucket/prefix [default: DATA_DIR/lake]
    #[arg(long)]
    pub lake: Option<String>,
    /// Run this pipeline file instead of the built-in sensor job: its topics are created, its
    /// tables land where it says, and the gateway takes its streams; no generator runs (send
    /// with `sluice produce` or the gateway).
    #[arg(long, conflicts_with_all = ["lake", "rate"])]
    pub pipeline: Option<PathBuf>,
    /// Directory for the embedded broker's log and the default lake.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Address the embedded broker listens on.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: std::net::SocketAddr,
    /// Sensor events generated per second [default: 200].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Partitions of each topic up creates.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Address the HTTP gateway listens on.
    #[arg(long, default_value = sluice_core::config::defaults::GATEWAY_LISTEN)]
    pub gateway_listen: String,
    /// Where the stream's `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = sluice_engine::observe::DEFAULT_LISTEN)]
    pub metrics_listen: String,
    /// The web console [default: on 127.0.0.1:8090].
    #[command(flatten)]
    pub console: ConsoleFlags,
}

/// The web console's flags (`up`, `stream`, `console`).
#[derive(Debug, Args)]
pub struct ConsoleFlags {
    /// Where the web console listens. On a loopback address it needs no key; on any other
    /// address every API call needs one (see --console-keys).
    #[arg(long, env = "SLUICE_CONSOLE_LISTEN")]
    pub console_listen: Option<String>,
    /// A keys file (the gateway's format, `sluice gateway keygen`: `[[keys]]` with `name`,
    /// `sha256` and `streams`, which the console ignores) whose keys open the console's API,
    /// on any address [default: on a non-loopback address, a key made for the run and
    /// printed]. The pipeline's gateway keys never open it.
    #[arg(long, env = "SLUICE_CONSOLE_KEYS")]
    pub console_keys: Option<PathBuf>,
    /// Time limit of one SQL query in the console; past it the query is cancelled.
    #[arg(long, default_value = "30s", value_parser = sluice_core::config::parse_duration)]
    pub sql_timeout: std::time::Duration,
    /// Rows one SQL query in the console returns at most.
    #[arg(long, default_value_t = 10_000)]
    pub sql_rows: usize,
    /// Memory one SQL query in the console may hold; past it the query fails ("Resources
    /// exhausted") rather than spill to disk or crowd out the stream beside it.
    #[arg(long, default_value = "256MiB", value_parser = sluice_core::config::parse_size)]
    pub sql_memory: u64,
}

/// `sluice console`
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The pipeline to show [default: the built-in sensor job `sluice up` runs, over --lake].
    #[arg(long, conflicts_with = "lake")]
    pub pipeline: Option<PathBuf>,
    /// With the built-in job: where its lake lives [default: ./sluice-data/lake].
    #[arg(long)]
    pub lake: Option<String>,
    /// A running member's metrics endpoint (repeatable), e.g. http://10.0.0.5:9464/metrics;
    /// each member exports its own partitions, so name them all.
    #[arg(long = "metrics")]
    pub metrics: Vec<url::Url>,
    /// Where it listens, keys and SQL limits [default: 127.0.0.1:8090].
    #[command(flatten)]
    pub console: ConsoleFlags,
}

/// `sluice produce`
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Reach the cluster as this file's `[kafka]` section says (brokers, `[kafka.security]`,
    /// `[kafka.options]`): a pipeline file, or a file with only that section.
    #[arg(long, env = "SLUICE_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
    /// Topic to produce to (it must exist: see `sluice topics create`).
    #[arg(long)]
    pub topic: String,
    /// Generate events of this kind.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub generator: Option<generators::Kind>,
    /// Send the lines of this NDJSON file ("-" for stdin) as they are.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Stop after this many records [default: all input; generators run until Ctrl-C].
    #[arg(long)]
    pub count: Option<u64>,
    /// Records per second [default: as fast as acknowledgements allow].
    #[arg(long)]
    pub rate: Option<f64>,
    /// Key records by this field's value [default: the generator's key field; none for input].
    #[arg(long, conflicts_with = "no_key")]
    pub key: Option<String>,
    /// Send records without a key.
    #[arg(long)]
    pub no_key: bool,
    /// Seed of the generator: the same seed (and --start-time) gives the same records.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Salt for the users generator's zip hash [default: derived from the seed].
    #[arg(long)]
    pub salt: Option<String>,
    /// Event time of the first generated record (RFC 3339); then --event-spacing apart
    /// [default: the wall clock at each record].
    #[arg(long)]
    pub start_time: Option<String>,
    /// Event time between generated records, with --start-time.
    #[arg(long, default_value = "10ms")]
    pub event_spacing: String,
    /// Write the producer report (JSON) to this file instead of stdout.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// `sluice stream`
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The pipeline file (TOML).
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Exit 0 once every assigned partition is committed up to its end.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Buffered bytes over all tables and partitions; past it, the largest buffer is committed
    /// early.
    #[arg(long, env = "SLUICE_MEMORY_BUDGET", default_value = sluice_core::config::defaults::MEMORY_BUDGET)]
    pub memory_budget: String,
    /// A stable name for this member (Kafka static membership, `group.instance.id`), e.g. a
    /// StatefulSet pod name: a restart under the same name takes its partitions back at once,
    /// without a rebalance.
    #[arg(long, env = "SLUICE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Where `/metrics` (Prometheus), `/healthz` and `/readyz` are served; port 0 picks a free
    /// one (logged).
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = sluice_engine::observe::DEFAULT_LISTEN)]
    pub metrics_listen: String,
    /// How long SIGTERM or Ctrl-C may take to commit what is buffered before the process exits
    /// without it (a restart resumes from the last commit); under Kubernetes' 30 s grace. A
    /// second signal exits at once.
    #[arg(long, env = "SLUICE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = sluice_core::config::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Register the pipeline's tables in its Glue catalogs (`sluice catalog sync`) when the
    /// stream starts and then this often (e.g. 5m), so that a new table or a schema change
    /// reaches Athena within it; a failed round is logged and retried [default: never].
    #[arg(long, value_parser = sluice_core::config::parse_duration)]
    pub catalog_sync_every: Option<std::time::Duration>,
    /// The web console of this member [default: off; --console-listen turns it on].
    #[command(flatten)]
    pub console: ConsoleFlags,
}

/// `sluice gateway`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The pipeline file (TOML): its streams and its `[gateway]` section.
    #[arg(long, required = true)]
    pub pipeline: Option<PathBuf>,
    /// Address to listen on [default: the file's `[gateway] listen`, else 127.0.0.1:8080].
    #[arg(long, env = "SLUICE_GATEWAY_LISTEN")]
    pub listen: Option<String>,
    /// More API keys: a TOML file of `[[keys]]` entries (name, sha256, streams, as in
    /// `[[gateway.keys]]`), kept apart from the pipeline; SIGHUP re-reads it with the pipeline.
    #[arg(long, env = "SLUICE_GATEWAY_KEYS")]
    pub keys: Option<PathBuf>,
    /// Key management instead of serving.
    #[command(subcommand)]
    pub command: Option<GatewayCommand>,
}

/// `sluice gateway …`
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Make a new API key: prints the key (give it to the sender; it is not stored) and the
    /// `[[gateway.keys]]` entry with its SHA-256 for the pipeline file.
    Keygen {
        /// Who the key is for.
        #[arg(long)]
        name: String,
        /// The streams it may send to, comma-separated ("*" for all).
        #[arg(long, value_delimiter = ',', default_value = "*")]
        streams: Vec<String>,
    },
}

/// `sluice check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The cluster (only to show which brokers the commands would use).
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The pipeline file.
    #[arg(long)]
    pub pipeline: PathBuf,
}

/// `sluice load`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The pipeline file (TOML).
    #[arg(long)]
    pub pipeline: PathBuf,
    /// The stream whose job runs [default: the pipeline's only stream].
    #[arg(long)]
    pub stream: Option<String>,
    /// Write alerts, late events and dead letters to DIR/<topic>.ndjson [default: only count
    /// them].
    #[arg(long, value_name = "DIR")]
    pub side_outputs: Option<PathBuf>,
    /// NDJSON files, one event per line, read in this order as one sequence.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `sluice compact`
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The pipeline file whose tables to compact.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// Compact only this table (repeatable) [default: every table of the pipeline].
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Size of the files written.
    #[arg(long, default_value = sluice_core::config::defaults::COMPACT_TARGET_SIZE)]
    pub target_size: String,
    /// Plain-files tables: objects committed less than this long ago are left alone (a
    /// writer may still be putting them; see docs/DESIGN.md, "Plain-files tables").
    #[arg(long, default_value = "5m")]
    pub min_age: String,
    /// Iceberg tables: after compacting, expire the snapshots older than this (the current one
    /// always stays) and delete the files older than this that no kept snapshot reaches. Time
    /// travel keeps this window; at least 1m, so that a running stream's commit in flight is
    /// never touched.
    #[arg(long)]
    pub retain: Option<String>,
    /// Print the result as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// `sluice catalog`
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// `sluice catalog …`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Create or update the Glue table of every Delta and plain-files table of the pipeline
    /// (window tables too); a Glue table sluice did not register is left alone.
    Sync {
        /// The pipeline file whose tables to register.
        #[arg(long)]
        pipeline: PathBuf,
        /// Register in this `[catalogs.<name>]` only [default: every Glue catalog].
        #[arg(long)]
        catalog: Option<String>,
        /// Print the result as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// `sluice verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The pipeline file whose tables to check.
    #[arg(long)]
    pub pipeline: PathBuf,
    /// A producer report (`sluice produce --report`) the tables must match exactly.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the result as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Remove data files that no commit references (left by crashes between upload and commit).
    #[arg(long)]
    pub repair: bool,
    /// Unreferenced files younger than this are neither reported nor removed: they may belong
    /// to a commit in flight.
    #[arg(long, default_value = "1h")]
    pub min_age: String,
}

/// Which tables to query.
#[derive(Debug, Args)]
pub struct LakeArgs {
    /// Query the tables of this pipeline file.
    #[arg(long, conflicts_with = "lake")]
    pub pipeline: Option<PathBuf>,
    /// Query every Delta table directly under this directory or object-store prefix
    /// (s3://bucket/prefix, reached with the AWS_* variables and credential chain)
    /// [default: ./sluice-data/lake, where `sluice up` writes].
    #[arg(long)]
    pub lake: Option<String>,
}

/// `sluice query`
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The tables.
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// The SQL statement; tables are known by their pipeline names.
    pub sql: String,
}

/// How `sluice query` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per line.
    Json,
}

/// `sluice topics`
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// The cluster.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Reach the cluster as this file's `[kafka]` section says (brokers, `[kafka.security]`,
    /// `[kafka.options]`): a pipeline file, or a file with only that section.
    #[arg(long, env = "SLUICE_KAFKA_CONFIG", global = true)]
    pub kafka_config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// `sluice topics …`
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create topics (an existing one is left as it is).
    Create {
        /// Topic names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Number of partitions.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
    /// List topics.
    List,
    /// Show a topic's partitions with their offsets, and a group's lag with --group.
    Describe {
        /// Topic name.
        name: String,
        /// Consumer group whose committed offsets and lag to show.
        #[arg(long)]
        group: Option<String>,
    },
    /// Read a topic from its start to its end with a plain librdkafka consumer, discarding the
    /// records, and print records/s: the ceiling `sluice stream` is measured against.
    ReadSpeed {
        /// Topic name.
        name: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}
