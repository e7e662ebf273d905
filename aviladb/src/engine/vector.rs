//! Vector indexes: per index one table `vec.{n}` from document key to the document's
//! vector (f32, little endian), written in the same transaction as the document, so a
//! search never sees a vector of a deleted or replaced document. A document without the
//! field is not indexed; a field that is not a vector of the index's dimension with
//! finite numbers fails the write with `InvalidInput`, changing nothing.
//!
//! Two kinds search them: `hnsw` (the default) keeps an in-memory graph beside the table
//! (see `graphs` and `crate::graph`); `flat` compares every stored vector exactly with
//! avila-math's SIMD kernels. Every search reads its documents from one snapshot, so a
//! deleted, replaced or expired document never comes back, and a filter always runs on the
//! document itself.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Engine;
use super::commit::Reply;
use super::graphs::VectorChange;
use super::record;
use super::wal::{Kind, Log};
use crate::error::{DbError, Result};
use crate::graph::GraphParams;
use crate::query::ast::Path;

/// The most dimensions a vector index takes.
pub const MAX_DIMENSIONS: usize = 4096;
/// The most results one search returns.
pub const MAX_K: usize = 1000;

/// How vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorMetric {
    /// `1 - cos(a, b)`: 0 for the same direction, 2 for opposite ones.
    #[default]
    Cosine,
    /// The Euclidean distance `|a - b|`.
    Euclidean,
    /// `-a·b`: smaller is closer, as for the other metrics.
    DotProduct,
}

impl VectorMetric {
    /// The distance between two vectors of the same length.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        use avila_math::distance::Metric;
        match self {
            VectorMetric::Cosine => Metric::Cosine.distance(a, b),
            VectorMetric::Euclidean => Metric::L2Squared.distance(a, b).sqrt(),
            VectorMetric::DotProduct => Metric::InnerProduct.distance(a, b) - 1.0,
        }
    }
}

/// How a vector index searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorIndexKind {
    /// Exact: every vector is compared.
    Flat,
    /// Approximate, through a graph (HNSW) kept in memory.
    #[default]
    Hnsw,
}

/// A vector index of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorIndexInfo {
    /// The path of the vectors, as a JSON pointer (`/embedding`).
    pub path: String,
    /// Their dimension.
    pub dimensions: usize,
    /// How they are compared.
    #[serde(default)]
    pub metric: VectorMetric,
    /// How they are searched.
    #[serde(default)]
    pub kind: VectorIndexKind,
    /// The graph's tuning (`hnsw` only).
    #[serde(default)]
    pub params: GraphParams,
    /// Its table (engine-internal; stored beside the definition in the catalog).
    #[serde(skip)]
    pub(crate) table: u64,
    /// The table of its collection (engine-internal).
    #[serde(skip)]
    pub(crate) docs: u64,
}

impl VectorIndexInfo {
    /// A graph (`hnsw`) index to create, with the default tuning; `path` may omit its
    /// leading `/` (`"embedding"`).
    pub fn new(path: &str, dimensions: usize, metric: VectorMetric) -> Result<Self> {
        let info = VectorIndexInfo {
            path: normalize(path),
            dimensions,
            metric,
            kind: VectorIndexKind::Hnsw,
            params: GraphParams::default(),
            table: 0,
            docs: 0,
        };
        info.check()?;
        Ok(info)
    }

    /// The same index as an exact (`flat`) one.
    pub fn flat(self) -> Self {
        VectorIndexInfo {
            kind: VectorIndexKind::Flat,
            ..self
        }
    }

    /// The same index with the graph tuning `params`.
    pub fn with_params(self, params: GraphParams) -> Result<Self> {
        let info = VectorIndexInfo { params, ..self };
        info.check()?;
        Ok(info)
    }

    pub(crate) fn check(&self) -> Result<()> {
        super::names::check_path("path", &self.path)?;
        self.params
            .check()
            .map_err(|e| DbError::invalid("params", e.to_string()))?;
        if self.dimensions == 0 || self.dimensions > MAX_DIMENSIONS {
            return Err(DbError::invalid(
                "dimensions",
                format!("must be 1 to {MAX_DIMENSIONS}"),
            ));
        }
        Ok(())
    }

    /// The field of a document (with its system properties) this index reads.
    pub(crate) fn path_value<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        Path::from_pointer(&self.path).read(doc)
    }

    /// The vector of a document for this index: `None` when the field is missing.
    pub(crate) fn vector_of(
        &self,
        body: &Map<String, Value>,
        id: &str,
    ) -> Result<Option<Vec<f32>>> {
        let Some(value) = Path::from_pointer(&self.path).read_map(body) else {
            return Ok(None);
        };
        parse_vector(value, self.dimensions, &self.path)
            .map(Some)
            .map_err(|reason| {
                DbError::invalid(self.path.clone(), format!("document `{id}`: {reason}"))
            })
    }
}

