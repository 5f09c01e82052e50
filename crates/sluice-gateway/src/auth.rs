//! API keys: `Authorization: Bearer <key>`, checked against the SHA-256 hashes in the pipeline
//! file. Every configured hash is compared, in constant time, so neither the time taken nor an
//! early exit tells a caller how close a guess was. Keys are random 256-bit values, so one
//! SHA-256 is as strong as a slow password hash would be, and costs microseconds per request.
//!
//! The keys can be replaced while the gateway runs (SIGHUP re-reads the pipeline file): a
//! request checks against the set in place when it arrived.

use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use sluice_core::config::ApiKey;
use subtle::ConstantTimeEq;

/// Why a request is not authenticated (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing API key: send `Authorization: Bearer <key>`")]
    Missing,
    /// A key that matches no configured hash.
    #[error("unknown API key")]
    Unknown,
}

/// The configured keys, replaceable while requests are served.
pub struct Keys(RwLock<Arc<[Arc<ApiKey>]>>);

impl Keys {
    /// Wraps the configured keys.
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Self(RwLock::new(Self::shared(keys)))
    }

    /// Puts `keys` in place of the current set; requests already authenticated keep theirs.
    pub fn replace(&self, keys: Vec<ApiKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Self::shared(keys);
    }

    /// Whether there is no key (every request would be refused).
    pub fn is_empty(&self) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn shared(keys: Vec<ApiKey>) -> Arc<[Arc<ApiKey>]> {
        keys.into_iter().map(Arc::new).collect()
    }

    /// The key an `Authorization` header value presents.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Arc<ApiKey>, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(AuthError::Missing)?
            .trim_ascii();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let presented: [u8; 32] = Sha256::digest(token).into();
        let keys = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut found = None;
        for key in keys.iter() {
            if bool::from(key.sha256.ct_eq(&presented)) {
                found = Some(key.clone());
            }
        }
        found.ok_or(AuthError::Unknown)
    }
}

/// A new random API key and its SHA-256 (for `sluice gateway keygen` and `sluice up`).
pub fn generate() -> (String, [u8; 32]) {
    let bytes: [u8; 32] = rand::random();
    let key = format!("sk_{}", hex::encode(bytes));
    let hash = Sha256::digest(key.as_bytes()).into();
    (key, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str, streams: Option<&[&str]>) -> ApiKey {
        ApiKey {
            name: name.into(),
            sha256: Sha256::digest(secret.as_bytes()).into(),
            streams: streams.map(|s| s.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn a_bearer_key_finds_its_entry_and_anything_else_is_401() {
        let keys = Keys::new(vec![
            key("shop", "secret-1", Some(&["sales"])),
            key("ops", "secret-2", None),
        ]);
        let shop = keys.authenticate(Some(b"Bearer secret-1")).unwrap();
        assert_eq!(shop.name, "shop");
        assert!(shop.allows("sales") && !shop.allows("sensors"));
        assert!(
            keys.authenticate(Some(b"Bearer secret-2"))
                .unwrap()
                .allows("any")
        );
        assert_eq!(keys.authenticate(None).err(), Some(AuthError::Missing));
        assert_eq!(
            keys.authenticate(Some(b"Basic abc")).err(),
            Some(AuthError::Missing)
        );
        assert_eq!(
            keys.authenticate(Some(b"Bearer ")).err(),
            Some(AuthError::Missing)
        );
        assert_eq!(
            keys.authenticate(Some(b"Bearer secret-3")).err(),
            Some(AuthError::Unknown)
        );
    }

    #[test]
    fn replaced_keys_take_effect_for_the_next_request() {
        let keys = Keys::new(vec![key("old", "secret-1", None)]);
        let before = keys.authenticate(Some(b"Bearer secret-1")).unwrap();
        keys.replace(vec![key("new", "secret-2", Some(&["sales"]))]);
        assert_eq!(before.name, "old", "an authenticated request keeps its key");
        assert_eq!(
            keys.authenticate(Some(b"Bearer secret-1")).err(),
            Some(AuthError::Unknown)
        );
        assert_eq!(
            keys.authenticate(Some(b"Bearer secret-2")).unwrap().name,
            "new"
        );
    }

    #[test]
    fn generated_keys_hash_to_what_is_printed() {
        let (key, hash) = generate();
        let (other, _) = generate();
        assert_ne!(key, other);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(key.as_bytes())), hash);
    }
}
