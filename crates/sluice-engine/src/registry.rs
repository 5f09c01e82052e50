//! Writer schemas from a Confluent-compatible Schema Registry (`GET /schemas/ids/{id}`), for
//! streams whose records carry a schema id (the Confluent wire format). Protobuf schemas are
//! asked for as serialized descriptors (`format=serialized`, as Confluent's deserializers
//! ask), with the files they reference (`GET /subjects/{subject}/versions/{version}`).
//!
//! Each id is looked up once per process and kept by the stream's decoder. A registry that does
//! not answer (down, slow, refusing our credentials) never turns records into dead letters: the
//! lookup is retried with backoff and the records wait, up to [`REGISTRY_RETRY_LIMIT`]; then
//! the process exits with the reason, and a restart resumes from the lake's offsets. Only a
//! registry that answers "no such schema" makes an id's records dead letters.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sluice_core::Decoder;
use sluice_core::config::{Registry, RegistryAuth, StreamFormat};
use sluice_core::decode::confluent::RegisteredSchema;

use crate::events::{Metrics, RegistryUnavailable};

/// How long a registry that does not answer is waited for before the process gives up.
/// Below librdkafka's max.poll.interval.ms (5 min), so waiting does not cost the member its
/// partitions.
pub const REGISTRY_RETRY_LIMIT: Duration = Duration::from_secs(120);

/// The longest one lookup may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The media type the registry's REST API speaks.
const REGISTRY_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// The most files one Protobuf schema may reference, counting theirs.
const REFERENCES_LIMIT: usize = 100;

/// A stream's Schema Registry.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    config: Registry,
    /// The query asking for schemas in the form the stream's decoder reads.
    query: Option<&'static str>,
}

/// A schema as the registry gives it by id or by subject and version (fields we do not use
/// are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Found {
    schema: String,
    /// Absent for Avro.
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

/// A schema another one imports: by the name it is imported as, in a subject's version.
#[derive(Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

/// What a lookup found: the schema, or the registry's "not found" with its message.
type Lookup = Result<Found, String>;

