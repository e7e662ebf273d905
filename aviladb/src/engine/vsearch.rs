//! Vector search: the graph walk, the exact paths, and the choice between them.
//!
//! - No filter: the graph's `k` nearest (with `ef` candidates) plus the vectors still
//!   waiting to be linked, compared exactly; each document is read from the snapshot, and
//!   the walk widens if some are gone or expired.
//! - A filter that a secondary index narrows to few documents (at most
//!   [`exact_limit`]): those documents, compared exactly.
//! - Otherwise the filter runs inside the walk, on each document it would return; a walk
//!   that tests more than [`filter_budget`] documents stops, and the search runs exactly
//!   over every document the filter passes (a very selective filter, no index).
//! - A `flat` index, a graph not built yet, or one with no more vectors than `ef`: exact.

use std::collections::HashMap;

use redb::{ReadTransaction, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::graphs::Meta;
use super::record::Expiry;
use super::vector::{
    MAX_K, VecDef, VectorHit, VectorIndexInfo, VectorIndexKind, VectorQuery, floats, normalize,
    parse_vector, vector_table,
};
use super::{CollectionInfo, Engine, docs_table, read_collection};
use crate::error::{DbError, Result};
use crate::graph::MAX_EF;
use crate::query::ast::Query;
use crate::query::eval::{Params, eval, is_true};
use crate::query::exec::Source;
use crate::query::plan::{self, Access};

/// How a vector search ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "access", rename_all = "snake_case")]
pub enum VectorAccess {
    /// The graph, without a filter.
    Graph,
    /// The graph, with the filter run on each document the walk would return.
    GraphFiltered,
    /// Every vector compared (a flat index, or a graph not built yet).
    Exact,
    /// Every vector compared, on the GPU (a large flat index, feature `gpu`).
    ExactGpu,
    /// Every document the filter passes compared (too few for the graph walk).
    ExactFiltered,
    /// The documents a secondary index finds for the filter, compared exactly.
    ExactIndexed {
        /// The secondary index.
        index: String,
        /// How many documents it gave.
        documents: usize,
    },
}

impl std::fmt::Display for VectorAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VectorAccess::Graph => f.write_str("graph"),
            VectorAccess::GraphFiltered => f.write_str("graph, filter in the walk"),
            VectorAccess::Exact => f.write_str("exact over every vector"),
            VectorAccess::ExactGpu => f.write_str("exact over every vector, on the GPU"),
            VectorAccess::ExactFiltered => {
                f.write_str("exact over the documents the filter passes (too few for the graph)")
            }
            VectorAccess::ExactIndexed { index, documents } => write!(
                f,
                "exact over the {documents} documents index `{index}` finds for the filter"
            ),
        }
    }
}

/// The most documents a secondary index may give for a filter to be searched exactly:
/// 1% of the vectors, and at least 1000.
pub(crate) fn exact_limit(vectors: usize) -> usize {
    (vectors / 100).max(1000)
}

/// The most documents a filtered walk tests before the search turns exact.
pub(crate) fn filter_budget(ef: usize) -> usize {
    ef.saturating_mul(64).max(4096)
}

/// A result the graph or a pending change offers a search.
struct Candidate<'a> {
    /// In graph space.
    distance: f32,
    key: &'a [u8],
    /// The document, when a filter already read it.
    doc: Option<Value>,
    /// The vector (graph space) and meta the graph holds for the key, when the graph
    /// holds exactly the search's snapshot.
    known: Option<(&'a [f32], Meta)>,
}

/// (document key, graph distance), nearest first.
pub(crate) type GraphHits = Vec<(Box<[u8]>, f32)>;

/// Documents with their keys.
type Rows = Vec<(Vec<u8>, Value)>;

