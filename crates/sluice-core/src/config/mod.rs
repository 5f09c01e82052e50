//! The pipeline file: parsed, then validated into the model that every role runs from.
//!
//! Two stages, as ripgrep's LowArgs → HiArgs and Vector's validate → build: [`Pipeline::parse`]
//! reads TOML and checks every name, type, reference and unit without touching the network, and
//! reports all problems at once, each with the file and the field. Only a valid pipeline ever
//! reaches code that connects to Kafka or the lake.

mod alerts;
mod catalogs;
pub mod defaults;
mod env;
pub mod file;
mod formats;
mod gateway;
pub mod kafka;
mod table_format;
mod tables;
mod units;
mod windows;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use alerts::Alert;
pub use catalogs::{Catalog, CatalogKind, DEFAULT_NAMESPACE, PostgresUrl, RestAuth};
pub use formats::{Registry, RegistryAuth, StreamFormat};
pub use gateway::{
    ApiKey, FsyncPolicy, GatewayConfig, GatewayLimits, SpoolConfig, TlsFiles, load_keys,
};
pub use table_format::{FileCompression, FileFormat, FileKind, TableFormat};
pub use units::{parse_duration, parse_size};
pub use windows::Window;

use crate::expressions::Predicate;
use crate::schema::{FieldType, SchemaField, StreamSchema};
use crate::settings::Settings;
use file::{PipelineFile, StreamSection};
use tables::validate_table;
pub(crate) use tables::{TableStorage, flush_policy, partition_columns, storage};

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Kafka connection and consumer group.
    pub kafka: KafkaConfig,
    /// Storage options for `s3://` tables (from the file; the environment adds to them).
    pub storage_options: Settings,
    /// The streams read, in file order.
    pub streams: Vec<Stream>,
    /// The tables written, in file order.
    pub tables: Vec<Table>,
    /// The alert rules, in file order.
    pub alerts: Vec<Alert>,
    /// The window aggregations, in file order.
    pub windows: Vec<Window>,
    /// The HTTP gateway's settings (defaults when the file has no `[gateway]`).
    pub gateway: GatewayConfig,
    /// Iceberg catalogs, by name.
    pub catalogs: std::collections::BTreeMap<String, Catalog>,
}

/// Kafka settings of a pipeline.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, if the file names them.
    pub brokers: Option<String>,
    /// The consumer group.
    pub group: String,
    /// TLS and SASL, for every client.
    pub security: kafka::KafkaSecurity,
    /// librdkafka settings passed through (none of [`kafka::GUARDED_OPTIONS`]).
    pub options: Settings,
}

/// A topic and the schema of its records.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The stream's name.
    pub name: String,
    /// Its Kafka topic.
    pub topic: String,
    /// The fields of its records.
    pub schema: Arc<StreamSchema>,
    /// How its records are written.
    pub format: StreamFormat,
    /// The key field, if any.
    pub key: Option<String>,
    /// Where undecodable records go, if anywhere.
    pub dead_letter_topic: Option<String>,
    /// The largest record accepted, in bytes.
    pub max_record_size: usize,
    /// The JSON Schema records are validated against at the gateway: the schema file as
    /// written, or one made from the stream's fields.
    pub json_schema: Arc<serde_json::Value>,
}

/// A table written from a stream.
#[derive(Debug, Clone)]
pub struct Table {
    /// The table's name in SQL.
    pub name: String,
    /// The stream it is written from.
    pub from: String,
    /// Where it lives, as written in the file.
    pub uri: String,
    /// Partition columns, in order.
    pub partition_by: Vec<String>,
    /// When buffers are flushed.
    pub flush: FlushPolicy,
    /// Only rows matching it are written.
    pub filter: Option<Predicate>,
    /// What it is stored as.
    pub format: TableFormat,
    /// The catalog an Iceberg table is registered in.
    pub catalog: Option<Catalog>,
}

/// Flush limits of a table; whichever is reached first triggers the flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Rows buffered.
    pub max_rows: usize,
    /// Decoded bytes buffered.
    pub max_bytes: u64,
    /// Age of the oldest buffered row.
    pub max_latency: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self {
            max_rows: defaults::FLUSH_MAX_ROWS,
            max_bytes: defaults::FLUSH_MAX_BYTES,
            max_latency: defaults::FLUSH_MAX_LATENCY,
        }
    }
}

