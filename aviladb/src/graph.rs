//! The graph index behind vector search: a hierarchical navigable small world graph
//! (HNSW, Malkov and Yashunin) over flat arrays.
//!
//! Layout, chosen for search speed: the vectors in one `Vec<f32>` (row per node), the
//! bottom layer's neighbour lists in one array of fixed-size slots (`[count, ids..]`, up
//! to `2·M` ids per node), the few upper layers per node beside it. Neighbour lists are
//! atomics: searches read them without locks while an insert links a new node (taking one
//! node's lock at a time), so inserts run in parallel on a build and next to searches
//! online. Cosine vectors are normalized once, so every cosine distance is one dot
//! product (avila-math's SIMD kernels).
//!
//! Deletes are tombstones: a deleted node still routes searches but is never returned and
//! never chosen as a new neighbour. The owner rebuilds the graph from its live vectors when
//! tombstones pile up (see [`Hnsw::tombstones`]).
//!
//! Every parameter is checked here ([`GraphParams::check`]), so nothing from outside
//! reaches the algorithm unchecked, and a saved graph is validated entirely before use.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use avila_math::distance::Kernels;
use serde::{Deserialize, Serialize};

/// The largest `M` accepted.
pub const MAX_M: usize = 128;
/// The largest `ef_construction` or `ef_search` accepted.
pub const MAX_EF: usize = 4096;
/// The highest layer a node can get.
const MAX_LEVEL: usize = 16;
/// No entry point yet.
const NO_ENTRY: u64 = u64::MAX;

/// Why a graph could not be made or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    /// A parameter out of its range.
    #[error("{0}")]
    InvalidParameter(String),
    /// A vector of the wrong length, or with a NaN or an infinity.
    #[error("{0}")]
    InvalidVector(String),
    /// A saved graph that is damaged or does not match.
    #[error("saved graph: {0}")]
    Corrupted(String),
}

/// The tuning of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphParams {
    /// Neighbours per node on the upper layers (twice as many on the bottom one).
    pub m: usize,
    /// The candidate list of an insert: higher builds a better graph, slower.
    pub ef_construction: usize,
    /// The default candidate list of a search: higher finds more of the true neighbours,
    /// slower.
    pub ef_search: usize,
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

impl GraphParams {
    /// Checks every field's range.
    pub fn check(&self) -> Result<(), GraphError> {
        if !(2..=MAX_M).contains(&self.m) {
            return Err(GraphError::InvalidParameter(format!(
                "m must be 2 to {MAX_M}"
            )));
        }
        if !(1..=MAX_EF).contains(&self.ef_construction) {
            return Err(GraphError::InvalidParameter(format!(
                "ef_construction must be 1 to {MAX_EF}"
            )));
        }
        if !(1..=MAX_EF).contains(&self.ef_search) {
            return Err(GraphError::InvalidParameter(format!(
                "ef_search must be 1 to {MAX_EF}"
            )));
        }
        Ok(())
    }
}

/// How a graph compares vectors (all three: smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// `1 - cos(a, b)`; vectors are normalized when they enter.
    Cosine,
    /// Squared Euclidean distance.
    L2,
    /// `-a·b`.
    InnerProduct,
}

impl Space {
    fn code(self) -> u8 {
        match self {
            Space::Cosine => 0,
            Space::L2 => 1,
            Space::InnerProduct => 2,
        }
    }

    fn from_code(code: u8) -> Option<Space> {
        Some(match code {
            0 => Space::Cosine,
            1 => Space::L2,
            2 => Space::InnerProduct,
            _ => return None,
        })
    }
}

/// A distance with a total order (NaN cannot occur: vectors are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dist(f32);

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dist {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.total_cmp(&other.0)
    }
}

/// Marks of the nodes one search has seen, cleared by bumping a generation.
struct Visited {
    marks: Vec<u16>,
    generation: u16,
}

impl Visited {
    fn new(n: usize) -> Self {
        Visited {
            marks: vec![0; n],
            generation: 0,
        }
    }

    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.generation = 1;
        }
    }

    /// Marks `node`; answers whether it was marked already.
    #[inline]
    fn seen(&mut self, node: u32) -> bool {
        let slot = &mut self.marks[node as usize];
        if *slot == self.generation {
            true
        } else {
            *slot = self.generation;
            false
        }
    }
}

/// What a filtered search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// `(node, distance)`, nearest first.
    pub hits: Vec<(u32, f32)>,
    /// Nodes whose filter was asked.
    pub tested: usize,
    /// False when the search stopped at its budget of filter calls before the walk ended.
    pub complete: bool,
}