/// One search in one snapshot.
struct Search<'a> {
    txn: &'a ReadTransaction,
    info: &'a CollectionInfo,
    index: &'a VectorIndexInfo,
    vector: &'a [f32],
    k: usize,
    ef: usize,
    filter: Option<&'a (Query, Params)>,
    /// Top-level fields to return (all when `None`).
    fields: Option<&'a [String]>,
    expiry: Expiry,
    /// The snapshot's generation, when it is a published one.
    generation: Option<u64>,
    docs: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Search<'_> {
    /// The document at `key` as callers see it, unless it is gone or expired.
    fn fetch(&self, key: &[u8]) -> Result<Option<Value>> {
        match self.docs.get(key)? {
            Some(record) => super::query::document(record.value(), &self.expiry),
            None => Ok(None),
        }
    }

    fn passes(&self, doc: &Value) -> bool {
        match self.filter {
            Some((query, params)) => query
                .filter
                .as_ref()
                .is_none_or(|f| is_true(&eval(f, doc, params))),
            None => true,
        }
    }

    /// The document at `key` with only the asked fields (parsed without the others),
    /// unless it is gone or expired.
    fn fetch_fields(&self, key: &[u8], fields: &[String]) -> Result<Option<Value>> {
        let Some(record) = self.docs.get(key)? else {
            return Ok(None);
        };
        let record = record.value();
        if self.expiry.expired(&super::record::header(record)?) {
            return Ok(None);
        }
        let (h, json) = super::record::decode_borrowed(record)?;
        super::record::document_fields(&h, &json, fields).map(Some)
    }

    fn hit(&self, mut document: Value, distance: f32) -> VectorHit {
        if let (Some(fields), Value::Object(map)) = (self.fields, &mut document) {
            map.retain(|k, _| k.starts_with('_') || fields.iter().any(|f| f == k));
        }
        VectorHit { document, distance }
    }

    /// Exact over every stored vector, then documents in distance order.
    fn exact(&self) -> Result<Vec<VectorHit>> {
        let vectors = match self
            .txn
            .open_table(VecDef::new(&vector_table(self.index.table)))
        {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Err(DbError::NotFound(format!(
                    "no vector index on {} in `{}`",
                    self.index.path, self.info.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let mut keys = Vec::new();
        let mut flat = Vec::new();
        for entry in vectors.iter()? {
            let (key, value) = entry?;
            keys.push(key.value().to_vec());
            flat.extend(floats(value.value()));
        }
        let mut distances = vec![0f32; keys.len()];
        if !keys.is_empty() {
            let base = avila_math::distance::VectorSlice::new(&flat, self.index.dimensions)
                .map_err(|e| DbError::Corrupted(format!("vector index: {e}")))?;
            avila_math::distance::one_to_many(
                math_metric(self.index),
                self.vector,
                base,
                &mut distances,
            )
            .map_err(|e| DbError::Corrupted(format!("vector index: {e}")))?;
        }
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| {
            distances[a]
                .total_cmp(&distances[b])
                .then(keys[a].cmp(&keys[b]))
        });
        let mut hits = Vec::with_capacity(self.k);
        for i in order {
            if hits.len() >= self.k {
                break;
            }
            let Some(document) = self.fetch(&keys[i])? else {
                continue;
            };
            if self.passes(&document) {
                hits.push(self.hit(document, math_to_public(self.index, distances[i])));
            }
        }
        Ok(hits)
    }

    /// Exact over every vector on the GPU, for a large flat index without a filter;
    /// `None` when the CPU serves (or a result's document is gone: the CPU path then
    /// looks further).
    #[cfg(feature = "gpu")]
    fn exact_gpu(&self, engine: &Engine) -> Result<Option<Vec<VectorHit>>> {
        use redb::ReadableTableMetadata;
        if self.filter.is_some() || self.index.kind != VectorIndexKind::Flat {
            return Ok(None);
        }
        let rows = match self
            .txn
            .open_table(VecDef::new(&vector_table(self.index.table)))
        {
            Ok(t) => t.len()? as usize,
            Err(_) => return Ok(None),
        };
        let Some(found) = engine.inner.graphs.gpu.search(
            &engine.inner.visible,
            &engine.inner.graphs,
            self.index,
            math_metric(self.index),
            rows,
            engine.inner.gpu_exact_min,
            self.vector,
            self.k,
        )?
        else {
            return Ok(None);
        };
        let mut hits = Vec::with_capacity(found.len());
        for (key, d) in found {
            match self.fetch(&key)? {
                Some(document) => hits.push(self.hit(document, math_to_public(self.index, d))),
                None => return Ok(None),
            }
        }
        if hits.len() < self.k.min(rows) {
            return Ok(None);
        }
        Ok(Some(hits))
    }

    /// Exact over the documents `rows` gives that pass the filter.
    fn exact_over(
        &self,
        rows: impl FnOnce(&mut dyn FnMut(&[u8], Value) -> Result<bool>) -> Result<()>,
    ) -> Result<Vec<VectorHit>> {
        let mut scored: Vec<(f32, Vec<u8>, Value)> = Vec::new();
        rows(&mut |key, doc| {
            if self.passes(&doc)
                && let Some(v) = self
                    .index
                    .path_value(&doc)
                    .and_then(|v| parse_vector(v, self.index.dimensions, "").ok())
            {
                scored.push((
                    self.index.metric.distance(self.vector, &v),
                    key.to_vec(),
                    doc,
                ));
            }
            Ok(true)
        })?;
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(self.k)
            .map(|(d, _, doc)| self.hit(doc, d))
            .collect())
    }

    /// Every document of the collection.
    fn scan_rows(&self, each: &mut dyn FnMut(&[u8], Value) -> Result<bool>) -> Result<()> {
        super::query::Snapshot::new(self.txn, self.info.table, self.expiry).rows(
            &Access::Scan,
            None,
            &mut |key, doc, _| each(key, doc),
        )
    }

    /// The documents a secondary index gives for the filter, if there are at most `limit`.
    fn indexed(&self, limit: usize) -> Result<Option<(String, Rows)>> {
        let Some((query, params)) = self.filter else {
            return Ok(None);
        };
        let access = plan::plan(query, params, &self.info.indexes).access;
        let Access::Index { name, .. } = &access else {
            return Ok(None);
        };
        let mut rows = Vec::new();
        let mut over = false;
        super::query::Snapshot::new(self.txn, self.info.table, self.expiry).rows(
            &access,
            None,
            &mut |key, doc, _| {
                if self.passes(&doc) {
                    if rows.len() >= limit {
                        over = true;
                        return Ok(false);
                    }
                    rows.push((key.to_vec(), doc));
                }
                Ok(true)
            },
        )?;
        Ok((!over).then(|| (name.clone(), rows)))
    }

    /// Through the graph; `None` when it is not built yet.
    fn graph(&self, engine: &Engine) -> Result<Option<(Vec<VectorHit>, VectorAccess)>> {
        let Some(graph) = engine.inner.graphs.get(self.index.table) else {
            return Ok(None);
        };
        // The pending changes first, then the graph (the lock order of `graphs`).
        let pending = graph.pending_view();
        let state = graph.read();
        let Some(g) = &state.graph else {
            return Ok(None);
        };
        let q = g
            .prepare(self.vector)
            .map_err(|e| DbError::invalid("vector", e.to_string()))?;
        let live = (g.len() - g.tombstones() + pending.vectors.len())
            .saturating_sub(pending.keys.len().min(g.len()));
        if live <= self.ef {
            // The walk would visit every vector anyway: compare them all, exactly.
            return Ok(None);
        }
        // Read after the graph and its pending changes (see `VectorGraph::holds`).
        let holds = self.generation.is_some_and(|s| graph.holds(s));
        // A node whose key has a pending change is superseded by it.
        let current = |node: u32| !pending.keys.contains(&state.keys[node as usize]);
        let node_candidate = |node: u32, d: f32, doc: Option<Value>| Candidate {
            distance: d,
            key: &state.keys[node as usize],
            doc,
            known: Some(state.metas[node as usize])
                .filter(|meta| holds && *meta != Meta::UNKNOWN)
                .map(|meta| (g.vector(node), meta)),
        };
        let pending_candidates = || {
            pending.vectors.iter().map(|(key, v, meta)| Candidate {
                distance: g.distance_between(&q, v),
                key,
                doc: None,
                known: holds.then_some((&v[..], *meta)),
            })
        };
        if self.filter.is_some() {
            if let Some((index, rows)) = self.indexed(exact_limit(live))? {
                let documents = rows.len();
                let hits = self.exact_over(|each| {
                    for (key, doc) in rows {
                        each(&key, doc)?;
                    }
                    Ok(())
                })?;
                return Ok(Some((
                    hits,
                    VectorAccess::ExactIndexed { index, documents },
                )));
            }
            let mut accepted: HashMap<u32, Value> = HashMap::new();
            let mut failure = None;
            let mut accept = |node: u32| -> bool {
                if !current(node) {
                    return false;
                }
                match self.fetch(&state.keys[node as usize]) {
                    Ok(Some(doc)) if self.passes(&doc) => {
                        accepted.insert(node, doc);
                        true
                    }
                    Ok(_) => false,
                    Err(e) => {
                        failure.get_or_insert(e);
                        false
                    }
                }
            };
            let found = g.search_prepared(&q, self.k, self.ef, &mut accept, filter_budget(self.ef));
            if let Some(e) = failure {
                return Err(e);
            }
            // Stopped at its budget, or found fewer than asked while more documents
            // may pass: the filter is too selective for the walk.
            if !found.complete || found.hits.len() < self.k {
                drop(state);
                let hits = self.exact_over(|each| self.scan_rows(each))?;
                return Ok(Some((hits, VectorAccess::ExactFiltered)));
            }
            let candidates = found
                .hits
                .iter()
                .map(|&(node, d)| node_candidate(node, d, accepted.remove(&node)))
                .chain(pending_candidates())
                .collect();
            let hits = self.settle(candidates)?;
            return Ok(Some((hits, VectorAccess::GraphFiltered)));
        }
        let mut want = self.k;
        loop {
            let found = if pending.keys.is_empty() {
                g.search_prepared(&q, want, self.ef.max(want), &mut |_| true, usize::MAX)
            } else {
                g.search_prepared(&q, want, self.ef.max(want), &mut |n| current(n), usize::MAX)
            };
            let exhausted = found.hits.len() < want;
            let candidates: Vec<_> = found
                .hits
                .iter()
                .map(|&(node, d)| node_candidate(node, d, None))
                .chain(pending_candidates())
                .collect();
            let offered = candidates.len();
            let hits = self.settle(candidates)?;
            if hits.len() < self.k && exhausted && live > hits.len() {
                // The walk reached fewer vectors than there are (a part of the graph it
                // cannot reach from the entry point): exact instead.
                return Ok(None);
            }
            // Some documents were gone or expired: look further.
            if hits.len() >= self.k || exhausted || hits.len() == offered || want >= MAX_EF {
                return Ok(Some((hits, VectorAccess::Graph)));
            }
            want = (want * 2).min(MAX_EF);
        }
    }

    /// The nearest `k` of the candidates (by graph distance) whose documents exist, have
    /// not expired and pass the filter, ordered by the exact distance of the vector each
    /// document has in this snapshot (a concurrent write may have moved it).
    fn settle(&self, mut candidates: Vec<Candidate<'_>>) -> Result<Vec<VectorHit>> {
        candidates.sort_by(|a, b| {
            a.distance
                .total_cmp(&b.distance)
                .then_with(|| a.key.cmp(b.key))
        });
        let mut hits = Vec::with_capacity(self.k);
        let mut seen: Vec<&[u8]> = Vec::new();
        // Ids only, no filter, and the graph holds exactly this snapshot's vectors (with
        // each document's sequence, time and ttl): answered from memory, as the graph
        // alone would, without reading a document.
        if let (Some(fields), None) = (self.fields, self.filter)
            && fields.iter().all(|f| f == "id")
            && candidates.iter().all(|c| c.known.is_some())
        {
            for c in &candidates {
                if hits.len() >= self.k {
                    break;
                }
                let Some((v, meta)) = c.known else { continue };
                if seen.contains(&c.key) {
                    continue;
                }
                seen.push(c.key);
                if self.expiry.expired_at(meta.ts_micros, meta.ttl) {
                    continue;
                }
                let id = super::record::id_of_key(c.key)?;
                let mut doc = serde_json::Map::new();
                if !fields.is_empty() {
                    doc.insert("id".into(), Value::String(id));
                }
                let doc = super::record::Record {
                    seq: meta.seq,
                    ts_micros: meta.ts_micros,
                    body: doc,
                }
                .into_document();
                hits.push(VectorHit {
                    document: doc,
                    distance: self.index.metric.distance(self.vector, v),
                });
            }
            hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
            return Ok(hits);
        }
        // Only some fields and no filter: documents are parsed without the others, and
        // each distance comes from the vector table of this snapshot.
        if let (Some(fields), None) = (self.fields, self.filter) {
            let vectors = self
                .txn
                .open_table(VecDef::new(&vector_table(self.index.table)))?;
            for Candidate { key, known, .. } in &candidates {
                let key = *key;
                if hits.len() >= self.k {
                    break;
                }
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let distance = match known {
                    // The graph holds this snapshot's vector.
                    Some((v, _)) => self.index.metric.distance(self.vector, v),
                    None => {
                        let Some(v) = vectors.get(key)? else {
                            continue;
                        };
                        self.index.metric.distance(self.vector, &floats(v.value()))
                    }
                };
                let Some(doc) = self.fetch_fields(key, fields)? else {
                    continue;
                };
                hits.push(VectorHit {
                    document: doc,
                    distance,
                });
            }
            hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
            return Ok(hits);
        }
        for Candidate { key, doc, .. } in &candidates {
            let key = *key;
            if hits.len() >= self.k {
                break;
            }
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let doc = match doc {
                Some(doc) => Some(doc.clone()),
                None => self.fetch(key)?.filter(|doc| self.passes(doc)),
            };
            let Some(doc) = doc else { continue };
            let Some(v) = self
                .index
                .path_value(&doc)
                .and_then(|v| parse_vector(v, self.index.dimensions, "").ok())
            else {
                continue;
            };
            let distance = self.index.metric.distance(self.vector, &v);
            hits.push(self.hit(doc, distance));
        }
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        Ok(hits)
    }
}

fn math_metric(index: &VectorIndexInfo) -> avila_math::distance::Metric {
    use super::vector::VectorMetric;
    match index.metric {
        VectorMetric::Cosine => avila_math::distance::Metric::Cosine,
        VectorMetric::Euclidean => avila_math::distance::Metric::L2Squared,
        VectorMetric::DotProduct => avila_math::distance::Metric::InnerProduct,
    }
}

fn math_to_public(index: &VectorIndexInfo, d: f32) -> f32 {
    use super::vector::VectorMetric;
    match index.metric {
        VectorMetric::Euclidean => d.max(0.0).sqrt(),
        VectorMetric::DotProduct => d - 1.0,
        VectorMetric::Cosine => d,
    }
}

/// A filter as a parsed query and its parameters.
pub(crate) fn parse_filter(query: &VectorQuery) -> Result<Option<(Query, Params)>> {
    let Some(text) = &query.filter else {
        return Ok(None);
    };
    let parsed = crate::query::parse::parse(&format!("SELECT * FROM c WHERE {text}"))?;
    let spec = crate::query::QuerySpec {
        text: String::new(),
        parameters: query.parameters.clone(),
    };
    let params = spec.params()?;
    crate::query::exec::check_params(&parsed, &params)?;
    Ok(Some((parsed, params)))
}

/// Where a vector index stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorIndexStatus {
    /// The indexed path.
    pub path: String,
    /// Its kind.
    pub kind: VectorIndexKind,
    /// Whether searches use the graph (always true for `flat`).
    pub ready: bool,
    /// Nodes in the graph, deleted ones included.
    pub nodes: usize,
    /// Deleted nodes still in the graph.
    pub tombstones: usize,
    /// Vectors written and not linked yet (searched exactly).
    pub pending: usize,
}

