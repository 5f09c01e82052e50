//! The pipeline file as written: serde types that mirror the TOML one to one.
//!
//! Nothing here is checked beyond TOML syntax and field names (`deny_unknown_fields`, so a typo
//! is an error, not a silently ignored setting); [`super::validate`] turns these into the model.

use serde::Deserialize;

use secrecy::SecretString;

use crate::settings::Settings;

/// The whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Where the Kafka cluster is and which consumer group this pipeline's processes form.
    pub kafka: KafkaSection,
    /// Settings shared by every table of the lake.
    #[serde(default)]
    pub lake: LakeSection,
    /// The topics this pipeline reads, each with the schema of its records.
    #[serde(default)]
    pub streams: Vec<StreamSection>,
    /// Lake outputs: Delta tables written from the streams.
    #[serde(default)]
    pub tables: Vec<TableSection>,
    /// Rules: each matching event gives one JSON alert on a Kafka topic.
    #[serde(default)]
    pub alerts: Vec<AlertSection>,
    /// Event-time window aggregations, each written to its own Delta table.
    #[serde(default)]
    pub windows: Vec<WindowSection>,
    /// The HTTP ingest gateway (`sluice gateway`).
    pub gateway: Option<GatewaySection>,
    /// Iceberg catalogs, by name: `[catalogs.<name>]`.
    #[serde(default)]
    pub catalogs: std::collections::BTreeMap<String, CatalogSection>,
}

/// `[catalogs.<name>]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// `sql` (a SQLite database), `rest` (an Iceberg REST catalog) or `glue` (AWS Glue).
    #[serde(rename = "type")]
    pub kind: String,
    /// The database (`sqlite:////absolute/path.db`, SQLAlchemy's form, as pyiceberg takes it),
    /// the REST catalog's base URL (`https://catalog.example.com`), or Glue's endpoint when
    /// not AWS's own (a stand-in such as moto or LocalStack).
    pub uri: Option<String>,
    /// Glue: the AWS region (the environment's when not given).
    pub region: Option<String>,
    /// Glue: the catalog id (the AWS account), when not the caller's own.
    pub catalog_id: Option<String>,
    /// Where tables created without a location would go; a REST catalog's warehouse name.
    pub warehouse: String,
    /// The namespace sluice's tables are registered in (`sluice` by default).
    pub namespace: Option<String>,
    /// REST: OAuth2 client credentials, `client_id:client_secret`, exchanged for a token that
    /// is fetched again when the catalog stops accepting it.
    pub credential: Option<SecretString>,
    /// REST: a fixed bearer token, instead of `credential`.
    pub token: Option<SecretString>,
    /// REST: where `credential` is exchanged (`<uri>/v1/oauth/tokens` by default).
    pub oauth2_server_uri: Option<String>,
    /// REST: the OAuth2 scope asked for (`catalog` by default).
    pub scope: Option<String>,
}

/// `[gateway]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Address to listen on, such as "0.0.0.0:8080"; `--listen` overrides it.
    pub listen: Option<String>,
    /// API keys: `[[gateway.keys]]` entries.
    #[serde(default)]
    pub keys: Vec<ApiKeySection>,
    /// HTTPS: `{ cert = "cert.pem", key = "key.pem" }` (PEM files, relative to the current
    /// directory).
    pub tls: Option<TlsSection>,
    /// What one request may carry.
    #[serde(default)]
    pub limits: GatewayLimitsSection,
    /// The write-ahead spool that holds accepted records while Kafka is down or slow.
    #[serde(default)]
    pub spool: SpoolSection,
    /// How long a request's `Idempotency-Key` is remembered, such as "10m".
    pub idempotency_window: Option<String>,
    /// How long a request waits for Kafka's acknowledgement before its records are spooled
    /// (and the response says so), such as "2s".
    pub produce_timeout: Option<String>,
    /// Whether `/metrics` needs an API key (any configured key), as ingest does.
    #[serde(default)]
    pub require_key_for_metrics: bool,
}

/// `[[gateway.keys]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    /// Who holds the key (shown in logs and metrics, never the key).
    pub name: String,
    /// SHA-256 of the key as 64 hex digits; `sluice gateway keygen` makes a key and prints it.
    pub sha256: String,
    /// The streams the key may send to; `["*"]` is every stream.
    pub streams: Vec<String>,
}

/// A keys file of `sluice gateway --keys`: `[[keys]]` entries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The keys.
    #[serde(default)]
    pub keys: Vec<ApiKeySection>,
}

/// `[gateway.tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate chain, PEM.
    pub cert: String,
    /// Private key, PEM.
    pub key: String,
}

