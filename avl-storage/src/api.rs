//! The object store's protocol on the platform transport: one request and one response
//! type, the same in-process and over HTTP. Object bytes ride beside the message as a
//! [`Body`], streamed both ways.

use avl_core::{Body, Error, Message, Request, Result};
use serde::{Deserialize, Serialize};

use crate::engine::{ByteRange, Conditions, ListOptions, ListPage, ObjectInfo, PutOptions};

/// A request to the object store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op")]
#[non_exhaustive]
pub enum StorageRequest {
    /// Creates a bucket.
    CreateBucket {
        /// Its name.
        bucket: String,
    },
    /// Deletes an empty bucket.
    DeleteBucket {
        /// Its name.
        bucket: String,
    },
    /// The buckets.
    ListBuckets,
    /// Stores the body under `key`.
    PutObject {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Content type, metadata, stored headers.
        #[serde(default)]
        options: PutOptions,
        /// `If-Match` / `If-None-Match: *`.
        #[serde(default)]
        conditions: Conditions,
        /// The body's length, when known (a body of another length is refused).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
        /// The bytes.
        #[serde(skip)]
        body: Body,
    },
    /// An object's bytes (or a range of them) and metadata.
    GetObject {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Only these bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        range: Option<ByteRange>,
        /// Read conditions.
        #[serde(default)]
        conditions: Conditions,
    },
    /// An object's metadata.
    HeadObject {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// Deletes an object (no object there is no error).
    DeleteObject {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// Copies an object (`options` `None`: keep the source's metadata).
    CopyObject {
        /// Source bucket.
        source_bucket: String,
        /// Source key.
        source_key: String,
        /// Destination bucket.
        bucket: String,
        /// Destination key.
        key: String,
        /// New metadata, or `None` to copy it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<PutOptions>,
    },
    /// One page of a bucket's objects.
    ListObjects {
        /// The bucket.
        bucket: String,
        /// Prefix, delimiter, page size, where to resume.
        #[serde(default)]
        options: ListOptions,
    },
}

impl Message for StorageRequest {
    fn take_body(&mut self) -> Body {
        match self {
            StorageRequest::PutObject { body, .. } => std::mem::take(body),
            _ => Body::Empty,
        }
    }

    fn set_body(&mut self, received: Body) -> Result<()> {
        match self {
            StorageRequest::PutObject { body, .. } => {
                *body = received;
                Ok(())
            }
            _ if received.is_empty() => Ok(()),
            _ => Err(Error::invalid_input(
                "body",
                "only PutObject carries a payload",
            )),
        }
    }
}

impl Request for StorageRequest {
    fn operation(&self) -> &'static str {
        match self {
            StorageRequest::CreateBucket { .. } => "CreateBucket",
            StorageRequest::DeleteBucket { .. } => "DeleteBucket",
            StorageRequest::ListBuckets => "ListBuckets",
            StorageRequest::PutObject { .. } => "PutObject",
            StorageRequest::GetObject { .. } => "GetObject",
            StorageRequest::HeadObject { .. } => "HeadObject",
            StorageRequest::DeleteObject { .. } => "DeleteObject",
            StorageRequest::CopyObject { .. } => "CopyObject",
            StorageRequest::ListObjects { .. } => "ListObjects",
        }
    }

    fn resource(&self) -> String {
        match self {
            StorageRequest::CreateBucket { bucket }
            | StorageRequest::DeleteBucket { bucket }
            | StorageRequest::ListObjects { bucket, .. } => bucket.clone(),
            StorageRequest::PutObject { bucket, key, .. }
            | StorageRequest::GetObject { bucket, key, .. }
            | StorageRequest::HeadObject { bucket, key }
            | StorageRequest::DeleteObject { bucket, key }
            | StorageRequest::CopyObject { bucket, key, .. } => format!("{bucket}/{key}"),
            StorageRequest::ListBuckets => String::new(),
        }
    }
}

/// A bucket in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketInfo {
    /// Its name.
    pub name: String,
    /// When it was created (ms since the Unix epoch).
    pub created_ms: u64,
}

/// The object store's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
#[non_exhaustive]
pub enum StorageResponse {
    /// Done, nothing to say.
    Done,
    /// The buckets.
    Buckets {
        /// By name.
        buckets: Vec<BucketInfo>,
    },
    /// An object's metadata.
    Object {
        /// It.
        info: ObjectInfo,
    },
    /// An object's metadata and bytes.
    ObjectData {
        /// Its metadata.
        info: ObjectInfo,
        /// Where the bytes start in the object, and how many there are.
        start: u64,
        /// How many bytes the body holds.
        length: u64,
        /// The bytes.
        #[serde(skip)]
        body: Body,
    },
    /// A page of a listing.
    Page {
        /// It.
        page: ListPage,
    },
}

impl Message for StorageResponse {
    fn take_body(&mut self) -> Body {
        match self {
            StorageResponse::ObjectData { body, .. } => std::mem::take(body),
            _ => Body::Empty,
        }
    }

    fn set_body(&mut self, received: Body) -> Result<()> {
        match self {
            StorageResponse::ObjectData { body, .. } => {
                *body = received;
                Ok(())
            }
            _ if received.is_empty() => Ok(()),
            _ => Err(Error::invalid_input(
                "body",
                "only ObjectData carries a payload",
            )),
        }
    }
}
