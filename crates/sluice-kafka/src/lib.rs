//! Kafka for sluice, through librdkafka (the `rdkafka` crate, built from bundled sources).
//!
//! # Layout
//! - [`client`]: connection settings shared by every client, and a reachability check that
//!   turns a wrong address into a clear error within seconds.
//! - [`admin`]: topics — create, list, describe with offsets.
//! - [`producer`]: the idempotent, acks=all producer behind `sluice produce`.
//! - [`consumer`]: a consumer-group member with auto-commit off that reports rebalances.
//! - [`broker`]: the embedded tansu broker that `sluice up` runs in-process.
//! - [`side`]: dead-letter and alert topics, exactly once per source record without
//!   broker transactions.
//! - [`tail`]: reading partitions to their ends, or backwards until something is found.
//! - [`read_speed`]: a plain consumer reading a whole topic: the ceiling for benchmarks.
//! - [`security`], [`msk_iam`]: `[kafka.security]` as settings; AWS MSK IAM tokens.

/// The items of `rdkafka::ClientContext` every context of sluice has: librdkafka's request for
/// an OAUTHBEARER token is answered with an AWS MSK IAM token ([`msk_iam::token`]). librdkafka
/// asks only when `sasl.mechanisms` is OAUTHBEARER, which only `AWS_MSK_IAM` sets.
macro_rules! serves_msk_iam_tokens {
    () => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn generate_oauth_token(
            &self,
            oauthbearer_config: Option<&str>,
        ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
            crate::msk_iam::token(oauthbearer_config)
        }
    };
}

pub mod admin;
pub mod broker;
pub mod client;
pub mod consumer;
pub mod msk_iam;
pub mod producer;
pub mod read_speed;
pub mod security;
pub mod side;
pub mod tail;

pub use client::ClientOptions;

/// What went wrong talking to Kafka, naming what was tried.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the client configuration.
    #[error("cannot create a Kafka client for {brokers}")]
    Client {
        /// The bootstrap servers.
        brokers: String,
        /// The cause.
        source: rdkafka::error::KafkaError,
    },
    /// No broker answered in time.
    #[error("Kafka broker(s) {brokers} unreachable within {timeout_s} s: {reason}")]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// How long we waited.
        timeout_s: u64,
        /// librdkafka's account.
        reason: String,
    },
    /// A broker answered but refused the client's credentials (SASL), as librdkafka reported.
    #[error("Kafka broker(s) {brokers} refused authentication: {reason}")]
    Authentication {
        /// The bootstrap servers tried.
        brokers: String,
        /// librdkafka's account of the refusal.
        reason: String,
    },
    /// The topic does not exist (tansu does not create topics on first use).
    #[error(
        "topic {topic:?} does not exist on {brokers} (create it with `sluice topics create {topic}`)"
    )]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The bootstrap servers.
        brokers: String,
    },
    /// An admin request failed.
    #[error("{action} failed on {brokers}: {reason}")]
    Admin {
        /// What was attempted, such as "creating topic x".
        action: String,
        /// The bootstrap servers.
        brokers: String,
        /// The broker's or librdkafka's account.
        reason: String,
    },
    /// A record could not be produced.
    #[error("producing to {topic} failed")]
    Produce {
        /// The topic.
        topic: String,
        /// The cause.
        source: rdkafka::error::KafkaError,
    },
    /// Consuming failed.
    #[error("consuming {context} failed")]
    Consume {
        /// Topic, partition or group involved.
        context: String,
        /// The cause.
        source: rdkafka::error::KafkaError,
    },
    /// The embedded broker could not start.
    #[error("the embedded broker could not start on {listen}: {reason}")]
    Broker {
        /// The address it was to listen on.
        listen: String,
        /// Why.
        reason: String,
    },
    /// AWS MSK IAM cannot be used as configured.
    #[error("kafka.security (AWS_MSK_IAM): {reason}")]
    MskIam {
        /// Why.
        reason: String,
    },
    /// A file `[kafka.security]` names cannot serve.
    #[error("kafka.security.{field}: {}: {reason}", path.display())]
    SecurityFile {
        /// The field naming it, such as `ca_file`.
        field: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl KafkaError {
    /// A client librdkafka refused to create. librdkafka's message quotes the refused
    /// setting's value: for a key naming a secret ([`sluice_core::settings::is_secret_key`])
    /// the value is left out.
    pub fn client(brokers: &str, source: rdkafka::error::KafkaError) -> Self {
        use rdkafka::error::KafkaError::ClientConfig;
        let source = match source {
            ClientConfig(result, description, key, value)
                if sluice_core::settings::is_secret_key(&key) =>
            {
                let description = match value.is_empty() {
                    true => description,
                    false => description.replace(&value, "[REDACTED]"),
                };
                ClientConfig(result, description, key, "[REDACTED]".into())
            }
            other => other,
        };
        KafkaError::Client {
            brokers: brokers.to_string(),
            source,
        }
    }

    /// Whether trying again later may succeed: the cluster did not answer in time, or a read
    /// failed. A refused configuration or a missing topic stays as it is.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Consume { .. })
    }
}
