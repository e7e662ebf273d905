//! The graph (HNSW) vector indexes of an open engine, kept in memory beside the `vec.{n}`
//! tables they are built from, which stay the truth.
//!
//! - **Writes.** The writer hands every vector a group changed to its graph after the
//!   group is durable and before readers can see it ([`Graphs::record`]): the key's old
//!   node becomes a tombstone at once and the new vector waits in `pending`, which searches
//!   compare exactly. The indexer thread then links pending vectors into the graph, one at
//!   a time, next to running searches.
//! - **Builds.** A new index, or an index without a saved graph at open, is built by the
//!   indexer from a snapshot of its table (in parallel, on rayon); until it is ready,
//!   searches are exact. Changes that come during a build wait in `pending`.
//! - **Compaction.** When tombstones reach a quarter of the nodes (and at least
//!   [`REBUILD_MIN_TOMBSTONES`]), the indexer builds a new graph from the live vectors and
//!   swaps it in; reads and writes go on meanwhile.
//! - **Persistence.** A clean close saves each graph to `vectors/{n}.graph` (written
//!   whole, synced, renamed). Open loads a file only if it matches the index's definition
//!   and the table's row count, then deletes it before any write, so a graph file on disk
//!   always describes the database as it was closed; after a crash there is none, and the
//!   graph is rebuilt from the table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::vector::{VecDef, VectorIndexInfo, VectorIndexKind, VectorMetric, floats, vector_table};
use crate::graph::{Hnsw, Space};

/// The fewest tombstones that start a compaction.
pub(crate) const REBUILD_MIN_TOMBSTONES: usize = 64;
/// Pending vectors linked per turn of the indexer before it looks at other work.
const APPLY_BATCH: usize = 256;
/// A node without a `ttl` of its own, in a saved graph.
const NO_TTL: i64 = i64::MIN;
const FILE_MAGIC: &[u8] = b"AVLVGRF2";

/// What a node's document was written with: its sequence number and time, and its own
/// `ttl`. With them a search that asks for ids only answers from memory (system
/// properties and expiry included) when the graph holds exactly the reader's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Meta {
    pub(crate) seq: u64,
    pub(crate) ts_micros: u64,
    pub(crate) ttl: Option<i64>,
}

impl Meta {
    /// Not known (a vector whose document could not be read when the graph was built):
    /// searches read that node's document.
    pub(crate) const UNKNOWN: Meta = Meta {
        seq: u64::MAX,
        ts_micros: u64::MAX,
        ttl: None,
    };

    fn of(h: &super::record::Header) -> Meta {
        Meta {
            seq: h.seq,
            ts_micros: h.ts_micros,
            ttl: h.ttl,
        }
    }
}

/// A vector written (`Some`) or removed (`None`) in graph index `table`, with what its
/// document was written with.
#[derive(Debug, Clone)]
pub(crate) struct VectorChange {
    pub(crate) table: u64,
    pub(crate) key: Vec<u8>,
    pub(crate) vector: Option<Vec<f32>>,
    pub(crate) meta: Meta,
}

/// The space a metric's graph uses.
pub(crate) fn space_of(metric: VectorMetric) -> Space {
    match metric {
        VectorMetric::Cosine => Space::Cosine,
        VectorMetric::Euclidean => Space::L2,
        VectorMetric::DotProduct => Space::InnerProduct,
    }
}

/// The graph, and the document key and [`Meta`] of each node.
pub(crate) struct State {
    pub(crate) graph: Option<Hnsw>,
    pub(crate) keys: Vec<Box<[u8]>>,
    pub(crate) metas: Vec<Meta>,
}

/// A document key.
type Key = Box<[u8]>;
/// A vector in graph space, shared.
type Shared = Arc<[f32]>;
/// A pending change: the new vector with its document's meta, or `None` for a removal.
type Change = Option<(Shared, Meta)>;

#[derive(Default)]
struct Pending {
    /// The live node of each key (once built).
    nodes: HashMap<Box<[u8]>, u32>,
    /// Changes not linked yet: a stamp and the vector in graph space (normalized for
    /// cosine) with its document's meta, or `None` for a removal.
    changes: HashMap<Key, (u64, Change)>,
    stamp: u64,
}

