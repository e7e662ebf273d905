//! The change feed of a collection: a table keyed by commit sequence number, written in
//! the same transaction as the documents.
//!
//! ```text
//! key    the commit sequence number (u64)
//! value  0x00, document key                    a document written at that sequence
//!        0x01, commit time µs (u64 LE), key    a document deleted at that sequence
//! ```
//! A write removes the entry of the document's previous version, so the feed holds one
//! entry per live document (at its latest sequence) plus one per delete: reading it in
//! key order gives every change in commit order, the latest version of each document
//! (the Cosmos DB "latest version" mode), and deletes when asked.
//!
//! A collection in [`ChangeFeedMode::AllVersions`] also keeps its history, `hist.{id}`:
//! every write's version (the record as stored) and every delete, each at its sequence
//! number, so its feed gives every committed change: from the feed up to the sequence at
//! which the mode was set (each document's latest version, as before), then from the
//! history. The history is dropped when the mode is set back, and with a retention the
//! writer trims entries older than it.
//!
//! ```text
//! hist value  0x02, record     a document written at that sequence, as it was written
//!             0x01, ...        a delete, as in the feed
//! ```

use std::ops::Bound;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use twox_hash::XxHash3_64;

use super::wal::{Kind, Log};
use crate::error::{DbError, Result};

const PUT: u8 = 0;
const DELETE: u8 = 1;
const VERSION: u8 = 2;

/// What a collection's change feed gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeFeedMode {
    /// Each document's latest version, and deletes (Cosmos DB's default mode).
    #[default]
    LatestVersion,
    /// Every version written, and deletes, from when the mode was set: a history that
    /// grows with every write, trimmed only by its retention (if any), and dropped when
    /// the mode is set back.
    AllVersions,
}

impl ChangeFeedMode {
    /// Whether this is the default mode.
    pub fn is_latest_version(&self) -> bool {
        *self == ChangeFeedMode::LatestVersion
    }
}

/// The history table of the collection with documents table `id`.
pub(crate) fn history_table(id: u64) -> String {
    format!("hist.{id}")
}

/// The commit time (µs) of a history entry.
fn entry_time(value: &[u8]) -> Result<u64> {
    match value.split_first() {
        Some((&VERSION, record)) => Ok(super::record::header(record)?.ts_micros),
        Some((&DELETE, rest)) if rest.len() >= 8 => {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&rest[..8]);
            Ok(u64::from_le_bytes(ts))
        }
        _ => Err(DbError::Corrupted("change feed history entry".into())),
    }
}

/// Whether the history of a collection holds entries committed before `cutoff` (µs).
pub(crate) fn history_due(
    txn: &ReadTransaction,
    collection_table: u64,
    cutoff: u64,
) -> Result<bool> {
    let Some(table) = open_feed(txn, &history_table(collection_table))? else {
        return Ok(false);
    };
    match table.first()? {
        Some((_, value)) => Ok(entry_time(value.value())? < cutoff),
        None => Ok(false),
    }
}

/// The meta key that holds the last sequence number trimmed from a collection's history
/// (absent: nothing trimmed). A reader whose continuation token is older lost changes.
fn trimmed_key(collection_table: u64) -> String {
    format!("hist_trimmed.{collection_table}")
}

