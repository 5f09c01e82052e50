//! `[gateway]`: the HTTP ingest server in front of Kafka — where it listens, who may send to
//! which stream, the limits a request must keep, and the spool that holds accepted records while
//! Kafka is down.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, Problems, defaults, parse_duration, parse_size};
use crate::config::file::{ApiKeySection, GatewaySection, KeysFile, SpoolSection};

/// The validated `[gateway]` section (every field has a default, so a pipeline file without the
/// section still runs a gateway — one that needs at least one API key to accept anything).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address the server listens on.
    pub listen: String,
    /// API keys, each scoped to streams.
    pub keys: Vec<ApiKey>,
    /// TLS certificate and key (PEM files), when HTTPS is wanted.
    pub tls: Option<TlsFiles>,
    /// What a request may carry.
    pub limits: GatewayLimits,
    /// The write-ahead spool used while Kafka is down or slow.
    pub spool: SpoolConfig,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// How long a request waits for Kafka's acknowledgement before its records are spooled.
    pub produce_timeout: Duration,
    /// Whether `/metrics` needs an API key.
    pub require_key_for_metrics: bool,
}

/// One API key, stored as the SHA-256 of the key (never the key itself).
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Who the key belongs to, for logs and metrics.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// The streams it may send to; `None` means every stream.
    pub streams: Option<HashSet<String>>,
}

impl ApiKey {
    /// Whether the key may send to `stream`.
    pub fn allows(&self, stream: &str) -> bool {
        self.streams.as_ref().is_none_or(|s| s.contains(stream))
    }
}

/// PEM files for HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct GatewayLimits {
    /// Body bytes as sent (compressed or not).
    pub max_body: usize,
    /// Body bytes after decompression: bounds a gzip/zstd bomb.
    pub max_decompressed_body: usize,
    /// Records in one request.
    pub max_records: usize,
    /// Nesting of objects and arrays in one record.
    pub max_depth: usize,
    /// Records per second one API key may send, if limited.
    pub rate_per_key: Option<f64>,
    /// Ingest requests served at once.
    pub max_concurrent: usize,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
}

/// When the spool's appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before the response: an acknowledged record survives a power cut.
    Always,
    /// In the background at this interval: a power cut loses at most that much.
    Every(Duration),
    /// When the operating system decides: survives a crash of sluice, not of the machine.
    Never,
}

/// The spool.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Its directory.
    pub dir: PathBuf,
    /// The most bytes it holds; beyond that requests are answered 503.
    pub max_bytes: u64,
    /// When appends are synced to disk.
    pub fsync: FsyncPolicy,
}