/// An HNSW graph. Node numbers are dense, in insertion order.
pub struct Hnsw {
    dim: usize,
    space: Space,
    params: GraphParams,
    /// Ids per bottom-layer list.
    m0: usize,
    vectors: Vec<f32>,
    /// Per node `1 + m0` slots: the count, then the ids.
    links0: Vec<AtomicU32>,
    /// Per node, for layers 1..=level, `1 + m` slots each.
    upper: Vec<Box<[AtomicU32]>>,
    levels: Vec<u8>,
    deleted: Vec<AtomicBool>,
    tombstones: AtomicUsize,
    /// `level << 32 | node`, or [`NO_ENTRY`].
    entry: AtomicU64,
    /// Held by an insert that raises the top layer.
    entry_lock: Mutex<()>,
    /// One per node: held while its lists change.
    locks: Vec<Mutex<()>>,
    visited: Mutex<Vec<Visited>>,
    rng: AtomicU64,
    kernels: &'static Kernels,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("dim", &self.dim)
            .field("space", &self.space)
            .field("params", &self.params)
            .field("len", &self.len())
            .field("tombstones", &self.tombstones())
            .finish()
    }
}

impl Hnsw {
    /// An empty graph for vectors of `dim` numbers.
    pub fn new(dim: usize, space: Space, params: GraphParams) -> Result<Self, GraphError> {
        params.check()?;
        if dim == 0 {
            return Err(GraphError::InvalidParameter(
                "dim must be at least 1".into(),
            ));
        }
        Ok(Hnsw {
            dim,
            space,
            params,
            m0: 2 * params.m,
            vectors: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            levels: Vec::new(),
            deleted: Vec::new(),
            tombstones: AtomicUsize::new(0),
            entry: AtomicU64::new(NO_ENTRY),
            entry_lock: Mutex::new(()),
            locks: Vec::new(),
            visited: Mutex::new(Vec::new()),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            kernels: Kernels::best(),
        })
    }