/// The last sequence number trimmed from a collection's history (0: none).
pub(crate) fn trimmed_through(txn: &ReadTransaction, collection_table: u64) -> Result<u64> {
    let meta = match txn.open_table(super::commit::META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(meta
        .get(trimmed_key(collection_table).as_str())?
        .map_or(0, |v| v.value()))
}

/// Forgets what was trimmed from a history that is dropped (in a catalog change).
pub(crate) fn forget_trimmed(txn: &WriteTransaction, collection_table: u64) -> Result<()> {
    txn.open_table(super::commit::META)?
        .remove(trimmed_key(collection_table).as_str())?;
    Ok(())
}

/// Removes up to `limit` of the oldest history entries committed before `cutoff` (µs);
/// answers how many went. Entries are in commit order, so it stops at the first newer one.
pub(crate) fn trim_history(
    txn: &WriteTransaction,
    log: &mut Log,
    collection_table: u64,
    cutoff: u64,
    limit: usize,
) -> Result<usize> {
    let mut table = txn.open_table(FeedDef::new(&history_table(collection_table)))?;
    let mut old = Vec::new();
    for entry in table.iter()? {
        if old.len() >= limit {
            break;
        }
        let (seq, value) = entry?;
        // A damaged entry stops the trim: it stays, with what follows it, and a reader
        // of the feed gets the error; the rest of the sweep goes on.
        match entry_time(value.value()) {
            Ok(at) if at < cutoff => old.push(seq.value()),
            _ => break,
        }
    }
    for seq in &old {
        table.remove(*seq)?;
        log.record(Kind::History, collection_table, &seq.to_le_bytes(), None);
    }
    if let Some(&through) = old.last() {
        let key = trimmed_key(collection_table);
        txn.open_table(super::commit::META)?
            .insert(key.as_str(), through)?;
        log.record(Kind::Meta, 0, key.as_bytes(), Some(&through.to_le_bytes()));
    }
    Ok(old.len())
}
/// The most changes in one page.
pub const MAX_CHANGES: usize = 1000;

/// The feed table of the collection with documents table `id`.
pub(crate) fn feed_table(id: u64) -> String {
    format!("feed.{id}")
}

type FeedDef<'a> = TableDefinition<'a, u64, &'static [u8]>;

/// The feed of one collection inside a write transaction (and its history, in
/// [`ChangeFeedMode::AllVersions`]); every change goes to the commit log too.
pub(crate) struct FeedWriter<'t> {
    table: redb::Table<'t, u64, &'static [u8]>,
    history: Option<redb::Table<'t, u64, &'static [u8]>>,
    id: u64,
}

impl<'t> FeedWriter<'t> {
    pub(crate) fn open(
        txn: &'t WriteTransaction,
        collection_table: u64,
        mode: ChangeFeedMode,
    ) -> Result<Self> {
        let name = feed_table(collection_table);
        let history = match mode {
            ChangeFeedMode::LatestVersion => None,
            ChangeFeedMode::AllVersions => {
                Some(txn.open_table(FeedDef::new(&history_table(collection_table)))?)
            }
        };
        Ok(FeedWriter {
            table: txn.open_table(FeedDef::new(&name))?,
            history,
            id: collection_table,
        })
    }

    /// Keeps `value` in the history at `seq`, when there is one.
    fn keep(&mut self, log: &mut Log, seq: u64, value: &[u8]) -> Result<()> {
        if let Some(history) = self.history.as_mut() {
            history.insert(seq, value)?;
            log.record(Kind::History, self.id, &seq.to_le_bytes(), Some(value));
        }
        Ok(())
    }

    fn set(&mut self, log: &mut Log, seq: u64, value: &[u8], previous: Option<u64>) -> Result<()> {
        if let Some(p) = previous {
            self.table.remove(p)?;
            log.record(Kind::Feed, self.id, &p.to_le_bytes(), None);
        }
        self.table.insert(seq, value)?;
        log.record(Kind::Feed, self.id, &seq.to_le_bytes(), Some(value));
        Ok(())
    }

    /// Records a write of `doc_key` at `seq`, replacing the entry at `previous`; `record`
    /// is what was stored (kept in the history, when there is one).
    pub(crate) fn put(
        &mut self,
        log: &mut Log,
        seq: u64,
        doc_key: &[u8],
        record: &[u8],
        previous: Option<u64>,
    ) -> Result<()> {
        let mut value = Vec::with_capacity(1 + doc_key.len());
        value.push(PUT);
        value.extend_from_slice(doc_key);
        self.set(log, seq, &value, previous)?;
        if self.history.is_some() {
            let mut version = Vec::with_capacity(1 + record.len());
            version.push(VERSION);
            version.extend_from_slice(record);
            self.keep(log, seq, &version)?;
        }
        Ok(())
    }

    /// Records a delete of `doc_key` at `seq`, replacing the entry at `previous`.
    pub(crate) fn delete(
        &mut self,
        log: &mut Log,
        seq: u64,
        ts_micros: u64,
        doc_key: &[u8],
        previous: Option<u64>,
    ) -> Result<()> {
        let mut value = Vec::with_capacity(9 + doc_key.len());
        value.push(DELETE);
        value.extend_from_slice(&ts_micros.to_le_bytes());
        value.extend_from_slice(doc_key);
        self.set(log, seq, &value, previous)?;
        self.keep(log, seq, &value)
    }
}

