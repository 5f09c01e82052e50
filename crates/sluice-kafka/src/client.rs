//! Connection settings shared by every Kafka client sluice makes.

use sluice_core::Settings;
use sluice_core::config::KafkaConfig;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::Client;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::metadata::Metadata;

use crate::KafkaError;

/// How long a client waits for the cluster to answer before reporting it unreachable.
pub const REACHABILITY_TIMEOUT: Duration = Duration::from_secs(8);

/// Where the cluster is, how to reach it (TLS, SASL) and librdkafka settings to pass through.
/// Secret values are redacted in `Debug`.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Bootstrap servers, "host:port,host:port".
    pub brokers: String,
    /// `[kafka.security]` as librdkafka settings ([`crate::security::settings`]).
    pub security: Settings,
    /// librdkafka settings applied last (a pipeline's `[kafka.options]`, which may not hold
    /// the keys sluice's guarantees rest on or the ones `security` sets).
    pub extra: Settings,
}

impl ClientOptions {
    /// Options for these bootstrap servers, in plaintext, with no extra settings.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security: Settings::default(),
            extra: Settings::default(),
        }
    }

    /// Options for these bootstrap servers with a pipeline's `[kafka]` security and options;
    /// fails on a file `[kafka.security]` names that cannot serve, before anything connects.
    pub fn of_pipeline(
        brokers: impl Into<String>,
        kafka: &KafkaConfig,
    ) -> Result<Self, KafkaError> {
        Ok(Self {
            brokers: brokers.into(),
            security: crate::security::settings(&kafka.security)?,
            extra: kafka.options.clone(),
        })
    }

    /// A librdkafka config with `settings` applied, then the security and extra settings.
    pub fn config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // Fail a request rather than retry a wrong address for minutes.
        config.set("socket.connection.setup.timeout.ms", "5000");
        for (key, value) in settings {
            config.set(*key, *value);
        }
        for (key, value) in self.security.exposed().chain(self.extra.exposed()) {
            config.set(key, value);
        }
        config
    }

    /// Builds a client of type `T` from [`Self::config`], with a [`BasicContext`].
    pub fn create<T: FromClientConfigAndContext<BasicContext>>(
        &self,
        settings: &[(&str, &str)],
    ) -> Result<T, KafkaError> {
        self.config(settings)
            .create_with_context(BasicContext)
            .map_err(|source| KafkaError::client(&self.brokers, source))
    }

    /// A `BaseConsumer` from [`Self::config`] with `context`, polled once: what librdkafka
    /// queued at its start is served, so that with AWS MSK IAM its first token is made before
    /// a first request (a metadata fetch, say) would wait for it.
    pub fn base_consumer<C: ConsumerContext>(
        &self,
        settings: &[(&str, &str)],
        context: C,
    ) -> Result<BaseConsumer<C>, KafkaError> {
        let consumer: BaseConsumer<C> = self
            .config(settings)
            .create_with_context(context)
            .map_err(|source| KafkaError::client(&self.brokers, source))?;
        // No partition is assigned yet: no message can come of it.
        let _ = consumer.poll(Duration::ZERO);
        Ok(consumer)
    }

    /// Whether these clients authenticate with AWS MSK IAM tokens.
    pub fn uses_msk_iam(&self) -> bool {
        crate::msk_iam::in_use(&self.security)
    }

    /// Asks the cluster for metadata (of one topic, or all); blocking, so call it from a
    /// blocking context. Errors name the brokers tried and, for a topic, that it is missing;
    /// an unreachable cluster's error ends with the last failure librdkafka reported (a TLS
    /// handshake or SASL authentication refused says so there, not in the metadata error).
    pub fn fetch_metadata(&self, topic: Option<&str>) -> Result<Metadata, KafkaError> {
        let consumer = self.base_consumer(&[], LastFailure::default())?;
        let fetched = metadata_of(consumer.client(), &self.brokers, topic);
        if fetched.is_err() {
            // librdkafka queues its logs for the next poll: serve them to LastFailure.
            let _ = consumer.poll(Duration::from_millis(100));
        }
        fetched.map_err(|err| match (err, consumer.context().last()) {
            // Credentials refused: not a reachability problem, and no retry will help.
            (KafkaError::Unreachable { brokers, .. }, Some(last))
                if last.to_ascii_lowercase().contains("authentication") =>
            {
                KafkaError::Authentication {
                    brokers,
                    reason: last,
                }
            }
            (
                KafkaError::Unreachable {
                    brokers,
                    timeout_s,
                    reason,
                },
                last,
            ) => KafkaError::Unreachable {
                brokers,
                timeout_s,
                reason: match last {
                    Some(last) => format!("{reason}; last failure: {last}"),
                    None => reason,
                },
            },
            (other, _) => other,
        })
    }
}

/// A client context that keeps the last failure librdkafka logged (a failed connection, TLS
/// handshake or authentication; rdkafka queues logs until the client is polled) and logs each
/// as the default context does.
#[derive(Default)]
pub struct LastFailure(std::sync::Mutex<Option<String>>);

impl LastFailure {
    /// The last failure logged, if any.
    pub fn last(&self) -> Option<String> {
        self.0.lock().ok()?.clone()
    }
}

/// The context of a client that needs no other: it serves AWS MSK IAM tokens, and logs as
/// rdkafka's default context does.
#[derive(Debug, Clone, Copy, Default)]
pub struct BasicContext;

impl rdkafka::ClientContext for BasicContext {
    serves_msk_iam_tokens!();
}

impl ConsumerContext for BasicContext {}

impl rdkafka::ClientContext for LastFailure {
    serves_msk_iam_tokens!();

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel::{Debug, Info, Notice, Warning};
        match level {
            Debug => tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}"),
            Info | Notice => {
                tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            Warning => tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}"),
            _ => tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}"),
        }
        if !matches!(level, Debug | Info | Notice)
            && let Ok(mut last) = self.0.lock()
        {
            *last = Some(message.to_string());
        }
    }
}

impl ConsumerContext for LastFailure {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_secret_setting_is_not_quoted_in_the_error() {
        let mut options = ClientOptions::new("127.0.0.1:1");
        // Not supported in this build (no libcurl): librdkafka refuses it, quoting the value.
        options
            .extra
            .insert("sasl.oauthbearer.client.secret", "hunter2-secret");
        let err = options
            .create::<BaseConsumer<BasicContext>>(&[])
            .err()
            .expect("refused");
        let shown = anyhow_like(&err);
        assert!(shown.contains("sasl.oauthbearer.client.secret"), "{shown}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }

    /// The error and its causes, as the binary prints them.
    fn anyhow_like(err: &dyn std::error::Error) -> String {
        let mut shown = err.to_string();
        let mut cause = err.source();
        while let Some(err) = cause {
            shown.push_str(&format!(": {err}"));
            cause = err.source();
        }
        shown
    }
}
