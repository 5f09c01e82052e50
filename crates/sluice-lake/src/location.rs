//! Where tables live: URIs and the storage options used to reach them.
//!
//! Local paths become absolute `file://` URLs (created if missing). `s3://` URLs use delta-rs's
//! S3 support, configured by the standard AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION,
//! AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP) and `[lake.storage_options]`.
//! Commits use put-if-absent (S3 `If-None-Match: *`), so no locking service is needed.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::{DeltaTableBuilder, DeltaTableError};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use sluice_core::Settings;
use url::Url;

use crate::LakeError;

/// Storage options sluice sets unless the file does:
/// - retry settings that make an unreachable store fail within seconds, not minutes;
/// - the AWS SDK's credential chain for every S3 endpoint. delta-rs uses it only for AWS
///   itself, and for an S3-compatible endpoint falls back to object_store's own chain, which
///   reads no profile: `AWS_PROFILE` would work against AWS and fail against MinIO.
const DEFAULT_OPTIONS: [(&str, &str); 4] = [
    ("max_retries", "4"),
    ("retry_timeout", "20s"),
    ("connect_timeout", "5s"),
    ("aws_force_credential_load", "true"),
];

/// The S3 permissions (IAM action names) sluice's use of a lake needs: reading and committing
/// Delta tables (objects read, written with conditional puts, listed under `_delta_log/`),
/// aborting a multipart upload of a large Parquet file that failed, and deleting: `verify
/// --repair`'s removal of files no commit references. `sluice check` prints them per pipeline;
/// deploy/terraform grants exactly these (scripts/check_deploy.py compares).
pub const S3_OBJECT_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
];
/// The bucket-level S3 permission: listing, under the tables' prefixes only.
pub const S3_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket"];

/// The store rooted at `url`, reached as Delta tables are (delta-rs's storage options and the
/// AWS credential chain).
pub fn object_store_at(
    url: &Url,
    storage_options: &HashMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, DeltaTableError> {
    Ok(DeltaTableBuilder::from_url(url.clone())?
        .with_storage_options(storage_options.clone())
        .build_storage()?
        .object_store(None))
}

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
    if let Ok(url) = Url::parse(uri)
        && let Some(store) = store_not_built(url.scheme())
    {
        return Err(invalid(format!(
            "{}:// ({store}) is not built into this sluice: it reaches S3 and S3-compatible \
             stores only. Use s3:// with the store's S3-compatible endpoint (AWS_ENDPOINT_URL), \
             or a local path",
            url.scheme()
        )));
    }
    let url = deltalake::ensure_table_uri(uri).map_err(|err| invalid(err.to_string()))?;
    match url.scheme() {
        "file" | "s3" | "s3a" | "memory" => Ok(url),
        other => Err(invalid(format!(
            "the {other}:// scheme is not supported (use s3://, file:// or a local path)"
        ))),
    }
}

/// The object store a URI scheme names, when delta-rs could reach it but this build leaves it
/// out (deltalake's `gcs` and `azure` features are off).
fn store_not_built(scheme: &str) -> Option<&'static str> {
    match scheme {
        "gs" | "gcs" => Some("Google Cloud Storage"),
        "az" | "azure" | "abfs" | "abfss" | "adl" => Some("Azure storage"),
        _ => None,
    }
}

/// A table by name and location: one of a pipeline's, or one [`discover_tables`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLocation {
    /// The name SQL uses (for a found table, its directory's).
    pub name: String,
    /// The table URI.
    pub uri: String,
    /// For an Iceberg table, the catalog it is registered in: it, not the location, says
    /// which metadata is current.
    pub catalog: Option<sluice_core::config::Catalog>,
}

impl TableLocation {
    /// Every table `pipeline` writes, raw tables then window tables.
    pub fn of_pipeline(pipeline: &sluice_core::Pipeline) -> Vec<Self> {
        let tables = pipeline.tables.iter().map(|t| Self {
            name: t.name.clone(),
            uri: t.uri.clone(),
            catalog: t.catalog.clone(),
        });
        let windows = pipeline.windows.iter().map(|w| Self {
            name: w.name.clone(),
            uri: w.uri.clone(),
            catalog: w.catalog.clone(),
        });
        tables.chain(windows).collect()
    }
}

/// Every table directly under `lake` (a local directory, or a prefix of a store such as
/// `s3://bucket/lake`): a directory holding a Delta log, or a plain-files table's `_sluice`
/// log; named after its directory, in name order. The store is reached as the
/// tables themselves are, through delta-rs with `storage_options` and the AWS credential chain.
pub async fn discover_tables(
    lake: &str,
    storage_options: &HashMap<String, String>,
) -> Result<Vec<TableLocation>, LakeError> {
    let url = table_url("(lake)", lake)?;
    let listing_failed = |source: DeltaTableError| LakeError::List {
        lake: lake.to_string(),
        source,
    };
    let store = DeltaTableBuilder::from_url(url.clone())
        .and_then(|builder| {
            builder
                .with_storage_options(storage_options.clone())
                .build_storage()
        })
        .map_err(listing_failed)?
        .object_store(None);
    let list = |prefix: Option<ObjectPath>| {
        let store = store.clone();
        async move {
            store
                .list_with_delimiter(prefix.as_ref())
                .await
                .map_err(|err| listing_failed(err.into()))
        }
    };
    let mut tables = Vec::new();
    for dir in list(None).await?.common_prefixes {
        let holds_log = list(Some(dir.clone()))
            .await?
            .common_prefixes
            .iter()
            .any(|child| matches!(child.filename(), Some("_delta_log" | "_sluice")));
        if let (true, Some(name)) = (holds_log, dir.filename()) {
            tables.push(TableLocation {
                name: name.to_string(),
                uri: format!("{}/{name}", url.as_str().trim_end_matches('/')),
                catalog: None,
            });
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// Storage options for delta-rs: sluice's defaults, then the pipeline file's options.
pub fn storage_options(from_file: &Settings) -> HashMap<String, String> {
    let mut options: HashMap<String, String> = DEFAULT_OPTIONS
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
        for (uri, store) in [
            ("gs://bucket/t", "Google Cloud Storage"),
            (
                "abfss://lake@account.dfs.core.windows.net/t",
                "Azure storage",
            ),
        ] {
            let err = table_url("t", uri).unwrap_err().to_string();
            assert!(
                err.contains(store) && err.contains("is not built into this sluice"),
                "{err}"
            );
        }
    }

    #[test]
    fn file_options_override_the_defaults() {
        let options = storage_options(&Settings::from([("max_retries", "9")]));
        assert_eq!(options["max_retries"], "9");
        assert_eq!(options["retry_timeout"], "20s");
    }
}
