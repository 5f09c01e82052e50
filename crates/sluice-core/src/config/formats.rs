//! How a stream's records are written: JSON (with a JSON Schema file or an inline field list;
//! with `json_schema`, in the Confluent wire format with a Schema Registry), Avro (an Avro
//! schema file) or Protobuf (a message of a `.proto` file); Avro and Protobuf records with a
//! Schema Registry are in the Confluent wire format.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use secrecy::SecretString;

use super::Problems;
use super::file::{RegistrySection, StreamSection};
use crate::schema::avro::{avro_arrow_schema, fields_from_avro_schema};
use crate::schema::protobuf::StreamMessage;
use crate::schema::{SchemaField, fields_from_json_schema};

/// The wire format of a stream's records.
#[derive(Debug, Clone)]
pub enum StreamFormat {
    /// JSON objects.
    Json,
    /// JSON objects in the Confluent wire format, their JSON Schemas in a registry.
    JsonSchema {
        /// Where writer schemas are looked up by id.
        registry: Registry,
    },
    /// Avro records, read as the stream's Avro schema.
    Avro {
        /// The Avro schema (JSON text) records are read as: the table's columns.
        schema: Arc<str>,
        /// What arrow-avro decodes records to under it.
        decoded: SchemaRef,
        /// Where writer schemas are looked up by id; `None` for plain Avro bodies.
        registry: Option<Registry>,
    },
    /// Protobuf messages, read as the stream's message.
    Protobuf {
        /// The message records are read as: the table's columns.
        message: StreamMessage,
        /// Where writer schemas are looked up by id; `None` for plain messages.
        registry: Option<Registry>,
    },
}

impl StreamFormat {
    /// Its name, as `format` says it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::JsonSchema { .. } => "json_schema",
            Self::Avro { .. } => "avro",
            Self::Protobuf { .. } => "protobuf",
        }
    }

    /// The registry its records' schema ids are looked up in, if they carry ids.
    pub fn registry(&self) -> Option<&Registry> {
        match self {
            Self::Json => None,
            Self::JsonSchema { registry } => Some(registry),
            Self::Avro { registry, .. } | Self::Protobuf { registry, .. } => registry.as_ref(),
        }
    }
}

/// A Confluent-compatible Schema Registry.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Its base URL, without a trailing slash.
    pub url: String,
    /// How requests authenticate.
    pub auth: RegistryAuth,
}

/// How requests to a registry authenticate.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    /// Not at all.
    None,
    /// HTTP Basic.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: SecretString,
    },
    /// A bearer token.
    Bearer(SecretString),
}

/// The fields a stream's records carry, their format, and the JSON Schema the gateway checks
/// them with (JSON streams with a schema file only).
pub(super) struct Described {
    pub fields: Vec<SchemaField>,
    pub format: StreamFormat,
    pub json_schema: Option<serde_json::Value>,
}

/// Reads the stream's schema in its declared format.
pub(super) fn describe(
    at: &str,
    raw: &StreamSection,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
    problems: &mut Problems,
) -> Option<Described> {
    let format = raw.format.as_deref().unwrap_or("json");
    if raw.message.is_some() && format != "protobuf" {
        problems.add(
            format!("{at}.message"),
            "a message is named for format = \"protobuf\" only",
        );
        return None;
    }
    match format {
        "json" => {
            if raw.registry.is_some() {
                problems.add(
                    format!("{at}.registry"),
                    "a registry is read for format = \"avro\", \"protobuf\" or \"json_schema\" only",
                );
                return None;
            }
            describe_json(at, raw, read_schema, problems)
        }
        "json_schema" => {
            let Some(section) = &raw.registry else {
                problems.add(
                    format!("{at}.registry"),
                    "format = \"json_schema\" reads schema ids: expected the registry they are in",
                );
                return None;
            };
            let registry = registry(&format!("{at}.registry"), section, problems);
            let described = describe_json(at, raw, read_schema, problems)?;
            Some(Described {
                format: StreamFormat::JsonSchema {
                    registry: registry?,
                },
                ..described
            })
        }
        "avro" => describe_avro(at, raw, read_schema, problems),
        "protobuf" => describe_protobuf(at, raw, read_schema, problems),
        other => {
            problems.add(
                format!("{at}.format"),
                format!(
                    "expected \"json\", \"json_schema\", \"avro\" or \"protobuf\", got {other:?}"
                ),
            );
            None
        }
    }
}