    /// A graph of `vectors` (row-major, `dim` numbers each), nodes `0..n` in order, linked
    /// in parallel on `pool` (or the current rayon pool).
    pub fn build(
        dim: usize,
        space: Space,
        params: GraphParams,
        vectors: &[f32],
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Self, GraphError> {
        Hnsw::build_cancellable(dim, space, params, vectors, pool, None)
    }

    /// [`Hnsw::build`] that stops linking once `cancel` is set (the graph is then
    /// incomplete: the caller drops it).
    pub fn build_cancellable(
        dim: usize,
        space: Space,
        params: GraphParams,
        vectors: &[f32],
        pool: Option<&rayon::ThreadPool>,
        cancel: Option<&AtomicBool>,
    ) -> Result<Self, GraphError> {
        let mut graph = Hnsw::new(dim, space, params)?;
        if !vectors.len().is_multiple_of(dim) {
            return Err(GraphError::InvalidVector(format!(
                "{} numbers are not rows of {dim}",
                vectors.len()
            )));
        }
        let n = vectors.len() / dim;
        graph.reserve(n);
        for row in vectors.chunks_exact(dim) {
            graph.push(row)?;
        }
        let link_all = |graph: &Hnsw| {
            use rayon::prelude::*;
            if n > 0 {
                graph.link(0);
            }
            (1..n as u32).into_par_iter().for_each(|node| {
                if cancel.is_none_or(|c| !c.load(Ordering::Relaxed)) {
                    graph.link(node);
                }
            });
        };
        match pool {
            Some(pool) => pool.install(|| link_all(&graph)),
            None => link_all(&graph),
        }
        Ok(graph)
    }

    /// Adds one vector and links it; answers its node.
    pub fn insert(&mut self, vector: &[f32]) -> Result<u32, GraphError> {
        let node = self.push(vector)?;
        self.link(node);
        Ok(node)
    }

    /// Room for `additional` more nodes without reallocating.
    pub fn reserve(&mut self, additional: usize) {
        self.vectors.reserve(additional * self.dim);
        self.links0.reserve(additional * (1 + self.m0));
        self.upper.reserve(additional);
        self.levels.reserve(additional);
        self.deleted.reserve(additional);
        self.locks.reserve(additional);
    }

    /// Stores a vector as a new, unlinked node (no search reaches it until [`Hnsw::link`]).
    pub fn push(&mut self, vector: &[f32]) -> Result<u32, GraphError> {
        if vector.len() != self.dim {
            return Err(GraphError::InvalidVector(format!(
                "the vector has {} numbers; the graph takes {}",
                vector.len(),
                self.dim
            )));
        }
        if vector.iter().any(|f| !f.is_finite()) {
            return Err(GraphError::InvalidVector(
                "the vector must hold finite numbers only".into(),
            ));
        }
        let Ok(node) = u32::try_from(self.levels.len()) else {
            return Err(GraphError::InvalidParameter("the graph is full".into()));
        };
        let start = self.vectors.len();
        self.vectors.extend_from_slice(vector);
        if self.space == Space::Cosine {
            normalize(&mut self.vectors[start..]);
        }
        let level = self.draw_level();
        self.links0
            .extend((0..1 + self.m0).map(|_| AtomicU32::new(0)));
        self.upper.push(
            (0..level * (1 + self.params.m))
                .map(|_| AtomicU32::new(0))
                .collect(),
        );
        self.levels.push(level as u8);
        self.deleted.push(AtomicBool::new(false));
        self.locks.push(Mutex::new(()));
        Ok(node)
    }

    /// Nodes stored, tombstones included.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Whether no node is stored.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Deleted nodes still in the graph.
    pub fn tombstones(&self) -> usize {
        self.tombstones.load(Ordering::Relaxed)
    }

    /// The vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters.
    pub fn params(&self) -> GraphParams {
        self.params
    }

    /// The comparison.
    pub fn space(&self) -> Space {
        self.space
    }

    /// The stored vector of `node` (normalized for cosine).
    pub fn vector(&self, node: u32) -> &[f32] {
        let at = node as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    /// Whether `node` is deleted.
    pub fn is_deleted(&self, node: u32) -> bool {
        self.deleted
            .get(node as usize)
            .is_none_or(|d| d.load(Ordering::Relaxed))
    }

    /// Deletes `node` (a tombstone); answers whether it was live.
    pub fn remove(&self, node: u32) -> bool {
        match self.deleted.get(node as usize) {
            Some(d) if !d.swap(true, Ordering::Relaxed) => {
                self.tombstones.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// The query as the graph compares it (normalized for cosine), or why it cannot be.
    pub fn prepare(&self, query: &[f32]) -> Result<Vec<f32>, GraphError> {
        if query.len() != self.dim {
            return Err(GraphError::InvalidVector(format!(
                "the query has {} numbers; the graph takes {}",
                query.len(),
                self.dim
            )));
        }
        if query.iter().any(|f| !f.is_finite()) {
            return Err(GraphError::InvalidVector(
                "the query must hold finite numbers only".into(),
            ));
        }
        let mut q = query.to_vec();
        if self.space == Space::Cosine {
            normalize(&mut q);
        }
        Ok(q)
    }

    /// The `k` live nodes nearest to `query` (searching with `max(ef, k)` candidates),
    /// nearest first, with their distances in the graph's space.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<(u32, f32)>, GraphError> {
        let q = self.prepare(query)?;
        Ok(self
            .search_prepared(&q, k, ef, &mut |_| true, usize::MAX)
            .hits)
    }

    /// As [`Hnsw::search`] for a prepared query, returning only nodes that `accept` takes
    /// (asked at most `budget` times; the walk stops there and says so).
    pub fn search_prepared(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: &mut dyn FnMut(u32) -> bool,
        budget: usize,
    ) -> Found {
        let mut found = Found {
            hits: Vec::new(),
            tested: 0,
            complete: true,
        };
        let entry = self.entry.load(Ordering::Acquire);
        // More than every node is every node (and bounds what is allocated).
        let k = k.min(self.len());
        if entry == NO_ENTRY || k == 0 || q.len() != self.dim {
            return found;
        }
        let (top, mut node) = ((entry >> 32) as usize, entry as u32);
        let mut dist = self.distance(q, node);
        for level in (1..=top).rev() {
            (node, dist) = self.greedy(q, node, dist, level);
        }
        let ef = ef.clamp(k, MAX_EF.max(k));
        let mut visited = self.visited_list();
        let results = self.search_bottom(
            q,
            (node, dist),
            ef,
            &mut visited,
            accept,
            budget,
            &mut found,
        );
        self.return_visited(visited);
        let mut hits: Vec<(u32, f32)> = results.into_iter().map(|(d, n)| (n, d.0)).collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        found.hits = hits;
        found
    }

    #[inline]
    fn distance(&self, q: &[f32], node: u32) -> f32 {
        self.distance_between(q, self.vector(node))
    }

    /// The distance of two vectors already in the graph's space (see [`Hnsw::prepare`]).
    #[inline]
    pub fn distance_between(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.space {
            Space::Cosine => 1.0 - self.kernels.dot(a, b),
            Space::L2 => self.kernels.l2_squared(a, b),
            Space::InnerProduct => -self.kernels.dot(a, b),
        }
    }

    fn draw_level(&self) -> usize {
        // splitmix64: a fixed seed keeps builds reproducible.
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let mult = 1.0 / (self.params.m as f64).ln();
        ((-uniform.ln() * mult) as usize).min(MAX_LEVEL)
    }

    fn visited_list(&self) -> Visited {
        let pooled = self
            .visited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut v = pooled.unwrap_or_else(|| Visited::new(self.len()));
        v.reset(self.len());
        v
    }

    fn return_visited(&self, v: Visited) {
        self.visited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(v);
    }

    /// The list of `node` on `level`: its slots (count first).
    #[inline]
    fn slots(&self, node: u32, level: usize) -> &[AtomicU32] {
        if level == 0 {
            let at = node as usize * (1 + self.m0);
            &self.links0[at..at + 1 + self.m0]
        } else {
            let width = 1 + self.params.m;
            &self.upper[node as usize][(level - 1) * width..level * width]
        }
    }

    fn neighbours(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        let slots = self.slots(node, level);
        let count = (slots[0].load(Ordering::Acquire) as usize).min(slots.len() - 1);
        out.clear();
        out.extend(slots[1..=count].iter().map(|s| s.load(Ordering::Relaxed)));
    }

    fn set_neighbours(&self, node: u32, level: usize, ids: &[u32]) {
        let slots = self.slots(node, level);
        let count = ids.len().min(slots.len() - 1);
        for (slot, id) in slots[1..=count].iter().zip(ids) {
            slot.store(*id, Ordering::Relaxed);
        }
        slots[0].store(count as u32, Ordering::Release);
    }

    /// Greedy descent on an upper layer.
    fn greedy(&self, q: &[f32], mut node: u32, mut dist: f32, level: usize) -> (u32, f32) {
        let mut list = Vec::with_capacity(self.params.m);
        loop {
            let mut changed = false;
            self.neighbours(node, level, &mut list);
            for &next in &list {
                avila_math::distance::prefetch(self.vector(next));
            }
            for &next in &list {
                let d = self.distance(q, next);
                if d < dist {
                    (node, dist) = (next, d);
                    changed = true;
                }
            }
            if !changed {
                return (node, dist);
            }
        }
    }

    /// The bottom-layer search: up to `ef` accepted nodes nearest to `q`.
    #[allow(clippy::too_many_arguments)]
    fn search_bottom(
        &self,
        q: &[f32],
        start: (u32, f32),
        ef: usize,
        visited: &mut Visited,
        accept: &mut dyn FnMut(u32) -> bool,
        budget: usize,
        found: &mut Found,
    ) -> BinaryHeap<(Dist, u32)> {
        let mut results: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
        let mut candidates: BinaryHeap<Reverse<(Dist, u32)>> = BinaryHeap::new();
        let mut bound = f32::INFINITY;
        let mut consider =
            |node: u32, d: f32, results: &mut BinaryHeap<(Dist, u32)>, found: &mut Found| -> bool {
                if self.is_deleted(node) {
                    return true;
                }
                if found.tested >= budget {
                    found.complete = false;
                    return false;
                }
                found.tested += 1;
                if accept(node) {
                    results.push((Dist(d), node));
                    if results.len() > ef {
                        results.pop();
                    }
                }
                true
            };
        visited.seen(start.0);
        candidates.push(Reverse((Dist(start.1), start.0)));
        if !consider(start.0, start.1, &mut results, found) {
            return results;
        }
        if results.len() >= ef {
            bound = results.peek().map_or(f32::INFINITY, |r| r.0.0);
        }
        let level0 = 1 + self.m0;
        let mut fresh: Vec<u32> = Vec::with_capacity(self.m0);
        while let Some(Reverse((Dist(d), node))) = candidates.pop() {
            if d > bound {
                break;
            }
            let at = node as usize * level0;
            let slots = &self.links0[at..at + level0];
            let count = (slots[0].load(Ordering::Acquire) as usize).min(self.m0);
            // The neighbors not seen yet, their vectors asked for all at once: the loads
            // overlap instead of each comparison waiting for its own.
            fresh.clear();
            for slot in &slots[1..=count] {
                let next = slot.load(Ordering::Relaxed);
                if !visited.seen(next) {
                    avila_math::distance::prefetch(self.vector(next));
                    fresh.push(next);
                }
            }
            for &next in &fresh {
                let dn = self.distance(q, next);
                if results.len() < ef || dn < bound {
                    candidates.push(Reverse((Dist(dn), next)));
                    if !consider(next, dn, &mut results, found) {
                        return results;
                    }
                    if results.len() >= ef {
                        bound = results.peek().map_or(f32::INFINITY, |r| r.0.0);
                    }
                }
            }
        }
        results
    }

    /// Links stored node `node` into the graph (safe to run for different nodes at once).
    pub fn link(&self, node: u32) {
        let level = self.levels[node as usize] as usize;
        let mut held = None;
        let mut entry = self.entry.load(Ordering::Acquire);
        if entry == NO_ENTRY || level > (entry >> 32) as usize {
            held = Some(
                self.entry_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            entry = self.entry.load(Ordering::Acquire);
            if entry == NO_ENTRY {
                self.entry
                    .store((level as u64) << 32 | node as u64, Ordering::Release);
                return;
            }
            if level <= (entry >> 32) as usize {
                held = None;
            }
        }
        let (top, mut ep) = ((entry >> 32) as usize, entry as u32);
        let q = self.vector(node);
        let mut dist = self.distance(q, ep);
        for l in (level + 1..=top).rev() {
            (ep, dist) = self.greedy(q, ep, dist, l);
        }
        let mut visited = self.visited_list();
        let mut list = Vec::new();
        let mut links = Vec::with_capacity(level.min(top) + 1);
        for l in (0..=level.min(top)).rev() {
            let found = self.search_layer(
                q,
                (ep, dist),
                self.params.ef_construction,
                l,
                &mut visited,
                &mut list,
            );
            if let Some(&(d, n)) = found.first() {
                (ep, dist) = (n, d.0);
            }
            let chosen = self.select(&found, self.params.m, &mut list);
            {
                let _guard = self.locks[node as usize]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                self.set_neighbours(node, l, &chosen);
            }
            links.push((l, chosen));
        }
        // Only now does any list name the node, so whoever reaches it finds its own lists
        // on every layer (a node reached half linked, with nothing below, leads an insert
        // beside this one to link to it alone, and such nodes end up cut off).
        for (l, chosen) in links {
            let cap = if l == 0 { self.m0 } else { self.params.m };
            for &other in &chosen {
                self.connect(other, node, l, cap, &mut list);
            }
        }
        self.return_visited(visited);
        if held.is_some() {
            self.entry
                .store((level as u64) << 32 | node as u64, Ordering::Release);
        }
    }

    /// Adds `node` to the list of `other` on `level`, pruning it by the heuristic when full.
    fn connect(&self, other: u32, node: u32, level: usize, cap: usize, list: &mut Vec<u32>) {
        let _guard = self.locks[other as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.neighbours(other, level, list);
        if list.contains(&node) {
            return;
        }
        if list.len() < cap {
            let slots = self.slots(other, level);
            slots[1 + list.len()].store(node, Ordering::Relaxed);
            slots[0].store(list.len() as u32 + 1, Ordering::Release);
            return;
        }
        let base = self.vector(other);
        for &n in list.iter() {
            avila_math::distance::prefetch(self.vector(n));
        }
        let mut candidates: Vec<(Dist, u32)> = list
            .iter()
            .chain(std::iter::once(&node))
            .map(|&n| (Dist(self.distance_between(base, self.vector(n))), n))
            .collect();
        candidates.sort_unstable();
        let chosen = self.select(&candidates, cap, list);
        self.set_neighbours(other, level, &chosen);
    }

    /// The ef-search of one layer while linking: candidates nearest first.
    fn search_layer(
        &self,
        q: &[f32],
        start: (u32, f32),
        ef: usize,
        level: usize,
        visited: &mut Visited,
        list: &mut Vec<u32>,
    ) -> Vec<(Dist, u32)> {
        visited.reset(self.len());
        let mut results: BinaryHeap<(Dist, u32)> = BinaryHeap::with_capacity(ef + 1);
        let mut candidates: BinaryHeap<Reverse<(Dist, u32)>> = BinaryHeap::new();
        visited.seen(start.0);
        candidates.push(Reverse((Dist(start.1), start.0)));
        // Deleted nodes are candidates too: where everything near is deleted, a new node
        // links to them (they still route) rather than to nothing.
        results.push((Dist(start.1), start.0));
        let mut bound = if results.len() >= ef {
            start.1
        } else {
            f32::INFINITY
        };
        while let Some(Reverse((Dist(d), node))) = candidates.pop() {
            if d > bound {
                break;
            }
            self.neighbours(node, level, list);
            // As in `search_bottom`: the unseen neighbors' vectors are asked for at once.
            list.retain(|&next| !visited.seen(next));
            for &next in list.iter() {
                avila_math::distance::prefetch(self.vector(next));
            }
            for &next in list.iter() {
                let dn = self.distance(q, next);
                if results.len() < ef || dn < bound {
                    candidates.push(Reverse((Dist(dn), next)));
                    results.push((Dist(dn), next));
                    if results.len() > ef {
                        results.pop();
                    }
                    if results.len() >= ef {
                        bound = results.peek().map_or(f32::INFINITY, |r| r.0.0);
                    }
                }
            }
        }
        results.into_sorted_vec()
    }

    /// The neighbour-selection heuristic: from candidates sorted nearest first, keep one
    /// only if it is nearer to the base than to every one kept before (spreads the links
    /// across directions), up to `m`.
    fn select(&self, sorted: &[(Dist, u32)], m: usize, out: &mut Vec<u32>) -> Vec<u32> {
        out.clear();
        if sorted.len() <= m {
            out.extend(sorted.iter().map(|c| c.1));
            return out.clone();
        }
        for &(Dist(d), candidate) in sorted {
            if out.len() >= m {
                break;
            }
            let v = self.vector(candidate);
            let good = out
                .iter()
                .all(|&kept| self.distance_between(v, self.vector(kept)) >= d);
            if good {
                out.push(candidate);
            }
        }
        out.clone()
    }

    /// Writes the graph (a checksum at the end).
    pub fn save(&self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut out = Checksummed::new(w);
        out.put(MAGIC)?;
        for v in [
            self.dim as u64,
            self.params.m as u64,
            self.params.ef_construction as u64,
            self.params.ef_search as u64,
            self.len() as u64,
            self.entry.load(Ordering::Acquire),
        ] {
            out.put(&v.to_le_bytes())?;
        }
        out.put(&[self.space.code()])?;
        out.put(&self.levels)?;
        let deleted: Vec<u8> = self
            .deleted
            .iter()
            .map(|d| u8::from(d.load(Ordering::Relaxed)))
            .collect();
        out.put(&deleted)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in self.vectors.chunks(1 << 14) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|f| f.to_le_bytes()));
            out.put(&buf)?;
        }
        for chunk in self.links0.chunks(1 << 14) {
            buf.clear();
            buf.extend(
                chunk
                    .iter()
                    .flat_map(|a| a.load(Ordering::Relaxed).to_le_bytes()),
            );
            out.put(&buf)?;
        }
        for slots in &self.upper {
            buf.clear();
            buf.extend(
                slots
                    .iter()
                    .flat_map(|a| a.load(Ordering::Relaxed).to_le_bytes()),
            );
            out.put(&buf)?;
        }
        out.finish()
    }

    /// Reads a graph written by [`Hnsw::save`], checking it whole: its checksum, its
    /// parameters, and that every link names a node.
    pub fn load(r: &mut dyn Read) -> Result<Self, GraphError> {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .map_err(|e| GraphError::Corrupted(e.to_string()))?;
        if bytes.len() < MAGIC.len() + 8 {
            return Err(corrupt("too short"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let sum = u64::from_le_bytes(sum.try_into().map_err(|_| corrupt("checksum"))?);
        if twox_hash::XxHash3_64::oneshot(body) != sum {
            return Err(corrupt("checksum mismatch"));
        }
        let mut rd = Reader { bytes: body, at: 0 };
        if rd.take(MAGIC.len())? != MAGIC {
            return Err(corrupt("not a graph file"));
        }
        let mut fields = [0u64; 6];
        for f in &mut fields {
            *f = rd.u64()?;
        }
        let [dim, m, efc, efs, n, entry] = fields;
        let space = Space::from_code(rd.take(1)?[0]).ok_or_else(|| corrupt("space"))?;
        let usize_of = |v: u64| usize::try_from(v).map_err(|_| corrupt("size"));
        let params = GraphParams {
            m: usize_of(m)?,
            ef_construction: usize_of(efc)?,
            ef_search: usize_of(efs)?,
        };
        let dim = usize_of(dim)?;
        if dim == 0 || dim > 1 << 16 {
            return Err(corrupt("dimension"));
        }
        let mut graph = Hnsw::new(dim, space, params).map_err(|e| corrupt(&e.to_string()))?;
        let n = usize_of(n)?;
        if n > u32::MAX as usize || n > body.len() {
            return Err(corrupt("node count"));
        }
        let levels = rd.take(n)?.to_vec();
        if levels.iter().any(|&l| l as usize > MAX_LEVEL) {
            return Err(corrupt("level"));
        }
        let deleted = rd.take(n)?;
        let floats = n.checked_mul(dim).ok_or_else(|| corrupt("size"))?;
        let vectors: Vec<f32> = rd
            .take(floats.checked_mul(4).ok_or_else(|| corrupt("size"))?)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if vectors.iter().any(|f| !f.is_finite()) {
            return Err(corrupt("vector"));
        }
        let check_list = |ids: &[u32], cap: usize| -> Result<(), GraphError> {
            let count = ids[0] as usize;
            if count > cap || ids[1..=count].iter().any(|&id| id as usize >= n) {
                return Err(corrupt("link"));
            }
            Ok(())
        };
        let width0 = 1 + graph.m0;
        let links0 = rd.u32s(n * width0)?;
        for list in links0.chunks_exact(width0) {
            check_list(list, graph.m0)?;
        }
        let width = 1 + params.m;
        let mut upper = Vec::with_capacity(n);
        for &level in &levels {
            let ids = rd.u32s(level as usize * width)?;
            for (layer, list) in ids.chunks_exact(width).enumerate() {
                check_list(list, params.m)?;
                // A link on layer L names a node that has layer L.
                let count = list[0] as usize;
                if list[1..=count]
                    .iter()
                    .any(|&id| (levels[id as usize] as usize) < layer + 1)
                {
                    return Err(corrupt("link above its node's layers"));
                }
            }
            upper.push(ids.into_iter().map(AtomicU32::new).collect());
        }
        if rd.at != body.len() {
            return Err(corrupt("trailing bytes"));
        }
        if entry != NO_ENTRY {
            let (level, node) = ((entry >> 32) as usize, entry as u32 as usize);
            if node >= n || levels[node] as usize != level || entry >> 32 > MAX_LEVEL as u64 {
                return Err(corrupt("entry point"));
            }
        } else if n > 0 {
            return Err(corrupt("entry point"));
        }
        graph.tombstones = AtomicUsize::new(deleted.iter().filter(|&&d| d != 0).count());
        graph.deleted = deleted.iter().map(|&d| AtomicBool::new(d != 0)).collect();
        graph.vectors = vectors;
        graph.links0 = links0.into_iter().map(AtomicU32::new).collect();
        graph.upper = upper;
        graph.levels = levels;
        graph.locks = (0..n).map(|_| Mutex::new(())).collect();
        graph.entry = AtomicU64::new(entry);
        graph.rng = AtomicU64::new(0x9E37_79B9_7F4A_7C15 ^ n as u64);
        Ok(graph)
    }
}

const MAGIC: &[u8] = b"AVLHNSW1";

fn corrupt(what: &str) -> GraphError {
    GraphError::Corrupted(what.to_string())
}

/// Scales `v` to length 1 (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

struct Checksummed<'w> {
    w: &'w mut dyn Write,
    hash: twox_hash::XxHash3_64,
}

impl<'w> Checksummed<'w> {
    fn new(w: &'w mut dyn Write) -> Self {
        Checksummed {
            w,
            hash: twox_hash::XxHash3_64::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        std::hash::Hasher::write(&mut self.hash, bytes);
        self.w.write_all(bytes)
    }

    fn finish(self) -> std::io::Result<()> {
        let sum = std::hash::Hasher::finish(&self.hash);
        self.w.write_all(&sum.to_le_bytes())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GraphError> {
        let end = self.at.checked_add(n).ok_or_else(|| corrupt("size"))?;
        let out = self
            .bytes
            .get(self.at..end)
            .ok_or_else(|| corrupt("truncated"))?;
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, GraphError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| corrupt("size"))?,
        ))
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, GraphError> {
        let b = self.take(n.checked_mul(4).ok_or_else(|| corrupt("size"))?)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Clustered vectors: `clusters` centres, points spread around them.
    pub(crate) fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let centres: Vec<f32> = (0..clusters * dim).map(|_| next() * 10.0).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[(i % clusters) * dim..(i % clusters + 1) * dim];
            out.extend(c.iter().map(|x| x + next()));
        }
        out
    }

    fn exact(graph: &Hnsw, data: &[f32], q: &[f32], k: usize) -> Vec<u32> {
        let q = graph.prepare(q).unwrap();
        let mut all: Vec<(f32, u32)> = data
            .chunks_exact(graph.dim)
            .enumerate()
            .filter(|(i, _)| !graph.is_deleted(*i as u32))
            .map(|(i, v)| {
                let mut v = v.to_vec();
                if graph.space == Space::Cosine {
                    normalize(&mut v);
                }
                (graph.distance_between(&q, &v), i as u32)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.into_iter().take(k).map(|x| x.1).collect()
    }

    fn recall(graph: &Hnsw, data: &[f32], queries: &[f32], k: usize, ef: usize) -> f64 {
        let mut hit = 0;
        let mut total = 0;
        for q in queries.chunks_exact(graph.dim) {
            let truth = exact(graph, data, q, k);
            let got: Vec<u32> = graph
                .search(q, k, ef)
                .unwrap()
                .iter()
                .map(|h| h.0)
                .collect();
            hit += truth.iter().filter(|t| got.contains(t)).count();
            total += truth.len();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn finds_the_nearest_in_every_space() {
        let dim = 16;
        let all = clustered(3050, dim, 30, 7);
        let (data, queries) = all.split_at(3000 * dim);
        for space in [Space::Cosine, Space::L2, Space::InnerProduct] {
            let params = GraphParams {
                m: 12,
                ef_construction: 100,
                ef_search: 64,
            };
            let graph = Hnsw::build(dim, space, params, data, None).unwrap();
            let r = recall(&graph, data, queries, 10, 100);
            assert!(r >= 0.95, "{space:?}: recall {r}");
        }
    }

    /// Nodes linked at once reach each other's lists before their own linking gets
    /// there: no build may leave a node that no list names (a search could never find
    /// it, not even with its own vector).
    #[test]
    fn parallel_builds_leave_every_node_reachable() {
        let dim = 16;
        let data = clustered(1500, dim, 40, 5);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        for round in 0..8 {
            let graph = Hnsw::build(
                dim,
                Space::Cosine,
                GraphParams::default(),
                &data,
                Some(&pool),
            )
            .unwrap();
            let mut named = vec![false; graph.len()];
            let mut list = Vec::new();
            for node in 0..graph.len() as u32 {
                graph.neighbours(node, 0, &mut list);
                for &n in &list {
                    named[n as usize] = true;
                }
            }
            let orphans: Vec<usize> = (0..graph.len()).filter(|&n| !named[n]).collect();
            assert!(
                orphans.is_empty(),
                "round {round}: no way in to {orphans:?}"
            );
            for (node, v) in data.chunks_exact(dim).enumerate() {
                let hit = graph.search(v, 1, 400).unwrap()[0].0;
                assert_eq!(hit as usize, node, "round {round}: {node} is not found");
            }
        }
    }

    #[test]
    fn online_inserts_deletes_and_filters() {
        let dim = 8;
        let all = clustered(1540, dim, 15, 3);
        let (data, queries) = all.split_at(1500 * dim);
        let params = GraphParams {
            m: 8,
            ef_construction: 64,
            ef_search: 32,
        };
        let mut graph = Hnsw::new(dim, Space::L2, params).unwrap();
        for row in data.chunks_exact(dim) {
            graph.insert(row).unwrap();
        }
        for node in (0..1500).step_by(3) {
            assert!(graph.remove(node));
        }
        assert!(!graph.remove(0));
        assert_eq!(graph.tombstones(), 500);
        assert!(recall(&graph, data, queries, 10, 80) >= 0.9);
        for q in queries.chunks_exact(dim) {
            let hits = graph.search(q, 10, 64).unwrap();
            assert!(
                hits.iter().all(|h| h.0 % 3 != 0),
                "a deleted node came back"
            );
            let q = graph.prepare(q).unwrap();
            let even = graph.search_prepared(&q, 5, 64, &mut |n| n % 2 == 0, usize::MAX);
            assert_eq!(even.hits.len(), 5);
            assert!(even.hits.iter().all(|h| h.0 % 2 == 0 && h.0 % 3 != 0));
            let starved = graph.search_prepared(&q, 5, 64, &mut |_| false, 100);
            assert!(!starved.complete && starved.hits.is_empty());
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(Hnsw::new(0, Space::L2, GraphParams::default()).is_err());
        for bad in [
            GraphParams {
                m: 1,
                ..GraphParams::default()
            },
            GraphParams {
                m: MAX_M + 1,
                ..GraphParams::default()
            },
            GraphParams {
                ef_construction: 0,
                ..GraphParams::default()
            },
            GraphParams {
                ef_search: MAX_EF + 1,
                ..GraphParams::default()
            },
        ] {
            assert!(Hnsw::new(4, Space::L2, bad).is_err());
        }
        let mut g = Hnsw::new(3, Space::Cosine, GraphParams::default()).unwrap();
        assert!(g.insert(&[1.0, 2.0]).is_err());
        assert!(g.insert(&[1.0, f32::NAN, 0.0]).is_err());
        assert!(g.search(&[1.0, f32::INFINITY, 0.0], 1, 1).is_err());
        assert!(g.search(&[1.0, 0.0, 0.0], 3, 10).unwrap().is_empty());
        g.insert(&[1.0, 0.0, 0.0]).unwrap();
        g.insert(&[0.0, 0.0, 0.0]).unwrap();
        let hits = g.search(&[2.0, 0.0, 0.0], 5, 10).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].0, 0);
    }

    #[test]
    fn saves_and_loads_and_refuses_damage() {
        let dim = 6;
        let all = clustered(820, dim, 8, 5);
        let (data, queries) = all.split_at(800 * dim);
        let graph = Hnsw::build(dim, Space::Cosine, GraphParams::default(), data, None).unwrap();
        graph.remove(17);
        let mut bytes = Vec::new();
        graph.save(&mut bytes).unwrap();
        let loaded = Hnsw::load(&mut bytes.as_slice()).unwrap();
        assert_eq!(loaded.len(), 800);
        assert_eq!(loaded.tombstones(), 1);
        assert!(loaded.is_deleted(17));
        for q in queries.chunks_exact(dim) {
            assert_eq!(
                graph.search(q, 10, 50).unwrap(),
                loaded.search(q, 10, 50).unwrap()
            );
        }
        for at in [0, 9, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(Hnsw::load(&mut bad.as_slice()).is_err());
        }
        assert!(Hnsw::load(&mut &bytes[..bytes.len() - 9]).is_err());
        assert!(Hnsw::load(&mut &b""[..]).is_err());
    }
}
