//! The object store engine: buckets and objects, metadata in redb, data in chunk files.
//!
//! Files in the store's directory:
//! - `storage.redb`: tables `meta` (format version, next chunk id), `buckets` (name →
//!   creation time) and `objects` (bucket, 0x00, key → the object's record as JSON: size,
//!   ETag, time, content type, user metadata, headers, chunk list).
//! - `chunks/{xx}/{id:016x}`: one chunk of an object each, a stream of avila-compress
//!   frames of at most [`BLOCK_SIZE`] bytes (`Auto` per frame: incompressible data stays
//!   raw at no cost; each frame checksums its content, seeded by the frame before), named
//!   by the engine from a counter: an object key never reaches a path.
//!
//! A PUT streams its body through one chunk-sized buffer: each chunk is compressed,
//! written and synced; then the chunks' directories are synced and one durable redb
//! commit makes the object visible. Only then are the chunks of the object it replaced
//! deleted. A crash leaves at most unreferenced chunk files, which the next open deletes.
//! A GET streams block by block (bounded memory); a range decodes only the blocks it
//! touches.

mod list;
mod multipart;
pub(crate) mod names;

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use avila_compress::{
    CHECKSUM_LEN, Codec, Decoder, FrameHeader, FrameWriter, MAX_HEADER_LEN, Method, Options,
    Profile, content_checksum,
};
use md5::{Digest, Md5};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
pub use list::{ListOptions, ListPage, MAX_KEYS, ObjectSummary};
pub use multipart::{
    COMPLETION_MEMORY_MS, CombineChecksums, MAX_PART_NUMBER, MIN_PART_SIZE, PartInfo,
    UploadChecksum, UploadInfo,
};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const BUCKETS: TableDefinition<&str, u64> = TableDefinition::new("buckets");
const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
const FORMAT_KEY: &str = "format_version";
/// 2: a chunk file is a stream of frames of at most [`BLOCK_SIZE`] bytes. Version 1
/// wrote one frame per chunk, which reads as a stream of one frame: a version 1 store
/// opens and is marked 2 (a build that reads only 1 then refuses it).
const FORMAT_VERSION: u64 = 2;
const NEXT_CHUNK: &str = "next_chunk";
/// The metadata file in the store's directory.
pub const FILE_NAME: &str = "storage.redb";
/// The default chunk size: 4 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 4 << 20;
/// The most bytes of a chunk in one frame: a reader checks, and holds, one block at a
/// time, small enough to stay in a core's cache between its read, its check and its copy.
pub const BLOCK_SIZE: usize = 256 << 10;

/// How chunk files are framed: `Auto` per block of [`BLOCK_SIZE`], checksums chained.
fn chunk_options() -> Options {
    Options::new(Codec::Auto(Profile::Balanced))
        .with_block_size(BLOCK_SIZE)
        .unwrap_or_else(|_| Options::new(Codec::Auto(Profile::Balanced)))
}
/// The most user metadata, in bytes of names and values (S3's limit).
pub const MAX_METADATA_BYTES: usize = 2048;

/// Options of [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes of an object per chunk file (64 bytes to 64 MiB; default 4 MiB).
    pub chunk_size: usize,
    /// The smallest part but the last of a multipart upload (default S3's 5 MiB).
    pub min_part_size: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            chunk_size: DEFAULT_CHUNK_SIZE,
            min_part_size: multipart::MIN_PART_SIZE,
        }
    }
}