/// `[gateway.limits]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayLimitsSection {
    /// The largest body as sent, such as "10MiB" (413 beyond).
    pub max_body: Option<String>,
    /// The largest body after gzip/zstd decompression, such as "64MiB" (413 beyond).
    pub max_decompressed_body: Option<String>,
    /// Records in one request (413 beyond).
    pub max_records: Option<usize>,
    /// Nesting of objects and arrays in one record (the record is rejected beyond).
    pub max_depth: Option<usize>,
    /// Records per second one API key may send, such as "5000/s" (429 beyond).
    pub rate_per_key: Option<String>,
    /// Ingest requests served at once (503 beyond).
    pub max_concurrent: Option<usize>,
    /// How long a client may take to send the headers, such as "10s" (the connection is
    /// closed beyond).
    pub header_timeout: Option<String>,
    /// How long a client may take to send the body, such as "30s" (408 beyond).
    pub body_timeout: Option<String>,
}

/// `[gateway.spool]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Its directory.
    pub dir: Option<String>,
    /// The most it may hold, such as "1GiB" (503 beyond).
    pub max_size: Option<String>,
    /// "always" (before the response), "never" (left to the OS) or an interval such as "100ms".
    pub fsync: Option<String>,
}

/// `[kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers, "host:port,host:port". `--brokers` and `SLUICE_BROKERS` override it,
    /// so the same file runs against a laptop broker and a production cluster.
    pub brokers: Option<String>,
    /// Consumer group: every `sluice stream` with this group shares the topics' partitions
    /// (required of a pipeline; a file read only for its connection may leave it out).
    #[serde(default)]
    pub group: String,
    /// How every client reaches the cluster: TLS and SASL.
    #[serde(default)]
    pub security: SecuritySection,
    /// librdkafka settings passed through as they are (tuning), except the ones sluice's
    /// guarantees rest on and the ones `[kafka.security]` sets (`kafka::GUARDED_OPTIONS`),
    /// which are refused.
    #[serde(default)]
    pub options: Settings,
}

/// `[kafka.security]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// PLAINTEXT (the default), SSL, SASL_PLAINTEXT or SASL_SSL.
    pub protocol: Option<String>,
    /// TLS: the CA certificates (PEM) that sign the brokers' certificates; the system's
    /// store without it.
    pub ca_file: Option<String>,
    /// TLS client authentication (mTLS): this client's certificate (PEM).
    pub cert_file: Option<String>,
    /// TLS client authentication (mTLS): its private key (PEM).
    pub key_file: Option<String>,
    /// The private key's password, if it is encrypted.
    pub key_password: Option<SecretString>,
    /// SASL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM.
    pub sasl_mechanism: Option<String>,
    /// AWS MSK IAM: the cluster's region (`AWS_REGION` when unset).
    pub aws_region: Option<String>,
    /// SASL user name.
    pub username: Option<String>,
    /// SASL password (write `${NAME}` to take it from the environment).
    pub password: Option<SecretString>,
}

/// `[lake]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeSection {
    /// object_store / delta-rs storage options (endpoint, region, credentials) for `s3://`
    /// tables. The standard AWS_* environment variables are read as well and take precedence
    /// over nothing here: options written in the file win.
    #[serde(default)]
    pub storage_options: Settings,
}

/// `[[streams]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    /// The stream's name, which tables refer to in `from`.
    pub name: String,
    /// The Kafka topic holding the stream's records.
    pub topic: String,
    /// How records are written: "json" (the default), "json_schema", "avro" or "protobuf".
    pub format: Option<String>,
    /// The schema file describing the records, relative to the pipeline file: a JSON Schema,
    /// for `format = "avro"` an Avro schema (`.avsc`), for `format = "protobuf"` a `.proto`
    /// file, that records are read as.
    pub schema: Option<String>,
    /// For `format = "protobuf"`: the message of `schema` records are (its full or short
    /// name); may be left out when the file defines one top-level message.
    pub message: Option<String>,
    /// The Schema Registry that records' schema ids (Confluent wire format) are looked up in;
    /// without it, Avro and Protobuf records are plain bodies of `schema`.
    pub registry: Option<RegistrySection>,
    /// An inline field list, instead of `schema`.
    pub fields: Option<Vec<FieldSection>>,
    /// The field holding event time (RFC 3339 text or epoch milliseconds): windows and the
    /// date/hour partitions follow it, not arrival time.
    pub event_time: String,
    /// The field producers key records by, so one key's records stay in order in one partition.
    pub key: Option<String>,
    /// The Kafka topic that records which cannot be decoded go to, with their original bytes
    /// and headers plus the reason; without it they are logged, counted and skipped.
    pub dead_letter_topic: Option<String>,
    /// The largest record accepted, such as "256KiB"; bigger ones are refused like bad JSON.
    pub max_record_size: Option<String>,
    /// Columns computed by SQL from the others, in order: `{ temp_f = "temperature_c * 1.8 + 32" }`.
    /// Every table, window and rule of the stream sees them.
    pub derive: Option<toml::Table>,
}

