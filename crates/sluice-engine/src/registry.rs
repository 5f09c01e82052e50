//! Writer schemas from a Confluent-compatible Schema Registry (`GET /schemas/ids/{id}`), for
//! streams whose records carry a schema id (the Confluent wire format).
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
use sluice_core::config::{Registry, RegistryAuth};
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

/// A stream's Schema Registry.
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    config: Registry,
}

/// `GET /schemas/ids/{id}`'s answer (fields we do not use are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaById {
    schema: String,
    /// Absent for Avro.
    schema_type: Option<String>,
}

impl SchemaRegistry {
    /// A client of `config`'s registry.
    pub fn new(config: &Registry) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the Schema Registry's HTTP client")?;
        Ok(Self {
            http,
            config: config.clone(),
        })
    }

    /// The schema registered under `id`, or why the registry has none; an error when the
    /// registry did not answer.
    pub async fn writer_schema(&self, id: u32) -> Result<Result<RegisteredSchema, String>> {
        let url = format!("{}/schemas/ids/{id}", self.config.url);
        let request = self.http.get(&url).header("Accept", REGISTRY_JSON);
        let request = match &self.config.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { user, password } => {
                request.basic_auth(user, Some(password.expose_secret()))
            }
            RegistryAuth::Bearer(token) => request.bearer_auth(token.expose_secret()),
        };
        let response = request.send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            let body = response.text().await.unwrap_or_default();
            return Ok(Err(format!(
                "schema id {id} is not in the registry at {} (HTTP 404: {})",
                self.config.url,
                body.trim()
            )));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("GET {url}: HTTP {status}: {}", body.trim());
        }
        let found: SchemaById = response
            .json()
            .await
            .with_context(|| format!("GET {url}: not a schema as the registry API gives it"))?;
        Ok(Ok(RegisteredSchema {
            schema_type: found.schema_type.unwrap_or_else(|| "AVRO".into()),
            schema: found.schema,
        }))
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