/// What a PUT stores beside the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOptions {
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`, names without the prefix, lowercase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Other stored headers: `cache-control`, `content-disposition`, `content-encoding`,
    /// `content-language`, `expires`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A checksum of the bytes (S3's `x-amz-checksum-*`), kept and returned as given:
    /// [`Store::put_object_with`]'s `finish` is where a writer sets it once it has
    /// checked it against the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
}

/// A checksum of an object's or a part's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// The digest, base64 (as S3's headers carry it).
    pub value: String,
}

/// What a body turned out to be, handed to a write's `finish` after its bytes are on
/// disk and before anything is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDigest {
    /// Its length.
    pub size: u64,
    /// Its MD5, hex.
    pub md5: String,
}

/// Called with the digest of a body before a write commits: an error abandons the write
/// (nothing is stored, nothing replaced); `Some` is the checksum to keep with the bytes.
pub type Finish<'a> = &'a mut dyn FnMut(&BodyDigest) -> Result<Option<Checksum>>;

/// The headers a PUT may store.
pub const STORED_HEADERS: [&str; 5] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
];

/// Conditional request headers (HTTP's, as S3 reads them). ETags are compared
/// without their quotes; `*` matches any object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conditions {
    /// `If-Match`: the object must exist with this ETag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_match: Option<String>,
    /// `If-None-Match`: on reads, not modified if the ETag matches; on writes, `*`
    /// means create only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_none_match: Option<String>,
    /// `If-Modified-Since` (ms since the epoch), for reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_modified_since_ms: Option<u64>,
    /// `If-Unmodified-Since` (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_unmodified_since_ms: Option<u64>,
}

/// Weak comparison (If-None-Match): `W/"x"` matches `x`.
fn etag_matches(condition: &str, etag: &str) -> bool {
    condition
        .split(',')
        .map(|c| c.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|c| c == "*" || c == etag)
}

/// Strong comparison (If-Match): a weak tag never matches.
fn etag_matches_strong(condition: &str, etag: &str) -> bool {
    condition
        .split(',')
        .map(str::trim)
        .filter(|c| !c.starts_with("W/"))
        .map(|c| c.trim_matches('"'))
        .any(|c| c == "*" || c == etag)
}

/// HTTP dates have whole seconds: compare at that precision.
fn seconds(ms: u64) -> u64 {
    ms / 1000
}

impl Conditions {
    /// Checks a read (GET, HEAD, a copy's source) of an object stored with `etag` at
    /// `modified_ms`, in RFC 9110's order.
    pub fn check_read(&self, etag: &str, modified_ms: u64) -> Result<()> {
        match &self.if_match {
            Some(m) if !etag_matches_strong(m, etag) => {
                return Err(StorageError::PreconditionFailed("If-Match".into()));
            }
            Some(_) => {}
            None => {
                if let Some(t) = self.if_unmodified_since_ms
                    && seconds(modified_ms) > seconds(t)
                {
                    return Err(StorageError::PreconditionFailed(
                        "If-Unmodified-Since".into(),
                    ));
                }
            }
        }
        match &self.if_none_match {
            Some(m) if etag_matches(m, etag) => return Err(StorageError::NotModified),
            Some(_) => {}
            None => {
                if let Some(t) = self.if_modified_since_ms
                    && seconds(modified_ms) <= seconds(t)
                {
                    return Err(StorageError::NotModified);
                }
            }
        }
        Ok(())
    }

    /// Checks a write over the current object (`None`: there is none).
    fn check_write(&self, key: &str, current: Option<(&str, u64)>) -> Result<()> {
        if let Some(m) = &self.if_none_match
            && current.is_some_and(|(etag, _)| etag_matches(m, etag))
        {
            return Err(StorageError::PreconditionFailed("If-None-Match".into()));
        }
        if let Some(m) = &self.if_match {
            match current {
                None => return Err(StorageError::NoSuchKey(key.to_string())),
                Some((etag, _)) if !etag_matches_strong(m, etag) => {
                    return Err(StorageError::PreconditionFailed("If-Match".into()));
                }
                Some(_) => {}
            }
        }
        if let (Some(t), Some((_, modified))) = (self.if_unmodified_since_ms, current)
            && seconds(modified) > seconds(t)
        {
            return Err(StorageError::PreconditionFailed(
                "If-Unmodified-Since".into(),
            ));
        }
        Ok(())
    }
}

/// One chunk of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Chunk {
    id: u64,
    len: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ObjectRecord {
    size: u64,
    etag: String,
    last_modified_ms: u64,
    #[serde(flatten)]
    options: PutOptions,
    chunks: Vec<Chunk>,
    /// The sizes of the parts of an object made by a multipart upload, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<u64>,
}

impl ObjectRecord {
    /// Where part `part` (from 1) lies in the object: an object not uploaded in parts
    /// is one part.
    fn part_bounds(&self, part: u32) -> Result<(u64, u64)> {
        let count = self.parts.len().max(1) as u32;
        if part == 0 || part > count {
            return Err(StorageError::InvalidPartNumber { part, parts: count });
        }
        if self.parts.is_empty() {
            return Ok((0, self.size));
        }
        let total = self
            .parts
            .iter()
            .try_fold(0u64, |sum, &p| sum.checked_add(p))
            .filter(|&sum| sum == self.size)
            .ok_or_else(|| {
                StorageError::Corrupted("the object's part sizes do not add up to its size".into())
            })?;
        let start: u64 = self.parts[..part as usize - 1].iter().sum();
        let end = start + self.parts[part as usize - 1];
        debug_assert!(end <= total);
        Ok((start, end))
    }
}

/// Which bytes of an object a reader gives.
#[derive(Debug, Clone, Copy)]
enum Select {
    Range(Option<ByteRange>),
    Part(u32),
}

/// An object's metadata, as HEAD answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// The hex MD5 of the content (S3's ETag for a single PUT, without its quotes).
    pub etag: String,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub last_modified_ms: u64,
    /// Content type, user metadata and stored headers.
    #[serde(flatten)]
    pub options: PutOptions,
    /// How many parts a multipart upload made it of (`None` for a single PUT or a copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

/// A byte range of a GET, as in an HTTP `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByteRange {
    /// `bytes=first-last`, both included.
    Inclusive(u64, u64),
    /// `bytes=first-`.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// `[start, end)` within an object of `size` bytes, or `InvalidRange`.
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        let bad = Err(StorageError::InvalidRange { size });
        match self {
            ByteRange::Inclusive(first, last) if first <= last && first < size => {
                Ok((first, last.min(size - 1) + 1))
            }
            // RFC 9110: a range that is not valid syntax is ignored.
            ByteRange::Inclusive(first, last) if first > last => Ok((0, size)),
            ByteRange::From(first) if first < size => Ok((first, size)),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok((size - n.min(size), size)),
            _ => bad,
        }
    }
}

struct Inner {
    db: Database,
    dir: PathBuf,
    chunk_size: usize,
    min_part_size: u64,
    next_chunk: AtomicU64,
    pins: Mutex<Pins>,
}

/// Chunks that open readers still need: their files are deleted when the last reader
/// lets go, not when the object that named them is replaced or deleted.
#[derive(Default)]
struct Pins {
    count: HashMap<u64, usize>,
    doomed: HashSet<u64>,
}

