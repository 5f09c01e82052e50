//! Who may call the console's API. With keys, every call presents one as
//! `Authorization: Bearer <key>` (the gateway's scheme: SHA-256 hashes compared in constant
//! time). Without keys the console is bound to loopback, and a call must name a loopback host
//! in its `Host` header: a page elsewhere that rebinds its DNS name to 127.0.0.1 sends its own
//! name, and is refused. The page and its assets hold no data and need no key.

use axum::http::{HeaderMap, StatusCode, header};
use sluice_gateway::auth::Keys;

/// How API calls are checked.
pub(crate) enum Access {
    /// Bound to loopback: the `Host` header must name it.
    Loopback,
    /// A key must be presented.
    Keys(Keys),
}

/// Why a call is refused: its status and message.
pub(crate) type Refusal = (StatusCode, &'static str, String);

impl Access {
    /// Whether the call with `headers` may proceed.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match self {
            Self::Keys(keys) => keys
                .authenticate(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()))
                .map(drop)
                .map_err(|err| (StatusCode::UNAUTHORIZED, "unauthorized", err.to_string())),
            Self::Loopback => {
                let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
                match host.is_some_and(names_loopback) {
                    true => Ok(()),
                    false => Err((
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!(
                            "the console answers requests for 127.0.0.1, localhost or [::1] only, not {}",
                            host.unwrap_or("a request without a Host header")
                        ),
                    )),
                }
            }
        }
    }
}

/// Whether a `Host` header value names this machine's loopback.
fn names_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use sluice_core::config::ApiKey;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        (pairs.iter())
            .map(|(name, value)| (name.clone(), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn on_loopback_only_loopback_host_names_pass() {
        for host in [
            "127.0.0.1:8090",
            "localhost:8090",
            "LOCALHOST",
            "[::1]:8090",
            "127.0.0.2:1",
        ] {
            let ok = Access::Loopback.check(&headers(&[(header::HOST, host)]));
            assert!(ok.is_ok(), "{host}");
        }
        for host in ["evil.example:8090", "10.0.0.1:8090", "localhost.evil:80"] {
            let refused = Access::Loopback.check(&headers(&[(header::HOST, host)]));
            let (status, _, message) = refused.unwrap_err();
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(message.contains(host), "{message}");
        }
        assert!(Access::Loopback.check(&HeaderMap::new()).is_err());
    }

    #[test]
    fn with_keys_a_known_bearer_key_passes_and_nothing_else() {
        let access = Access::Keys(Keys::new(vec![ApiKey {
            name: "console".into(),
            sha256: Sha256::digest(b"sk_good").into(),
            streams: None,
        }]));
        let good = headers(&[(header::AUTHORIZATION, "Bearer sk_good")]);
        assert!(access.check(&good).is_ok());
        for presented in [
            headers(&[(header::AUTHORIZATION, "Bearer sk_bad")]),
            headers(&[(header::HOST, "127.0.0.1:8090")]),
        ] {
            let (status, kind, _) = access.check(&presented).unwrap_err();
            assert_eq!((status, kind), (StatusCode::UNAUTHORIZED, "unauthorized"));
        }
    }
}
