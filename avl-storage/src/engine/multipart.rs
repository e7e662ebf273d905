//! Multipart uploads, as S3 has them: create, upload parts (1 to 10,000, each stored as
//! its own chunks, replaceable), list parts and uploads, complete (metadata only: the
//! object's chunk list is the parts' lists in order, nothing is copied), abort.
//!
//! Tables: `uploads` (upload id → bucket, key, time, options) and `parts` (upload id,
//! part number big-endian → size, ETag, time, chunks, checksum). Parts' chunks count as
//! referenced until the upload completes (the parts left out are deleted then) or is
//! aborted; [`Store::abort_stale_uploads`] reclaims abandoned ones. Table `completed`
//! (upload id → bucket, key, ETag), with `completed_order` (time, upload id) to prune
//! it, lets a completion sent again answer as the first one did.

use std::collections::HashSet;
use std::io::Read;

use md5::{Digest, Md5};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Chunk, Conditions, ObjectInfo, ObjectRecord, PutOptions, Store, info_of, now_ms};
use crate::error::{Result, StorageError};

pub(super) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
pub(super) const PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("parts");
/// Completed uploads (upload id → bucket, key, ETag), so a completion sent again
/// (a client that never saw the answer retries) answers as the first one did.
pub(super) const COMPLETED: TableDefinition<&str, &[u8]> = TableDefinition::new("completed");
/// The same completions by time (ms big-endian, then upload id), so old ones are found
/// and dropped without reading them all.
pub(super) const COMPLETED_ORDER: TableDefinition<&[u8], ()> =
    TableDefinition::new("completed_order");
/// How long a completion is remembered for a retry (S3 answers retries for a while too).
pub const COMPLETION_MEMORY_MS: u64 = 24 * 3600 * 1000;
/// The most old completions one completion drops (the rest go with the next ones).
const PRUNE_BATCH: usize = 64;

fn order_key(ms: u64, upload_id: &str) -> Vec<u8> {
    let mut k = ms.to_be_bytes().to_vec();
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// Drops up to `max` completions from before `cutoff` (ms), oldest first, in `txn`.
fn drop_completions(txn: &redb::WriteTransaction, cutoff: u64, max: usize) -> Result<()> {
    let mut order = txn.open_table(COMPLETED_ORDER)?;
    let mut old = Vec::new();
    for row in order.range(..order_key(cutoff, "").as_slice())? {
        if old.len() == max {
            break;
        }
        old.push(row?.0.value().to_vec());
    }
    let mut completed = txn.open_table(COMPLETED)?;
    for k in old {
        order.remove(k.as_slice())?;
        if let Ok(id) = std::str::from_utf8(&k[8.min(k.len())..]) {
            completed.remove(id)?;
        }
    }
    Ok(())
}
/// S3's smallest part (but the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    bucket: String,
    key: String,
    initiated_ms: u64,
    options: PutOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<UploadChecksum>,
}

/// The checksum an upload's object is to have, as S3's CreateMultipartUpload asks for
/// it (`x-amz-checksum-algorithm`, `x-amz-checksum-type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadChecksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// `FULL_OBJECT` (the checksum of the whole object's bytes) rather than `COMPOSITE`
    /// (the checksum of the parts' checksums, with `-N`).
    pub full_object: bool,
}

/// Called when an upload completes, before anything is committed, with the checksum its
/// creation asked for and each named part's size and kept checksum, in order: answers
/// the object's checksum, or an error that abandons the completion.
pub type CombineChecksums<'a> = &'a mut dyn FnMut(
    Option<&UploadChecksum>,
    &[(u64, Option<super::Checksum>)],
) -> Result<Option<super::Checksum>>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartRecord {
    size: u64,
    etag: String,
    last_modified_ms: u64,
    chunks: Vec<Chunk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<super::Checksum>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CompletedRecord {
    bucket: String,
    key: String,
    etag: String,
}

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// Its id.
    pub upload_id: String,
    /// The object's key.
    pub key: String,
    /// When it was created (ms since the Unix epoch).
    pub initiated_ms: u64,
}