/// An object store in a directory. `Send + Sync`: share it through `Arc` or clone it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn decode_record(bytes: &[u8]) -> Result<ObjectRecord> {
    serde_json::from_slice(bytes)
        .map_err(|e| StorageError::Corrupted(format!("object record: {e}")))
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir` with `options`; deletes chunk files no object names
    /// (left by a crash during a PUT, or before an old object's chunks were deleted).
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        if !(64..=64 << 20).contains(&options.chunk_size) {
            return Err(StorageError::invalid(
                "chunk_size",
                "must be 64 bytes to 64 MiB",
            ));
        }
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("chunks"))?;
        std::fs::File::open(&dir)?.sync_all()?;
        let db = Database::create(dir.join(FILE_NAME))?;
        let txn = db.begin_write()?;
        let mut next = {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(FORMAT_KEY)?.map(|v| v.value());
            match found {
                None | Some(1) => {
                    meta.insert(FORMAT_KEY, FORMAT_VERSION)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(other) => {
                    return Err(StorageError::UnsupportedFormat(format!(
                        "object store format version {other}; this build reads 1 and {FORMAT_VERSION}"
                    )));
                }
            }
            let next = meta.get(NEXT_CHUNK)?.map_or(1, |v| v.value());
            txn.open_table(BUCKETS)?;
            txn.open_table(OBJECTS)?;
            txn.open_table(multipart::UPLOADS)?;
            txn.open_table(multipart::PARTS)?;
            txn.open_table(multipart::COMPLETED)?;
            txn.open_table(multipart::COMPLETED_ORDER)?;
            next
        };
        txn.commit()?;
        let store = Store {
            inner: Arc::new(Inner {
                db,
                dir,
                chunk_size: options.chunk_size,
                min_part_size: options.min_part_size,
                next_chunk: AtomicU64::new(next),
                pins: Mutex::new(Pins::default()),
            }),
        };
        // Unreferenced chunk files go; numbering resumes above every file seen. If a
        // record cannot be read, nothing is collected (its chunks are unknown).
        let referenced = match store.referenced_chunks() {
            Ok(r) => Some(r),
            Err(StorageError::Corrupted(_)) => None,
            Err(e) => return Err(e),
        };
        for shard in std::fs::read_dir(store.inner.dir.join("chunks"))? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let path = file?.path();
                let id = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| u64::from_str_radix(n, 16).ok());
                let Some(id) = id.filter(|_| path.is_file()) else {
                    continue;
                };
                next = next.max(id.saturating_add(1));
                if referenced.as_ref().is_some_and(|r| !r.contains(&id)) {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        store.inner.next_chunk.store(next, Ordering::SeqCst);
        Ok(store)
    }

    fn referenced_chunks(&self) -> Result<std::collections::HashSet<u64>> {
        let txn = self.inner.db.begin_read()?;
        let objects = txn.open_table(OBJECTS)?;
        let mut out = std::collections::HashSet::new();
        for row in objects.iter()? {
            let (_, v) = row?;
            out.extend(decode_record(v.value())?.chunks.iter().map(|c| c.id));
        }
        multipart::referenced_chunks(&txn, &mut out)?;
        Ok(out)
    }

    fn chunk_path(&self, id: u64) -> PathBuf {
        self.inner
            .dir
            .join("chunks")
            .join(format!("{:02x}", id & 0xff))
            .join(format!("{id:016x}"))
    }

    // ---- buckets ---------------------------------------------------------------------

    /// Creates a bucket.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        names::check_bucket(name)?;
        let txn = self.inner.db.begin_write()?;
        {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.get(name)?.is_some() {
                return Err(StorageError::BucketAlreadyExists(name.to_string()));
            }
            buckets.insert(name, now_ms())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The buckets, by name, with their creation times (ms).
    pub fn list_buckets(&self) -> Result<Vec<(String, u64)>> {
        let txn = self.inner.db.begin_read()?;
        let buckets = txn.open_table(BUCKETS)?;
        let mut out = Vec::new();
        for row in buckets.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    /// Deletes an empty bucket.
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        names::check_bucket(name)?;
        let txn = self.inner.db.begin_write()?;
        {
            let mut buckets = txn.open_table(BUCKETS)?;
            if buckets.get(name)?.is_none() {
                return Err(StorageError::NoSuchBucket(name.to_string()));
            }
            let objects = txn.open_table(OBJECTS)?;
            let prefix = object_key(name, "");
            if let Some(row) = objects.range(prefix.as_slice()..)?.next()
                && row?.0.value().starts_with(&prefix)
            {
                return Err(StorageError::BucketNotEmpty(name.to_string()));
            }
            if Store::uploads_in_txn(&txn, name)? {
                return Err(StorageError::BucketNotEmpty(format!(
                    "{name} (multipart uploads in progress)"
                )));
            }
            buckets.remove(name)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// `Ok` if the bucket exists, else `NoSuchBucket`.
    pub fn bucket_exists(&self, bucket: &str) -> Result<()> {
        self.check_bucket_exists(&self.inner.db.begin_read()?, bucket)
    }

    fn check_bucket_exists(&self, txn: &redb::ReadTransaction, bucket: &str) -> Result<()> {
        require_bucket(&txn.open_table(BUCKETS)?, bucket)
    }

    /// A write transaction that commits durably (synced before `commit` returns).
    fn durable_write(&self) -> Result<redb::WriteTransaction> {
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StorageError::Io(e.to_string()))?;
        Ok(txn)
    }

    // ---- objects ---------------------------------------------------------------------

    /// Stores the bytes `body` gives under `key`, replacing any object there; answers
    /// its metadata once it is durable. Memory stays at one chunk whatever the size.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: &mut dyn Read,
        options: PutOptions,
    ) -> Result<ObjectInfo> {
        self.put_object_if(bucket, key, body, options, &Conditions::default())
    }

    /// [`Store::put_object`] under conditions, checked atomically with the write
    /// (`If-None-Match: *` creates only; `If-Match` replaces only that version).
    pub fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: &mut dyn Read,
        options: PutOptions,
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        self.put_object_with(bucket, key, body, options, conditions, &mut |_| Ok(None))
    }

    /// [`Store::put_object_if`] that hands the body's digest to `finish` before the
    /// commit: an S3 front checks `Content-MD5` and checksums there (the trailer of a
    /// streamed body is known only at its end).
    pub fn put_object_with(
        &self,
        bucket: &str,
        key: &str,
        body: &mut dyn Read,
        mut options: PutOptions,
        conditions: &Conditions,
        finish: Finish<'_>,
    ) -> Result<ObjectInfo> {
        names::check_key(key)?;
        check_options(&options)?;
        self.check_bucket_exists(&self.inner.db.begin_read()?, bucket)?;
        // Fail early when the condition already fails (checked again at the commit).
        if conditions.if_match.is_some() || conditions.if_none_match.is_some() {
            let current = match self.record(bucket, key) {
                Ok(r) => Some(r),
                Err(StorageError::NoSuchKey(_)) => None,
                Err(e) => return Err(e),
            };
            conditions.check_write(
                key,
                current
                    .as_ref()
                    .map(|r| (r.etag.as_str(), r.last_modified_ms)),
            )?;
        }
        let mut chunks = Vec::new();
        let (size, etag) = match self.write_chunks(body, &mut chunks, finish) {
            Ok((size, etag, checksum)) => {
                if checksum.is_some() {
                    options.checksum = checksum;
                }
                (size, etag)
            }
            Err(e) => {
                self.remove_chunks(&chunks);
                return Err(e);
            }
        };
        let record = ObjectRecord {
            size,
            etag,
            last_modified_ms: now_ms(),
            options,
            chunks,
            parts: Vec::new(),
        };
        match self.commit_with(bucket, key, &record, conditions, |_| Ok(())) {
            Ok(old) => {
                if let Some(old) = old {
                    self.remove_chunks(&old.chunks);
                }
                Ok(info_of(key, record))
            }
            Err(e) => {
                self.remove_chunks(&record.chunks);
                Err(e)
            }
        }
    }

    /// Reads `body` into synced chunk files; answers (size, hex MD5, what `finish` said).
    fn write_chunks(
        &self,
        body: &mut dyn Read,
        chunks: &mut Vec<Chunk>,
        finish: Finish<'_>,
    ) -> Result<(u64, String, Option<Checksum>)> {
        let mut buf = vec![0u8; self.inner.chunk_size];
        let mut md5 = Md5::new();
        let mut size = 0u64;
        let mut shards = std::collections::BTreeSet::new();
        loop {
            let n = read_full(body, &mut buf)?;
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            size += n as u64;
            let id = self.inner.next_chunk.fetch_add(1, Ordering::SeqCst);
            let path = self.chunk_path(id);
            let shard = path.parent().map(Path::to_path_buf).unwrap_or_default();
            if shards.insert(shard.clone()) && !shard.exists() {
                // A new shard directory: its entry in `chunks/` must be durable too.
                std::fs::create_dir_all(&shard)?;
                std::fs::File::open(self.inner.dir.join("chunks"))?.sync_all()?;
            }
            chunks.push(Chunk { id, len: n as u64 });
            // MD5 runs at a few hundred MB/s: beside the compression and the write, not
            // before them (inline if no thread can be had).
            let hashed = std::thread::scope(|s| -> Result<bool> {
                let hashing = std::thread::Builder::new()
                    .name("avl-storage-md5".into())
                    .spawn_scoped(s, || md5.update(data));
                let mut file = std::fs::File::create(&path)?;
                let mut frames = FrameWriter::new(&mut file, chunk_options());
                frames.write_all(data)?;
                frames.finish()?;
                file.sync_all()?;
                match hashing {
                    Ok(h) => h
                        .join()
                        .map(|()| true)
                        .map_err(|_| StorageError::Io("hashing a chunk failed".into())),
                    Err(_) => Ok(false),
                }
            })?;
            if !hashed {
                md5.update(data);
            }
            if n < buf.len() {
                break;
            }
        }
        let md5 = hex::encode(md5.finalize());
        let checksum = finish(&BodyDigest {
            size,
            md5: md5.clone(),
        })?;
        for shard in shards {
            std::fs::File::open(&shard)?.sync_all()?;
        }
        Ok((size, md5, checksum))
    }

    /// Makes `record` the object at `key`, durably; answers the record it replaced.
    /// Makes `record` the object at `key` (under `conditions`), durably, running `also`
    /// in the same transaction; answers the record it replaced.
    fn commit_with(
        &self,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
        conditions: &Conditions,
        also: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
    ) -> Result<Option<ObjectRecord>> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| StorageError::Io(format!("object record: {e}")))?;
        let txn = self.durable_write()?;
        let old = {
            require_bucket(&txn.open_table(BUCKETS)?, bucket)?;
            self.save_next_chunk(&txn)?;
            let mut objects = txn.open_table(OBJECTS)?;
            let k = object_key(bucket, key);
            let current = objects
                .get(k.as_slice())?
                .map(|v| decode_record(v.value()))
                .transpose()?;
            conditions.check_write(
                key,
                current
                    .as_ref()
                    .map(|r| (r.etag.as_str(), r.last_modified_ms)),
            )?;
            objects.insert(k.as_slice(), bytes.as_slice())?;
            drop(objects);
            also(&txn)?;
            current
        };
        txn.commit()?;
        Ok(old)
    }

    /// Raises the stored chunk counter to the in-memory one (chunks numbered so far).
    fn save_next_chunk(&self, txn: &redb::WriteTransaction) -> Result<()> {
        let mut meta = txn.open_table(META)?;
        let next = self.inner.next_chunk.load(Ordering::SeqCst);
        if meta.get(NEXT_CHUNK)?.map_or(0, |v| v.value()) < next {
            meta.insert(NEXT_CHUNK, next)?;
        }
        Ok(())
    }

    fn pins(&self) -> std::sync::MutexGuard<'_, Pins> {
        self.inner
            .pins
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes chunks no committed record names any more (those an open reader still
    /// reads, when it lets go).
    fn remove_chunks(&self, chunks: &[Chunk]) {
        let mut pins = self.pins();
        for c in chunks {
            if pins.count.contains_key(&c.id) {
                pins.doomed.insert(c.id);
            } else {
                // One that cannot be removed now is unreferenced: the next open removes it.
                let _ = std::fs::remove_file(self.chunk_path(c.id));
            }
        }
    }

    fn record(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        names::check_key(key)?;
        let txn = self.inner.db.begin_read()?;
        self.check_bucket_exists(&txn, bucket)?;
        let objects = txn.open_table(OBJECTS)?;
        match objects.get(object_key(bucket, key).as_slice())? {
            Some(v) => decode_record(v.value()),
            None => Err(StorageError::NoSuchKey(key.to_string())),
        }
    }

    /// An object's metadata.
    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        Ok(info_of(key, self.record(bucket, key)?))
    }

    /// [`Store::head_object`] under read conditions (`PreconditionFailed`,
    /// `NotModified`).
    pub fn head_object_if(
        &self,
        bucket: &str,
        key: &str,
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        let record = self.record(bucket, key)?;
        conditions.check_read(&record.etag, record.last_modified_ms)?;
        Ok(info_of(key, record))
    }

    /// [`Store::get_object`] under read conditions.
    pub fn get_object_if(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
        conditions: &Conditions,
    ) -> Result<(ObjectInfo, ObjectReader)> {
        self.open_reader(bucket, key, Select::Range(range), Some(conditions))
    }

    /// One part (from 1) of an object, as S3's GET with `partNumber`: the bytes that
    /// part `part` of its multipart upload held (an object not uploaded in parts is one
    /// part); past the last part, `InvalidPartNumber`.
    pub fn get_object_part_if(
        &self,
        bucket: &str,
        key: &str,
        part: u32,
        conditions: &Conditions,
    ) -> Result<(ObjectInfo, ObjectReader)> {
        self.open_reader(bucket, key, Select::Part(part), Some(conditions))
    }

    /// [`Store::head_object_if`] for one part: the metadata and where the part lies,
    /// `[start, end)`.
    pub fn head_object_part_if(
        &self,
        bucket: &str,
        key: &str,
        part: u32,
        conditions: &Conditions,
    ) -> Result<(ObjectInfo, (u64, u64))> {
        let record = self.record(bucket, key)?;
        conditions.check_read(&record.etag, record.last_modified_ms)?;
        let bounds = record.part_bounds(part)?;
        Ok((info_of(key, record), bounds))
    }

    /// An object's metadata and a reader of its bytes (or of `range` of them), which
    /// reads one block at a time.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, ObjectReader)> {
        self.open_reader(bucket, key, Select::Range(range), None)
    }

    fn open_reader(
        &self,
        bucket: &str,
        key: &str,
        select: Select,
        conditions: Option<&Conditions>,
    ) -> Result<(ObjectInfo, ObjectReader)> {
        // The record is read and its chunks pinned under the pins' lock: a replace that
        // commits meanwhile deletes its old chunks only after this, and finds them pinned.
        let mut pins = self.pins();
        let record = self.record(bucket, key)?;
        if let Some(c) = conditions {
            c.check_read(&record.etag, record.last_modified_ms)?;
        }
        let (start, end) = match select {
            Select::Range(Some(r)) => r.resolve(record.size)?,
            Select::Range(None) => (0, record.size),
            Select::Part(part) => record.part_bounds(part)?,
        };
        for c in &record.chunks {
            *pins.count.entry(c.id).or_insert(0) += 1;
        }
        drop(pins);
        let mut starts = Vec::with_capacity(record.chunks.len());
        let mut at = 0u64;
        for c in &record.chunks {
            starts.push(at);
            at = at.saturating_add(c.len);
        }
        let reader = ObjectReader {
            store: self.clone(),
            chunks: record.chunks.clone(),
            starts,
            pos: start,
            end,
            cursor: None,
            block: None,
            frame: Vec::new(),
            decoded: Vec::new(),
            decoder: Decoder::new(),
        };
        Ok((info_of(key, record), reader))
    }

    /// Copies an object (CopyObject): its bytes are read and written again as new
    /// chunks, so each object owns its chunks. `options` `None` keeps the source's
    /// content type, metadata and headers (`x-amz-metadata-directive: COPY`), `Some`
    /// replaces them (`REPLACE`). `source_conditions` are the `x-amz-copy-source-if-*`
    /// headers; `conditions` apply to the destination, as for a PUT.
    pub fn copy_object(
        &self,
        source: (&str, &str),
        destination: (&str, &str),
        options: Option<PutOptions>,
        source_conditions: &Conditions,
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        // The source is looked up first: a missing one is NoSuchKey, as S3 answers, even
        // when the copy would also be onto itself.
        let (info, mut reader) = self
            .get_object_if(source.0, source.1, None, source_conditions)
            .map_err(copy_condition)?;
        if source == destination && options.is_none() {
            return Err(StorageError::invalid(
                "x-amz-copy-source",
                "copying an object onto itself needs new metadata (REPLACE)",
            ));
        }
        // New metadata (REPLACE) leaves the bytes as they are, so their checksum stands.
        let options = match options {
            Some(mut o) => {
                o.checksum = o.checksum.or(info.options.checksum);
                o
            }
            None => info.options,
        };
        self.put_object_if(
            destination.0,
            destination.1,
            &mut reader,
            options,
            conditions,
        )
    }

    /// Deletes an object; deleting a key with no object succeeds, as in S3.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        names::check_key(key)?;
        let txn = self.durable_write()?;
        let old = {
            require_bucket(&txn.open_table(BUCKETS)?, bucket)?;
            let mut objects = txn.open_table(OBJECTS)?;
            let old = objects.remove(object_key(bucket, key).as_slice())?;
            old.map(|v| decode_record(v.value())).transpose()?
        };
        txn.commit()?;
        if let Some(old) = old {
            self.remove_chunks(&old.chunks);
        }
        Ok(())
    }

    /// Deletes several objects in one durable transaction (S3's DeleteObjects): a result
    /// per key, in order; a key that is not valid fails alone, and a key with no object
    /// succeeds, as in S3.
    pub fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<Vec<Result<()>>> {
        let txn = self.durable_write()?;
        let mut results = Vec::with_capacity(keys.len());
        let mut gone = Vec::new();
        {
            require_bucket(&txn.open_table(BUCKETS)?, bucket)?;
            let mut objects = txn.open_table(OBJECTS)?;
            for key in keys {
                if let Err(e) = names::check_key(key) {
                    results.push(Err(e));
                    continue;
                }
                if let Some(old) = objects.remove(object_key(bucket, key).as_slice())? {
                    gone.push(decode_record(old.value())?);
                }
                results.push(Ok(()));
            }
        }
        txn.commit()?;
        for old in gone {
            self.remove_chunks(&old.chunks);
        }
        Ok(results)
    }

    /// One page of a bucket's objects in key order (ListObjectsV2's semantics).
    pub fn list_objects(&self, bucket: &str, options: &ListOptions) -> Result<ListPage> {
        let txn = self.inner.db.begin_read()?;
        self.check_bucket_exists(&txn, bucket)?;
        let objects = txn.open_table(OBJECTS)?;
        list::list(&objects, bucket, options)
    }
}

/// A copy's source conditions fail with 412, never 304 (S3's rule).
pub(super) fn copy_condition(e: StorageError) -> StorageError {
    match e {
        StorageError::NotModified => {
            StorageError::PreconditionFailed("x-amz-copy-source-if-*".into())
        }
        other => other,
    }
}

/// `NoSuchBucket` unless `bucket` is a valid name in `buckets`.
fn require_bucket(buckets: &impl ReadableTable<&'static str, u64>, bucket: &str) -> Result<()> {
    if names::check_bucket(bucket).is_err() || buckets.get(bucket)?.is_none() {
        return Err(StorageError::NoSuchBucket(bucket.to_string()));
    }
    Ok(())
}

fn info_of(key: &str, r: ObjectRecord) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: r.size,
        etag: r.etag,
        last_modified_ms: r.last_modified_ms,
        options: r.options,
        parts: (!r.parts.is_empty()).then_some(r.parts.len() as u32),
    }
}

fn check_options(o: &PutOptions) -> Result<()> {
    let meta: usize = o.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if meta > MAX_METADATA_BYTES {
        return Err(StorageError::invalid(
            "metadata",
            format!("{meta} bytes; at most {MAX_METADATA_BYTES}"),
        ));
    }
    if let Some(name) = o
        .headers
        .keys()
        .find(|h| !STORED_HEADERS.contains(&h.as_str()))
    {
        return Err(StorageError::invalid(
            "headers",
            format!("`{name}` is not stored"),
        ));
    }
    Ok(())
}

/// Fills `buf` from `r` unless the stream ends first; answers how many bytes it read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// The bytes of an object (or of a range of it), one block in memory at a time (a chunk
/// written by format version 1 is one block).
///
/// A chunk file is a stream of frames of at most [`BLOCK_SIZE`] bytes each. The reader
/// walks a chunk's frames with positioned reads: a stored (incompressible) block that
/// the caller's buffer can take whole is read straight into it and checked there; any
/// other block is read into the reader's buffer, checked or decoded, and copied out.
/// No byte reaches the caller before its block's checksum has passed.
pub struct ObjectReader {
    store: Store,
    chunks: Vec<Chunk>,
    /// Where each chunk starts in the object.
    starts: Vec<u64>,
    /// Position in the object of the next byte to give.
    pos: u64,
    end: u64,
    /// The chunk file being read, standing at its next frame.
    cursor: Option<Cursor>,
    /// The checked block holding `pos`, if the reader holds one.
    block: Option<Block>,
    /// The last frame read whole (its allocation serves the next); a stored block is
    /// served from here.
    frame: Vec<u8>,
    /// The last compressed block, decoded.
    decoded: Vec<u8>,
    decoder: Decoder,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}

/// An open chunk file and where its next frame is.
struct Cursor {
    file: std::fs::File,
    /// The chunk's index in the object's list.
    index: usize,
    file_len: u64,
    /// File offset of the next frame.
    offset: u64,
    /// Position in the object of the next frame's first byte.
    next: u64,
    /// The checksum of the frame before: the next frame's seed.
    seed: u64,
    /// The chunk's final frame has been read.
    done: bool,
    /// A few bytes of the file read ahead (a checksum and the header after it), so a
    /// block costs two reads: its payload, then its checksum with the next header.
    ahead: [u8; AHEAD],
    ahead_at: u64,
    ahead_len: usize,
}

/// Bytes read ahead at a time: a checksum and the longest frame header.
const AHEAD: usize = CHECKSUM_LEN + MAX_HEADER_LEN + 28;

impl Cursor {
    /// `len` (at most [`AHEAD`]) bytes of the file at `offset`, fewer at its end.
    fn small_read(&mut self, offset: u64, len: usize) -> std::io::Result<&[u8]> {
        let have =
            offset >= self.ahead_at && offset + len as u64 <= self.ahead_at + self.ahead_len as u64;
        if !have {
            let want = (AHEAD as u64).min(self.file_len.saturating_sub(offset)) as usize;
            // Emptied first: a read that fails partway must not leave old bytes
            // standing for this offset.
            self.ahead_len = 0;
            read_exact_at(&self.file, &mut self.ahead[..want], offset)?;
            self.ahead_at = offset;
            self.ahead_len = want;
        }
        let from = (offset - self.ahead_at) as usize;
        let to = (from + len).min(self.ahead_len);
        Ok(&self.ahead[from..to])
    }

    /// The frame checksum stored at `at`.
    fn checksum_at(&mut self, at: u64) -> std::io::Result<u64> {
        let bytes = self.small_read(at, CHECKSUM_LEN)?;
        if bytes.len() < CHECKSUM_LEN {
            return Err(corrupted("a frame's checksum is cut off"));
        }
        Ok(le_u64(bytes))
    }

    /// Moves past a frame of `frame_len` bytes whose block ends at `block_end` in the
    /// object, with checksum `sum` (the next frame's seed). Past the last of `chunk`'s
    /// bytes (ending at `chunk_end`), what follows must be an empty final frame ending
    /// the file (its bytes are usually read ahead already).
    fn step(
        &mut self,
        frame: &FrameHeader,
        block_end: u64,
        sum: u64,
        (chunk, chunk_end): (Chunk, u64),
    ) -> std::io::Result<()> {
        self.seed = sum;
        self.offset += frame.frame_len();
        self.next = block_end;
        self.done = frame.end;
        if block_end < chunk_end || frame.end {
            return Ok(());
        }
        let not_ended = || {
            corrupted(format!(
                "chunk {:016x} does not end after its {} bytes",
                chunk.id, chunk.len
            ))
        };
        let last = FrameHeader::parse(self.small_read(self.offset, MAX_HEADER_LEN)?)
            .map_err(|_| not_ended())?;
        let empty_end = last.end
            && last.checksum
            && last.decoded_len == 0
            && last.payload_len == 0
            && self.offset + last.frame_len() == self.file_len;
        let expected = content_checksum(&[], self.seed);
        if !empty_end || self.checksum_at(self.offset + last.header_len as u64)? != expected {
            return Err(not_ended());
        }
        self.offset = self.file_len;
        self.done = true;
        Ok(())
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(b)
}

/// A checked block, ready to copy out.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Where it starts in the object.
    start: u64,
    /// Its bytes: `frame[at..at + len]` when stored, else `decoded[..len]`.
    in_frame: bool,
    at: usize,
    len: usize,
}

fn corrupted(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(StorageError::Corrupted(what.to_string()))
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(mut file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

impl ObjectReader {
    /// Where in the object the next byte read comes from.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// Opens the chunk holding `pos`, standing at its first frame.
    fn open_chunk(&mut self) -> std::io::Result<()> {
        let index = self
            .starts
            .partition_point(|&s| s <= self.pos)
            .saturating_sub(1);
        let (Some(&start), Some(c)) = (self.starts.get(index), self.chunks.get(index)) else {
            return Err(corrupted("the object has no chunks"));
        };
        if self.pos >= start + c.len {
            return Err(corrupted("the object's chunks are shorter than its size"));
        }
        let file = std::fs::File::open(self.store.chunk_path(c.id)).map_err(|e| {
            std::io::Error::other(format!("chunk {:016x} of the object: {e}", c.id))
        })?;
        let file_len = file.metadata()?.len();
        self.cursor = Some(Cursor {
            file,
            index,
            file_len,
            offset: 0,
            next: start,
            seed: 0,
            done: false,
            ahead: [0; AHEAD],
            ahead_at: 0,
            ahead_len: 0,
        });
        Ok(())
    }

    /// Reads frames until one holds `pos`; gives its bytes to `buf` when the block is
    /// stored and `buf` takes it whole (answering how many), else loads it as
    /// `self.block` (answering 0).
    fn advance(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let stale = self.cursor.as_ref().is_none_or(|c| {
            let chunk_end = self.starts[c.index] + self.chunks[c.index].len;
            c.done || self.pos < c.next || self.pos >= chunk_end
        });
        if stale {
            self.open_chunk()?;
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Err(corrupted("no chunk open"));
        };
        let chunk = self.chunks[cursor.index];
        let chunk_end = self.starts[cursor.index] + chunk.len;
        let in_chunk =
            |e: avila_compress::Error| corrupted(format!("chunk {:016x}: {e}", chunk.id));
        loop {
            let head = cursor.small_read(cursor.offset, MAX_HEADER_LEN)?;
            let header = FrameHeader::parse(head).map_err(in_chunk)?;
            let frame_len = header.frame_len();
            let start = cursor.next;
            let block_end = start.saturating_add(header.decoded_len);
            if block_end > chunk_end
                || (header.end && block_end != chunk_end)
                || cursor.offset.saturating_add(frame_len) > cursor.file_len
                || (header.end && cursor.offset + frame_len != cursor.file_len)
                || (header.method == Method::None && header.payload_len != header.decoded_len)
            {
                return Err(corrupted(format!(
                    "chunk {:016x} does not hold the {} bytes its object names",
                    chunk.id, chunk.len
                )));
            }
            if !header.checksum {
                // The store writes every frame with one: a frame without is not ours.
                return Err(corrupted(format!(
                    "chunk {:016x} has a frame without a checksum",
                    chunk.id
                )));
            }
            let len = header.decoded_len as usize;
            let payload_at = cursor.offset + header.header_len as u64;
            let sum_at = payload_at + header.payload_len;
            let this = (chunk, chunk_end);
            if self.pos >= block_end {
                // A block before the range: only its checksum is read, as the next seed.
                let sum = cursor.checksum_at(sum_at)?;
                cursor.step(&header, block_end, sum, this)?;
                if header.end {
                    return Err(corrupted("the object's chunks are shorter than its size"));
                }
                continue;
            }
            if header.method == Method::None
                && self.pos == start
                && buf.len() >= len
                && self.end - self.pos >= len as u64
            {
                // The caller's buffer takes the stored block whole: read it there.
                read_exact_at(&cursor.file, &mut buf[..len], payload_at)?;
                let sum = cursor.checksum_at(sum_at)?;
                if sum != content_checksum(&buf[..len], cursor.seed) {
                    return Err(in_chunk(avila_compress::Error::ChecksumMismatch));
                }
                cursor.step(&header, block_end, sum, this)?;
                return Ok(len);
            }
            self.frame.clear();
            self.frame.resize(frame_len as usize, 0);
            read_exact_at(&cursor.file, &mut self.frame, cursor.offset)?;
            let sum_in_frame = le_u64(&self.frame[self.frame.len() - CHECKSUM_LEN..]);
            let block = if header.method == Method::None {
                let at = header.header_len;
                if sum_in_frame != content_checksum(&self.frame[at..at + len], cursor.seed) {
                    return Err(in_chunk(avila_compress::Error::ChecksumMismatch));
                }
                Block {
                    start,
                    in_frame: true,
                    at,
                    len,
                }
            } else {
                self.decoded.clear();
                self.decoder
                    .decode_stream_frame(&self.frame, cursor.seed, len as u64, &mut self.decoded)
                    .map_err(in_chunk)?;
                Block {
                    start,
                    in_frame: false,
                    at: 0,
                    len,
                }
            };
            cursor.step(&header, block_end, sum_in_frame, this)?;
            self.block = Some(block);
            return Ok(0);
        }
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        let mut pins = self.store.pins();
        for c in &self.chunks {
            let left = match pins.count.get_mut(&c.id) {
                Some(n) => {
                    *n -= 1;
                    *n
                }
                None => continue,
            };
            if left == 0 {
                pins.count.remove(&c.id);
                if pins.doomed.remove(&c.id) {
                    let _ = std::fs::remove_file(self.store.chunk_path(c.id));
                }
            }
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let holds = |b: &Block, pos: u64| pos >= b.start && pos < b.start + b.len as u64;
        if !self.block.is_some_and(|b| holds(&b, self.pos)) {
            self.block = None;
            let n = self.advance(buf)?;
            if n > 0 {
                self.pos += n as u64;
                return Ok(n);
            }
        }
        let Some(b) = self.block.filter(|b| holds(b, self.pos)) else {
            return Err(corrupted(
                "a block does not hold the position it was read for",
            ));
        };
        let bytes = if b.in_frame {
            &self.frame[b.at..b.at + b.len]
        } else {
            &self.decoded[..b.len]
        };
        let at = (self.pos - b.start) as usize;
        let n = buf
            .len()
            .min(bytes.len() - at)
            .min((self.end - self.pos) as usize);
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}
