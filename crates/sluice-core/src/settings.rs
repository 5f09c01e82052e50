//! Settings passed through to a client library (librdkafka's `[kafka.options]`, object_store's
//! `[lake.storage_options]`), whose values may be secrets. A value whose key names a password,
//! secret, key, token or credential ([`is_secret_key`]) is held as a [`SecretString`]: `Debug`
//! (logs, error messages, a printed pipeline) shows `[REDACTED]` in its place, and only
//! [`Settings::exposed`] hands it out, to the client that needs it.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Key/value settings for a client library, secret values redacted in `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(from = "BTreeMap<String, String>")]
pub struct Settings(BTreeMap<String, Value>);

#[derive(Clone)]
enum Value {
    Plain(String),
    Secret(SecretString),
}

impl Settings {
    /// Sets `key` (a secret when [`is_secret_key`] says so).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        let value = match is_secret_key(&key) {
            true => Value::Secret(value.into()),
            false => Value::Plain(value),
        };
        self.0.insert(key, value);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The value of `key`, a secret one too: only for handing it to the client that needs it.
    pub fn expose(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(Value::expose)
    }

    /// Every key and value, secret ones too: only for handing them to the client that needs
    /// them.
    pub fn exposed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.expose()))
    }
}

impl Value {
    fn expose(&self) -> &str {
        match self {
            Value::Plain(value) => value,
            Value::Secret(secret) => secret.expose_secret(),
        }
    }
}

impl From<BTreeMap<String, String>> for Settings {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut settings = Self::default();
        for (key, value) in map {
            settings.insert(key, value);
        }
        settings
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Settings {
    fn from(pairs: [(&str, &str); N]) -> Self {
        let mut settings = Self::default();
        for (key, value) in pairs {
            settings.insert(key, value);
        }
        settings
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = match value {
                    Value::Plain(value) => value.as_str(),
                    Value::Secret(_) => "[REDACTED]",
                };
                (key, shown)
            }))
            .finish()
    }
}

/// Whether a setting named `key` holds a secret: its name mentions a password, passphrase,
/// secret, token, credential, JAAS config or private key, or it is a key itself (ends in `key`,
/// as `azure_storage_account_key`, or names a key file's contents, as `ssl.key.pem`). An
/// access key's *id* is not a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    const SECRET_WORDS: &[&str] = &[
        "password",
        "passphrase",
        "secret",
        "token",
        "credential",
        "jaas",
        "private",
        "key.pem",
    ];
    SECRET_WORDS.iter().any(|word| key.contains(word)) || key.ends_with("key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_in_debug_and_exposed_on_request() {
        let settings = Settings::from([
            ("sasl.password", "hunter2"),
            ("sasl.username", "alice"),
            ("aws_secret_access_key", "wJalrXUtnFEMI"),
            ("aws_access_key_id", "AKIA123"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("fetch.max.bytes", "1048576"),
        ]);
        let shown = format!("{settings:?}");
        for secret in ["hunter2", "wJalrXUtnFEMI", "BEGIN PRIVATE KEY"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for plain in [
            "alice",
            "AKIA123",
            "1048576",
            "\"sasl.password\": \"[REDACTED]\"",
        ] {
            assert!(shown.contains(plain), "{plain} not in {shown}");
        }
        assert_eq!(settings.expose("sasl.password"), Some("hunter2"));
        assert_eq!(settings.exposed().count(), 6);
    }

    #[test]
    fn what_counts_as_secret() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
            "aws_session_token",
            "azure_storage_account_key",
            "google_service_account_key",
            "SSL.KEY.PEM",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "sasl.username",
            "aws_access_key_id",
            "aws_region",
            "ssl.ca.location",
            "fetch.max.bytes",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }
}
