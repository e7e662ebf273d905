//! Reclaiming expired documents. Reads hide an expired document the moment it expires
//! (they compare its header with the clock); this module only frees the space, in the
//! writer, a batch at a time.
//!
//! Two sources of candidates per collection:
//! - documents with their own `ttl`: a table `exp.{id}` keyed by expiry time (µs, big
//!   endian) and document key, written with the document. Entries are never removed on
//!   rewrite; one whose document no longer expires then is simply dropped when its time
//!   comes.
//! - the collection's default ttl: documents without their own `ttl` expire in the order
//!   of their last write, which is the change feed's order, so the sweep walks the feed
//!   from its oldest entry and stops at the first document still alive.
//!
//! A reclaimed document leaves the collection like a delete: its index entries go and its
//! change-feed entry becomes a delete.

use std::collections::HashSet;
use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::commit::TxnCtx;
use super::record::{self, Expiry, Header};
use super::wal::{Kind, Log};
use super::{COLLECTIONS, CollectionInfo, decode_collection, docs_table, feed, index};
use crate::error::Result;

/// The most documents one reclaim job deletes.
pub(crate) const RECLAIM_BATCH: usize = 2048;
/// The most history entries one reclaim job trims per collection: a sweep every 5 s
/// keeps up with ~13,000 writes a second.
const HISTORY_TRIM_BATCH: usize = 65_536;
/// How many feed entries of documents with their own `ttl` the due check looks past.
const DUE_LOOKAHEAD: usize = 64;

type ExpDef<'a> = TableDefinition<'a, &'static [u8], ()>;

/// The expiry schedule of the collection with documents table `id`.
pub(crate) fn exp_table(id: u64) -> String {
    format!("exp.{id}")
}

fn exp_key(at_micros: u64, doc_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + doc_key.len());
    key.extend_from_slice(&at_micros.to_be_bytes());
    key.extend_from_slice(doc_key);
    key
}

/// Schedules a look at `doc_key` at `at_micros`.
pub(crate) fn schedule(
    txn: &WriteTransaction,
    log: &mut Log,
    collection_table: u64,
    at_micros: u64,
    doc_key: &[u8],
) -> Result<()> {
    let name = exp_table(collection_table);
    let key = exp_key(at_micros, doc_key);
    txn.open_table(ExpDef::new(&name))?
        .insert(key.as_slice(), ())?;
    log.record(Kind::Expiry, collection_table, &key, Some(&[]));
    Ok(())
}

/// Whether any collection has something to reclaim at `now` (a read transaction only).
pub(crate) fn due(db: &Database, now: u64) -> bool {
    due_checked(db, now).unwrap_or(false)
}

fn due_checked(db: &Database, now: u64) -> Result<bool> {
    let txn = db.begin_read()?;
    let colls = txn.open_table(COLLECTIONS)?;
    for entry in colls.iter()? {
        let (_, value) = entry?;
        let info = CollectionInfo::from_record("", decode_collection(value.value())?);
        // A collection that cannot be checked (a damaged entry) keeps only its own
        // work from being found: the others are still swept.
        if collection_due(&txn, &info, now).unwrap_or(false) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether one collection has something to reclaim at `now`.
fn collection_due(txn: &redb::ReadTransaction, info: &CollectionInfo, now: u64) -> Result<bool> {
    // A damaged history entry does not hide the collection's expired documents.
    if let Some(cutoff) = info.history_cutoff(now)
        && feed::history_due(txn, info.table, cutoff).unwrap_or(false)
    {
        return Ok(true);
    }
    let name = exp_table(info.table);
    if let Ok(exp) = txn.open_table(ExpDef::new(&name))
        && let Some((first, _)) = exp.first()?
        && first.value().len() >= 8
    {
        let mut at = [0u8; 8];
        at.copy_from_slice(&first.value()[..8]);
        if u64::from_be_bytes(at) <= now {
            return Ok(true);
        }
    }
    if !matches!(info.default_ttl, Some(t) if t > 0) {
        return Ok(false);
    }
    let expiry = Expiry {
        default_ttl: info.default_ttl,
        now_micros: now,
    };
    let feed_name = feed::feed_table(info.table);
    let Ok(feed) = txn.open_table(TableDefinition::<u64, &[u8]>::new(&feed_name)) else {
        return Ok(false);
    };
    let docs = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
        info.table,
    )))?;
    for entry in feed.iter()?.take(DUE_LOOKAHEAD) {
        let (_, value) = entry?;
        let Some(key) = feed::put_key(value.value()) else {
            continue;
        };
        if let Some(stored) = docs.get(key)? {
            let h = record::header(stored.value())?;
            if h.ttl.is_none() {
                if expiry.expired(&h) {
                    return Ok(true);
                }
                break;
            }
        }
    }
    Ok(false)
}

