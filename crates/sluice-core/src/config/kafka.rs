//! `[kafka.security]`, typed: how every client reaches the cluster (TLS, mTLS, SASL PLAIN or
//! SCRAM). `[kafka.options]`: librdkafka settings passed through to every client, except the
//! ones sluice's guarantees rest on and the ones `[kafka.security]` sets. Those are refused by
//! name, with the reason, when the file is read: `[kafka.options]` is applied after sluice's
//! own settings, so a key here would otherwise win silently (an `enable.auto.commit=true` or
//! `acks=1` voids exactly-once). Files named here are checked where they are read
//! (`sluice_kafka::security`), before anything connects.

use std::path::PathBuf;

use secrecy::SecretString;

use super::Problems;
use super::file::SecuritySection;
use crate::settings::Settings;

/// How clients reach the cluster.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// The protocol.
    pub protocol: SecurityProtocol,
    /// TLS settings (with SSL or SASL_SSL).
    pub tls: Tls,
    /// SASL credentials (with SASL_PLAINTEXT or SASL_SSL).
    pub sasl: Option<Sasl>,
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS: the password crosses the network in clear with PLAIN.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether it uses TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether it uses SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn parse(text: &str) -> Option<Self> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// TLS files.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// CA certificates (PEM); the system's store when `None`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS.
    pub client: Option<ClientCertificate>,
}

/// A client certificate and its key.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// The private key (PEM).
    pub key_file: PathBuf,
    /// The key's password, if it is encrypted.
    pub key_password: Option<SecretString>,
}