/// The document key of a feed entry that records a write (not a delete).
pub(crate) fn put_key(value: &[u8]) -> Option<&[u8]> {
    match value.split_first() {
        Some((&PUT, key)) => Some(key),
        _ => None,
    }
}

/// Where to start reading a change feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "token", rename_all = "snake_case")]
pub enum FeedStart {
    /// Every change still in the feed, from the oldest.
    #[default]
    Beginning,
    /// Only changes committed after this call.
    Now,
    /// After the page that gave this continuation token.
    Continuation(String),
}

/// How to read a change feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedOptions {
    /// Where to start.
    #[serde(default)]
    pub start: FeedStart,
    /// Changes per page (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    /// Whether deletes are returned (as `{"id", "_pk", "_deleted": true, "_seq", "_ts"}`).
    #[serde(default)]
    pub include_deletes: bool,
}

/// One page of a change feed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangePage {
    /// The changes, in commit order: documents with their system properties, and
    /// deletes when asked.
    pub changes: Vec<Value>,
    /// Where to continue; always present (a feed has no last page).
    pub continuation: String,
}

/// A feed position: the collection it belongs to, the last sequence seen, and how far
/// the history's retention had trimmed when that page was read (see [`trimmed_through`]:
/// a reader is told it lost changes only if a trim passed it after it read).
pub(crate) fn encode_token(collection_table: u64, seq: u64, trimmed: u64) -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(&collection_table.to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&trimmed.to_le_bytes());
    let check = XxHash3_64::oneshot(&bytes);
    bytes.extend_from_slice(&check.to_le_bytes());
    format!("f2{}", hex::encode(bytes))
}

/// A token's last sequence seen and the trim it saw (`f1` tokens, made before trims
/// were recorded, saw none).
pub(crate) fn decode_token(token: &str, collection_table: u64) -> Result<(u64, u64)> {
    let malformed = || DbError::invalid("continuation", "malformed change feed token");
    let (bytes, words) = match (token.strip_prefix("f2"), token.strip_prefix("f1")) {
        (Some(h), _) => (hex::decode(h).ok(), 3),
        (_, Some(h)) => (hex::decode(h).ok(), 2),
        _ => (None, 0),
    };
    let bytes = bytes
        .filter(|b| b.len() == 8 * (words + 1))
        .ok_or_else(malformed)?;
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at * 8..at * 8 + 8]);
        u64::from_le_bytes(w)
    };
    if XxHash3_64::oneshot(&bytes[..words * 8]) != word(words) {
        return Err(malformed());
    }
    if word(0) != collection_table {
        return Err(DbError::invalid(
            "continuation",
            "the change feed token belongs to another collection",
        ));
    }
    Ok((word(1), if words == 3 { word(2) } else { 0 }))
}

/// The last sequence number in a collection's feed (0 when empty). The feed holds the
/// latest change in either mode.
pub(crate) fn last_seq(txn: &ReadTransaction, collection_table: u64) -> Result<u64> {
    let Some(table) = open_feed(txn, &feed_table(collection_table))? else {
        return Ok(0);
    };
    Ok(table.last()?.map_or(0, |(k, _)| k.value()))
}

