//! Where tables live: URIs and the storage options used to reach them.
//!
//! Local paths become absolute `file://` URLs (created if missing). `s3://` URLs use delta-rs's
//! S3 support, configured by the standard AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION,
//! AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP) and `[lake.storage_options]`.
//! Commits use put-if-absent (S3 `If-None-Match: *`), so no locking service is needed.

use std::collections::HashMap;
use std::sync::Once;

use sluice_core::Settings;
use url::Url;

use crate::LakeError;

/// Retry settings that make an unreachable store fail within seconds, not minutes; a file can
/// override each of them.
const FAIL_FAST: [(&str, &str); 3] = [
    ("max_retries", "4"),
    ("retry_timeout", "20s"),
    ("connect_timeout", "5s"),
];

/// Makes `s3://` and `s3a://` URLs known to delta-rs; idempotent.
pub fn register_object_stores() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| deltalake::aws::register_handlers(None));
}

/// The URL of a table URI; local directories are created so that the path can be resolved.
pub fn table_url(table: &str, uri: &str) -> Result<Url, LakeError> {
    register_object_stores();
    let invalid = |reason: String| LakeError::InvalidLocation {
        table: table.into(),
        uri: uri.into(),
        reason,
    };
    let url = deltalake::ensure_table_uri(uri).map_err(|err| invalid(err.to_string()))?;
    match url.scheme() {
        "file" | "s3" | "s3a" | "memory" => Ok(url),
        other => Err(invalid(format!(
            "the {other}:// scheme is not supported (use s3://, file:// or a local path)"
        ))),
    }
}

/// Storage options for delta-rs: fail-fast retry defaults, then the pipeline file's options.
pub fn storage_options(from_file: &Settings) -> HashMap<String, String> {
    let mut options: HashMap<String, String> = FAIL_FAST
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    options.extend(
        from_file
            .exposed()
            .map(|(key, value)| (key.to_string(), value.to_string())),
    );
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_file_urls_and_foreign_schemes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lake/t");
        let url = table_url("t", path.to_str().unwrap()).unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(path.is_dir());
        let err = table_url("t", "ftp://host/x").unwrap_err().to_string();
        assert!(err.contains("table t") && err.contains("ftp"), "{err}");
    }

    #[test]
    fn file_options_override_fail_fast_defaults() {
        let options = storage_options(&Settings::from([("max_retries", "9")]));
        assert_eq!(options["max_retries"], "9");
        assert_eq!(options["retry_timeout"], "20s");
    }
}