pub(super) fn validate(
    raw: Option<&GatewaySection>,
    stream_names: &HashSet<&str>,
    problems: &mut Problems,
) -> Option<GatewayConfig> {
    let default = GatewaySection::default();
    let raw = raw.unwrap_or(&default);
    let size = |field: &str, text: Option<&str>, default: &str, problems: &mut Problems| {
        parse_size(text.unwrap_or(default))
            .map_err(|err| problems.add(format!("gateway.{field}"), err))
            .ok()
    };
    let duration = |field: &str, text: Option<&str>, default: &str, problems: &mut Problems| {
        parse_duration(text.unwrap_or(default))
            .map_err(|err| problems.add(format!("gateway.{field}"), err))
            .ok()
    };
    let limits = &raw.limits;
    let max_body = size(
        "limits.max_body",
        limits.max_body.as_deref(),
        defaults::GATEWAY_MAX_BODY,
        problems,
    );
    let max_decompressed_body = size(
        "limits.max_decompressed_body",
        limits.max_decompressed_body.as_deref(),
        defaults::GATEWAY_MAX_DECOMPRESSED_BODY,
        problems,
    );
    let rate_per_key = match limits.rate_per_key.as_deref().map(parse_rate) {
        None => Some(None),
        Some(Ok(rate)) => Some(Some(rate)),
        Some(Err(err)) => {
            problems.add("gateway.limits.rate_per_key", err);
            None
        }
    };
    let spool = validate_spool(&raw.spool, problems);
    let keys = validate_keys(&raw.keys, "gateway.keys", stream_names, problems);
    let idempotency_window = duration(
        "idempotency_window",
        raw.idempotency_window.as_deref(),
        defaults::GATEWAY_IDEMPOTENCY_WINDOW,
        problems,
    );
    let produce_timeout = duration(
        "produce_timeout",
        raw.produce_timeout.as_deref(),
        defaults::GATEWAY_PRODUCE_TIMEOUT,
        problems,
    );
    let positive = |field: &str, value: usize, problems: &mut Problems| {
        if value == 0 {
            problems.add(format!("gateway.limits.{field}"), "expected at least 1");
        }
        value
    };
    let max_records = positive(
        "max_records",
        limits.max_records.unwrap_or(defaults::GATEWAY_MAX_RECORDS),
        problems,
    );
    let max_depth = positive(
        "max_depth",
        limits.max_depth.unwrap_or(defaults::GATEWAY_MAX_DEPTH),
        problems,
    );
    let max_concurrent = positive(
        "max_concurrent",
        limits
            .max_concurrent
            .unwrap_or(defaults::GATEWAY_MAX_CONCURRENT),
        problems,
    );
    let timeout = |field: &str, text: Option<&str>, default: &str, problems: &mut Problems| {
        let field = format!("limits.{field}");
        match duration(&field, text, default, problems) {
            Some(Duration::ZERO) => {
                problems.add(format!("gateway.{field}"), "expected more than 0 s");
                None
            }
            parsed => parsed,
        }
    };
    let header_timeout = timeout(
        "header_timeout",
        limits.header_timeout.as_deref(),
        defaults::GATEWAY_HEADER_TIMEOUT,
        problems,
    );
    let body_timeout = timeout(
        "body_timeout",
        limits.body_timeout.as_deref(),
        defaults::GATEWAY_BODY_TIMEOUT,
        problems,
    );
    Some(GatewayConfig {
        listen: raw
            .listen
            .clone()
            .unwrap_or_else(|| defaults::GATEWAY_LISTEN.to_string()),
        keys,
        tls: raw.tls.as_ref().map(|tls| TlsFiles {
            cert: PathBuf::from(&tls.cert),
            key: PathBuf::from(&tls.key),
        }),
        limits: GatewayLimits {
            max_body: max_body? as usize,
            max_decompressed_body: max_decompressed_body? as usize,
            max_records,
            max_depth,
            rate_per_key: rate_per_key?,
            max_concurrent,
            header_timeout: header_timeout?,
            body_timeout: body_timeout?,
        },
        spool: spool?,
        idempotency_window: idempotency_window?,
        produce_timeout: produce_timeout?,
        require_key_for_metrics: raw.require_key_for_metrics,
    })
}

/// API key entries, each problem named under `at` (`gateway.keys` in a pipeline, `keys` in a
/// keys file).
fn validate_keys(
    raw: &[ApiKeySection],
    at: &str,
    stream_names: &HashSet<&str>,
    problems: &mut Problems,
) -> Vec<ApiKey> {
    let keys = raw
        .iter()
        .enumerate()
        .filter_map(|(index, key)| {
            let at = format!("{at}[{index}]");
            let sha256 = hex_sha256(&key.sha256)
                .map_err(|err| problems.add(format!("{at}.sha256"), err))
                .ok()?;
            let streams = if key.streams.iter().any(|s| s == "*") {
                None
            } else {
                for stream in key
                    .streams
                    .iter()
                    .filter(|s| !stream_names.contains(s.as_str()))
                {
                    problems.add(
                        format!("{at}.streams"),
                        format!("no stream is named {stream:?} (\"*\" means every stream)"),
                    );
                }
                Some(key.streams.iter().cloned().collect())
            };
            Some(ApiKey {
                name: key.name.clone(),
                sha256,
                streams,
            })
        })
        .collect();
    super::check_unique(at, raw.iter().map(|k| k.name.as_str()), problems);
    keys
}