fn describe_json(
    at: &str,
    raw: &StreamSection,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
    problems: &mut Problems,
) -> Option<Described> {
    let (fields, json_schema) = match (&raw.schema, &raw.fields) {
        (Some(path), None) => {
            let text = read_file(at, path, "JSON Schema", read_schema, problems)?;
            let described = fields_from_json_schema(&text).and_then(|fields| {
                let document = serde_json::from_str(&text).map_err(|err| err.to_string())?;
                Ok((fields, Some(document)))
            });
            described
                .map_err(|err| problems.add(format!("{at}.schema"), format!("{path}: {err}")))
                .ok()?
        }
        (None, Some(fields)) => (super::inline_fields(at, fields, problems)?, None),
        (Some(_), Some(_)) => {
            problems.add(
                format!("{at}.schema"),
                "expected either `schema` or `fields`, not both",
            );
            return None;
        }
        (None, None) => {
            problems.add(
                format!("{at}.schema"),
                "expected a JSON Schema file (`schema`) or an inline `fields` list",
            );
            return None;
        }
    };
    Some(Described {
        fields,
        format: StreamFormat::Json,
        json_schema,
    })
}

fn describe_avro(
    at: &str,
    raw: &StreamSection,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
    problems: &mut Problems,
) -> Option<Described> {
    let path = schema_file(at, raw, "an Avro schema file (.avsc)", problems)?;
    let text = read_file(at, path, "Avro schema", read_schema, problems)?;
    let read =
        fields_from_avro_schema(&text).and_then(|fields| Ok((fields, avro_arrow_schema(&text)?)));
    let (fields, decoded) = read
        .map_err(|err| problems.add(format!("{at}.schema"), format!("{path}: {err}")))
        .ok()?;
    Some(Described {
        fields,
        format: StreamFormat::Avro {
            schema: text.into(),
            decoded,
            registry: optional_registry(at, raw, problems)?,
        },
        json_schema: None,
    })
}

fn describe_protobuf(
    at: &str,
    raw: &StreamSection,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
    problems: &mut Problems,
) -> Option<Described> {
    let path = schema_file(at, raw, "a .proto file", problems)?;
    let (message, fields) = StreamMessage::read(path, raw.message.as_deref(), read_schema)
        .map_err(|err| problems.add(format!("{at}.schema"), format!("{path}: {err}")))
        .ok()?;
    Some(Described {
        fields,
        format: StreamFormat::Protobuf {
            message,
            registry: optional_registry(at, raw, problems)?,
        },
        json_schema: None,
    })
}

/// The schema file of a stream whose fields come from it (`what`), not from `fields`.
fn schema_file<'r>(
    at: &str,
    raw: &'r StreamSection,
    what: &str,
    problems: &mut Problems,
) -> Option<&'r str> {
    if raw.fields.is_some() {
        problems.add(
            format!("{at}.fields"),
            format!("the stream's fields come from its schema file: expected {what} in `schema`"),
        );
        return None;
    }
    let path = raw.schema.as_deref();
    if path.is_none() {
        problems.add(
            format!("{at}.schema"),
            format!("expected {what} that records are read as"),
        );
    }
    path
}

/// The stream's registry, if it has one (`Some(None)` when it has none; `None` on a problem).
fn optional_registry(
    at: &str,
    raw: &StreamSection,
    problems: &mut Problems,
) -> Option<Option<Registry>> {
    match &raw.registry {
        Some(section) => Some(Some(registry(
            &format!("{at}.registry"),
            section,
            problems,
        )?)),
        None => Some(None),
    }
}

fn read_file(
    at: &str,
    path: &str,
    what: &str,
    read_schema: &dyn Fn(&str) -> std::io::Result<String>,
    problems: &mut Problems,
) -> Option<String> {
    read_schema(path)
        .map_err(|err| {
            problems.add(
                format!("{at}.schema"),
                format!("cannot read {what} file {path:?}: {err}"),
            )
        })
        .ok()
}

fn registry(at: &str, raw: &RegistrySection, problems: &mut Problems) -> Option<Registry> {
    let url = raw.url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        problems.add(
            format!("{at}.url"),
            format!("expected an http:// or https:// URL, got {:?}", raw.url),
        );
        return None;
    }
    let auth = match (&raw.user, &raw.password, &raw.token) {
        (None, None, None) => RegistryAuth::None,
        (Some(user), Some(password), None) => RegistryAuth::Basic {
            user: user.clone(),
            password: password.clone(),
        },
        (None, None, Some(token)) => RegistryAuth::Bearer(token.clone()),
        _ => {
            problems.add(
                at.to_string(),
                "expected `user` with `password`, or `token`, or neither",
            );
            return None;
        }
    };
    Some(Registry {
        url: url.to_string(),
        auth,
    })
}