/// One graph index.
pub(crate) struct VectorGraph {
    pub(crate) info: VectorIndexInfo,
    pub(crate) state: RwLock<State>,
    pending: Mutex<Pending>,
    /// The generation of the first published snapshot that holds the last change this
    /// graph took (see [`VectorGraph::holds`]).
    changed_at: std::sync::atomic::AtomicU64,
}

impl VectorGraph {
    /// A graph that holds no change newer than snapshot generation `changed_at`.
    fn new(info: VectorIndexInfo, changed_at: u64) -> Self {
        VectorGraph {
            info,
            state: RwLock::new(State {
                graph: None,
                keys: Vec::new(),
                metas: Vec::new(),
            }),
            pending: Mutex::new(Pending::default()),
            changed_at: std::sync::atomic::AtomicU64::new(changed_at),
        }
    }

    /// Whether the graph and its pending changes, as read before this call, hold exactly
    /// the vectors of the snapshot of generation `generation`: no change newer than it
    /// reached them. The writer moves `changed_at` before it records a change, and a
    /// search calls this after it has read both, so a change it saw is never missed here.
    pub(crate) fn holds(&self, generation: u64) -> bool {
        self.changed_at.load(Ordering::SeqCst) <= generation
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The exclusive lock, taken without queueing: a waiting writer would hold up every
    /// new search behind a long one (std's lock prefers writers), so the indexer polls.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        loop {
            match self.state.try_write() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// The changes not linked yet; a search takes them before it reads the graph, and
    /// skips graph nodes of their keys (the pending change supersedes them).
    pub(crate) fn pending_view(&self) -> PendingView {
        let pending = self.pending();
        if pending.changes.is_empty() {
            return PendingView::default();
        }
        PendingView {
            keys: pending.changes.keys().cloned().collect(),
            vectors: pending
                .changes
                .iter()
                .filter_map(|(k, (_, v))| {
                    v.as_ref()
                        .map(|(v, meta)| (k.clone(), Arc::clone(v), *meta))
                })
                .collect(),
        }
    }

    /// Whether the graph is built.
    pub(crate) fn ready(&self) -> bool {
        self.read().graph.is_some()
    }

    /// (nodes, tombstones, pending) for status reports.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let pending = self.pending().changes.len();
        let state = self.read();
        match &state.graph {
            Some(g) => (g.len(), g.tombstones(), pending),
            None => (0, 0, pending),
        }
    }

    fn to_space(&self, mut v: Vec<f32>) -> Arc<[f32]> {
        if self.info.metric == VectorMetric::Cosine {
            crate::graph::normalize(&mut v);
        }
        v.into()
    }

    /// Takes a committed change (in the writer: it touches `pending` only).
    fn record(&self, change: VectorChange) {
        let vector = change.vector.map(|v| (self.to_space(v), change.meta));
        let mut pending = self.pending();
        pending.stamp += 1;
        let stamp = pending.stamp;
        pending.changes.insert(change.key.into(), (stamp, vector));
    }

    /// Links up to `max` pending changes into the graph; answers how many it settled.
    /// Lock order: `pending` before `state`, never both long.
    fn apply(&self, max: usize) -> usize {
        let batch: Vec<(Key, u64, Change)> = self
            .pending()
            .changes
            .iter()
            .take(max)
            .map(|(k, (s, v))| (k.clone(), *s, v.clone()))
            .collect();
        let mut settled = 0;
        for (key, stamp, vector) in &batch {
            let node = match vector {
                Some((v, meta)) => {
                    let node = {
                        let mut state = self.write();
                        let State { graph, keys, metas } = &mut *state;
                        let Some(g) = graph.as_mut() else {
                            return settled;
                        };
                        match g.push(v) {
                            Ok(node) => {
                                keys.push(key.clone());
                                metas.push(*meta);
                                node
                            }
                            // Checked when written; a vector the graph refuses stays
                            // pending, where searches compare it exactly.
                            Err(_) => continue,
                        }
                    };
                    if let Some(g) = &self.read().graph {
                        g.link(node);
                    }
                    Some(node)
                }
                None => None,
            };
            let mut pending = self.pending();
            let state = self.read();
            let Some(g) = &state.graph else {
                return settled;
            };
            if pending.changes.get(key).is_some_and(|(s, _)| s == stamp) {
                pending.changes.remove(key);
                let old = match node {
                    Some(node) => pending.nodes.insert(key.clone(), node),
                    None => pending.nodes.remove(key),
                };
                if let Some(old) = old {
                    g.remove(old);
                }
                settled += 1;
            } else if let Some(node) = node {
                // A newer change of the key came meanwhile: it will replace this one.
                g.remove(node);
            }
        }
        settled
    }