/// One thing wrong with a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file, such as `streams.sensor_events.event_time`.
    pub field: String,
    /// What was expected.
    pub message: String,
}

/// Why a pipeline file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read pipeline file {}", file.display())]
    Read {
        /// The pipeline file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or missing field.
    #[error("{}: {error}", file.display())]
    Syntax {
        /// The pipeline file.
        file: PathBuf,
        /// The TOML error, with line and column (shown in the message, not as a cause, so that
        /// a printed chain does not repeat it).
        error: toml::de::Error,
    },
    /// The file parsed but describes an invalid pipeline.
    #[error("{}: {} problem(s):{}", file.display(), problems.len(), render(problems))]
    Invalid {
        /// The pipeline file.
        file: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("\n  - {}: {}", p.field, p.message))
        .collect()
}

impl Pipeline {
    /// Reads and validates a pipeline file; schema files are resolved next to it.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let dir = file.parent().unwrap_or(Path::new(".")).to_owned();
        Self::parse(file, &text, |schema| {
            std::fs::read_to_string(dir.join(schema))
        })
    }

    /// Parses and validates pipeline text, with `${NAME}` in its strings taken from the
    /// process's environment. `read_schema` reads a schema file named in the text; `file` is
    /// only used in messages.
    pub fn parse(
        file: &Path,
        text: &str,
        read_schema: impl Fn(&str) -> std::io::Result<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse_with_env(file, text, read_schema, &|name| std::env::var(name).ok())
    }

    /// [`Self::parse`] with the environment variables `env` gives.
    pub fn parse_with_env(
        file: &Path,
        text: &str,
        read_schema: impl Fn(&str) -> std::io::Result<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let syntax = |error| ConfigError::Syntax {
            file: file.to_owned(),
            error,
        };
        let invalid = |problems| ConfigError::Invalid {
            file: file.to_owned(),
            problems,
        };
        // Parsed as written first: the structure's errors keep their line and column.
        let mut raw: PipelineFile = toml::from_str(text).map_err(syntax)?;
        if text.contains("${") {
            let mut value: toml::Value = toml::from_str(text).map_err(syntax)?;
            let mut problems = Problems::default();
            env::interpolate(&mut value, "", env, &mut problems);
            if !problems.0.is_empty() {
                return Err(invalid(problems.0));
            }
            raw = value.try_into().map_err(syntax)?;
        }
        validate(raw, &read_schema).map_err(invalid)
    }

    /// Every topic the pipeline reads or writes that its user creates: streams, dead-letter,
    /// alert and late topics, sorted. (Repartition topics `sluice stream` creates itself, with
    /// its stream's partition count.)
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .streams
            .iter()
            .flat_map(|s| std::iter::once(s.topic.clone()).chain(s.dead_letter_topic.clone()))
            .chain(self.alerts.iter().map(|a| a.topic.clone()))
            .chain(self.windows.iter().filter_map(|w| w.late_topic.clone()))
            .collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// Every Delta table the pipeline writes — raw tables, then window tables — as
    /// (name, uri).
    pub fn lake_tables(&self) -> impl Iterator<Item = (&str, &str)> {
        let tables = self
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.uri.as_str()));
        let windows = self
            .windows
            .iter()
            .map(|w| (w.name.as_str(), w.uri.as_str()));
        tables.chain(windows)
    }

    /// The catalog the table or window table `name` is registered in (an Iceberg table's).
    pub fn catalog_of(&self, name: &str) -> Option<&Catalog> {
        let tables = self.tables.iter().map(|t| (&t.name, &t.catalog));
        let windows = self.windows.iter().map(|w| (&w.name, &w.catalog));
        let mut all = tables.chain(windows);
        all.find(|(table, _)| *table == name)
            .and_then(|(_, catalog)| catalog.as_ref())
    }

    /// The stream of this name.
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.iter().find(|stream| stream.name == name)
    }
}

