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

use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{NamespaceIdent, TableIdent};
use serde::Serialize;
use sluice_core::config::Catalog as CatalogConfig;
use sluice_lake::LakeError;

use crate::catalog::{PinnedCatalog, connect, is_conflict};
use crate::failed;
use crate::reading::unreached_files;
use crate::storage::store_of;

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
    let (store, _) = store_of(expired.metadata().location(), storage_options)
        .map_err(failed(name, "reach its storage"))?;
    let files_removed = unreached_files(&expired, &store, &["data", "metadata"], cutoff, true)
        .await
        .map_err(failed(name, "remove the files no snapshot reaches"))?;
    Ok(Expiry {
        snapshots_expired,
        files_removed,
    })
}