    /// Installs a built graph (`keys` and `metas` per node). Pending changes apply to it
    /// afterwards (searches skip their keys' nodes until then).
    fn install(&self, Built { graph, keys, metas }: Built) {
        loop {
            let mut pending = self.pending();
            // Not while holding `pending` for long: the writer records there.
            let mut state = match self.state.try_write() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    drop(pending);
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
            };
            pending.nodes = keys
                .iter()
                .enumerate()
                .filter(|(node, _)| !graph.is_deleted(*node as u32))
                .map(|(node, key)| (key.clone(), node as u32))
                .collect();
            state.graph = Some(graph);
            state.keys = keys;
            state.metas = metas;
            return;
        }
    }

    /// Tombstones reach a quarter of the nodes (at least [`REBUILD_MIN_TOMBSTONES`]), or
    /// half of them whatever their number.
    fn needs_compaction(&self) -> bool {
        let state = self.read();
        state.graph.as_ref().is_some_and(|g| {
            let t = g.tombstones();
            (t >= REBUILD_MIN_TOMBSTONES && t * 4 >= g.len()) || (t > 0 && t * 2 >= g.len())
        })
    }
}

/// What a search needs of the pending changes.
#[derive(Default)]
pub(crate) struct PendingView {
    /// Keys with a change not linked yet.
    pub(crate) keys: std::collections::HashSet<Key>,
    /// Their new vectors (graph space), with their documents' meta.
    pub(crate) vectors: Vec<(Key, Shared, Meta)>,
}

/// A graph with the document key and meta of each node.
struct Built {
    graph: Hnsw,
    keys: Vec<Key>,
    metas: Vec<Meta>,
}