/// The API keys of a keys file (`sluice gateway --keys FILE`): `[[keys]]` entries as in
/// `[[gateway.keys]]`, kept apart from the pipeline (in a Kubernetes Secret, say), checked
/// against the pipeline's streams and key names.
pub fn load_keys(file: &Path, pipeline: &super::Pipeline) -> Result<Vec<ApiKey>, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    let raw: KeysFile = toml::from_str(&text).map_err(|error| ConfigError::Syntax {
        file: file.to_owned(),
        error,
    })?;
    let streams: HashSet<&str> = pipeline.streams.iter().map(|s| s.name.as_str()).collect();
    let mut problems = Problems::default();
    let keys = validate_keys(&raw.keys, "keys", &streams, &mut problems);
    for key in raw
        .keys
        .iter()
        .filter(|key| pipeline.gateway.keys.iter().any(|p| p.name == key.name))
    {
        problems.add(
            "keys",
            format!(
                "{:?} is also a key of the pipeline's [[gateway.keys]]",
                key.name
            ),
        );
    }
    match problems.0.is_empty() {
        true => Ok(keys),
        false => Err(ConfigError::Invalid {
            file: file.to_owned(),
            problems: problems.0,
        }),
    }
}

fn validate_spool(raw: &SpoolSection, problems: &mut Problems) -> Option<SpoolConfig> {
    let max_bytes = parse_size(
        raw.max_size
            .as_deref()
            .unwrap_or(defaults::GATEWAY_SPOOL_MAX_SIZE),
    )
    .map_err(|err| problems.add("gateway.spool.max_size", err))
    .ok();
    let fsync = match raw.fsync.as_deref().unwrap_or("always") {
        "always" => Some(FsyncPolicy::Always),
        "never" => Some(FsyncPolicy::Never),
        interval => parse_duration(interval)
            .map(FsyncPolicy::Every)
            .map_err(|err| {
                problems.add(
                    "gateway.spool.fsync",
                    format!("expected \"always\", \"never\" or an interval: {err}"),
                )
            })
            .ok(),
    };
    Some(SpoolConfig {
        dir: PathBuf::from(raw.dir.as_deref().unwrap_or(defaults::GATEWAY_SPOOL_DIR)),
        max_bytes: max_bytes?,
        fsync: fsync?,
    })
}

/// Parses "5000/s" or "300000/min" into records per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let expected = || format!("expected records per time such as \"5000/s\", got {text:?}");
    let (count, per) = text.split_once('/').ok_or_else(expected)?;
    let count: f64 = count.trim().parse().map_err(|_| expected())?;
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(expected()),
    };
    if count <= 0.0 {
        return Err(expected());
    }
    Ok(count / seconds)
}

fn hex_sha256(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
        "expected the key's SHA-256 as 64 hex digits (`sluice gateway keygen` prints it)"
            .to_string()
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_per_second_and_bad_ones_explain_themselves() {
        assert_eq!(parse_rate("5000/s").unwrap(), 5000.0);
        assert_eq!(parse_rate("600/min").unwrap(), 10.0);
        assert!(parse_rate("fast").unwrap_err().contains("\"fast\""));
        assert!(parse_rate("0/s").is_err());
    }

    #[test]
    fn key_hashes_are_64_hex_digits() {
        let hash = hex_sha256(&"ab".repeat(32)).unwrap();
        assert_eq!(hash, [0xab; 32]);
        assert!(hex_sha256("abc").unwrap_err().contains("64 hex digits"));
        assert!(hex_sha256(&"zz".repeat(32)).is_err());
    }
}
