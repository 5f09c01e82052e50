//! Apache Iceberg tables landed exactly once, registered in a catalog where Athena, Trino,
//! Spark and pyiceberg find them.
//!
//! The Parquet files are written by sluice's own arrow writer (arrow 59, Iceberg field ids in
//! their schema); the iceberg crate (on arrow 58) makes everything else: manifests, manifest
//! lists, table metadata and catalog commits. No arrow value crosses the two versions.
//!
//! # Layout
//! - [`catalog`]: reaching `[catalogs.<name>]`, and commits pinned to the state they continue.
//! - [`compact`]: small data files rewritten in a replace snapshot.
//! - [`data_files`]: rows split by `day`/`hour` of their event time, written as data files.
//! - [`expire`]: snapshot expiry and removal of the files no kept snapshot reaches.
//! - [`glue`]: the Iceberg catalog on AWS Glue, and the Glue client `catalog sync` shares.
//! - [`progress`]: each source partition's offset in every snapshot's summary.
//! - [`reading`]: a table read back through its catalog, for `query` and `verify`.
//! - [`rest_catalog`]: an Iceberg REST catalog, its OAuth2 token fetched again on a 401.
//! - [`schema`]: a stream's Arrow columns as an Iceberg schema, and field ids back.
//! - [`sink`]: the table as the engine's `Sink`.
//! - [`sql_catalog`]: the SQL catalog (pyiceberg's layout) in a SQLite file or PostgreSQL.
//! - [`storage`]: Iceberg's file IO over sluice's object stores.

pub mod catalog;
pub mod compact;
pub mod data_files;
pub mod expire;
pub mod glue;
pub mod progress;
pub mod reading;
pub mod rest_catalog;
pub mod schema;
pub mod sink;
pub mod sql_catalog;
pub mod storage;

pub use reading::IcebergSnapshot;
pub use sink::{IcebergSink, IcebergTable};

use sluice_lake::LakeError;

/// A [`LakeError::Format`] for `table`: transient, since a catalog or store that failed may
/// answer later; errors that cannot pass are raised as their own variants.
pub(crate) fn failed<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    table: &str,
    action: &str,
) -> impl Fn(E) -> LakeError + use<E> {
    let (table, action) = (table.to_string(), action.to_string());
    move |source| LakeError::Format {
        table: table.clone(),
        action: action.clone(),
        transient: true,
        source: source.into(),
    }
}