impl SchemaRegistry {
    /// A client of `config`'s registry, for records in `format`.
    pub fn new(config: &Registry, format: &StreamFormat) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the Schema Registry's HTTP client")?;
        let query = match format {
            StreamFormat::Protobuf { .. } => Some("format=serialized"),
            _ => None,
        };
        Ok(Self {
            http,
            config: config.clone(),
            query,
        })
    }

    /// The schema registered under `id` with the files it references, or why the registry
    /// has none; an error when the registry did not answer.
    pub async fn writer_schema(&self, id: u32) -> Result<Result<RegisteredSchema, String>> {
        let found = match self.get(&["schemas", "ids", &id.to_string()]).await? {
            Ok(found) => found,
            Err(reason) => return Ok(Err(format!("schema id {id}: {reason}"))),
        };
        let mut references = Vec::new();
        let mut pending: Vec<Reference> = found.references;
        while let Some(reference) = pending.pop() {
            if references.iter().any(|(name, _)| *name == reference.name) {
                continue;
            }
            if references.len() == REFERENCES_LIMIT {
                return Ok(Err(format!(
                    "schema id {id} references more than {REFERENCES_LIMIT} files"
                )));
            }
            let version = reference.version.to_string();
            match self
                .get(&["subjects", &reference.subject, "versions", &version])
                .await?
            {
                Ok(file) => {
                    pending.extend(file.references);
                    references.push((reference.name, file.schema));
                }
                Err(reason) => {
                    return Ok(Err(format!(
                        "schema id {id} references {}: {reason}",
                        reference.name
                    )));
                }
            }
        }
        Ok(Ok(RegisteredSchema {
            schema_type: found.schema_type.unwrap_or_else(|| "AVRO".into()),
            schema: found.schema,
            references,
        }))
    }

    /// The id of `schema` (of `schema_type`) under `subject`, registering it as the subject's
    /// next version when the registry does not have it there (as Confluent's serializers do
    /// by default).
    pub async fn id_of(&self, subject: &str, schema_type: &str, schema: &str) -> Result<u32> {
        #[derive(Deserialize)]
        struct Id {
            id: u32,
        }
        let body = serde_json::json!({"schema": schema, "schemaType": schema_type});
        let send = |segments: &[&str]| {
            let url = self.url(segments, None)?;
            let request = self
                .request(reqwest::Method::POST, url.clone())
                .header("Content-Type", REGISTRY_JSON)
                .body(body.to_string());
            Ok::<_, anyhow::Error>((url, request))
        };
        let (url, lookup) = send(&["subjects", subject])?;
        let response = lookup.send().await.with_context(|| format!("POST {url}"))?;
        let response = if response.status() == reqwest::StatusCode::NOT_FOUND {
            let (url, register) = send(&["subjects", subject, "versions"])?;
            register
                .send()
                .await
                .with_context(|| format!("POST {url}"))?
        } else {
            response
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "the registry at {} refused schema of subject {subject}: HTTP {status}: {}",
                self.config.url,
                text.trim()
            );
        }
        let found: Id = serde_json::from_str(&text)
            .with_context(|| format!("the registry's answer for subject {subject}: {text}"))?;
        Ok(found.id)
    }

    /// The registry's URL of the path of `segments` (each escaped), with `query`.
    fn url(&self, segments: &[&str], query: Option<&str>) -> Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&self.config.url)
            .with_context(|| format!("the registry URL {:?}", self.config.url))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("the registry URL {:?} has no path", self.config.url))?
            .pop_if_empty()
            .extend(segments);
        url.set_query(query);
        Ok(url)
    }

    /// A request to `url` with the registry's media type and credentials.
    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .header("Accept", REGISTRY_JSON);
        match &self.config.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { user, password } => {
                request.basic_auth(user, Some(password.expose_secret()))
            }
            RegistryAuth::Bearer(token) => request.bearer_auth(token.expose_secret()),
        }
    }

    /// `GET` of the registry's path of `segments` (each escaped): the schema there, or its
    /// "not found"; an error when the registry did not answer.
    async fn get(&self, segments: &[&str]) -> Result<Lookup> {
        let url = self.url(segments, self.query)?;
        let request = self.request(reqwest::Method::GET, url.clone());
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            let body = response.text().await.unwrap_or_default();
            return Ok(Err(format!(
                "not in the registry at {} (HTTP 404: {})",
                self.config.url,
                body.trim()
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("GET {url}: HTTP {status}: {}", body.trim());
        }
        let found: Found = response
            .json()
            .await
            .with_context(|| format!("GET {url}: not a schema as the registry API gives it"))?;
        Ok(Ok(found))
    }
}

/// Learns, for `decoder`, the writer schema of every id among `payloads` it has not seen,
/// waiting out a registry that does not answer (see the module doc).
pub async fn learn_writer_schemas<'a>(
    topic: &str,
    decoder: &Decoder,
    registry: &SchemaRegistry,
    payloads: impl IntoIterator<Item = &'a [u8]>,
    metrics: &Metrics,
) -> Result<()> {
    for id in decoder.ids_to_learn(payloads) {
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        let schema = loop {
            match registry.writer_schema(id).await {
                Ok(schema) => break schema,
                Err(error) if started.elapsed() < REGISTRY_RETRY_LIMIT => {
                    metrics.emit(RegistryUnavailable {
                        topic,
                        id,
                        error: &error,
                        retry_in: delay,
                    });
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
                Err(error) => {
                    return Err(error.context(format!(
                        "the Schema Registry gave no answer for schema id {id} of topic {topic} for {REGISTRY_RETRY_LIMIT:?}; nothing was skipped, and a restart resumes from the lake's offsets"
                    )));
                }
            }
        };
        decoder.learn(id, schema);
    }
    Ok(())
}