impl Engine {
    /// Where each vector index of a collection stands.
    pub fn vector_index_status(&self, db: &str, coll: &str) -> Result<Vec<VectorIndexStatus>> {
        let info = self.describe_collection(db, coll)?;
        Ok(info
            .vector_indexes
            .iter()
            .map(|index| {
                let graph = self.inner.graphs.get(index.table);
                let (nodes, tombstones, pending) = graph.as_ref().map_or((0, 0, 0), |g| g.counts());
                VectorIndexStatus {
                    path: index.path.clone(),
                    kind: index.kind,
                    ready: index.kind == VectorIndexKind::Flat || graph.is_some_and(|g| g.ready()),
                    nodes,
                    tombstones,
                    pending,
                }
            })
            .collect())
    }

    /// Waits until every graph index of a collection is built with nothing pending;
    /// answers whether that happened within `timeout`.
    pub fn wait_vector_indexes(
        &self,
        db: &str,
        coll: &str,
        timeout: std::time::Duration,
    ) -> Result<bool> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let status = self.vector_index_status(db, coll)?;
            if status.iter().all(|s| s.ready && s.pending == 0) {
                return Ok(true);
            }
            if std::time::Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The `k` documents nearest to the query vector (that pass the filter), nearest first.
    pub fn vector_search(
        &self,
        db: &str,
        coll: &str,
        query: &VectorQuery,
    ) -> Result<Vec<VectorHit>> {
        let filter = parse_filter(query)?;
        // The cached catalog: a dropped index fails cleanly below (its table is gone).
        let (info, txn, generation) = self.snapshot_at(db, coll)?;
        self.vector_search_in(&txn, Some(generation), &info, query, filter.as_ref())
            .map(|(hits, _)| hits)
    }

