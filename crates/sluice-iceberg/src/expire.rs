//! Snapshot expiry and the removal of the files no kept snapshot needs, for an Iceberg table,
//! with a retention window that time travel keeps.
//!
//! Expiry is the iceberg crate's action (Java's `RemoveSnapshots`: the current snapshot always
//! stays), committed like every sluice commit, on the state it was planned on. It only rewrites
//! metadata; the files are then removed here: under `data/` and `metadata/`, every file older
//! than the window that the table no longer reaches (its current metadata and metadata log,
//! the kept snapshots' manifest lists, their manifests and their data files). Younger files are
//! never removed: they may be a running stream's commit in flight.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use object_store::ObjectStoreExt;
use serde::Serialize;
use sluice_core::config::Catalog as CatalogConfig;
use sluice_lake::LakeError;

use crate::catalog::{PinnedCatalog, connect, is_conflict};
use crate::failed;
use crate::reading::reached_files;
use crate::storage::{location_in, store_of};

/// How many times expiry is planned again on a table a stream moved meanwhile.
const REBASES: usize = 20;

/// What one expiry did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// Snapshots expired.
    pub snapshots_expired: usize,
    /// Files removed (no kept snapshot reaches them), by location.
    pub files_removed: Vec<String>,
}

/// Expires the snapshots of the Iceberg table `name` older than `retain` (the current one
/// always stays), then removes the files older than `retain` that the table no longer reaches.
pub async fn expire(
    name: &str,
    catalog: &CatalogConfig,
    storage_options: &HashMap<String, String>,
    retain: Duration,
) -> Result<Expiry, LakeError> {
    let connected = connect(catalog, storage_options)
        .await
        .map_err(failed(name, "reach its catalog"))?;
    let ident = TableIdent::new(NamespaceIdent::new(catalog.namespace.clone()), name.into());
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
    let mut table = connected
        .load_table(&ident)
        .await
        .map_err(failed(name, "load it from its catalog"))?;
    let before = table.metadata().snapshots().count();
    let mut attempts = 0;
    let expired = loop {
        attempts += 1;
        let transaction = Transaction::new(&table);
        let action = transaction
            .expire_snapshots()
            .expire_older_than_ms(cutoff.timestamp_millis())
            .retain_last(1);
        let transaction = action
            .apply(transaction)
            .map_err(failed(name, "plan the expiry"))?;
        let pinned = PinnedCatalog {
            inner: connected.as_ref(),
            base: &table,
        };
        match transaction.commit(&pinned).await {
            Ok(expired) => break expired,
            Err(err) if is_conflict(&err) && attempts < REBASES => {
                table = connected
                    .load_table(&ident)
                    .await
                    .map_err(failed(name, "reload it"))?;
            }
            Err(err) => return Err(failed(name, "commit the expiry")(err)),
        }
    };
    let snapshots_expired = before.saturating_sub(expired.metadata().snapshots().count());
    let files_removed = remove_unreached(&expired, storage_options, cutoff)
        .await
        .map_err(failed(name, "remove the files no snapshot reaches"))?;
    Ok(Expiry {
        snapshots_expired,
        files_removed,
    })
}

/// Removes the files under the table's `data/` and `metadata/` older than `cutoff` that
/// `table` does not reach; returns their locations.
async fn remove_unreached(
    table: &Table,
    storage_options: &HashMap<String, String>,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, String> {
    let reached = reached_files(table).await.map_err(|e| e.to_string())?;
    let location = table.metadata().location().trim_end_matches('/');
    let mut removed = Vec::new();
    for dir in ["data", "metadata"] {
        let (store, prefix) =
            store_of(&format!("{location}/{dir}"), storage_options).map_err(|e| e.to_string())?;
        let listed: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        for meta in listed.into_iter().filter(|m| m.last_modified < cutoff) {
            let file = location_in(location, &meta.location).map_err(|e| e.to_string())?;
            if reached.contains(&file) {
                continue;
            }
            store
                .delete(&meta.location)
                .await
                .map_err(|e| format!("{file}: {e}"))?;
            removed.push(file);
        }
    }
    Ok(removed)
}
