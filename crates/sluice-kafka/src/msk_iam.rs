//! Amazon MSK's IAM access control (`sasl_mechanism = "AWS_MSK_IAM"`): clients authenticate
//! with SASL OAUTHBEARER, the token a presigned `kafka-cluster:Connect` request for the
//! cluster's region, signed (SigV4, 15 minutes) with credentials from the AWS credential chain
//! — environment, `AWS_PROFILE` and the shared files, web identity, container and instance
//! roles — by `aws-msk-iam-sasl-signer`.
//!
//! librdkafka asks for a token when a client starts and again before the last one expires, by
//! an event on the client's main queue; every client context of sluice answers it
//! ([`crate::client::BasicContext`] and the others, through [`token`]). A client that is not
//! polled before its first request (one fetching metadata) is polled once when it is made
//! ([`crate::ClientOptions::base_consumer`]). rdkafka's admin client serves no such event, so
//! creating topics over MSK IAM is refused, with that reason.

use std::error::Error;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_types::region::Region;
use rdkafka::client::OAuthToken;
use sluice_core::Settings;

use crate::KafkaError;

/// The MSK IAM permissions (action names) a client of any role needs on the cluster: to
/// connect, to learn the brokers, and to produce idempotently (every sluice producer is).
pub const CLUSTER_ACTIONS: &[&str] = &[
    "kafka-cluster:Connect",
    "kafka-cluster:DescribeCluster",
    "kafka-cluster:WriteDataIdempotently",
];
/// What `sluice stream` needs on its topics: it reads its streams, writes and reads back its
/// side topics (dead letters, alerts, late events, repartitioning; the tail is read to send
/// each record once).
pub const STREAM_TOPIC_ACTIONS: &[&str] = &[
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:ReadData",
    "kafka-cluster:WriteData",
];
/// What `sluice stream` needs on its consumer group (membership, offsets committed for lag).
pub const STREAM_GROUP_ACTIONS: &[&str] =
    &["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"];
/// What `sluice gateway` needs on its streams' topics: it only produces.
pub const GATEWAY_TOPIC_ACTIONS: &[&str] =
    &["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"];

/// The `sasl.oauthbearer.config` prefix that carries the region to [`token`].
const REGION: &str = "region=";
/// The principal name librdkafka records with a token (MSK takes the identity from the
/// signature, not from this name).
const PRINCIPAL: &str = "sluice";
/// How long making a token may take (the credential chain may ask an STS or a metadata
/// endpoint) before the client is told it failed.
const MAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The librdkafka settings of MSK IAM in `region`, or in `AWS_REGION` / `AWS_DEFAULT_REGION`.
pub fn settings(region: Option<&str>) -> Result<Settings, KafkaError> {
    let region = region
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|region| !region.trim().is_empty())
        .ok_or_else(|| KafkaError::MskIam {
            reason: "no region: set [kafka.security] aws_region, or AWS_REGION".into(),
        })?;
    let mut settings = Settings::default();
    settings.insert("sasl.mechanisms", "OAUTHBEARER");
    settings.insert("sasl.oauthbearer.config", format!("{REGION}{region}"));
    Ok(settings)
}

/// Whether a client with `security` settings authenticates with OAUTHBEARER (MSK IAM).
pub fn in_use(security: &Settings) -> bool {
    security.expose("sasl.mechanisms") == Some("OAUTHBEARER")
}

/// A fresh token for the region in `oauthbearer_config` (what [`settings`] wrote), signed with
/// the AWS credential chain's credentials. Called by librdkafka, through a client context.
pub fn token(oauthbearer_config: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
    let region = oauthbearer_config
        .and_then(|config| config.trim().strip_prefix(REGION))
        .ok_or("no region in sasl.oauthbearer.config")?
        .to_string();
    let made = made_on_own_runtime(async move {
        aws_msk_iam_sasl_signer::generate_auth_token(Region::new(region.clone()))
            .await
            .map_err(|err| format!("cannot make an AWS MSK IAM token for {region}: {err}"))
    });
    match made {
        Ok((token, expires_ms)) => {
            tracing::debug!(
                expires_in_s = (expires_ms - now_ms()) / 1000,
                "AWS MSK IAM token made"
            );
            Ok(OAuthToken {
                token,
                principal_name: PRINCIPAL.into(),
                lifetime_ms: expires_ms,
            })
        }
        Err(reason) => {
            tracing::error!(%reason, "AWS MSK IAM token not made");
            Err(reason.into())
        }
    }
}

