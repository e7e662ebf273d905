//! The object store as an avl-core service (the engine behind every transport), and its
//! async client.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use avl_core::{Body, Context, OpenLocal, Service};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::api::{BucketInfo, StorageRequest, StorageResponse};
use crate::bridge::{self, MAX_UPLOAD_BYTES};
use crate::engine::{ByteRange, Conditions, ListOptions, ListPage, ObjectInfo, PutOptions, Store};
use crate::error::StorageError;

/// Where the service keeps its files inside a data directory.
pub const DATA_SUBDIR: &str = "storage";

/// Uploads that stream into the store at once through the service; more wait.
const CONCURRENT_UPLOADS: usize = 64;

/// The store, answering [`StorageRequest`]s. Store calls block (a PUT syncs each chunk),
/// so they run on Tokio's blocking threads; bodies stream through bounded channels.
#[derive(Debug, Clone)]
pub struct StorageService {
    store: Store,
    uploads: Arc<tokio::sync::Semaphore>,
}

impl StorageService {
    /// The service over `store`.
    pub fn new(store: Store) -> Self {
        StorageService {
            store,
            uploads: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_UPLOADS)),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    ) -> avl_core::Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| avl_core::Error::internal(format!("storage task failed: {e}")))?
            .map_err(avl_core::Error::from)
    }
}

type Frames = Pin<Box<dyn Stream<Item = avl_core::Result<Bytes>> + Send>>;

fn frames(body: Body) -> Option<Frames> {
    match body {
        Body::Empty => None,
        Body::Bytes(b) => Some(Box::pin(futures_util::stream::once(async move { Ok(b) }))),
        Body::Stream(s) => Some(s),
    }
}

impl Service for StorageService {
    const NAME: &'static str = "storage";
    type Request = StorageRequest;
    type Response = StorageResponse;

    async fn call(
        &self,
        _context: Context,
        request: StorageRequest,
    ) -> avl_core::Result<StorageResponse> {
        match request {
            StorageRequest::CreateBucket { bucket } => {
                self.blocking(move |s| s.create_bucket(&bucket)).await?;
                Ok(StorageResponse::Done)
            }
            StorageRequest::DeleteBucket { bucket } => {
                self.blocking(move |s| s.delete_bucket(&bucket)).await?;
                Ok(StorageResponse::Done)
            }
            StorageRequest::ListBuckets => {
                let buckets = self.blocking(|s| s.list_buckets()).await?;
                Ok(StorageResponse::Buckets {
                    buckets: buckets
                        .into_iter()
                        .map(|(name, created_ms)| BucketInfo { name, created_ms })
                        .collect(),
                })
            }
            StorageRequest::PutObject {
                bucket,
                key,
                options,
                conditions,
                length,
                body,
            } => {
                if let Some(len) = length
                    && len > MAX_UPLOAD_BYTES
                {
                    return Err(StorageError::EntityTooLarge {
                        size: len,
                        max: MAX_UPLOAD_BYTES,
                    }
                    .into());
                }
                let store = self.store.clone();
                let body = frames(body).unwrap_or_else(|| Box::pin(futures_util::stream::empty()));
                let info = bridge::write_body(&self.uploads, Some(body), length, None, move |r| {
                    store.put_object_if(&bucket, &key, r, options, &conditions)
                })
                .await?;
                Ok(StorageResponse::Object { info })
            }
            StorageRequest::GetObject {
                bucket,
                key,
                range,
                conditions,
            } => {
                let (info, reader) = self
                    .blocking(move |s| s.get_object_if(&bucket, &key, range, &conditions))
                    .await?;
                let (start, length) = (reader.position(), reader.remaining());
                let body =
                    Body::from_stream(bridge::read_pieces(reader).map(|piece| {
                        piece.map_err(|e| avl_core::Error::from(StorageError::from(e)))
                    }));
                Ok(StorageResponse::ObjectData {
                    info,
                    start,
                    length,
                    body,
                })
            }
            StorageRequest::HeadObject { bucket, key } => {
                let info = self.blocking(move |s| s.head_object(&bucket, &key)).await?;
                Ok(StorageResponse::Object { info })
            }
            StorageRequest::DeleteObject { bucket, key } => {
                self.blocking(move |s| s.delete_object(&bucket, &key))
                    .await?;
                Ok(StorageResponse::Done)
            }
            StorageRequest::CopyObject {
                source_bucket,
                source_key,
                bucket,
                key,
                options,
            } => {
                let info = self
                    .blocking(move |s| {
                        s.copy_object(
                            (&source_bucket, &source_key),
                            (&bucket, &key),
                            options,
                            &Conditions::default(),
                            &Conditions::default(),
                        )
                    })
                    .await?;
                Ok(StorageResponse::Object { info })
            }
            StorageRequest::ListObjects { bucket, options } => {
                let page = self
                    .blocking(move |s| s.list_objects(&bucket, &options))
                    .await?;
                Ok(StorageResponse::Page { page })
            }
        }
    }