/// A feed's table if the snapshot has it.
fn open_feed(
    txn: &ReadTransaction,
    name: &str,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>> {
    match txn.open_table(FeedDef::new(name)) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads up to `max` changes after sequence `after`; answers them and the last sequence
/// looked at. `history` is the sequence at which the collection began keeping all
/// versions (`None`: it keeps the latest only): changes before it come from the feed
/// (each document's latest version), the ones after from the history.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read(
    txn: &ReadTransaction,
    collection_table: u64,
    history: Option<u64>,
    docs: &str,
    after: u64,
    max: usize,
    include_deletes: bool,
    expiry: &super::record::Expiry,
) -> Result<(Vec<Value>, u64)> {
    let docs = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(docs))?;
    let mut out = Vec::new();
    let mut last = after;
    // A page also ends once it holds PAGE_BYTES of JSON, as a query page does, so that
    // it crosses HTTP as it comes back in process.
    let mut bytes = 0usize;
    let full = |out: &Vec<Value>, bytes: usize| {
        out.len() >= max || (bytes >= crate::query::exec::PAGE_BYTES && !out.is_empty())
    };
    let mut visit =
        |seq: u64, value: &[u8], out: &mut Vec<Value>, bytes: &mut usize| -> Result<()> {
            last = seq;
            match value.first() {
                Some(&PUT) => {
                    let key = &value[1..];
                    let Some(stored) = docs.get(key)? else {
                        return Err(DbError::Corrupted(
                            "a change feed entry names a document that is not stored".into(),
                        ));
                    };
                    // An expired document has left the collection already.
                    if let Some((doc, len)) = super::query::sized_document(stored.value(), expiry)?
                    {
                        *bytes += len + 64;
                        out.push(doc);
                    }
                }
                // A version of the history: the document as that write stored it.
                Some(&VERSION) => {
                    let (h, json) = super::record::decode_borrowed(&value[1..])?;
                    *bytes += json.len() + 64;
                    out.push(super::record::document_from(&h, &json)?);
                }
                Some(&DELETE) if value.len() >= 9 => {
                    if include_deletes {
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(&value[1..9]);
                        let (pk, id) = split_key(&value[9..])?;
                        *bytes += value.len() + 64;
                        out.push(json!({
                            "id": id,
                            "_pk": pk,
                            "_deleted": true,
                            "_seq": seq,
                            "_ts": u64::from_le_bytes(ts) / 1_000_000,
                        }));
                    }
                }
                _ => return Err(DbError::Corrupted("change feed entry".into())),
            }
            Ok(())
        };
    if history.is_none_or(|since| after < since)
        && let Some(feed) = open_feed(txn, &feed_table(collection_table))?
    {
        let end = history.map_or(Bound::Unbounded, Bound::Excluded);
        for entry in feed.range::<u64>((Bound::Excluded(after), end))? {
            if full(&out, bytes) {
                return Ok((out, last));
            }
            let (seq, value) = entry?;
            visit(seq.value(), value.value(), &mut out, &mut bytes)?;
        }
    }
    if let Some(since) = history
        && let Some(hist) = open_feed(txn, &history_table(collection_table))?
    {
        for entry in hist.range::<u64>((Bound::Excluded(after.max(since)), Bound::Unbounded))? {
            if full(&out, bytes) {
                break;
            }
            let (seq, value) = entry?;
            visit(seq.value(), value.value(), &mut out, &mut bytes)?;
        }
    }
    Ok((out, last))
}

/// The partition-key value and id of a document key.
fn split_key(key: &[u8]) -> Result<(Value, String)> {
    let (pk, id) = super::record::key_parts(key)?;
    let pk: Value =
        serde_json::from_slice(pk).map_err(|e| DbError::Corrupted(format!("document key: {e}")))?;
    Ok((pk, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::record;
    use super::*;

    #[test]
    fn tokens() {
        let t = encode_token(7, 42, 9);
        assert_eq!(decode_token(&t, 7).unwrap(), (42, 9));
        // A token of the first format (no trim recorded) still reads.
        let mut old = Vec::new();
        old.extend_from_slice(&7u64.to_le_bytes());
        old.extend_from_slice(&42u64.to_le_bytes());
        let check = XxHash3_64::oneshot(&old);
        old.extend_from_slice(&check.to_le_bytes());
        assert_eq!(
            decode_token(&format!("f1{}", hex::encode(old)), 7).unwrap(),
            (42, 0)
        );
        assert!(
            decode_token(&t, 8)
                .unwrap_err()
                .to_string()
                .contains("another")
        );
        assert!(decode_token("f1zz", 7).is_err());
        assert!(decode_token("f2zz", 7).is_err());
        assert!(decode_token(&t.replacen("f2", "f1", 1), 7).is_err());
        let mut bad = t.into_bytes();
        bad[5] = if bad[5] == b'0' { b'1' } else { b'0' };
        assert!(decode_token(&String::from_utf8(bad).unwrap(), 7).is_err());
        assert_eq!(
            split_key(&record::doc_key(&json!("sa"), "p1").unwrap()).unwrap(),
            (json!("sa"), "p1".to_string())
        );
    }
}
