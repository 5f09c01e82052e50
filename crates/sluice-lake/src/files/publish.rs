//! Publishing: putting a committed entry's objects under their names from their staged
//! copies (or, for this writer's own commit, from the bytes it still holds), deleting what a
//! compaction removed, and finishing the commits a crash or a failed put left half published
//! (see the module docs of `files`).

use std::collections::HashSet;

use deltalake::DeltaTableError;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tracing::warn;

use super::log::{self, Entry};
use super::{Encoded, FilesSink};
use crate::{Commit, LakeError};

impl FilesSink {
    /// Publishes every commit after the latest entry's `published_through`.
    pub(super) async fn publish_unfinished(&mut self) -> Result<(), LakeError> {
        if self.latest.published_through == Some(self.latest.seq) {
            return Ok(());
        }
        let entries = log::entries_after(&self.store, self.latest.published_through)
            .await
            .map_err(self.access_error("read the log of"))?;
        let gone = removed_by(&entries);
        for entry in &entries {
            self.ensure_published(entry, &gone).await?;
        }
        Ok(())
    }

    /// Makes sure every object of `entry` is in place, putting missing ones from their staged
    /// copies; objects in `gone` (removed by a later commit, a compaction's) are left out.
    pub(super) async fn ensure_published(
        &self,
        entry: &Entry,
        gone: &HashSet<&str>,
    ) -> Result<(), LakeError> {
        let failed = self.access_error("publish a commit of");
        for object in (entry.objects.iter()).filter(|o| !gone.contains(o.path.as_str())) {
            let path = Path::from(object.path.as_str());
            if self.exists(&path).await.map_err(&failed)? {
                continue;
            }
            let staged = Path::from(object.staged.as_str());
            let bytes = match self.store.get(&staged).await {
                Ok(got) => got.bytes().await.map_err(|err| failed(err.into()))?,
                // Its writer published it meanwhile and deleted the copy.
                Err(object_store::Error::NotFound { .. })
                    if self.exists(&path).await.map_err(&failed)? =>
                {
                    continue;
                }
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(LakeError::LostObject {
                        table: self.name.clone(),
                        commit: entry.seq,
                        path: object.path.clone(),
                    });
                }
                Err(err) => return Err(failed(err.into())),
            };
            self.put_once(&path, bytes.into())
                .await
                .map_err(|err| failed(err.into()))?;
            self.forget_staged(&staged).await;
        }
        self.delete_removed(entry)
            .await
            .map_err(|err| failed(err.into()))
    }

    /// Deletes the objects a commit removed (after its own objects are in place).
    async fn delete_removed(&self, entry: &Entry) -> Result<(), object_store::Error> {
        for path in &entry.removed {
            match self.store.delete(&Path::from(path.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    pub(super) async fn exists(&self, path: &Path) -> Result<bool, DeltaTableError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Puts an object that must not exist yet; one already there is the same object (put by
    /// another writer publishing the same commit).
    async fn put_once(&self, path: &Path, bytes: PutPayload) -> Result<(), object_store::Error> {
        match (self.store)
            .put_opts(path, bytes, PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Deletes a staged copy whose object is published; a failure only leaves it behind.
    pub(super) async fn forget_staged(&self, staged: &Path) {
        match self.store.delete(staged).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(err) => warn!(table = %self.name, %staged, %err, "cannot delete a staged object"),
        }
    }

    /// Takes `entry`, just committed, as the latest and publishes its objects; a failure to
    /// publish is retried at the next commit (the commit stands).
    pub(super) async fn publish_commit(&mut self, entry: Entry, objects: Vec<Encoded>) -> Commit {
        let commit = Commit {
            version: entry.seq,
            files: objects.len(),
            bytes: objects.iter().map(|o| o.logged.bytes).sum(),
        };
        self.latest = entry.clone();
        if let Err(err) = self.publish(&entry, objects).await {
            warn!(table = %self.name, commit = entry.seq, %err,
                "the commit is made but not all its objects are in place yet; retried at the next commit");
            self.unpublished.insert(entry.seq);
        }
        commit
    }

    /// Puts the objects of this writer's commit `entry` under their names.
    async fn publish(
        &self,
        entry: &Entry,
        objects: Vec<Encoded>,
    ) -> Result<(), object_store::Error> {
        for (logged, object) in entry.objects.iter().zip(objects) {
            self.put_once(&Path::from(logged.path.as_str()), object.bytes.into())
                .await?;
            self.forget_staged(&Path::from(logged.staged.as_str()))
                .await;
        }
        self.delete_removed(entry).await
    }

    /// Publishes this writer's commits whose publishing failed before.
    pub(super) async fn retry_unpublished(&mut self) -> Result<(), LakeError> {
        let Some(&first) = self.unpublished.first() else {
            return Ok(());
        };
        let entries = log::entries_after(&self.store, first.checked_sub(1))
            .await
            .map_err(self.access_error("read the log of"))?;
        let gone = removed_by(&entries);
        for entry in &entries {
            if self.unpublished.contains(&entry.seq) {
                self.ensure_published(entry, &gone).await?;
                self.unpublished.remove(&entry.seq);
            }
        }
        Ok(())
    }
}

/// The objects that `entries` remove: a commit among them need not publish those.
pub(super) fn removed_by(entries: &[Entry]) -> HashSet<&str> {
    (entries.iter())
        .flat_map(|entry| entry.removed.iter().map(String::as_str))
        .collect()
}
