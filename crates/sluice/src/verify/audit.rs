//! A table's commits as `verify` reads them, whatever the format: a Delta or plain-files table
//! through `sluice_lake::audit`, an Iceberg table through its catalog.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use sluice_core::config::Catalog;
use sluice_iceberg::IcebergSnapshot;
use sluice_lake::audit::{AuditedTable, BadFile};

/// A table at one version, for checking.
pub(super) enum Audit {
    /// A Delta or plain-files table.
    Lake(AuditedTable),
    /// An Iceberg table at its current snapshot.
    Iceberg(IcebergSnapshot),
}

impl Audit {
    /// Opens the table `name` at `uri`, through `catalog` when it is an Iceberg table.
    pub(super) async fn open(
        name: &str,
        uri: &str,
        catalog: Option<&Catalog>,
        storage_options: &HashMap<String, String>,
    ) -> Result<Self> {
        Ok(match catalog {
            Some(catalog) => {
                Self::Iceberg(IcebergSnapshot::open(name, catalog, storage_options).await?)
            }
            None => Self::Lake(AuditedTable::open(name, uri, storage_options).await?),
        })
    }

    /// Where the table lives.
    pub(super) fn uri(&self) -> String {
        match self {
            Self::Lake(table) => table.uri().to_string(),
            Self::Iceberg(table) => table.location().to_string(),
        }
    }

    /// Its version: a Delta version, a plain-files commit, an Iceberg sequence number.
    pub(super) fn version(&self) -> Option<u64> {
        match self {
            Self::Lake(table) => table.version(),
            Self::Iceberg(table) => Some(table.version),
        }
    }

    /// The offset the table records as committed for a source partition.
    pub(super) async fn committed_offset(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>> {
        Ok(match self {
            Self::Lake(table) => table.committed_offset(topic, partition).await?,
            Self::Iceberg(table) => table.progress.get(topic, partition).map(|r| r.offset),
        })
    }

    /// How many files the version references, and those that are missing or unreadable.
    pub(super) async fn check_files(&self) -> Result<(usize, Vec<BadFile>)> {
        Ok(match self {
            Self::Lake(table) => table.check_files().await?,
            Self::Iceberg(table) => (table.files.len(), table.check_files().await),
        })
    }

    /// Files no commit references, older than `min_age`; removed with `repair`.
    pub(super) async fn uncommitted_files(
        &self,
        min_age: Duration,
        repair: bool,
    ) -> Result<Vec<String>> {
        Ok(match self {
            Self::Lake(table) => table.uncommitted_files(min_age, repair).await?,
            Self::Iceberg(table) => table.uncommitted_files(min_age, repair).await?,
        })
    }
}
