//! AVL Storage: an embedded object store with S3's semantics. Buckets hold objects
//! stored as compressed, checksummed chunk files beside a redb metadata database; puts
//! and gets stream with bounded memory, and a range reads only the chunks it touches.
//!
//! ```
//! use std::io::Read;
//!
//! let dir = tempfile::tempdir()?;
//! let store = avl_storage::Store::open(dir.path())?;
//! store.create_bucket("game-assets")?;
//! let info = store.put_object(
//!     "game-assets",
//!     "maps/level-1.json",
//!     &mut &b"{\"tiles\": []}"[..],
//!     avl_storage::PutOptions::default(),
//! )?;
//! assert_eq!(info.size, 13);
//! let (_, mut reader) = store.get_object(
//!     "game-assets",
//!     "maps/level-1.json",
//!     Some(avl_storage::ByteRange::Inclusive(1, 7)),
//! )?;
//! let mut part = String::new();
//! reader.read_to_string(&mut part)?;
//! assert_eq!(part, "\"tiles\"");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This is the engine (objects, multipart uploads, copies, conditional requests) and,
//! with the `serve` feature, its S3 front ([`s3::bind`]), which `avl serve` runs.

mod api;
mod bridge;
mod engine;
mod error;
#[cfg(feature = "serve")]
pub mod s3;
mod service;

pub use api::{BucketInfo, StorageRequest, StorageResponse};
pub use bridge::MAX_UPLOAD_BYTES;
pub use engine::names::{MAX_KEY_BYTES, check_bucket, check_key};
pub use engine::{
    BLOCK_SIZE, BodyDigest, ByteRange, COMPLETION_MEMORY_MS, Checksum, CombineChecksums,
    Conditions, DEFAULT_CHUNK_SIZE, FILE_NAME, Finish, ListOptions, ListPage, MAX_KEYS,
    MAX_METADATA_BYTES, MAX_PART_NUMBER, MIN_PART_SIZE, ObjectInfo, ObjectReader, ObjectSummary,
    PartInfo, PutOptions, STORED_HEADERS, Store, StoreOptions, UploadChecksum, UploadInfo,
};
pub use error::{Result, StorageError};
pub use service::{DATA_SUBDIR, ObjectData, StorageClient, StorageService};