    fn max_request_bytes(&self) -> u64 {
        // The message itself is small; a PUT's bytes stream and are held to this as they
        // arrive.
        MAX_UPLOAD_BYTES
    }
}

impl OpenLocal for StorageService {
    fn open_local(data_dir: &Path) -> avl_core::Result<Self> {
        Store::open(data_dir.join(DATA_SUBDIR))
            .map(StorageService::new)
            .map_err(avl_core::Error::from)
    }
}

/// The object store through any transport: in-process ([`avl_core::connect`] without an
/// endpoint) or a server's platform API, with the same calls.
#[derive(Debug, Clone)]
pub struct StorageClient {
    inner: avl_core::Client<StorageService>,
}

/// An object's bytes as a GET answers them.
#[derive(Debug)]
pub struct ObjectData {
    /// Its metadata.
    pub info: ObjectInfo,
    /// Where the bytes start in the object.
    pub start: u64,
    /// How many bytes the body holds.
    pub length: u64,
    /// The bytes, streamed.
    pub body: Body,
}

fn unexpected(response: StorageResponse) -> avl_core::Error {
    avl_core::Error::internal(format!("unexpected storage response: {response:?}"))
}

impl StorageClient {
    /// A client over an avl-core client of the service.
    pub fn new(inner: avl_core::Client<StorageService>) -> Self {
        StorageClient { inner }
    }

    async fn done(&self, request: StorageRequest) -> avl_core::Result<()> {
        match self.inner.call(request).await? {
            StorageResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn object(&self, request: StorageRequest) -> avl_core::Result<ObjectInfo> {
        match self.inner.call(request).await? {
            StorageResponse::Object { info } => Ok(info),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> avl_core::Result<()> {
        self.done(StorageRequest::CreateBucket {
            bucket: bucket.into(),
        })
        .await
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> avl_core::Result<()> {
        self.done(StorageRequest::DeleteBucket {
            bucket: bucket.into(),
        })
        .await
    }

    /// The buckets, by name.
    pub async fn list_buckets(&self) -> avl_core::Result<Vec<BucketInfo>> {
        match self.inner.call(StorageRequest::ListBuckets).await? {
            StorageResponse::Buckets { buckets } => Ok(buckets),
            other => Err(unexpected(other)),
        }
    }

    /// Stores `body` (of `length` bytes when known) under `key`.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Body,
        length: Option<u64>,
        options: PutOptions,
    ) -> avl_core::Result<ObjectInfo> {
        self.object(StorageRequest::PutObject {
            bucket: bucket.into(),
            key: key.into(),
            options,
            conditions: Conditions::default(),
            length,
            body,
        })
        .await
    }

    /// An object's bytes (or `range` of them), streamed.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> avl_core::Result<ObjectData> {
        let request = StorageRequest::GetObject {
            bucket: bucket.into(),
            key: key.into(),
            range,
            conditions: Conditions::default(),
        };
        match self.inner.call(request).await? {
            StorageResponse::ObjectData {
                info,
                start,
                length,
                body,
            } => Ok(ObjectData {
                info,
                start,
                length,
                body,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// An object's metadata.
    pub async fn head_object(&self, bucket: &str, key: &str) -> avl_core::Result<ObjectInfo> {
        self.object(StorageRequest::HeadObject {
            bucket: bucket.into(),
            key: key.into(),
        })
        .await
    }

    /// Deletes an object.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> avl_core::Result<()> {
        self.done(StorageRequest::DeleteObject {
            bucket: bucket.into(),
            key: key.into(),
        })
        .await
    }

    /// Copies an object, keeping its metadata.
    pub async fn copy_object(
        &self,
        source: (&str, &str),
        destination: (&str, &str),
    ) -> avl_core::Result<ObjectInfo> {
        self.object(StorageRequest::CopyObject {
            source_bucket: source.0.into(),
            source_key: source.1.into(),
            bucket: destination.0.into(),
            key: destination.1.into(),
            options: None,
        })
        .await
    }

    /// One page of a bucket's objects.
    pub async fn list_objects(
        &self,
        bucket: &str,
        options: ListOptions,
    ) -> avl_core::Result<ListPage> {
        let request = StorageRequest::ListObjects {
            bucket: bucket.into(),
            options,
        };
        match self.inner.call(request).await? {
            StorageResponse::Page { page } => Ok(page),
            other => Err(unexpected(other)),
        }
    }
}