/// A JSON array of `dimensions` finite numbers as f32s.
pub(crate) fn parse_vector(
    value: &Value,
    dimensions: usize,
    what: &str,
) -> std::result::Result<Vec<f32>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{what} must be an array of numbers"));
    };
    if items.len() != dimensions {
        return Err(format!(
            "{what} has {} numbers; the index takes {dimensions}",
            items.len()
        ));
    }
    items
        .iter()
        .map(|v| match v.as_f64() {
            Some(f) if (f as f32).is_finite() => Ok(f as f32),
            _ => Err(format!("{what} must hold finite numbers only")),
        })
        .collect()
}

/// The table of vector index `id`.
pub(crate) fn vector_table(id: u64) -> String {
    format!("vec.{id}")
}

pub(crate) type VecDef<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// The f32s of a stored vector.
pub(crate) fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Checks the new body's vectors before anything is written.
pub(crate) fn check(
    indexes: &[VectorIndexInfo],
    new: Option<&Map<String, Value>>,
    id: &str,
) -> Result<()> {
    if let Some(body) = new {
        for index in indexes {
            index.vector_of(body, id)?;
        }
    }
    Ok(())
}

/// Replaces the vectors of the document at `doc_key` with those of `new`, written with
/// `meta`.
pub(crate) fn update(
    txn: &WriteTransaction,
    log: &mut Log,
    indexes: &[VectorIndexInfo],
    doc_key: &[u8],
    new: Option<&Map<String, Value>>,
    id: &str,
    meta: super::graphs::Meta,
) -> Result<()> {
    for index in indexes {
        let vector = match new {
            Some(body) => index.vector_of(body, id)?,
            None => None,
        };
        let mut table = txn.open_table(VecDef::new(&vector_table(index.table)))?;
        let graph = index.kind == VectorIndexKind::Hnsw;
        // A flat index is told too when its version matters (the GPU copy), without
        // the vector.
        let tell = graph || cfg!(feature = "gpu");
        let change = |vector: Option<Vec<f32>>| VectorChange {
            table: index.table,
            key: if graph { doc_key.to_vec() } else { Vec::new() },
            vector: vector.filter(|_| graph),
            meta,
        };
        match vector {
            Some(v) => {
                let bytes = bytes_of(&v);
                table.insert(doc_key, bytes.as_slice())?;
                log.record(Kind::Vector, index.table, doc_key, Some(&bytes));
                if tell {
                    log.vector(change(Some(v)));
                }
            }
            None => {
                if table.remove(doc_key)?.is_some() {
                    log.record(Kind::Vector, index.table, doc_key, None);
                    if tell {
                        log.vector(change(None));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fills a new vector index from the documents of table `docs`; documents whose field is
/// not a vector of the index's dimension are left out. Answers (indexed, left out).
pub(crate) fn backfill(
    txn: &WriteTransaction,
    docs: &str,
    index: &VectorIndexInfo,
) -> Result<(u64, u64)> {
    let mut entries = Vec::new();
    let mut skipped = 0u64;
    {
        let table = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(docs))?;
        for row in table.iter()? {
            let (key, value) = row?;
            let body = record::decode(value.value())?.body;
            match index.vector_of(&body, "") {
                Ok(Some(v)) => entries.push((key.value().to_vec(), bytes_of(&v))),
                Ok(None) => {}
                Err(_) => skipped += 1,
            }
        }
    }
    let mut table = txn.open_table(VecDef::new(&vector_table(index.table)))?;
    for (key, bytes) in &entries {
        table.insert(key.as_slice(), bytes.as_slice())?;
    }
    Ok((entries.len() as u64, skipped))
}

/// One result of a vector search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorHit {
    /// The document, with its system properties.
    pub document: Value,
    /// Its distance from the query (smaller is closer).
    pub distance: f32,
}

/// A vector search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorQuery {
    /// The indexed path (`/embedding` or `embedding`).
    pub path: String,
    /// The query vector.
    pub vector: Vec<f32>,
    /// How many results.
    pub k: usize,
    /// An optional condition on the documents, as in `WHERE` (`c.lang = @lang`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Parameter values of the filter.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// The graph's candidate list for this search (`hnsw` only; the index's `ef_search`
    /// when absent): higher finds more of the true neighbours, slower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
    /// Return only these top-level fields of each document (and its system
    /// properties); the others are not even parsed. All of them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl VectorQuery {
    /// The `k` nearest to `vector` on `path`, without a filter.
    pub fn new(path: &str, vector: Vec<f32>, k: usize) -> Self {
        VectorQuery {
            path: path.to_string(),
            vector,
            k,
            filter: None,
            parameters: Map::new(),
            ef: None,
            fields: None,
        }
    }
}

impl Engine {
    /// Creates a vector index on a collection and fills it from the documents there;
    /// answers how many were indexed (documents whose field is not a vector of the
    /// index's dimension are left out).
    pub fn create_vector_index(&self, db: &str, coll: &str, index: VectorIndexInfo) -> Result<u64> {
        super::names::check_name("database", db)?;
        super::names::check_name("collection", coll)?;
        index.check()?;
        let (db, coll) = (db.to_string(), coll.to_string());
        let graphs = std::sync::Arc::clone(&self.inner.graphs);
        let reply = self.catalog_job_with(move |ctx| {
            let mut info = super::read_collection_for_write(ctx.txn, &db, &coll)?;
            if info.vector_indexes.iter().any(|i| i.path == index.path) {
                return Err(DbError::AlreadyExists(format!(
                    "a vector index on {} already exists on `{coll}`",
                    index.path
                )));
            }
            let table = super::next_table_id(ctx.txn)?;
            let index = VectorIndexInfo {
                table,
                docs: info.table,
                ..index
            };
            let (count, _skipped) = backfill(ctx.txn, &super::docs_table(info.table), &index)?;
            info.vector_indexes.push(index.clone());
            super::save_collection(ctx.txn, &db, &coll, &info)?;
            // Registered in the writer, before any later group: each one's
            // vectors reach the graph (its build reads a snapshot taken after this).
            if index.kind == VectorIndexKind::Hnsw {
                graphs.register(index);
            }
            Ok(Reply::Count(count))
        })?;
        reply.count()
    }

    /// Drops the vector index on `path`.
    pub fn drop_vector_index(&self, db: &str, coll: &str, path: &str) -> Result<()> {
        super::names::check_name("database", db)?;
        super::names::check_name("collection", coll)?;
        let path = normalize(path);
        let (db, coll) = (db.to_string(), coll.to_string());
        let graphs = std::sync::Arc::clone(&self.inner.graphs);
        self.catalog_job(move |ctx| {
            let mut info = super::read_collection_for_write(ctx.txn, &db, &coll)?;
            let Some(at) = info.vector_indexes.iter().position(|i| i.path == path) else {
                return Err(DbError::NotFound(format!(
                    "no vector index on {path} in `{coll}`"
                )));
            };
            let index = info.vector_indexes.remove(at);
            graphs.forget([index.table]);
            ctx.txn
                .delete_table(VecDef::new(&vector_table(index.table)))?;
            super::save_collection(ctx.txn, &db, &coll, &info)?;
            Ok(Reply::Done)
        })
    }
}

pub(crate) fn normalize(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_are_checked() {
        let ok = json!([1, 2.5, -3]);
        assert_eq!(parse_vector(&ok, 3, "v").unwrap(), vec![1.0, 2.5, -3.0]);
        assert!(parse_vector(&ok, 4, "v").unwrap_err().contains("takes 4"));
        assert!(parse_vector(&json!([1, "x", 3]), 3, "v").is_err());
        assert!(parse_vector(&json!([1e300, 0, 0]), 3, "v").is_err());
        assert!(parse_vector(&json!({"a": 1}), 1, "v").is_err());
        assert!(VectorIndexInfo::new("embedding", 1536, VectorMetric::Cosine).is_ok());
        assert!(VectorIndexInfo::new("/embedding", 0, VectorMetric::Cosine).is_err());
        assert!(VectorIndexInfo::new("/e", MAX_DIMENSIONS + 1, VectorMetric::Cosine).is_err());
        assert!(VectorIndexInfo::new("", 3, VectorMetric::Cosine).is_err());
        let a = [1.0, 0.0];
        let b = [0.0, 2.0];
        assert!((VectorMetric::Cosine.distance(&a, &b) - 1.0).abs() < 1e-6);
        assert!((VectorMetric::Euclidean.distance(&a, &b) - 5f32.sqrt()).abs() < 1e-6);
        assert!((VectorMetric::DotProduct.distance(&a, &[3.0, 0.0]) + 3.0).abs() < 1e-6);
    }
}