/// A part of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// Its number (1 to 10,000).
    pub part_number: u32,
    /// Bytes.
    pub size: u64,
    /// The MD5 of its bytes (hex, no quotes).
    pub etag: String,
    /// When it was uploaded (ms since the Unix epoch).
    pub last_modified_ms: u64,
    /// The checksum kept with it, if its upload gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<super::Checksum>,
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupted(format!("{what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StorageError::Io(e.to_string()))
}

fn part_key(upload: &str, part: u32) -> Vec<u8> {
    let mut k = upload.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// The part number of a `parts` key under `prefix` (`None`: another upload's key).
fn part_number(key: &[u8], prefix: &[u8]) -> Result<Option<u32>> {
    let Some(number) = key.strip_prefix(prefix) else {
        return Ok(None);
    };
    let bytes = number
        .try_into()
        .map_err(|_| StorageError::Corrupted("part key".into()))?;
    Ok(Some(u32::from_be_bytes(bytes)))
}

fn part_prefix(upload: &str) -> Vec<u8> {
    let mut k = upload.as_bytes().to_vec();
    k.push(0);
    k
}

/// Adds every chunk a part names to `out`.
pub(super) fn referenced_chunks(txn: &redb::ReadTransaction, out: &mut HashSet<u64>) -> Result<()> {
    let parts = txn.open_table(PARTS)?;
    for row in parts.iter()? {
        let (_, v) = row?;
        let part: PartRecord = decode(v.value(), "part record")?;
        out.extend(part.chunks.iter().map(|c| c.id));
    }
    Ok(())
}

/// A reader that shows what it reads.
struct Observed<'a, R> {
    inner: R,
    observe: &'a mut dyn FnMut(&[u8]),
}

impl<R: Read> Read for Observed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.observe)(&buf[..n]);
        Ok(n)
    }
}

/// S3's ETag of an object made of parts with these ETags (hex MD5s, quoted or not): the
/// MD5 of their MD5s, then `-N`; `None` if one is not hex.
fn multipart_etag(parts: &[(u32, String)]) -> Option<String> {
    let mut md5s = Md5::new();
    for (_, etag) in parts {
        md5s.update(hex::decode(etag.trim_matches('"')).ok()?);
    }
    Some(format!("{}-{}", hex::encode(md5s.finalize()), parts.len()))
}