/// How a client authenticates with SASL.
#[derive(Debug, Clone)]
pub enum Sasl {
    /// PLAIN or SCRAM: a user name and a password.
    Password {
        /// The mechanism's librdkafka name: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
        mechanism: &'static str,
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// Amazon MSK's IAM access control: OAUTHBEARER tokens signed with credentials from the
    /// AWS credential chain (environment, profile, web identity, instance role).
    AwsMskIam {
        /// The cluster's region; `AWS_REGION` when unset.
        region: Option<String>,
    },
}

/// The password mechanisms sluice speaks.
const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
/// `sasl_mechanism` for Amazon MSK's IAM access control.
pub const AWS_MSK_IAM: &str = "AWS_MSK_IAM";
/// Every `sasl_mechanism` accepted, for messages.
const ACCEPTED: &str = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM";

/// Validates `[kafka.security]`; `None` when it has problems (added to `problems`).
pub(super) fn validate_security(
    raw: &SecuritySection,
    problems: &mut Problems,
) -> Option<KafkaSecurity> {
    let before = problems.0.len();
    let field = |name: &str| format!("kafka.security.{name}");
    let protocol = match &raw.protocol {
        None => SecurityProtocol::Plaintext,
        Some(text) => SecurityProtocol::parse(text).unwrap_or_else(|| {
            problems.add(
                field("protocol"),
                format!(
                    "unknown protocol {text:?}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                ),
            );
            SecurityProtocol::Plaintext
        }),
    };
    let tls = validate_tls(raw, protocol, problems);
    let sasl = validate_sasl(raw, protocol, problems);
    (problems.0.len() == before).then_some(KafkaSecurity {
        protocol,
        tls,
        sasl,
    })
}

fn validate_tls(raw: &SecuritySection, protocol: SecurityProtocol, problems: &mut Problems) -> Tls {
    let named = [
        ("ca_file", raw.ca_file.is_some()),
        ("cert_file", raw.cert_file.is_some()),
        ("key_file", raw.key_file.is_some()),
        ("key_password", raw.key_password.is_some()),
    ];
    if !protocol.tls() {
        for (name, _) in named.iter().filter(|(_, set)| *set) {
            problems.add(
                format!("kafka.security.{name}"),
                format!(
                    "a TLS setting, but protocol is {}: use SSL or SASL_SSL",
                    protocol.name()
                ),
            );
        }
        return Tls::default();
    }
    let client = match (&raw.cert_file, &raw.key_file) {
        (Some(cert), Some(key)) => Some(ClientCertificate {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            key_password: raw.key_password.clone(),
        }),
        (None, None) => {
            if raw.key_password.is_some() {
                problems.add(
                    "kafka.security.key_password",
                    "a key password without a key_file",
                );
            }
            None
        }
        (Some(_), None) => {
            problems.add(
                "kafka.security.key_file",
                "cert_file needs its private key: expected key_file too",
            );
            None
        }
        (None, Some(_)) => {
            problems.add(
                "kafka.security.cert_file",
                "key_file needs its certificate: expected cert_file too",
            );
            None
        }
    };
    Tls {
        ca_file: raw.ca_file.as_ref().map(PathBuf::from),
        client,
    }
}

fn validate_sasl(
    raw: &SecuritySection,
    protocol: SecurityProtocol,
    problems: &mut Problems,
) -> Option<Sasl> {
    let field = |name: &str| format!("kafka.security.{name}");
    if !protocol.sasl() {
        let named = [
            ("sasl_mechanism", raw.sasl_mechanism.is_some()),
            ("username", raw.username.is_some()),
            ("password", raw.password.is_some()),
            ("aws_region", raw.aws_region.is_some()),
        ];
        for (name, _) in named.iter().filter(|(_, set)| *set) {
            problems.add(
                field(name),
                format!(
                    "a SASL setting, but protocol is {}: use SASL_PLAINTEXT or SASL_SSL",
                    protocol.name()
                ),
            );
        }
        return None;
    }
    let Some(text) = raw.sasl_mechanism.as_deref().map(str::trim) else {
        problems.add(
            field("sasl_mechanism"),
            format!("{} needs a mechanism: expected {ACCEPTED}", protocol.name()),
        );
        return None;
    };
    if text.eq_ignore_ascii_case(AWS_MSK_IAM) {
        return validate_msk_iam(raw, problems);
    }
    let mechanism = match MECHANISMS.iter().find(|m| m.eq_ignore_ascii_case(text)) {
        Some(mechanism) => Some(*mechanism),
        None => {
            let why = match text.to_ascii_uppercase().as_str() {
                "GSSAPI" => "GSSAPI (Kerberos) is not built into sluice",
                "OAUTHBEARER" => {
                    "OAUTHBEARER with an OIDC token endpoint is not built into sluice (for Amazon \
                     MSK's IAM tokens, write AWS_MSK_IAM)"
                }
                _ => "unknown mechanism",
            };
            problems.add(
                field("sasl_mechanism"),
                format!("{text:?}: {why}; expected {ACCEPTED}"),
            );
            None
        }
    };
    if raw.aws_region.is_some() {
        problems.add(field("aws_region"), "only AWS_MSK_IAM takes a region");
    }
    if raw.username.as_deref().is_none_or(|u| u.trim().is_empty()) {
        problems.add(field("username"), "SASL needs a user name");
    }
    if raw.password.is_none() {
        problems.add(
            field("password"),
            "SASL needs a password (write \"${NAME}\" to take it from the environment)",
        );
    }
    Some(Sasl::Password {
        mechanism: mechanism?,
        username: raw.username.clone()?,
        password: raw.password.clone()?,
    })
}

fn validate_msk_iam(raw: &SecuritySection, problems: &mut Problems) -> Option<Sasl> {
    for (name, set) in [
        ("username", raw.username.is_some()),
        ("password", raw.password.is_some()),
    ] {
        if set {
            problems.add(
                format!("kafka.security.{name}"),
                "AWS_MSK_IAM takes no user name or password: its credentials come from the AWS \
                 credential chain (AWS_* variables, AWS_PROFILE, web identity, instance role)",
            );
        }
    }
    let region = raw.aws_region.as_deref().map(str::trim);
    if region.is_some_and(str::is_empty) {
        problems.add(
            "kafka.security.aws_region",
            "expected a region such as us-east-1",
        );
    }
    Some(Sasl::AwsMskIam {
        region: region.map(str::to_string),
    })
}

/// What a guarded key is refused with: why sluice sets it itself.
const PROGRESS: &str = "sluice keeps each partition's progress in the lake's commits and moves \
                        Kafka's committed offsets itself, after a lake commit (for lag only)";
const IDEMPOTENT: &str = "every sluice producer is idempotent with acks=all, so that a retried \
                          send never writes a record twice and an acknowledged record survives \
                          a broker's loss";

/// What a key `[kafka.security]` sets is refused with.
const SECURITY: &str = "set it in [kafka.security] (protocol, ca_file, cert_file, key_file, \
                        key_password, sasl_mechanism, username, password, aws_region)";

/// librdkafka settings a pipeline may not set, and why. Aliases are listed too: librdkafka
/// accepts either name.
pub const GUARDED_OPTIONS: &[(&str, &str)] = &[
    ("security.protocol", SECURITY),
    ("sasl.mechanism", SECURITY),
    ("sasl.mechanisms", SECURITY),
    ("sasl.username", SECURITY),
    ("sasl.password", SECURITY),
    ("sasl.oauthbearer.config", SECURITY),
    ("ssl.ca.location", SECURITY),
    ("ssl.certificate.location", SECURITY),
    ("ssl.key.location", SECURITY),
    ("ssl.key.password", SECURITY),
    (
        "bootstrap.servers",
        "set [kafka].brokers (or --brokers, SLUICE_BROKERS) instead",
    ),
    (
        "metadata.broker.list",
        "set [kafka].brokers (or --brokers, SLUICE_BROKERS) instead",
    ),
    ("group.id", "set [kafka].group instead"),
    (
        "group.instance.id",
        "give each member its own name with `sluice stream --instance-id`",
    ),
    ("enable.auto.commit", PROGRESS),
    ("auto.commit.enable", PROGRESS),
    ("enable.auto.offset.store", PROGRESS),
    (
        "auto.offset.reset",
        "a partition the lake holds nothing of is read from its start; any other reset point \
         would skip records",
    ),
    (
        "enable.partition.eof",
        "sluice sets it per client (the stream and verify read to the end differently)",
    ),
    (
        "partition.assignment.strategy",
        "the stream member keeps its lanes across rebalances with cooperative-sticky's \
         incremental assignments; an eager strategy revokes every partition on each rebalance",
    ),
    (
        "isolation.level",
        "read_committed: records of aborted transactions must never land in the lake",
    ),
    ("enable.idempotence", IDEMPOTENT),
    ("acks", IDEMPOTENT),
    ("request.required.acks", IDEMPOTENT),
    ("max.in.flight.requests.per.connection", IDEMPOTENT),
    ("max.in.flight", IDEMPOTENT),
    ("retries", IDEMPOTENT),
    ("message.send.max.retries", IDEMPOTENT),
    (
        "transactional.id",
        "sluice does not produce in transactions: exactly-once lives in the lake's commits",
    ),
    (
        "message.timeout.ms",
        "sluice sets it per producer: the gateway's has none, so no record it spooled is ever \
         dropped",
    ),
    (
        "delivery.timeout.ms",
        "sluice sets it per producer: the gateway's has none, so no record it spooled is ever \
         dropped",
    ),
    (
        "statistics.interval.ms",
        "the consumer-lag metrics come from librdkafka's statistics every 5 s",
    ),
];

/// Why `key` may not be set in `[kafka.options]`, if it may not.
pub fn guarded(key: &str) -> Option<&'static str> {
    GUARDED_OPTIONS
        .iter()
        .find(|(guarded, _)| key.trim().eq_ignore_ascii_case(guarded))
        .map(|(_, why)| *why)
}

/// Adds a problem for each guarded key of `options`.
pub(super) fn validate_options(options: &Settings, problems: &mut Problems) {
    for key in options.keys() {
        if let Some(why) = guarded(key) {
            problems.add(
                format!("kafka.options.\"{key}\""),
                format!("sluice sets {key} itself and it may not be overridden: {why}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guarded_key_is_refused_by_name_and_tuning_passes() {
        let mut options = Settings::default();
        for (key, _) in GUARDED_OPTIONS {
            options.insert(*key, "x");
        }
        options.insert("fetch.max.bytes", "1048576");
        options.insert("client.id", "me");
        let mut problems = Problems::default();
        validate_options(&options, &mut problems);
        assert_eq!(problems.0.len(), GUARDED_OPTIONS.len());
        for ((key, why), problem) in GUARDED_OPTIONS.iter().zip(sorted(&problems)) {
            assert_eq!(problem.0, format!("kafka.options.\"{key}\""));
            assert!(problem.1.contains(why), "{problem:?}");
        }
    }

    #[test]
    fn case_and_spaces_do_not_slip_past() {
        assert!(guarded("Enable.Auto.Commit").is_some());
        assert!(guarded(" acks ").is_some());
        assert!(guarded("fetch.min.bytes").is_none());
    }

    /// The problems in [`GUARDED_OPTIONS`] order.
    fn sorted(problems: &Problems) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = problems
            .0
            .iter()
            .map(|p| (p.field.clone(), p.message.clone()))
            .collect();
        let order = |field: &str| {
            GUARDED_OPTIONS
                .iter()
                .position(|(key, _)| field == format!("kafka.options.\"{key}\""))
        };
        found.sort_by_key(|(field, _)| order(field));
        found
    }
}
