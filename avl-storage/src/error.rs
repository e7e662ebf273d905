//! The object store's errors, each with S3's code and a platform code.

use avl_core::{Error, ErrorCode};

/// An object store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No bucket of that name.
    #[error("the bucket `{0}` does not exist")]
    NoSuchBucket(String),
    /// No object under that key.
    #[error("no object under `{0}`")]
    NoSuchKey(String),
    /// The bucket exists already.
    #[error("the bucket `{0}` already exists")]
    BucketAlreadyExists(String),
    /// The bucket still holds objects.
    #[error("the bucket `{0}` is not empty")]
    BucketNotEmpty(String),
    /// A bucket name outside S3's rules.
    #[error("invalid bucket name `{name}`: {reason}")]
    InvalidBucketName {
        /// The name.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Some other input is malformed; the field says which.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Which input.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An object key longer than keys may be.
    #[error("the key is {len} bytes; at most {max}")]
    KeyTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A range outside the object.
    #[error("the range is not satisfiable for an object of {size} bytes")]
    InvalidRange {
        /// The object's size.
        size: u64,
    },
    /// A part number past the object's parts (a GET or HEAD with `partNumber`).
    #[error("part {part} is not satisfiable: the object has {parts} part(s)")]
    InvalidPartNumber {
        /// The part asked for.
        part: u32,
        /// The object's parts (1 for an object not uploaded in parts).
        parts: u32,
    },
    /// Too many uploads are in progress; retry later (S3's `SlowDown`, 503).
    #[error("slow down: {0}")]
    SlowDown(String),
    /// The client sent nothing for too long during an upload (S3's `RequestTimeout`).
    #[error("request timeout: {0}")]
    RequestTimeout(String),
    /// A chunk of a signed streaming upload (aws-chunked) failed its signature: nothing
    /// was stored.
    #[error("a chunk's signature does not match: {0}")]
    SignatureDoesNotMatch(String),
    /// A condition (`If-Match`, `If-None-Match: *`, `If-Unmodified-Since`) failed:
    /// nothing was changed.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// `If-None-Match` or `If-Modified-Since` says the caller's copy is current (HTTP 304).
    #[error("not modified")]
    NotModified,
    /// No multipart upload of that id (never created, completed, or aborted).
    #[error("no multipart upload `{0}`")]
    NoSuchUpload(String),
    /// A part named by a completion is missing or has another ETag.
    #[error("invalid part: {0}")]
    InvalidPart(String),
    /// A completion's parts are not in ascending order.
    #[error("the parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    /// A part other than the last is smaller than the minimum part size.
    #[error("part {part} is {size} bytes; every part but the last needs at least {min}")]
    EntityTooSmall {
        /// The part number.
        part: u32,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// The body does not match the digest or checksum the request gave: nothing was
    /// stored.
    #[error("bad digest: {0}")]
    BadDigest(String),
    /// The body ended before the length the request gave, or the client went away.
    #[error("incomplete body: {0}")]
    IncompleteBody(String),
    /// Larger than a single upload may be.
    #[error("the body is {size} bytes; at most {max}")]
    EntityTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Stored data failed its checks.
    #[error("corrupted data: {0}")]
    Corrupted(String),
    /// The store's files are of a format this build cannot read.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// The file system or the metadata database failed.
    #[error("storage error: {0}")]
    Io(String),
}

impl StorageError {
    /// [`StorageError::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StorageError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// S3's error code for this error.
    pub fn s3_code(&self) -> &'static str {
        match self {
            StorageError::NoSuchBucket(_) => "NoSuchBucket",
            StorageError::NoSuchKey(_) => "NoSuchKey",
            StorageError::BucketAlreadyExists(_) => "BucketAlreadyOwnedByYou",
            StorageError::BucketNotEmpty(_) => "BucketNotEmpty",
            StorageError::InvalidBucketName { .. } => "InvalidBucketName",
            StorageError::InvalidArgument { .. } => "InvalidArgument",
            StorageError::KeyTooLong { .. } => "KeyTooLongError",
            StorageError::InvalidRange { .. } => "InvalidRange",
            StorageError::InvalidPartNumber { .. } => "InvalidPartNumber",
            StorageError::SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            StorageError::SlowDown(_) => "SlowDown",
            StorageError::RequestTimeout(_) => "RequestTimeout",
            StorageError::PreconditionFailed(_) => "PreconditionFailed",
            StorageError::NotModified => "NotModified",
            StorageError::NoSuchUpload(_) => "NoSuchUpload",
            StorageError::InvalidPart(_) => "InvalidPart",
            StorageError::InvalidPartOrder => "InvalidPartOrder",
            StorageError::EntityTooSmall { .. } => "EntityTooSmall",
            StorageError::BadDigest(_) => "BadDigest",
            StorageError::IncompleteBody(_) => "IncompleteBody",
            StorageError::EntityTooLarge { .. } => "EntityTooLarge",
            StorageError::Corrupted(_)
            | StorageError::UnsupportedFormat(_)
            | StorageError::Io(_) => "InternalError",
        }
    }

    /// The platform code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StorageError::NoSuchBucket(_)
            | StorageError::NoSuchKey(_)
            | StorageError::NoSuchUpload(_) => ErrorCode::NotFound,
            StorageError::PreconditionFailed(_) | StorageError::NotModified => ErrorCode::Conflict,
            StorageError::InvalidPart(_)
            | StorageError::InvalidPartOrder
            | StorageError::EntityTooSmall { .. }
            | StorageError::BadDigest(_)
            | StorageError::IncompleteBody(_) => ErrorCode::InvalidInput,
            StorageError::EntityTooLarge { .. } => ErrorCode::TooLarge,
            StorageError::SignatureDoesNotMatch(_) => ErrorCode::Unauthenticated,
            StorageError::SlowDown(_) => ErrorCode::RateLimited,
            StorageError::RequestTimeout(_) => ErrorCode::InvalidInput,
            StorageError::BucketAlreadyExists(_) => ErrorCode::AlreadyExists,
            StorageError::BucketNotEmpty(_) => ErrorCode::Conflict,
            StorageError::InvalidBucketName { .. }
            | StorageError::InvalidArgument { .. }
            | StorageError::KeyTooLong { .. }
            | StorageError::InvalidRange { .. }
            | StorageError::InvalidPartNumber { .. } => ErrorCode::InvalidInput,
            StorageError::Corrupted(_) => ErrorCode::Corrupted,
            StorageError::UnsupportedFormat(_) | StorageError::Io(_) => ErrorCode::Internal,
        }
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::new(e.code(), e.to_string())
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        // A body reader says why it stopped with one of ours (`BadDigest`,
        // `IncompleteBody`): it comes through as it is.
        if e.get_ref().is_some_and(|inner| inner.is::<StorageError>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|b| b.downcast::<StorageError>()) {
                return *inner;
            }
            return StorageError::Io("a body reader failed".into());
        }
        StorageError::Io(e.to_string())
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Io(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A result with a [`StorageError`].
pub type Result<T> = std::result::Result<T, StorageError>;