/// `registry = { url = "...", ... }` of a stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// The registry's base URL, such as "http://127.0.0.1:8081".
    pub url: String,
    /// HTTP Basic user (with `password`).
    pub user: Option<String>,
    /// HTTP Basic password.
    pub password: Option<SecretString>,
    /// A bearer token, instead of a user and password.
    pub token: Option<SecretString>,
}

/// One entry of an inline `fields` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSection {
    /// JSON property and column name.
    pub name: String,
    /// string, int64, float64, boolean, timestamp or date.
    #[serde(rename = "type")]
    pub ty: String,
    /// Records without this field are rejected rather than stored with a null.
    #[serde(default)]
    pub required: bool,
}

/// `[[tables]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// The name `sluice query` knows the table by.
    pub name: String,
    /// The stream whose records the table holds.
    pub from: String,
    /// Where the table lives: `s3://bucket/path`, `file:///path` or a local path
    /// (relative to the current directory).
    pub uri: String,
    /// Partition columns, from `date` and `hour` (derived from event time).
    pub partition_by: Option<Vec<String>>,
    /// When buffered rows are written out.
    #[serde(default)]
    pub flush: FlushSection,
    /// An SQL condition: only rows where it is true are written (the others still count as
    /// processed).
    pub filter: Option<String>,
    /// `delta` (the default), `iceberg`, or plain `parquet`, `csv` or `jsonl` objects.
    pub format: Option<String>,
    /// For `format = "iceberg"`: the `[catalogs.<name>]` the table is registered in.
    pub catalog: Option<String>,
    /// For plain objects: `zstd` (Parquet's default), `snappy` (Parquet), `gzip` (text) or
    /// `none` (text's default).
    pub compression: Option<String>,
}

/// `[tables.flush]`: a flush happens when any limit is reached.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushSection {
    /// Rows buffered before a flush; bigger means fewer, larger Parquet files.
    pub max_rows: Option<usize>,
    /// Decoded bytes buffered before a flush, such as "128MiB": bounds memory.
    pub max_bytes: Option<String>,
    /// How long a row may wait before it is flushed, such as "10s": bounds lake freshness.
    pub max_latency: Option<String>,
}

/// `[[alerts]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// The rule's name, carried in every alert it raises.
    pub name: String,
    /// The stream whose events the rule checks.
    pub from: String,
    /// An SQL condition over the stream's columns, such as `temperature_c > 85`.
    pub when: String,
    /// The Kafka topic alerts go to.
    pub topic: String,
}

/// `[[windows]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSection {
    /// The window table's name in SQL.
    pub name: String,
    /// The stream whose events are aggregated.
    pub from: String,
    /// Key columns: one window per key (none: one per time window).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Back-to-back windows of this length, such as "1m".
    pub tumble: Option<String>,
    /// Overlapping windows: `{ size = "5m", slide = "1m" }`.
    pub hop: Option<HopSection>,
    /// Session windows: a key's session ends after this much event time without events.
    pub session: Option<String>,
    /// How far behind the newest event time an event may arrive and still count, such as
    /// "30s". Later events are late: counted, logged and sent to `late_topic`.
    pub allowed_lateness: Option<String>,
    /// A partition silent this long no longer holds back the stream's watermark.
    pub idle_timeout: Option<String>,
    /// Output column → SQL aggregate, such as `{ n = "count(*)", avg_temp = "avg(temperature_c)" }`.
    pub aggregates: toml::Table,
    /// Where the window table lives (as for `[[tables]]`).
    pub uri: String,
    /// Partition columns, from `date` and `hour` (of the window start).
    pub partition_by: Option<Vec<String>>,
    /// When emitted windows are written out.
    #[serde(default)]
    pub flush: FlushSection,
    /// The Kafka topic late events go to (original bytes and headers, plus the window).
    pub late_topic: Option<String>,
    /// What the window table is stored as, as for `[[tables]]`: `delta` (the default),
    /// `iceberg`, or plain `parquet`, `csv` or `jsonl` objects.
    pub format: Option<String>,
    /// For `format = "iceberg"`: the `[catalogs.<name>]` the window table is registered in.
    pub catalog: Option<String>,
    /// For plain objects, as for `[[tables]]`.
    pub compression: Option<String>,
}

/// `hop = { size = "5m", slide = "1m" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopSection {
    /// Window length.
    pub size: String,
    /// Distance between window starts; must divide `size`.
    pub slide: String,
}