/// Every graph index of an engine and the thread that maintains them.
pub(crate) struct Graphs {
    dir: PathBuf,
    db: Arc<Database>,
    /// What readers see; builds read their snapshots from it.
    visible: Arc<super::visible::Visible>,
    map: Mutex<HashMap<u64, Arc<VectorGraph>>>,
    /// Per vector index (graph or flat), moved after each commit that changes it.
    versions: Mutex<HashMap<u64, u64>>,
    /// Device copies of flat indexes.
    #[cfg(feature = "gpu")]
    pub(crate) gpu: super::gpu::GpuCache,
    signal: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Graphs {
    /// Loads the saved graphs of `indexes` (deleting every saved file), registers the
    /// others for a build, and starts the indexer.
    pub(crate) fn open(
        dir: &Path,
        db: Arc<Database>,
        visible: Arc<super::visible::Visible>,
        indexes: Vec<VectorIndexInfo>,
        stamp: Option<(u64, u64)>,
    ) -> crate::Result<Arc<Graphs>> {
        let dir = dir.join("vectors");
        let graphs = Arc::new(Graphs {
            dir: dir.clone(),
            db,
            visible,
            map: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            #[cfg(feature = "gpu")]
            gpu: super::gpu::GpuCache::default(),
            signal: (Mutex::new(false), Condvar::new()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        for info in indexes {
            // Loaded (or built later) from the state the engine opened on.
            let graph = Arc::new(VectorGraph::new(info.clone(), graphs.visible.generation()));
            if let Some(stamp) = stamp
                && let Some(built) = graphs.load(&info, stamp)
            {
                graph.install(built);
            }
            graphs.map().insert(info.table, graph);
        }
        // Every saved graph is used up: a crash from here on must rebuild.
        if dir.exists() {
            for entry in std::fs::read_dir(&dir)? {
                std::fs::remove_file(entry?.path())?;
            }
            std::fs::File::open(&dir)?.sync_all()?;
        }
        let worker = Arc::clone(&graphs);
        let thread = std::thread::Builder::new()
            .name("aviladb-vectors".into())
            .spawn(move || worker.run())?;
        *graphs.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(graphs)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<VectorGraph>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The graph of index `table`, if it is a graph index this engine keeps.
    pub(crate) fn get(&self, table: u64) -> Option<Arc<VectorGraph>> {
        self.map().get(&table).cloned()
    }

    /// Starts keeping a graph for a new index (in the writer, in the job that
    /// creates it); the indexer builds it.
    pub(crate) fn register(&self, info: VectorIndexInfo) {
        self.map()
            .entry(info.table)
            // In the job that creates the index: the next snapshot is the first with it.
            .or_insert_with(|| Arc::new(VectorGraph::new(info, self.visible.generation() + 1)));
        self.wake();
    }

    /// Stops keeping the graphs of dropped indexes (in the writer).
    pub(crate) fn forget(&self, tables: impl IntoIterator<Item = u64>) {
        let mut map = self.map();
        for table in tables {
            map.remove(&table);
            #[cfg(feature = "gpu")]
            self.gpu.forget(table);
        }
    }

    /// Hands the changes of a durable group to their graphs (before readers see it).
    pub(crate) fn record(&self, changes: Vec<VectorChange>) {
        if changes.is_empty() {
            return;
        }
        let graphs: Vec<(u64, Arc<VectorGraph>)> = {
            let map = self.map();
            let mut tables: Vec<u64> = changes.iter().map(|c| c.table).collect();
            tables.sort_unstable();
            tables.dedup();
            tables
                .into_iter()
                .filter_map(|t| map.get(&t).map(|g| (t, Arc::clone(g))))
                .collect()
        };
        // The snapshot published next holds these changes (the writer records a group
        // just before it publishes it); searches of older snapshots must not take the
        // graph for theirs from now on.
        let next = self.visible.generation() + 1;
        for (_, graph) in &graphs {
            graph.changed_at.store(next, Ordering::SeqCst);
        }
        for change in changes {
            if let Some((_, graph)) = graphs.iter().find(|(t, _)| *t == change.table) {
                graph.record(change);
            }
        }
        self.wake();
    }

    /// Notes that a commit changed the vector indexes `tables` (after it is visible).
    pub(crate) fn committed(&self, tables: &[u64]) {
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        for table in tables {
            *versions.entry(*table).or_insert(0) += 1;
        }
    }

    /// How many commits have changed vector index `table` in this process.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn version(&self, table: u64) -> u64 {
        self.versions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&table)
            .copied()
            .unwrap_or(0)
    }

    fn wake(&self) {
        let (flag, cv) = &self.signal;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(&self) {
        loop {
            {
                let (flag, cv) = &self.signal;
                let mut woken = flag.lock().unwrap_or_else(PoisonError::into_inner);
                if !*woken {
                    woken = cv
                        .wait_timeout(woken, Duration::from_millis(500))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                *woken = false;
            }
            if self.stopping() {
                return;
            }
            let graphs: Vec<Arc<VectorGraph>> = self.map().values().cloned().collect();
            let mut busy = false;
            for graph in graphs {
                if self.stopping() {
                    return;
                }
                if !graph.ready() {
                    busy |= self.build(&graph);
                } else if graph.apply(APPLY_BATCH) > 0 {
                    busy = true;
                } else if graph.needs_compaction() {
                    self.compact(&graph);
                    busy = true;
                }
            }
            if busy {
                self.wake();
            }
        }
    }

    /// Builds a graph from a snapshot of its table (changes after it are pending).
    fn build(&self, graph: &VectorGraph) -> bool {
        let info = &graph.info;
        let read = || -> crate::Result<(Vec<Key>, Vec<Meta>, Vec<f32>)> {
            // What readers see: a group is recorded here before it is published.
            let txn = self.visible.read()?;
            let table = txn.open_table(VecDef::new(&vector_table(info.table)))?;
            let docs = txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(
                &super::docs_table(info.docs),
            ))?;
            let mut keys = Vec::with_capacity(table.len()? as usize);
            let mut metas = Vec::with_capacity(keys.capacity());
            let mut flat = Vec::with_capacity(keys.capacity() * info.dimensions);
            // Both tables are in key order: the documents' headers come from one pass
            // beside the vectors.
            let mut doc_rows = docs.iter()?;
            let mut doc = doc_rows.next().transpose()?;
            let mut unknown: Option<String> = None;
            for row in table.iter()? {
                let (k, v) = row?;
                let v = floats(v.value());
                if v.len() != info.dimensions {
                    continue;
                }
                while doc.as_ref().is_some_and(|(dk, _)| dk.value() < k.value()) {
                    doc = doc_rows.next().transpose()?;
                }
                // Every write keeps the two tables in step; should they disagree, the
                // node's searches read its document instead (and say why once).
                let meta = match &doc {
                    Some((dk, dv)) if dk.value() == k.value() => {
                        match super::record::header(dv.value()) {
                            Ok(h) => Meta::of(&h),
                            Err(e) => {
                                unknown.get_or_insert_with(|| e.to_string());
                                Meta::UNKNOWN
                            }
                        }
                    }
                    _ => {
                        unknown.get_or_insert_with(|| "a vector has no document".into());
                        Meta::UNKNOWN
                    }
                };
                keys.push(k.value().into());
                metas.push(meta);
                flat.extend(v);
            }
            if let Some(why) = unknown {
                tracing::warn!(
                    target: "aviladb::vectors",
                    "the vector index on {}: some documents' headers could not be read \
                     ({why}); searches read those documents",
                    info.path
                );
            }
            Ok((keys, metas, flat))
        };
        let (keys, metas, flat) = match read() {
            Ok(read) => read,
            Err(e) => {
                // The index was dropped meanwhile (the next sync forgets it), or the
                // table could not be read: said, and tried again at the next turn.
                tracing::debug!(
                    target: "aviladb::vectors",
                    "no build of the vector index on {}: {e}",
                    info.path
                );
                return false;
            }
        };
        let started = std::time::Instant::now();
        tracing::info!(
            target: "aviladb::vectors",
            "building the vector index on {} ({} vectors)",
            info.path,
            keys.len()
        );
        let Some(g) = self.link_all(info, &flat) else {
            return false;
        };
        graph.install(Built {
            graph: g,
            keys,
            metas,
        });
        tracing::info!(
            target: "aviladb::vectors",
            "built the vector index on {} in {:.1} s",
            info.path,
            started.elapsed().as_secs_f64()
        );
        true
    }

    /// A graph of `flat` for index `info`, unless the engine is closing.
    fn link_all(&self, info: &VectorIndexInfo, flat: &[f32]) -> Option<Hnsw> {
        let built = Hnsw::build_cancellable(
            info.dimensions,
            space_of(info.metric),
            info.params,
            flat,
            None,
            Some(&self.stop),
        );
        built.ok().filter(|_| !self.stopping())
    }

    /// Rebuilds a graph from its live vectors.
    fn compact(&self, graph: &VectorGraph) {
        let (keys, metas, flat) = {
            let state = graph.read();
            let Some(g) = &state.graph else { return };
            let mut keys = Vec::with_capacity(g.len() - g.tombstones());
            let mut metas = Vec::with_capacity(keys.capacity());
            let mut flat = Vec::with_capacity(keys.capacity() * g.dim());
            for node in 0..g.len() as u32 {
                if !g.is_deleted(node) {
                    keys.push(state.keys[node as usize].clone());
                    metas.push(state.metas[node as usize]);
                    flat.extend_from_slice(g.vector(node));
                }
            }
            (keys, metas, flat)
        };
        if let Some(g) = self.link_all(&graph.info, &flat) {
            graph.install(Built {
                graph: g,
                keys,
                metas,
            });
        }
    }

    /// Stops the indexer, links what is pending, and saves every built graph. Runs after
    /// the writer has stopped.
    pub(crate) fn close(&self, save: bool) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        let stamp = match self.stamp() {
            Ok(stamp) if save => stamp,
            _ => return,
        };
        let graphs: Vec<Arc<VectorGraph>> = self.map().values().cloned().collect();
        for graph in graphs {
            if !graph.ready() {
                continue;
            }
            while graph.apply(usize::MAX) > 0 {}
            if !graph.pending().changes.is_empty() {
                continue;
            }
            // A graph that cannot be saved is rebuilt at the next open.
            let _ = self.save(&graph, stamp);
        }
    }

    fn file(&self, table: u64) -> PathBuf {
        self.dir.join(format!("{table}.graph"))
    }

    /// The log checkpoint (lsn, salt) the file has now: a fresh salt is drawn at every
    /// checkpoint, so a saved graph names the one state of the file it matches.
    fn stamp(&self) -> crate::Result<(u64, u64)> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(super::commit::META)?;
        Ok((
            meta.get(super::wal::CHECKPOINT_KEY)?
                .map_or(0, |v| v.value()),
            meta.get(super::wal::SALT_KEY)?.map_or(0, |v| v.value()),
        ))
    }

    fn save(&self, graph: &VectorGraph, stamp: (u64, u64)) -> std::io::Result<()> {
        let state = graph.read();
        let Some(g) = &state.graph else {
            return Ok(());
        };
        let mut out = Vec::new();
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&graph.info.table.to_le_bytes());
        out.extend_from_slice(&stamp.0.to_le_bytes());
        out.extend_from_slice(&stamp.1.to_le_bytes());
        out.extend_from_slice(&(state.keys.len() as u64).to_le_bytes());
        for (key, meta) in state.keys.iter().zip(&state.metas) {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&meta.seq.to_le_bytes());
            out.extend_from_slice(&meta.ts_micros.to_le_bytes());
            out.extend_from_slice(&meta.ttl.unwrap_or(NO_TTL).to_le_bytes());
        }
        g.save(&mut out)?;
        let sum = twox_hash::XxHash3_64::oneshot(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!("{}.tmp", graph.info.table));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.file(graph.info.table))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// A saved graph of `info`, if there is one that matches it and its table.
    fn load(&self, info: &VectorIndexInfo, stamp: (u64, u64)) -> Option<Built> {
        let bytes = std::fs::read(self.file(info.table)).ok()?;
        let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
        if twox_hash::XxHash3_64::oneshot(body) != u64::from_le_bytes(sum.try_into().ok()?) {
            return None;
        }
        let rest = body.strip_prefix(FILE_MAGIC)?;
        let (table, rest) = rest.split_at_checked(8)?;
        if u64::from_le_bytes(table.try_into().ok()?) != info.table {
            return None;
        }
        let (lsn, rest) = rest.split_at_checked(8)?;
        let (salt, rest) = rest.split_at_checked(8)?;
        let saved = (
            u64::from_le_bytes(lsn.try_into().ok()?),
            u64::from_le_bytes(salt.try_into().ok()?),
        );
        if saved != stamp {
            return None;
        }
        let (count, mut rest) = rest.split_at_checked(8)?;
        let count = usize::try_from(u64::from_le_bytes(count.try_into().ok()?)).ok()?;
        // Each node takes at least 28 bytes (key length and meta).
        if count > rest.len() / 28 {
            return None;
        }
        let mut keys = Vec::with_capacity(count);
        let mut metas = Vec::with_capacity(count);
        let word = |b: &[u8]| -> Option<u64> { Some(u64::from_le_bytes(b.try_into().ok()?)) };
        for _ in 0..count {
            let (len, after) = rest.split_at_checked(4)?;
            let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
            let (key, after) = after.split_at_checked(len)?;
            let (seq, after) = after.split_at_checked(8)?;
            let (ts, after) = after.split_at_checked(8)?;
            let (ttl, after) = after.split_at_checked(8)?;
            let ttl = word(ttl)? as i64;
            keys.push(Box::from(key));
            metas.push(Meta {
                seq: word(seq)?,
                ts_micros: word(ts)?,
                ttl: (ttl != NO_TTL).then_some(ttl),
            });
            rest = after;
        }
        let graph = Hnsw::load(&mut &rest[..]).ok()?;
        let live = graph.len() - graph.tombstones();
        let rows = {
            let txn = self.db.begin_read().ok()?;
            let table = txn
                .open_table(VecDef::new(&vector_table(info.table)))
                .ok()?;
            table.len().ok()? as usize
        };
        let matches = graph.len() == keys.len()
            && graph.dim() == info.dimensions
            && graph.space() == space_of(info.metric)
            && graph.params() == info.params
            && live == rows;
        matches.then_some(Built { graph, keys, metas })
    }
}

/// The graph indexes among a collection's vector indexes.
pub(crate) fn graph_indexes(indexes: &[VectorIndexInfo]) -> impl Iterator<Item = &VectorIndexInfo> {
    indexes.iter().filter(|i| i.kind == VectorIndexKind::Hnsw)
}
