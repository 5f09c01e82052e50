//! Connection settings shared by every Kafka client sluice makes.

use sluice_core::Settings;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::Client;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::Metadata;

use crate::KafkaError;

/// How long a client waits for the cluster to answer before reporting it unreachable.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(8);

/// Where the cluster is and any librdkafka settings (TLS, SASL, tuning) to pass through.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Bootstrap servers, "host:port,host:port".
    pub brokers: String,
    /// librdkafka settings applied last (a pipeline's `[kafka.options]`, which may not hold
    /// the keys sluice's guarantees rest on); secret values are redacted in `Debug`.
    pub extra: Settings,
}

impl ClientOptions {
    /// Options for these bootstrap servers and no extra settings.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            extra: Settings::default(),
        }
    }

    /// A librdkafka config with `settings` applied, then the extra settings.
    pub fn config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // Fail a request rather than retry a wrong address for minutes.
        config.set("socket.connection.setup.timeout.ms", "5000");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        for (key, value) in self.extra.exposed() {
            config.set(key, value);
        }
        config
    }

    /// Builds a client of type `T` from [`Self::config`].
    pub fn create<T: FromClientConfig>(&self, settings: &[(&str, &str)]) -> Result<T, KafkaError> {
        self.config(settings)
            .create()
            .map_err(|source| KafkaError::Client {
                brokers: self.brokers.clone(),
                source,
            })
    }

    /// Asks the cluster for metadata (of one topic, or all); blocking, so call it from a
    /// blocking context. Errors name the brokers tried and, for a topic, that it is missing.
    pub fn fetch_metadata(&self, topic: Option<&str>) -> Result<Metadata, KafkaError> {
        let consumer: BaseConsumer = self.create(&[])?;
        metadata_of(consumer.client(), &self.brokers, topic)
    }
}

/// Metadata through an existing client, with the errors of [`ClientOptions::fetch_metadata`].
pub fn metadata_of<C: rdkafka::ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: Option<&str>,
) -> Result<Metadata, KafkaError> {
    let metadata = client
        .fetch_metadata(topic, REACHABILITY_TIMEOUT)
        .map_err(|err| KafkaError::Unreachable {
            brokers: brokers.to_string(),
            timeout_s: REACHABILITY_TIMEOUT.as_secs(),
            reason: err.to_string(),
        })?;
    if let Some(topic) = topic {
        let known = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !known {
            return Err(KafkaError::UnknownTopic {
                topic: topic.to_string(),
                brokers: brokers.to_string(),
            });
        }
    }
    Ok(metadata)
}