/// Collects problems while validating.
#[derive(Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl KafkaConfig {
    /// The `[kafka]` section of a file alone (brokers, security, options, `${NAME}` resolved),
    /// for the commands that run no pipeline (`produce`, `topics`, `up --brokers`): the rest of
    /// the file, and the group, are not read.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let syntax = |error| ConfigError::Syntax {
            file: file.to_owned(),
            error,
        };
        let mut value: toml::Table = toml::from_str(&text).map_err(syntax)?;
        let mut problems = Problems::default();
        let Some(mut kafka) = value.remove("kafka") else {
            problems.add("kafka", "expected a [kafka] section");
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                problems: problems.0,
            });
        };
        env::interpolate(
            &mut kafka,
            "kafka",
            &|name| std::env::var(name).ok(),
            &mut problems,
        );
        let raw: Option<file::KafkaSection> = match problems.0.is_empty() {
            true => Some(kafka.try_into().map_err(syntax)?),
            false => None,
        };
        let config = raw.and_then(|raw| {
            kafka::validate_options(&raw.options, &mut problems);
            let security = kafka::validate_security(&raw.security, &mut problems)?;
            Some(KafkaConfig {
                brokers: raw.brokers,
                group: raw.group,
                security,
                options: raw.options,
            })
        });
        match config {
            Some(config) if problems.0.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid {
                file: file.to_owned(),
                problems: problems.0,
            }),
        }
    }
}

fn validate(
    raw: PipelineFile,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
) -> Result<Pipeline, Vec<Problem>> {
    let mut problems = Problems::default();
    if raw.kafka.group.trim().is_empty() {
        problems.add("kafka.group", "expected a consumer group name");
    }
    kafka::validate_options(&raw.kafka.options, &mut problems);
    let security = kafka::validate_security(&raw.kafka.security, &mut problems);
    if raw.streams.is_empty() {
        problems.add("streams", "expected at least one [[streams]] entry");
    }
    if raw.tables.is_empty() {
        problems.add("tables", "expected at least one [[tables]] entry");
    }
    let streams: Vec<Stream> = raw
        .streams
        .iter()
        .enumerate()
        .filter_map(|(index, stream)| validate_stream(index, stream, read_schema, &mut problems))
        .collect();
    check_unique(
        "streams",
        raw.streams.iter().map(|s| s.name.as_str()),
        &mut problems,
    );
    let stream_names: HashSet<&str> = raw.streams.iter().map(|s| s.name.as_str()).collect();
    let catalogs = catalogs::validate(&raw.catalogs, &mut problems);
    let tables: Vec<Table> = raw
        .tables
        .iter()
        .enumerate()
        .filter_map(|(index, table)| {
            validate_table(
                index,
                table,
                (&streams, &stream_names),
                &catalogs,
                &mut problems,
            )
        })
        .collect();
    check_unique(
        "tables and windows",
        raw.tables
            .iter()
            .map(|t| t.name.as_str())
            .chain(raw.windows.iter().map(|w| w.name.as_str())),
        &mut problems,
    );
    let windows = windows::validate(
        &raw.windows,
        (&streams, &stream_names),
        (&raw.kafka.group, &catalogs),
        &mut problems,
    );
    let alerts = alerts::validate(&raw.alerts, &streams, &stream_names, &mut problems);
    let gateway = gateway::validate(raw.gateway.as_ref(), &stream_names, &mut problems);
    if !problems.0.is_empty() {
        return Err(problems.0);
    }
    let gateway = gateway.expect("a gateway without problems");
    Ok(Pipeline {
        kafka: KafkaConfig {
            brokers: raw.kafka.brokers,
            group: raw.kafka.group,
            security: security.expect("security without problems"),
            options: raw.kafka.options,
        },
        storage_options: raw.lake.storage_options,
        streams,
        tables,
        alerts,
        windows,
        gateway,
        catalogs,
    })
}

/// `streams.NAME` when the entry has a usable name, else `streams[INDEX]`.
pub(crate) fn entry_path(section: &str, index: usize, name: &str) -> String {
    if is_identifier(name) {
        format!("{section}.{name}")
    } else {
        format!("{section}[{index}]")
    }
}

