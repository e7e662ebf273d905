//! The commit log: what makes a write durable before redb does.
//!
//! A durable redb commit writes every page the transaction changed (a dozen for one
//! document with its feed and index entries) and syncs them; an append to a log syncs one.
//! So the writer makes each group durable by appending the group's effects (the table
//! entries it inserted and removed) to `aviladb.wal` and syncing that, then commits the
//! group to redb without syncing. Readers see a group only after it is in the log. Now and
//! then (every [`CHECKPOINT_BYTES`] of log, when the writer is idle, before a catalog
//! change, on close) a checkpoint commits redb durably, records the last log sequence it
//! covers in the `meta` table, and the log starts again from its beginning. On open,
//! records after the checkpoint are applied again; redb by then holds exactly the state
//! of the checkpoint, so the replay is exact.
//!
//! ```text
//! record  lsn (u64 LE) | payload length (u64 LE) | xxh3-64 of lsn, length, payload | payload
//! payload effects, each: kind (1 byte), table number (u64 LE), key, value
//!         kind 1 docs, 2 feed, 3 index, 4 expiry schedule, 5 meta, 6 vectors,
//!         7 history (a collection keeping all versions)
//!         key: length (u32 LE) and bytes; value: 0 (removed) or 1, length (u32 LE), bytes
//! ```
//! Records start on 4 KiB boundaries. The file is reused from its start after each
//! checkpoint (overwriting in place syncs faster than growing a file). A record that is torn, fails its checksum, or does not
//! carry the next sequence number ends the log: records left from before the last
//! checkpoint have smaller numbers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use redb::{TableDefinition, WriteTransaction};
use twox_hash::XxHash3_64;

use crate::error::{DbError, Result};

/// The log is checkpointed once it holds this much.
pub(crate) const CHECKPOINT_BYTES: u64 = 4 << 20;
/// The file grows by this much at a time, written with zeros and synced, so appends
/// overwrite blocks that exist (a sync then has no file metadata to write).
const GROWTH: u64 = 1 << 20;
/// Records start on page boundaries: a record never shares a page with the one before,
/// whose write-back a sync would otherwise wait for (measured here: 1.3 KB appended at
/// arbitrary offsets, ~260 µs per sync; on page boundaries, ~120 µs).
const ALIGN: u64 = 4096;
/// The file the log lives in.
pub(crate) const WAL_FILE: &str = "aviladb.wal";
/// The meta key of the last log sequence number a durable redb commit covers.
pub(crate) const CHECKPOINT_KEY: &str = "wal_checkpoint";
/// The meta key of the checksum seed of the records written since that checkpoint. A new
/// random seed comes with every checkpoint, so bytes left in the file from before it (or
/// planted in it through stored data) can never pass as a record of the current cycle.
pub(crate) const SALT_KEY: &str = "wal_salt";

/// A fresh checksum seed.
pub(crate) fn new_salt() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the clock still differs from every earlier cycle's seed.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}
const RECORD_HEADER: usize = 8 + 8 + 8;

/// Which table an effect changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Docs = 1,
    Feed = 2,
    Index = 3,
    Expiry = 4,
    Meta = 5,
    Vector = 6,
    History = 7,
}

/// The effects of one group, encoded as the writer makes them, and (logged or not) the
/// vectors it changed in graph indexes, which the writer hands to them before the commit.
#[derive(Debug, Default)]
pub(crate) struct Log {
    on: bool,
    buf: Vec<u8>,
    vectors: Vec<super::graphs::VectorChange>,
}

impl Log {
    pub(crate) fn new(on: bool) -> Self {
        Self::with_buffer(on, Vec::new())
    }

    /// A log that writes into `buf` (emptied first), a buffer an earlier group left.
    pub(crate) fn with_buffer(on: bool, mut buf: Vec<u8>) -> Self {
        buf.clear();
        Log {
            on,
            buf,
            vectors: Vec::new(),
        }
    }