/// Deletes up to `limit` expired documents across all collections; answers how many.
pub(crate) fn reclaim(ctx: &mut TxnCtx<'_>, limit: usize) -> Result<u64> {
    let txn = ctx.txn;
    let mut infos = Vec::new();
    {
        let colls = txn.open_table(COLLECTIONS)?;
        for entry in colls.iter()? {
            let (_, value) = entry?;
            infos.push(CollectionInfo::from_record(
                "",
                decode_collection(value.value())?,
            ));
        }
    }
    // Histories past their retention (not counted: they are not documents).
    for info in &infos {
        if let Some(cutoff) = info.history_cutoff(ctx.ts_micros) {
            feed::trim_history(txn, &mut ctx.log, info.table, cutoff, HISTORY_TRIM_BATCH)?;
        }
    }
    let mut done = 0u64;
    for info in infos {
        let left = limit.saturating_sub(done as usize);
        if left == 0 {
            break;
        }
        let expiry = Expiry {
            default_ttl: info.default_ttl,
            now_micros: ctx.ts_micros,
        };
        let doomed = candidates(txn, &mut ctx.log, &info, &expiry, left)?;
        for (key, h) in doomed {
            let seq = ctx.next_seq();
            let mut docs = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
                info.table,
            )))?;
            if !info.indexes.is_empty() {
                let old = match docs.get(key.as_slice())? {
                    Some(v) => Some(record::decode(v.value())?.body),
                    None => None,
                };
                index::update(txn, &mut ctx.log, &info.indexes, &key, old.as_ref(), None)?;
            }
            if !info.vector_indexes.is_empty() {
                super::vector::update(
                    txn,
                    &mut ctx.log,
                    &info.vector_indexes,
                    &key,
                    None,
                    "",
                    super::graphs::Meta::default(),
                )?;
            }
            docs.remove(key.as_slice())?;
            ctx.log.record(Kind::Docs, info.table, &key, None);
            drop(docs);
            feed::FeedWriter::open(txn, info.table, info.change_feed)?.delete(
                &mut ctx.log,
                seq,
                ctx.ts_micros,
                &key,
                Some(h.seq),
            )?;
            done += 1;
        }
    }
    Ok(done)
}

/// Expired documents of one collection, with their headers; takes their schedule entries.
fn candidates(
    txn: &WriteTransaction,
    log: &mut Log,
    info: &CollectionInfo,
    expiry: &Expiry,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Header)>> {
    let docs = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
        info.table,
    )))?;
    let mut out: Vec<(Vec<u8>, Header)> = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let expired_at = |key: &[u8]| -> Result<Option<Header>> {
        Ok(match docs.get(key)? {
            Some(v) => {
                let h = record::header(v.value())?;
                expiry.expired(&h).then_some(h)
            }
            None => None,
        })
    };
    // Documents with their own ttl, by schedule.
    let name = exp_table(info.table);
    let mut exp = txn.open_table(ExpDef::new(&name))?;
    let end = exp_key(expiry.now_micros.saturating_add(1), &[]);
    let mut taken = Vec::new();
    for entry in exp.range::<&[u8]>((Bound::Unbounded, Bound::Excluded(end.as_slice())))? {
        if taken.len() >= limit {
            break;
        }
        let (key, _) = entry?;
        let key = key.value().to_vec();
        if let Some(h) = key.get(8..).map(expired_at).transpose()?.flatten()
            && seen.insert(key[8..].to_vec())
        {
            out.push((key[8..].to_vec(), h));
        }
        taken.push(key);
    }
    for key in taken {
        exp.remove(key.as_slice())?;
        log.record(Kind::Expiry, info.table, &key, None);
    }
    // Documents under the collection's default ttl, oldest write first.
    if matches!(info.default_ttl, Some(t) if t > 0) && out.len() < limit {
        let feed_name = feed::feed_table(info.table);
        let feed = txn.open_table(TableDefinition::<u64, &[u8]>::new(&feed_name))?;
        for entry in feed.iter()? {
            if out.len() >= limit {
                break;
            }
            let (_, value) = entry?;
            let Some(key) = feed::put_key(value.value()) else {
                continue;
            };
            let Some(stored) = docs.get(key)? else {
                continue;
            };
            let h = record::header(stored.value())?;
            if h.ttl.is_some() {
                continue;
            }
            if !expiry.expired(&h) {
                break;
            }
            if seen.insert(key.to_vec()) {
                out.push((key.to_vec(), h));
            }
        }
    }
    Ok(out)
}