fn validate_stream(
    index: usize,
    raw: &StreamSection,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
    problems: &mut Problems,
) -> Option<Stream> {
    let at = entry_path("streams", index, &raw.name);
    check_name_and_topic(&at, &raw.name, &raw.topic, problems);
    if let Some(topic) = &raw.dead_letter_topic {
        if topic.trim().is_empty() {
            problems.add(
                format!("{at}.dead_letter_topic"),
                "expected a Kafka topic name",
            );
        } else if *topic == raw.topic {
            problems.add(
                format!("{at}.dead_letter_topic"),
                "expected a topic other than the stream's own",
            );
        }
    }
    let max_record_size = parse_size(
        raw.max_record_size
            .as_deref()
            .unwrap_or(defaults::MAX_RECORD_SIZE),
    )
    .map_err(|err| problems.add(format!("{at}.max_record_size"), err))
    .ok()?;
    let formats::Described {
        fields,
        format,
        json_schema,
    } = formats::describe(&at, raw, read_schema, problems)?;
    let mut schema = StreamSchema::new(fields, &raw.event_time)
        .map_err(|err| problems.add(format!("{at}.event_time"), err))
        .ok()?;
    for (name, sql) in raw.derive.iter().flatten() {
        let derived = match sql.as_str() {
            Some(_) if !is_identifier(name) => {
                Err("expected a column name of letters, digits and _".to_string())
            }
            Some(sql) => schema.derive(name, sql),
            None => Err("expected an SQL expression as text".to_string()),
        };
        if let Err(err) = derived {
            problems.add(format!("{at}.derive.{name}"), err);
            return None;
        }
    }
    if let Some(key) = &raw.key
        && !schema.has_field(key)
    {
        problems.add(
            format!("{at}.key"),
            format!("the key field {key:?} is not among the schema's fields"),
        );
        return None;
    }
    Some(Stream {
        name: raw.name.clone(),
        topic: raw.topic.clone(),
        key: raw.key.clone(),
        dead_letter_topic: raw.dead_letter_topic.clone(),
        max_record_size: max_record_size as usize,
        json_schema: Arc::new(json_schema.unwrap_or_else(|| schema.json_schema())),
        schema: Arc::new(schema),
        format,
    })
}

pub(super) fn inline_fields(
    at: &str,
    fields: &[file::FieldSection],
    problems: &mut Problems,
) -> Option<Vec<SchemaField>> {
    let before = problems.0.len();
    let parsed: Vec<SchemaField> = fields
        .iter()
        .enumerate()
        .filter_map(|(i, field)| match FieldType::parse(&field.ty) {
            Some(ty) => Some(SchemaField {
                name: field.name.clone(),
                ty,
                required: field.required,
            }),
            None => {
                problems.add(
                    format!("{at}.fields[{i}].type"),
                    format!("expected one of {}, got {:?}", FieldType::NAMES, field.ty),
                );
                None
            }
        })
        .collect();
    (problems.0.len() == before).then_some(parsed)
}

/// Reports an entry name that is not an identifier and an empty topic (`at` is the entry).
pub(crate) fn check_name_and_topic(at: &str, name: &str, topic: &str, problems: &mut Problems) {
    if !is_identifier(name) {
        problems.add(
            format!("{at}.name"),
            format!("expected a name of letters, digits and _, got {name:?}"),
        );
    }
    if topic.trim().is_empty() {
        problems.add(format!("{at}.topic"), "expected a Kafka topic name");
    }
}

/// Reports `from` when no stream has that name (`at` is the entry naming it).
pub(crate) fn check_stream_named(
    at: &str,
    from: &str,
    stream_names: &HashSet<&str>,
    problems: &mut Problems,
) {
    if !stream_names.contains(from) {
        let mut known: Vec<&str> = stream_names.iter().copied().collect();
        known.sort_unstable();
        problems.add(
            format!("{at}.from"),
            format!(
                "no stream is named {from:?} (streams: {})",
                known.join(", ")
            ),
        );
    }
}

pub(crate) fn check_unique<'a>(
    section: &str,
    names: impl Iterator<Item = &'a str>,
    problems: &mut Problems,
) {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            problems.add(section, format!("{name:?} appears more than once"));
        }
    }
}

/// A name usable unquoted in SQL and in messages: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