fn new_upload_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StorageError::Io(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl Store {
    /// Starts a multipart upload of `key`; answers its id.
    pub fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
    ) -> Result<String> {
        self.create_multipart_upload_with(bucket, key, options, None)
    }

    /// [`Store::create_multipart_upload`] that keeps the checksum the object is to have:
    /// [`Store::upload_checksum`] answers it, and completion hands it to its
    /// [`CombineChecksums`].
    pub fn create_multipart_upload_with(
        &self,
        bucket: &str,
        key: &str,
        options: PutOptions,
        checksum: Option<UploadChecksum>,
    ) -> Result<String> {
        super::names::check_key(key)?;
        super::check_options(&options)?;
        let id = new_upload_id()?;
        let record = UploadRecord {
            bucket: bucket.to_string(),
            key: key.to_string(),
            initiated_ms: now_ms(),
            options,
            checksum,
        };
        let txn = self.inner.db.begin_write()?;
        {
            super::require_bucket(&txn.open_table(super::BUCKETS)?, bucket)?;
            txn.open_table(UPLOADS)?
                .insert(id.as_str(), encode(&record)?.as_slice())?;
        }
        txn.commit()?;
        Ok(id)
    }

    /// The checksum an upload's creation asked for (`NoSuchUpload` if it is not there).
    pub fn upload_checksum(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<UploadChecksum>> {
        Ok(self
            .upload(&self.inner.db.begin_read()?, bucket, key, upload_id)?
            .checksum)
    }

    fn upload(
        &self,
        txn: &redb::ReadTransaction,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> Result<UploadRecord> {
        let uploads = txn.open_table(UPLOADS)?;
        let record: UploadRecord = match uploads.get(id)? {
            Some(v) => decode(v.value(), "upload record")?,
            None => return Err(StorageError::NoSuchUpload(id.to_string())),
        };
        if record.bucket != bucket || record.key != key {
            return Err(StorageError::NoSuchUpload(id.to_string()));
        }
        Ok(record)
    }

    /// Stores part `part_number` of an upload (replacing one of that number); answers
    /// its ETag (hex MD5).
    pub fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: &mut dyn Read,
    ) -> Result<String> {
        self.upload_part_with(bucket, key, upload_id, part_number, body, &mut |_| Ok(None))
    }

    /// [`Store::upload_part`] that hands the part's digest to `finish` before the
    /// commit (as [`Store::put_object_with`]); the checksum it answers is kept with the
    /// part and listed by [`Store::list_parts`].
    pub fn upload_part_with(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: &mut dyn Read,
        finish: super::Finish<'_>,
    ) -> Result<String> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(StorageError::invalid(
                "partNumber",
                format!("must be 1 to {MAX_PART_NUMBER}"),
            ));
        }
        self.upload(&self.inner.db.begin_read()?, bucket, key, upload_id)?;
        let mut chunks = Vec::new();
        let (size, etag, checksum) = match self.write_chunks(body, &mut chunks, finish) {
            Ok(v) => v,
            Err(e) => {
                self.remove_chunks(&chunks);
                return Err(e);
            }
        };
        let record = PartRecord {
            size,
            etag: etag.clone(),
            last_modified_ms: now_ms(),
            chunks,
            checksum,
        };
        let committed = (|| -> Result<Option<PartRecord>> {
            let txn = self.durable_write()?;
            let old = {
                if txn.open_table(UPLOADS)?.get(upload_id)?.is_none() {
                    return Err(StorageError::NoSuchUpload(upload_id.to_string()));
                }
                self.save_next_chunk(&txn)?;
                let mut parts = txn.open_table(PARTS)?;
                let old = parts.insert(
                    part_key(upload_id, part_number).as_slice(),
                    encode(&record)?.as_slice(),
                )?;
                old.map(|v| decode::<PartRecord>(v.value(), "part record"))
                    .transpose()?
            };
            txn.commit()?;
            Ok(old)
        })();
        match committed {
            Ok(old) => {
                if let Some(old) = old {
                    self.remove_chunks(&old.chunks);
                }
                Ok(etag)
            }
            Err(e) => {
                self.remove_chunks(&record.chunks);
                Err(e)
            }
        }
    }

    /// Copies `range` of an object into part `part_number` of an upload (UploadPartCopy).
    #[allow(clippy::too_many_arguments)]
    pub fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_bucket: &str,
        source_key: &str,
        range: Option<super::ByteRange>,
        conditions: &Conditions,
    ) -> Result<String> {
        self.upload_part_copy_with(
            bucket,
            key,
            upload_id,
            part_number,
            (source_bucket, source_key, range),
            conditions,
            &mut |_| {},
            &mut |_| Ok(None),
        )
    }

    /// [`Store::upload_part_copy`] that shows each piece of the copied bytes to
    /// `observe` as it is read and hands the part's digest to `finish` (as
    /// [`Store::upload_part_with`]): how a checksum of the copy is made and kept.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_part_copy_with(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        (source_bucket, source_key, range): (&str, &str, Option<super::ByteRange>),
        conditions: &Conditions,
        observe: &mut dyn FnMut(&[u8]),
        finish: super::Finish<'_>,
    ) -> Result<String> {
        let (_, reader) = self
            .get_object_if(source_bucket, source_key, range, conditions)
            .map_err(super::copy_condition)?;
        let mut observed = Observed {
            inner: reader,
            observe,
        };
        self.upload_part_with(bucket, key, upload_id, part_number, &mut observed, finish)
    }

    /// The parts of an upload after `marker`, at most `max` (1000 when `None`); answers
    /// them and whether more follow.
    pub fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: Option<usize>,
    ) -> Result<(Vec<PartInfo>, bool)> {
        let max = max.unwrap_or(1000).min(1000);
        let txn = self.inner.db.begin_read()?;
        self.upload(&txn, bucket, key, upload_id)?;
        let parts = txn.open_table(PARTS)?;
        let start = part_key(upload_id, marker.saturating_add(1));
        let prefix = part_prefix(upload_id);
        let mut out = Vec::new();
        for row in parts.range(start.as_slice()..)? {
            let (k, v) = row?;
            let Some(number) = part_number(k.value(), &prefix)? else {
                break;
            };
            if out.len() == max {
                return Ok((out, max > 0));
            }
            let part: PartRecord = decode(v.value(), "part record")?;
            out.push(PartInfo {
                part_number: number,
                size: part.size,
                etag: part.etag,
                last_modified_ms: part.last_modified_ms,
                checksum: part.checksum,
            });
        }
        Ok((out, false))
    }

    /// The uploads in progress in a bucket whose keys start with `prefix`, by key.
    pub fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UploadInfo>> {
        let txn = self.inner.db.begin_read()?;
        self.check_bucket_exists(&txn, bucket)?;
        let uploads = txn.open_table(UPLOADS)?;
        let mut out = Vec::new();
        for row in uploads.iter()? {
            let (id, v) = row?;
            let record: UploadRecord = decode(v.value(), "upload record")?;
            if record.bucket == bucket && record.key.starts_with(prefix) {
                out.push(UploadInfo {
                    upload_id: id.value().to_string(),
                    key: record.key,
                    initiated_ms: record.initiated_ms,
                });
            }
        }
        out.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
        Ok(out)
    }

    /// Completes an upload from `parts` (number, ETag) in ascending order: the object is
    /// their bytes in that order, its ETag the MD5 of their MD5s with `-N`, as S3's.
    /// Parts not named are deleted. `conditions` as for a PUT.
    pub fn complete_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        conditions: &Conditions,
    ) -> Result<ObjectInfo> {
        self.complete_multipart_upload_with(
            bucket,
            key,
            upload_id,
            parts,
            conditions,
            &mut |_, _| Ok(None),
        )
    }

    /// [`Store::complete_multipart_upload`] whose object gets the checksum `combine`
    /// answers from its parts' checksums.
    pub fn complete_multipart_upload_with(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        conditions: &Conditions,
        combine: CombineChecksums<'_>,
    ) -> Result<ObjectInfo> {
        match self.complete_once(bucket, key, upload_id, parts, conditions, combine) {
            Err(StorageError::NoSuchUpload(_)) => {
                self.completed_before(bucket, key, upload_id, parts)
            }
            done => done,
        }
    }

    /// A completion sent again for an upload that completed (its answer lost on the
    /// way): the object it made, if it is still the one at `key` and `parts` are the
    /// ones it was made of (S3 answers such a retry as the first time); else
    /// `NoSuchUpload`.
    fn completed_before(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<ObjectInfo> {
        let gone = || StorageError::NoSuchUpload(upload_id.to_string());
        let done: CompletedRecord = {
            let txn = self.inner.db.begin_read()?;
            let table = txn.open_table(COMPLETED)?;
            let Some(v) = table.get(upload_id)? else {
                return Err(gone());
            };
            decode(v.value(), "completion record")?
        };
        let asked = multipart_etag(parts).ok_or_else(gone)?;
        if done.bucket != bucket || done.key != key || done.etag != asked {
            return Err(gone());
        }
        match self.record(bucket, key) {
            Ok(record) if record.etag == done.etag => Ok(info_of(key, record)),
            Ok(_) | Err(StorageError::NoSuchKey(_)) => Err(gone()),
            Err(e) => Err(e),
        }
    }

    fn complete_once(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
        conditions: &Conditions,
        combine: CombineChecksums<'_>,
    ) -> Result<ObjectInfo> {
        if parts.is_empty() {
            return Err(StorageError::invalid("parts", "at least one part"));
        }
        if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StorageError::InvalidPartOrder);
        }
        let upload = self.upload(&self.inner.db.begin_read()?, bucket, key, upload_id)?;
        let all = self.all_parts(upload_id)?;
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let mut sums = Vec::with_capacity(parts.len());
        for (i, (number, etag)) in parts.iter().enumerate() {
            let Some((_, part)) = all.iter().find(|(n, _)| n == number) else {
                return Err(StorageError::InvalidPart(format!(
                    "part {number} was not uploaded"
                )));
            };
            if etag.trim_matches('"') != part.etag {
                return Err(StorageError::InvalidPart(format!(
                    "part {number} has another ETag"
                )));
            }
            if i + 1 < parts.len() && part.size < self.inner.min_part_size {
                return Err(StorageError::EntityTooSmall {
                    part: *number,
                    size: part.size,
                    min: self.inner.min_part_size,
                });
            }
            chunks.extend_from_slice(&part.chunks);
            size += part.size;
            sums.push((part.size, part.checksum.clone()));
        }
        // The parts read here are the ones committed: the commit fails if one changed.
        let mut options = upload.options;
        if let Some(sum) = combine(upload.checksum.as_ref(), &sums)? {
            options.checksum = Some(sum);
        }
        // The request's ETags are the parts' (checked above).
        let etag =
            multipart_etag(parts).ok_or_else(|| StorageError::Corrupted("part ETag".into()))?;
        let record = ObjectRecord {
            size,
            etag,
            last_modified_ms: now_ms(),
            options,
            chunks,
            parts: sums.iter().map(|(size, _)| *size).collect(),
        };
        let named: HashSet<u32> = parts.iter().map(|p| p.0).collect();
        let used: Vec<(u32, Vec<Chunk>)> = all
            .iter()
            .filter(|(n, _)| named.contains(n))
            .map(|(n, p)| (*n, p.chunks.clone()))
            .collect();
        let mut leftover: Vec<Chunk> = Vec::new();
        let completed = encode(&CompletedRecord {
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: record.etag.clone(),
        })?;
        let old = self.commit_with(bucket, key, &record, conditions, |txn| {
            let removed = txn.open_table(UPLOADS)?.remove(upload_id)?.is_some();
            if !removed {
                return Err(StorageError::NoSuchUpload(upload_id.to_string()));
            }
            txn.open_table(COMPLETED)?
                .insert(upload_id, completed.as_slice())?;
            txn.open_table(COMPLETED_ORDER)?
                .insert(order_key(record.last_modified_ms, upload_id).as_slice(), ())?;
            drop_completions(
                txn,
                record.last_modified_ms.saturating_sub(COMPLETION_MEMORY_MS),
                PRUNE_BATCH,
            )?;
            // The parts as this transaction sees them: one replaced since they were read
            // fails the completion, so the object never names a deleted chunk.
            let mut table = txn.open_table(PARTS)?;
            let prefix = part_prefix(upload_id);
            let mut found = Vec::new();
            for row in table.range(prefix.as_slice()..)? {
                let (k, v) = row?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                found.push((
                    k.value().to_vec(),
                    decode::<PartRecord>(v.value(), "part record")?,
                ));
            }
            for (number, chunks) in &used {
                let key = part_key(upload_id, *number);
                if !found.iter().any(|(k, p)| *k == key && p.chunks == *chunks) {
                    return Err(StorageError::InvalidPart(format!(
                        "part {number} changed while the upload completed"
                    )));
                }
            }
            for (k, part) in found {
                let number = part_number(&k, &prefix)?.unwrap_or(0);
                if !named.contains(&number) {
                    leftover.extend(part.chunks);
                }
                table.remove(k.as_slice())?;
            }
            Ok(())
        })?;
        self.remove_chunks(&leftover);
        if let Some(old) = old {
            self.remove_chunks(&old.chunks);
        }
        Ok(info_of(key, record))
    }

    fn all_parts(&self, upload_id: &str) -> Result<Vec<(u32, PartRecord)>> {
        let txn = self.inner.db.begin_read()?;
        let parts = txn.open_table(PARTS)?;
        let prefix = part_prefix(upload_id);
        let mut out = Vec::new();
        for row in parts.range(prefix.as_slice()..)? {
            let (k, v) = row?;
            let Some(number) = part_number(k.value(), &prefix)? else {
                break;
            };
            out.push((number, decode(v.value(), "part record")?));
        }
        Ok(out)
    }

    /// Abandons an upload and deletes its parts.
    pub fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.upload(&self.inner.db.begin_read()?, bucket, key, upload_id)?;
        let chunks = self.remove_upload(upload_id)?;
        self.remove_chunks(&chunks);
        Ok(())
    }

    /// Removes an upload and its parts in one transaction (the parts as it sees them);
    /// answers their chunks, or `NoSuchUpload` if a completion or abort came first.
    fn remove_upload(&self, upload_id: &str) -> Result<Vec<Chunk>> {
        let txn = self.inner.db.begin_write()?;
        let mut chunks = Vec::new();
        {
            if txn.open_table(UPLOADS)?.remove(upload_id)?.is_none() {
                return Err(StorageError::NoSuchUpload(upload_id.to_string()));
            }
            let mut parts = txn.open_table(PARTS)?;
            let prefix = part_prefix(upload_id);
            let mut keys = Vec::new();
            for row in parts.range(prefix.as_slice()..)? {
                let (k, v) = row?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                keys.push(k.value().to_vec());
                chunks.extend(decode::<PartRecord>(v.value(), "part record")?.chunks);
            }
            for k in keys {
                parts.remove(k.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(chunks)
    }

    /// Drops the completion records from before `cutoff` (ms since the epoch).
    fn forget_completions(&self, cutoff: u64) -> Result<()> {
        let txn = self.inner.db.begin_write()?;
        drop_completions(&txn, cutoff.saturating_add(1), usize::MAX)?;
        txn.commit()?;
        Ok(())
    }

    /// Whether bucket `bucket` has uploads in progress (in a write transaction).
    pub(super) fn uploads_in_txn(txn: &redb::WriteTransaction, bucket: &str) -> Result<bool> {
        let uploads = txn.open_table(UPLOADS)?;
        for row in uploads.iter()? {
            let (_, v) = row?;
            if decode::<UploadRecord>(v.value(), "upload record")?.bucket == bucket {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Aborts every upload created more than `age_ms` ago; answers how many. Also
    /// forgets uploads completed more than `age_ms` ago (a completion sent again after
    /// that is `NoSuchUpload`); each completion forgets those older than
    /// [`COMPLETION_MEMORY_MS`] by itself.
    pub fn abort_stale_uploads(&self, age_ms: u64) -> Result<usize> {
        let cutoff = now_ms().saturating_sub(age_ms);
        self.forget_completions(cutoff)?;
        let stale: Vec<String> = {
            let txn = self.inner.db.begin_read()?;
            let uploads = txn.open_table(UPLOADS)?;
            let mut out = Vec::new();
            for row in uploads.iter()? {
                let (id, v) = row?;
                let record: UploadRecord = decode(v.value(), "upload record")?;
                if record.initiated_ms <= cutoff {
                    out.push(id.value().to_string());
                }
            }
            out
        };
        let mut aborted = 0;
        for id in &stale {
            match self.remove_upload(id) {
                Ok(chunks) => {
                    self.remove_chunks(&chunks);
                    aborted += 1;
                }
                // Completed or aborted meanwhile.
                Err(StorageError::NoSuchUpload(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(aborted)
    }
}