    /// The graph of a vector index searched directly, without documents: (document key,
    /// graph distance) of the `k` nearest, or `None` while it is not built. For the
    /// bench that compares a search through the database with the same graph alone.
    #[doc(hidden)]
    pub fn search_graph_only(
        &self,
        db: &str,
        coll: &str,
        path: &str,
        vector: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Option<GraphHits>> {
        let info = self.collection(db, coll)?;
        let path = normalize(path);
        let Some(index) = info.vector_indexes.iter().find(|i| i.path == path) else {
            return Err(DbError::NotFound(format!("no vector index on {path}")));
        };
        let Some(graph) = self.inner.graphs.get(index.table) else {
            return Ok(None);
        };
        let state = graph.read();
        let Some(g) = &state.graph else {
            return Ok(None);
        };
        let hits = g
            .search(vector, k, ef)
            .map_err(|e| DbError::invalid("vector", e.to_string()))?;
        Ok(Some(
            hits.into_iter()
                .map(|(node, d)| (state.keys[node as usize].clone(), d))
                .collect(),
        ))
    }

    /// How a vector search runs (it runs it to find out: the choice depends on how many
    /// documents the filter passes).
    pub fn explain_vector_search(
        &self,
        db: &str,
        coll: &str,
        query: &VectorQuery,
    ) -> Result<VectorAccess> {
        let filter = parse_filter(query)?;
        let (_, txn) = self.snapshot(db, coll)?;
        let info = read_collection(&txn, db, coll)?;
        self.vector_search_in(&txn, None, &info, query, filter.as_ref())
            .map(|(_, access)| access)
    }

    /// A vector search in a snapshot (`filter` parsed from `query.filter`, or given);
    /// `generation` is the snapshot's when it is a published one (see `visible`).
    pub(crate) fn vector_search_in(
        &self,
        txn: &ReadTransaction,
        generation: Option<u64>,
        info: &CollectionInfo,
        query: &VectorQuery,
        filter: Option<&(Query, Params)>,
    ) -> Result<(Vec<VectorHit>, VectorAccess)> {
        if query.k == 0 || query.k > MAX_K {
            return Err(DbError::invalid("k", format!("must be 1 to {MAX_K}")));
        }
        if query.ef.is_some_and(|ef| ef == 0 || ef > MAX_EF) {
            return Err(DbError::invalid("ef", format!("must be 1 to {MAX_EF}")));
        }
        let path = normalize(&query.path);
        let Some(index) = info.vector_indexes.iter().find(|i| i.path == path) else {
            return Err(DbError::NotFound(format!(
                "no vector index on {path} in `{}`",
                info.name
            )));
        };
        if query.vector.len() != index.dimensions {
            return Err(DbError::invalid(
                "vector",
                format!(
                    "has {} numbers; the index on {path} takes {}",
                    query.vector.len(),
                    index.dimensions
                ),
            ));
        }
        if query.vector.iter().any(|f| !f.is_finite()) {
            return Err(DbError::invalid("vector", "must hold finite numbers only"));
        }
        let search = Search {
            txn,
            info,
            index,
            vector: &query.vector,
            k: query.k,
            ef: query.ef.unwrap_or(index.params.ef_search).max(query.k),
            filter,
            fields: query.fields.as_deref(),
            expiry: self.expiry(info),
            generation,
            docs: txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
                info.table,
            )))?,
        };
        if index.kind == VectorIndexKind::Hnsw
            && let Some(found) = search.graph(self)?
        {
            return Ok(found);
        }
        #[cfg(feature = "gpu")]
        if let Some(hits) = search.exact_gpu(self)? {
            return Ok((hits, VectorAccess::ExactGpu));
        }
        Ok((search.exact()?, VectorAccess::Exact))
    }
}