/// Runs `making` on a runtime of its own, on a thread of its own: librdkafka calls [`token`]
/// from whatever thread polls the client, which may be a tokio worker (where blocking on
/// another runtime would panic) or none.
fn made_on_own_runtime<T: Send + 'static>(
    making: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    let thread = std::thread::Builder::new()
        .name("msk-iam-token".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| {
                    format!("cannot start a runtime for the AWS MSK IAM token: {err}")
                })?;
            runtime.block_on(async {
                tokio::time::timeout(MAKE_TIMEOUT, making)
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "making an AWS MSK IAM token took over {} s (credentials not found?)",
                            MAKE_TIMEOUT.as_secs()
                        ))
                    })
            })
        })
        .map_err(|err| format!("cannot start a thread for the AWS MSK IAM token: {err}"))?;
    thread
        .join()
        .unwrap_or_else(|_| Err("making the AWS MSK IAM token panicked".into()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The token is base64url of the presigned URL; what MSK checks is in its query.
    fn presigned(token: &str) -> url::Url {
        let bytes = base64_url_decode(token);
        url::Url::parse(std::str::from_utf8(&bytes).unwrap()).unwrap()
    }

    /// base64url without padding, decoded by hand so the test shares no code with the signer.
    fn base64_url_decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            other => panic!("{other} is not base64url"),
        };
        let mut out = Vec::new();
        let (mut bits, mut count) = (0u32, 0);
        for c in text.bytes() {
            bits = (bits << 6) | u32::from(value(c));
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        out
    }

    #[test]
    fn a_token_is_a_signed_connect_request_for_the_region_valid_15_minutes() {
        // Static credentials, so the test needs no credential source; signing needs no network.
        let before = now_ms();
        let made = made_on_own_runtime(async {
            let credentials = aws_credential_types::Credentials::new(
                "AKIDSLUICETEST",
                "not-a-real-secret",
                None,
                None,
                "test",
            );
            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                Region::new("eu-west-1"),
                aws_types::sdk_config::SharedCredentialsProvider::new(credentials),
            )
            .await
            .map_err(|err| err.to_string())
        });
        let (token, expires_ms) = made.unwrap();
        let url = presigned(&token);
        assert_eq!(url.host_str(), Some("kafka.eu-west-1.amazonaws.com"));
        let query: std::collections::HashMap<String, String> =
            url.query_pairs().into_owned().collect();
        assert_eq!(query["Action"], "kafka-cluster:Connect");
        assert_eq!(query["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(query["X-Amz-Expires"], "900");
        let credential = &query["X-Amz-Credential"];
        assert!(
            credential.starts_with("AKIDSLUICETEST/")
                && credential.ends_with("/eu-west-1/kafka-cluster/aws4_request"),
            "{credential}"
        );
        assert_eq!(query["X-Amz-Signature"].len(), 64);
        assert!(!token.contains("not-a-real-secret"));
        let lifetime = expires_ms - before;
        assert!(
            (880_000..=901_000).contains(&lifetime),
            "expires in {lifetime} ms"
        );
    }

    #[test]
    fn the_region_comes_from_the_file_or_the_environment_and_reaches_the_callback() {
        let settings = settings(Some("ap-south-1")).unwrap();
        assert!(in_use(&settings));
        assert_eq!(
            settings.expose("sasl.oauthbearer.config"),
            Some("region=ap-south-1")
        );
        let err = token(Some("nonsense")).err().expect("refused").to_string();
        assert!(err.contains("no region"), "{err}");
    }
}
