//! Secondary indexes: per index one redb table whose keys are the indexed values
//! (order-preserving, see `query::keys`) followed by the document key, and whose values
//! are the document key. Every document has exactly one entry per index (a missing path
//! is encoded as undefined, which sorts first), written in the same transaction as the
//! document. A unique index refuses a second document with the same values when all of
//! them are defined.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::names::{check_name, check_path};
use super::record;
use super::wal::{Kind, Log};
use crate::error::{DbError, Result};
use crate::query::ast::Path;
use crate::query::keys;

/// The most indexes on one collection.
pub const MAX_INDEXES: usize = 32;
/// The most paths in one (composite) index.
pub const MAX_INDEX_PATHS: usize = 8;

/// A secondary index of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Its name, unique in the collection.
    pub name: String,
    /// The indexed paths, in order (JSON pointers such as `/stats/score`).
    pub paths: Vec<String>,
    /// Whether two documents may not share the indexed values.
    #[serde(default)]
    pub unique: bool,
    /// Its table (engine-internal; stored beside the definition in the catalog).
    #[serde(skip)]
    pub(crate) table: u64,
}

impl IndexInfo {
    /// A definition to create: checks the name and paths.
    pub fn new(name: &str, paths: &[&str], unique: bool) -> Result<IndexInfo> {
        let info = IndexInfo {
            name: name.to_string(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            unique,
            table: 0,
        };
        info.check()?;
        Ok(info)
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_name("index", &self.name)?;
        if self.paths.is_empty() || self.paths.len() > MAX_INDEX_PATHS {
            return Err(DbError::invalid(
                "paths",
                format!("an index has 1 to {MAX_INDEX_PATHS} paths"),
            ));
        }
        for (i, p) in self.paths.iter().enumerate() {
            check_path("paths", p)?;
            if record::SYSTEM_PROPERTIES
                .iter()
                .any(|s| p == &format!("/{s}") || p.starts_with(&format!("/{s}/")))
            {
                return Err(DbError::invalid(
                    "paths",
                    format!("{p} is a system property; it cannot be indexed"),
                ));
            }
            if self.paths[..i].contains(p) {
                return Err(DbError::invalid("paths", format!("{p} appears twice")));
            }
        }
        Ok(())
    }
}

/// The table of index `id`.
pub(crate) fn index_table(id: u64) -> String {
    format!("idx.{id}")
}

type IndexTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

fn open<'t>(txn: &'t WriteTransaction, index: &IndexInfo) -> Result<IndexTable<'t>> {
    Ok(
        txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&index_table(
            index.table,
        )))?,
    )
}

/// The encoded values of `body` for `index`, and whether all of them are defined.
pub(crate) fn values_of(index: &IndexInfo, body: &Map<String, Value>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut all = true;
    for path in index.paths.iter().map(|p| Path::from_pointer(p)) {
        let v = path.read_map(body);
        all &= v.is_some();
        keys::encode_into(&mut out, v);
    }
    (out, all)
}

fn entry(values: &[u8], doc_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(values.len() + doc_key.len());
    key.extend_from_slice(values);
    key.extend_from_slice(doc_key);
    key
}

/// Who holds unique values, as changed by the operations of the current batch so far:
/// `Some(doc key)` took them, `None` gave them up.
#[derive(Default)]
pub(crate) struct UniqueOverlay {
    holders: HashMap<(u64, Vec<u8>), Option<Vec<u8>>>,
}

