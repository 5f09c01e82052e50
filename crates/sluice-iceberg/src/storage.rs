//! Iceberg's file IO over the object stores sluice already uses for Delta tables (object_store,
//! with delta-rs's storage options and the AWS credential chain), so an Iceberg table reaches
//! S3 exactly as a Delta table does and no second S3 client (OpenDAL) is compiled in.
//!
//! Iceberg hands over absolute locations (`s3://bucket/key`, `file:///path`); each bucket (or
//! the local root) gets one store, made on first use.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use url::Url;

/// The store holding `location` (rooted at its bucket, or at `/` for a local path) and the
/// location's path in it. Stores are rooted at the bucket so that the paths they list and
/// return are the locations' own (a store rooted at a table returns local paths absolute).
pub fn store_of(
    location: &str,
    storage_options: &HashMap<String, String>,
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let (root, path) = split(location)?;
    let store = sluice_lake::location::object_store_at(&root, storage_options).map_err(|err| {
        Error::new(
            ErrorKind::Unexpected,
            format!("cannot reach the store at {root}"),
        )
        .with_source(err)
    })?;
    Ok((store, path))
}

/// The path of `location` in its bucket's store ([`store_of`]).
pub fn path_in_store(location: &str) -> Result<Path> {
    split(location).map(|(_, path)| path)
}

/// The location of `path` in the store of `like` (a location in the same bucket).
pub fn location_in(like: &str, path: &Path) -> Result<String> {
    let (root, _) = split(like)?;
    Ok(format!("{root}{path}"))
}

/// A location's root (`s3://bucket/`, `file:///`) and its path under it.
fn split(location: &str) -> Result<(Url, Path)> {
    let url = Url::parse(location).map_err(|err| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("invalid location {location:?}: {err}"),
        )
    })?;
    let root = Url::parse(&format!("{}://{}/", url.scheme(), url.authority())).map_err(|err| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("invalid location {location:?}: {err}"),
        )
    })?;
    let path = Path::from_url_path(url.path()).map_err(|err| io_error(location, err))?;
    Ok((root, path))
}

/// Makes [`ObjectStorage`] for Iceberg's `FileIO`.
///
/// Iceberg serializes factories (typetag); the storage options hold credentials, so they are
/// never serialized: a deserialized factory reaches stores through the environment alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStorageFactory {
    #[serde(skip)]
    storage_options: HashMap<String, String>,
}

impl ObjectStorageFactory {
    /// A factory whose stores use `storage_options` (as `[lake] storage_options`).
    pub fn new(storage_options: HashMap<String, String>) -> Self {
        Self { storage_options }
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(ObjectStorage {
            storage_options: self.storage_options.clone(),
            stores: Arc::default(),
        }))
    }
}

/// Iceberg's [`Storage`] over object_store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStorage {
    #[serde(skip)]
    storage_options: HashMap<String, String>,
    /// A store per root (`s3://bucket`, `file://`).
    #[serde(skip)]
    stores: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl ObjectStorage {
    /// The store holding `location` and the location's path in it.
    fn resolve(&self, location: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let (root, path) = split(location)?;
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = stores.get(root.as_str()) {
            return Ok((Arc::clone(store), path));
        }
        let (store, path) = store_of(location, &self.storage_options)?;
        stores.insert(root.to_string(), Arc::clone(&store));
        Ok((store, path))
    }
}

fn io_error(location: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unexpected, format!("object store: {location}")).with_source(err)
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (store, at) = self.resolve(path)?;
        match store.head(&at).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(io_error(path, err)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (store, at) = self.resolve(path)?;
        let meta = store.head(&at).await.map_err(|err| io_error(path, err))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (store, at) = self.resolve(path)?;
        let got = store.get(&at).await.map_err(|err| io_error(path, err))?;
        got.bytes().await.map_err(|err| io_error(path, err))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (store, at) = self.resolve(path)?;
        Ok(Box::new(ObjectRead {
            store,
            at,
            location: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (store, at) = self.resolve(path)?;
        store
            .put(&at, PutPayload::from_bytes(bs))
            .await
            .map(drop)
            .map_err(|err| io_error(path, err))
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (store, at) = self.resolve(path)?;
        Ok(Box::new(ObjectWrite {
            store,
            at,
            location: path.to_string(),
            buffer: Some(BytesMut::new()),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (store, at) = self.resolve(path)?;
        match store.delete(&at).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(io_error(path, err)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (store, at) = self.resolve(path)?;
        let mut listed = store.list(Some(&at));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|err| io_error(path, err))?;
            store
                .delete(&meta.location)
                .await
                .map_err(|err| io_error(path, err))?;
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged reads of one object.
struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    at: Path,
    location: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store
            .get_range(&self.at, range)
            .await
            .map_err(|err| io_error(&self.location, err))
    }
}

/// An object written in one put when closed: Iceberg writes metadata, manifest lists and
/// manifests through it, all small (data files are written by sluice itself).
struct ObjectWrite {
    store: Arc<dyn ObjectStore>,
    at: Path,
    location: String,
    buffer: Option<BytesMut>,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        match &mut self.buffer {
            Some(buffer) => {
                buffer.extend_from_slice(&bs);
                Ok(())
            }
            None => Err(closed(&self.location)),
        }
    }

    async fn close(&mut self) -> Result<()> {
        let buffer = self.buffer.take().ok_or_else(|| closed(&self.location))?;
        self.store
            .put(&self.at, PutPayload::from_bytes(buffer.freeze()))
            .await
            .map(drop)
            .map_err(|err| io_error(&self.location, err))
    }
}

fn closed(location: &str) -> Error {
    Error::new(
        ErrorKind::Unexpected,
        format!("{location} is already closed"),
    )
}
