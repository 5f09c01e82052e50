//! A plain-files table opened for reading (`sluice query`, `tables`, `verify`): its log and
//! the objects under it, never created or changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::DeltaTableError;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice_core::schema::{DATE_COLUMN, HOUR_COLUMN};
use url::Url;

use super::log::{self, Entry};
use super::{STAGING_DIR, access};
use crate::LakeError;
use crate::location::object_store_at;
use crate::location::table_url;

/// A plain-files table as its log describes it.
pub struct FilesTable {
    name: String,
    url: Url,
    /// The store, rooted at the table.
    pub store: Arc<dyn ObjectStore>,
    /// Its latest commit.
    pub latest: Entry,
}

/// What is under a table's prefix, compared with what its log names.
#[derive(Debug, Default)]
pub struct Listing {
    /// Objects the log names: (path, size in the log).
    pub committed: Vec<(String, u64)>,
    /// Objects the log names that are not there, or not at the size it records.
    pub missing: Vec<String>,
    /// Objects under the table no commit names: readers see them, so they are a problem.
    pub unexpected: Vec<String>,
    /// Staged copies no unpublished commit needs, with their age.
    pub leftover_staged: Vec<(String, std::time::Duration)>,
}

impl FilesTable {
    /// Opens the table at `uri`; `None` when there is no sluice log there.
    pub async fn open(
        name: &str,
        uri: &str,
        storage_options: &HashMap<String, String>,
    ) -> Result<Option<Self>, LakeError> {
        let url = table_url(name, uri)?;
        let store = object_store_at(&url, storage_options).map_err(access(name, &url, "open"))?;
        let latest =
            log::latest_entry(&store)
                .await
                .map_err(access(name, &url, "read the log of"))?;
        Ok(latest.map(|latest| Self {
            name: name.to_string(),
            url,
            store,
            latest,
        }))
    }

    /// The table's location.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The columns of its objects (the partition columns are in their paths).
    pub fn schema(&self) -> Result<SchemaRef, LakeError> {
        let columns = (self.latest.table.fields())
            .map_err(|reason| self.error(DeltaTableError::generic(reason)))?;
        Ok(Arc::new(Schema::new(columns)))
    }

    /// The partition columns and their types.
    pub fn partition_columns(&self) -> Vec<(String, DataType)> {
        (self.latest.table.partition_by.iter())
            .map(|column| {
                let ty = match column.as_str() {
                    DATE_COLUMN => DataType::Date32,
                    HOUR_COLUMN => DataType::Int32,
                    _ => DataType::Utf8,
                };
                (column.clone(), ty)
            })
            .collect()
    }

    /// Every commit, in order.
    pub async fn entries(&self) -> Result<Vec<Entry>, LakeError> {
        log::entries_after(&self.store, None)
            .await
            .map_err(|source| self.error(source))
    }

    /// Lists everything under the table and compares it with `entries` (all of the log), and
    /// with the commits made while it listed (a writer may be running): objects of commits
    /// not yet known to be published are not missing, and those of newer commits not
    /// unexpected. Staged copies older than `min_age` are leftovers unless such a commit
    /// still needs them.
    pub async fn listing(
        &self,
        entries: &[Entry],
        min_age: std::time::Duration,
    ) -> Result<Listing, LakeError> {
        let mut found: HashMap<String, (u64, chrono::DateTime<chrono::Utc>)> = self
            .store
            .list(None)
            .map_ok(|meta| (meta.location.to_string(), (meta.size, meta.last_modified)))
            .try_collect()
            .await
            .map_err(|err| self.error(err.into()))?;
        let newer = log::entries_after(&self.store, entries.last().map(|entry| entry.seq))
            .await
            .map_err(|source| self.error(source))?;
        let entries: Vec<Entry> = entries.iter().cloned().chain(newer).collect();
        let published = entries.last().and_then(|entry| entry.published_through);
        let unsettled = |entry: &&Entry| published.is_none_or(|through| entry.seq > through);
        let needed: BTreeSet<&str> = (entries.iter().filter(unsettled))
            .flat_map(|entry| entry.objects.iter().map(|o| o.staged.as_str()))
            .collect();
        let pending: BTreeSet<&str> = (entries.iter().filter(unsettled))
            .flat_map(|entry| entry.objects.iter().map(|o| o.path.as_str()))
            .collect();
        let mut listing = Listing::default();
        for object in log::live_objects(&entries) {
            match found.remove(&object.path) {
                Some((size, _)) if size == object.bytes => {
                    listing.committed.push((object.path, size));
                }
                None if pending.contains(object.path.as_str()) => {}
                _ => listing.missing.push(object.path),
            }
        }
        // Objects a pending compaction removes may still be there.
        for entry in entries.iter().filter(unsettled) {
            for path in &entry.removed {
                found.remove(path);
            }
        }
        let now = chrono::Utc::now();
        for (path, (_, modified)) in found {
            if path.starts_with(log::LOG_DIR) {
                continue;
            }
            if path.starts_with(STAGING_DIR) {
                let age = (now - modified).to_std().unwrap_or_default();
                if age >= min_age && !needed.contains(path.as_str()) {
                    listing.leftover_staged.push((path, age));
                }
                continue;
            }
            listing.unexpected.push(path);
        }
        listing.missing.sort();
        listing.unexpected.sort();
        listing.leftover_staged.sort();
        Ok(listing)
    }

    /// Deletes objects by their paths under the table.
    pub async fn delete(&self, paths: &[String]) -> Result<(), LakeError> {
        for path in paths {
            match self.store.delete(&Path::from(path.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(self.error(err.into())),
            }
        }
        Ok(())
    }

    fn error(&self, source: DeltaTableError) -> LakeError {
        LakeError::Access {
            table: self.name.clone(),
            uri: self.url.to_string(),
            action: "read",
            source,
        }
    }
}