impl UniqueOverlay {
    /// Checks that writing `new` over `old` at `doc_key` keeps every unique index unique,
    /// and records the change for later operations of the batch. Writes nothing. `live`
    /// says whether a stored document still exists (an expired one holds no values).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check(
        &mut self,
        txn: &WriteTransaction,
        indexes: &[IndexInfo],
        doc_key: &[u8],
        id: &str,
        old: Option<&Map<String, Value>>,
        new: Option<&Map<String, Value>>,
        live: &dyn Fn(&[u8]) -> Result<bool>,
    ) -> Result<()> {
        for index in indexes.iter().filter(|i| i.unique) {
            let old_values = old.map(|b| values_of(index, b));
            let new_values = new.map(|b| values_of(index, b));
            if old_values == new_values {
                continue;
            }
            if let Some((values, true)) = &new_values {
                let holder = match self.holders.get(&(index.table, values.clone())) {
                    Some(h) => h.clone(),
                    None => stored_holder(txn, index, values, live)?,
                };
                if let Some(other) = holder
                    && other != doc_key
                {
                    return Err(DbError::Conflict(format!(
                        "document `{id}` would repeat values of unique index `{}` ({})",
                        index.name,
                        index.paths.join(", ")
                    )));
                }
            }
            if let Some((values, true)) = old_values {
                self.holders.insert((index.table, values), None);
            }
            if let Some((values, true)) = new_values {
                self.holders
                    .insert((index.table, values), Some(doc_key.to_vec()));
            }
        }
        Ok(())
    }
}

/// The live document that holds `values` in a unique index, in storage.
fn stored_holder(
    txn: &WriteTransaction,
    index: &IndexInfo,
    values: &[u8],
    live: &dyn Fn(&[u8]) -> Result<bool>,
) -> Result<Option<Vec<u8>>> {
    let table = open(txn, index)?;
    for entry in table.range::<&[u8]>(values..)? {
        let (key, doc) = entry?;
        if !key.value().starts_with(values) {
            break;
        }
        if live(doc.value())? {
            return Ok(Some(doc.value().to_vec()));
        }
    }
    Ok(None)
}

/// Replaces the entries of the document at `doc_key` (`old` body) with those of `new`.
pub(crate) fn update(
    txn: &WriteTransaction,
    log: &mut Log,
    indexes: &[IndexInfo],
    doc_key: &[u8],
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> Result<()> {
    for index in indexes {
        let old_values = old.map(|b| values_of(index, b).0);
        let new_values = new.map(|b| values_of(index, b).0);
        if old_values == new_values {
            continue;
        }
        let mut table = open(txn, index)?;
        if let Some(values) = old_values {
            let key = entry(&values, doc_key);
            table.remove(key.as_slice())?;
            log.record(Kind::Index, index.table, &key, None);
        }
        if let Some(values) = new_values {
            let key = entry(&values, doc_key);
            table.insert(key.as_slice(), doc_key)?;
            log.record(Kind::Index, index.table, &key, Some(doc_key));
        }
    }
    Ok(())
}

/// Fills a new index from the documents of table `docs` (expired ones too, until they
/// are reclaimed; they hold no unique values): checks everything first (a unique
/// violation is `Conflict` and writes nothing), then writes the entries.
pub(crate) fn backfill(
    txn: &WriteTransaction,
    docs: &str,
    index: &IndexInfo,
    expiry: &record::Expiry,
) -> Result<u64> {
    let mut entries: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new();
    {
        let table = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(docs))?;
        for row in table.iter()? {
            let (key, value) = row?;
            let live = !expiry.expired(&record::header(value.value())?);
            let body = record::decode(value.value())?.body;
            let (values, defined) = values_of(index, &body);
            entries.push((values, key.value().to_vec(), defined && live));
        }
    }
    if index.unique {
        let mut seen: HashMap<&[u8], &[u8]> = HashMap::new();
        for (values, doc, defined) in &entries {
            if !defined {
                continue;
            }
            if let Some(first) = seen.insert(values, doc) {
                return Err(DbError::Conflict(format!(
                    "unique index `{}` cannot be built: documents {} and {} share its values",
                    index.name,
                    describe_key(first),
                    describe_key(doc)
                )));
            }
        }
    }
    let mut table = open(txn, index)?;
    for (values, doc, _) in &entries {
        table.insert(entry(values, doc).as_slice(), doc.as_slice())?;
    }
    Ok(entries.len() as u64)
}

/// A document key in words: `(partition key, id)`.
fn describe_key(key: &[u8]) -> String {
    match key.iter().position(|&b| b == 0) {
        Some(at) => format!(
            "({}, `{}`)",
            String::from_utf8_lossy(&key[..at]),
            String::from_utf8_lossy(&key[at + 1..])
        ),
        None => String::from_utf8_lossy(key).into_owned(),
    }
}