    /// The buffer, emptied, for the next group (dropped if a large group grew it past
    /// 1 MiB).
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        let mut buf = self.buf;
        if buf.capacity() > 1 << 20 {
            return Vec::new();
        }
        buf.clear();
        buf
    }

    /// Records that the vector of `key` in graph index `table` changed.
    pub(crate) fn vector(&mut self, change: super::graphs::VectorChange) {
        self.vectors.push(change);
    }

    /// The vectors changed, taken out.
    pub(crate) fn take_vectors(&mut self) -> Vec<super::graphs::VectorChange> {
        std::mem::take(&mut self.vectors)
    }

    /// Where the log stands, for [`Log::truncate`].
    pub(crate) fn mark(&self) -> (usize, usize) {
        (self.buf.len(), self.vectors.len())
    }

    /// Records that `key` of table `table` of `kind` now holds `value` (`None`: removed).
    pub(crate) fn record(&mut self, kind: Kind, table: u64, key: &[u8], value: Option<&[u8]>) {
        if !self.on {
            return;
        }
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&table.to_le_bytes());
        self.buf
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        match value {
            None => self.buf.push(0),
            Some(v) => {
                self.buf.push(1);
                self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(v);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Forgets what was recorded after `mark` (a job that failed).
    pub(crate) fn truncate(&mut self, mark: (usize, usize)) {
        self.buf.truncate(mark.0);
        self.vectors.truncate(mark.1);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn checksum(salt: u64, lsn: u64, payload: &[u8]) -> u64 {
    let mut h = XxHash3_64::with_seed(salt);
    std::hash::Hasher::write(&mut h, &lsn.to_le_bytes());
    std::hash::Hasher::write(&mut h, &(payload.len() as u64).to_le_bytes());
    std::hash::Hasher::write(&mut h, payload);
    std::hash::Hasher::finish(&h)
}

/// A record read back: its sequence number and payload.
pub(crate) type Record = (u64, Vec<u8>);

/// The log file, positioned after its last valid record.
#[derive(Debug)]
pub(crate) struct Wal {
    file: File,
    pos: u64,
    next_lsn: u64,
    salt: u64,
    /// The file's length: blocks written and synced.
    len: u64,
    /// Tests: every sync fails.
    #[cfg(test)]
    pub(crate) fail_sync: bool,
}

impl Wal {
    /// Opens the log of `dir` and reads the records after checkpoint `checkpoint`: the
    /// log, positioned at its start (the caller applies the records and checkpoints), and
    /// the records in order.
    pub(crate) fn open(dir: &Path, checkpoint: u64, salt: u64) -> Result<(Wal, Vec<Record>)> {
        let path = dir.join(WAL_FILE);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if created {
            // The new file's name must survive a crash too.
            sync_dir(dir)?;
        }
        let mut records = Vec::new();
        let mut expected = checkpoint
            .checked_add(1)
            .ok_or_else(|| DbError::Corrupted("commit log checkpoint".into()))?;
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut data)?;
        let mut at = 0usize;
        while at + RECORD_HEADER <= data.len() {
            let word = |p: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[p..p + 8]);
                u64::from_le_bytes(b)
            };
            let lsn = word(at);
            let len = word(at + 8);
            let check = word(at + 16);
            let start = at + RECORD_HEADER;
            if lsn != expected || ((data.len() - start) as u64) < len {
                break;
            }
            let payload = &data[start..start + len as usize];
            if checksum(salt, lsn, payload) != check {
                break;
            }
            records.push((lsn, payload.to_vec()));
            expected += 1;
            at = (start + len as usize).next_multiple_of(ALIGN as usize);
        }
        Ok((
            Wal {
                file,
                pos: 0,
                next_lsn: expected,
                salt,
                len: data.len() as u64,
                #[cfg(test)]
                fail_sync: false,
            },
            records,
        ))
    }

    /// Writes a record and starts writing it back to the disk, without waiting:
    /// [`Wal::sync`] makes it durable. Answers its sequence number.
    pub(crate) fn write(&mut self, payload: &[u8]) -> Result<u64> {
        let lsn = self.next_lsn;
        let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
        record.extend_from_slice(&lsn.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        record.extend_from_slice(&checksum(self.salt, lsn, payload).to_le_bytes());
        record.extend_from_slice(payload);
        let end = self.pos + record.len() as u64;
        if end > self.len {
            let grown = end.div_ceil(GROWTH) * GROWTH;
            let zeros = vec![0u8; (grown - self.len) as usize];
            write_all_at(&self.file, &zeros, self.len)?;
            self.file.sync_all()?;
            self.len = grown;
        }
        write_all_at(&self.file, &record, self.pos)?;
        super::writeback::start(&self.file, self.pos, record.len() as u64);
        self.pos = end.next_multiple_of(ALIGN);
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Makes every record written so far durable.
    pub(crate) fn sync(&self) -> Result<()> {
        #[cfg(test)]
        if self.fail_sync {
            return Err(DbError::Storage("injected sync failure".into()));
        }
        self.file.sync_data()?;
        Ok(())
    }

    /// Writes a record and syncs it; answers its sequence number.
    #[cfg(test)]
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<u64> {
        let lsn = self.write(payload)?;
        self.sync()?;
        Ok(lsn)
    }

    /// The last sequence number written (0 before the first).
    pub(crate) fn last_lsn(&self) -> u64 {
        self.next_lsn - 1
    }

    /// Bytes written since the last checkpoint.
    pub(crate) fn written(&self) -> u64 {
        self.pos
    }

    /// After a checkpoint covering every record (which stored `salt`): the next record
    /// goes to the start, checksummed with the new seed.
    pub(crate) fn restart(&mut self, salt: u64) {
        self.pos = 0;
        self.salt = salt;
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// A table the replay opened, kept open for the records after it.
enum Open<'t> {
    Bytes(redb::Table<'t, &'static [u8], &'static [u8]>),
    Feed(redb::Table<'t, u64, &'static [u8]>),
    Expiry(redb::Table<'t, &'static [u8], ()>),
    Meta(redb::Table<'t, &'static str, u64>),
}

/// Applies records' effects to one write transaction, opening each table once (a replay
/// touches the same few tables in every record).
pub(crate) struct Replay<'t> {
    txn: &'t WriteTransaction,
    tables: std::collections::HashMap<(u8, u64), Open<'t>>,
}

impl<'t> Replay<'t> {
    pub(crate) fn new(txn: &'t WriteTransaction) -> Self {
        Replay {
            txn,
            tables: std::collections::HashMap::new(),
        }
    }

    /// The table of `kind` and number `table` (every meta effect shares one table).
    fn table(&mut self, kind: u8, table: u64) -> Result<&mut Open<'t>> {
        let slot = (kind, if kind == Kind::Meta as u8 { 0 } else { table });
        if !self.tables.contains_key(&slot) {
            let txn = self.txn;
            let bytes = |name: String| -> Result<Open<'t>> {
                Ok(Open::Bytes(
                    txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?,
                ))
            };
            let open = match kind {
                1 => bytes(super::docs_table(table))?,
                3 => bytes(super::index::index_table(table))?,
                6 => bytes(super::vector::vector_table(table))?,
                2 => Open::Feed(txn.open_table(TableDefinition::<u64, &[u8]>::new(
                    &super::feed::feed_table(table),
                ))?),
                7 => Open::Feed(txn.open_table(TableDefinition::<u64, &[u8]>::new(
                    &super::feed::history_table(table),
                ))?),
                4 => Open::Expiry(txn.open_table(TableDefinition::<&[u8], ()>::new(
                    &super::ttl::exp_table(table),
                ))?),
                5 => Open::Meta(txn.open_table(super::commit::META)?),
                _ => return Err(DbError::Corrupted("commit log record".into())),
            };
            self.tables.insert(slot, open);
        }
        self.tables
            .get_mut(&slot)
            .ok_or_else(|| DbError::Corrupted("commit log record".into()))
    }

    /// Applies the effects of one record.
    pub(crate) fn apply(&mut self, payload: &[u8]) -> Result<()> {
        let bad = || DbError::Corrupted("commit log record".into());
        let mut at = 0usize;
        let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
            let end = at
                .checked_add(n)
                .filter(|e| *e <= payload.len())
                .ok_or_else(bad)?;
            let out = &payload[*at..end];
            *at = end;
            Ok(out)
        };
        while at < payload.len() {
            let kind = take(&mut at, 1)?[0];
            let mut table = [0u8; 8];
            table.copy_from_slice(take(&mut at, 8)?);
            let table = u64::from_le_bytes(table);
            let mut len = [0u8; 4];
            len.copy_from_slice(take(&mut at, 4)?);
            let key = take(&mut at, u32::from_le_bytes(len) as usize)?;
            let value = match take(&mut at, 1)?[0] {
                0 => None,
                1 => {
                    len.copy_from_slice(take(&mut at, 4)?);
                    Some(take(&mut at, u32::from_le_bytes(len) as usize)?)
                }
                _ => return Err(bad()),
            };
            match self.table(kind, table)? {
                Open::Bytes(t) => {
                    match value {
                        Some(v) => t.insert(key, v)?,
                        None => t.remove(key)?,
                    };
                }
                Open::Feed(t) => {
                    let seq = u64::from_le_bytes(key.try_into().map_err(|_| bad())?);
                    match value {
                        Some(v) => t.insert(seq, v)?,
                        None => t.remove(seq)?,
                    };
                }
                Open::Expiry(t) => {
                    match value {
                        Some(_) => t.insert(key, ())?,
                        None => t.remove(key)?,
                    };
                }
                Open::Meta(t) => {
                    let name = std::str::from_utf8(key).map_err(|_| bad())?;
                    match value {
                        Some(v) => {
                            t.insert(name, u64::from_le_bytes(v.try_into().map_err(|_| bad())?))?;
                        }
                        None => {
                            t.remove(name)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_end_at_damage_and_at_older_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, old) = Wal::open(dir.path(), 0, 7).unwrap();
        assert!(old.is_empty());
        for i in 1..=3u8 {
            assert_eq!(wal.append(&[i; 10]).unwrap(), u64::from(i));
        }
        let (_, got) = Wal::open(dir.path(), 0, 7).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], (3, vec![3u8; 10]));
        // Another cycle's seed reads nothing.
        assert!(Wal::open(dir.path(), 0, 8).unwrap().1.is_empty());
        // Records after a checkpoint start at the beginning of the file: with a
        // checkpoint at 2 the record found there (1) is older, so nothing is replayed.
        let (_, got) = Wal::open(dir.path(), 2, 7).unwrap();
        assert!(got.is_empty());
        // A checkpoint at 3 and a restart: the old records are not replayed, new ones are.
        let (mut wal, got) = Wal::open(dir.path(), 3, 7).unwrap();
        assert!(got.is_empty());
        wal.restart(9);
        assert_eq!(wal.append(&[9; 4]).unwrap(), 4);
        let (_, got) = Wal::open(dir.path(), 3, 9).unwrap();
        assert_eq!(got, vec![(4, vec![9u8; 4])]);
        assert!(Wal::open(dir.path(), u64::MAX, 9).is_err());
        // A torn or damaged record ends the log.
        let path = dir.path().join(WAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[RECORD_HEADER + 1] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        let (_, got) = Wal::open(dir.path(), 3, 9).unwrap();
        assert!(got.is_empty());
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert!(Wal::open(dir.path(), 0, 9).unwrap().1.is_empty());
    }

    #[test]
    fn effects_encode_and_garbage_is_refused() {
        let mut log = Log::new(true);
        log.record(Kind::Docs, 1, b"k", Some(b"v"));
        log.record(Kind::Feed, 1, &7u64.to_le_bytes(), None);
        assert!(!log.is_empty());
        let mut off = Log::new(false);
        off.record(Kind::Docs, 1, b"k", Some(b"v"));
        assert!(off.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("x.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut replay = Replay::new(&txn);
            replay.apply(log.bytes()).unwrap();
            assert!(replay.apply(&log.bytes()[..log.len() - 1]).is_err());
            assert!(replay.apply(&[9, 0, 0]).is_err());
        }
        txn.abort().unwrap();
    }

    #[test]
    fn a_replay_writes_every_kind_of_effect_in_order() {
        use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
        let mut first = Log::new(true);
        let mut second = Log::new(true);
        for table in [1u64, 2] {
            first.record(Kind::Docs, table, b"a", Some(b"1"));
            first.record(Kind::Docs, table, b"b", Some(b"2"));
            first.record(Kind::Feed, table, &5u64.to_le_bytes(), Some(b"fa"));
            first.record(Kind::Index, table, b"ia", Some(b"a"));
            first.record(Kind::Expiry, table, b"ea", Some(b""));
            first.record(Kind::Vector, table, b"a", Some(b"v1"));
            first.record(Kind::History, table, &5u64.to_le_bytes(), Some(b"h5"));
            first.record(Kind::Meta, table, b"next_seq", Some(&4096u64.to_le_bytes()));
            // The second record undoes some of the first, in the tables it left open.
            second.record(Kind::Docs, table, b"a", None);
            second.record(Kind::Docs, table, b"b", Some(b"3"));
            second.record(Kind::Feed, table, &5u64.to_le_bytes(), None);
            second.record(Kind::Feed, table, &6u64.to_le_bytes(), Some(b"fb"));
            second.record(Kind::Index, table, b"ia", None);
            second.record(Kind::Expiry, table, b"ea", None);
            second.record(Kind::Vector, table, b"a", Some(b"v2"));
            second.record(Kind::History, table, &6u64.to_le_bytes(), Some(b"h6"));
        }
        second.record(Kind::Meta, 9, b"next_seq", Some(&8192u64.to_le_bytes()));
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("x.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut replay = Replay::new(&txn);
            replay.apply(first.bytes()).unwrap();
            replay.apply(second.bytes()).unwrap();
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let bytes = |name: String| -> Vec<(Vec<u8>, Vec<u8>)> {
            let t = read
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .unwrap();
            t.iter()
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .collect()
        };
        let by_seq = |name: String| -> Vec<(u64, Vec<u8>)> {
            let t = read
                .open_table(TableDefinition::<u64, &[u8]>::new(&name))
                .unwrap();
            t.iter()
                .unwrap()
                .map(|e| {
                    let (k, v) = e.unwrap();
                    (k.value(), v.value().to_vec())
                })
                .collect()
        };
        for table in [1u64, 2] {
            assert_eq!(
                bytes(super::super::docs_table(table)),
                vec![(b"b".to_vec(), b"3".to_vec())]
            );
            assert!(bytes(super::super::index::index_table(table)).is_empty());
            assert_eq!(
                bytes(super::super::vector::vector_table(table)),
                vec![(b"a".to_vec(), b"v2".to_vec())]
            );
            assert_eq!(
                by_seq(super::super::feed::feed_table(table)),
                vec![(6, b"fb".to_vec())]
            );
            let history = by_seq(super::super::feed::history_table(table));
            assert_eq!(history, vec![(5, b"h5".to_vec()), (6, b"h6".to_vec())]);
            let exp = read
                .open_table(TableDefinition::<&[u8], ()>::new(
                    &super::super::ttl::exp_table(table),
                ))
                .unwrap();
            assert_eq!(exp.len().unwrap(), 0);
        }
        let meta = read.open_table(super::super::commit::META).unwrap();
        assert_eq!(meta.get("next_seq").unwrap().unwrap().value(), 8192);
    }
}
