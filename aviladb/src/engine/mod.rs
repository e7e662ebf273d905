//! The in-process engine: synchronous, owns its redb file, no async, no network.

mod clock;
mod commit;
pub(crate) mod feed;
#[cfg(feature = "gpu")]
pub(crate) mod gpu;
pub(crate) mod graphs;
pub(crate) mod index;
pub(crate) mod names;
mod patch;
mod query;
pub(crate) mod record;
mod snapshot;
mod ttl;
pub(crate) mod vector;
mod visible;
mod vsearch;
pub(crate) mod wal;
mod writeback;

#[cfg(test)]
mod failure_tests;
#[cfg(test)]
mod format_tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use clock::{Clock, ManualClock, SystemClock};
pub use feed::{ChangeFeedMode, ChangePage, FeedOptions, FeedStart, MAX_CHANGES};
pub use index::{IndexInfo, MAX_INDEX_PATHS, MAX_INDEXES};
pub use patch::{MAX_PATCH_OPS, PatchOp};
pub(crate) use record::json_text;
pub use record::{MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH, SYSTEM_PROPERTIES, etag_of};
pub use snapshot::{MAX_SNAPSHOTS, SNAPSHOT_IDLE};
pub use vector::{
    MAX_DIMENSIONS, MAX_K, VectorHit, VectorIndexInfo, VectorIndexKind, VectorMetric, VectorQuery,
};
pub use vsearch::{VectorAccess, VectorIndexStatus};

use crate::error::{DbError, Result};
use commit::{META, Reply, TxnCtx, Writer};
use names::{check_id, check_name, check_path};

/// The newest on-disk format this build reads and writes; opening a newer one is an
/// error. Format 2 is a file that may hold a change-feed history of all versions, which
/// builds of format 1 would neither keep nor replay from the commit log: the first
/// switch of a collection to [`ChangeFeedMode::AllVersions`] moves a file to it, so
/// such a build refuses the file rather than lose changes.
pub const FORMAT_VERSION: u64 = 2;
/// The format of a new file (until it uses something newer).
const BASE_FORMAT: u64 = 1;
/// The file inside an engine's directory.
pub const FILE_NAME: &str = "aviladb.redb";
/// The most keys in one batch get, and operations in one batch write.
pub const MAX_BATCH: usize = 100;
/// The most JSON one batch write may carry in all.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
/// The most documents one transaction may read (gets, and every document its queries
/// matched); its commit checks each of them.
pub const MAX_TXN_READS: usize = 10_000;
/// The most bytes a transaction's reads may take in its commit request (collection,
/// partition key as JSON and id, plus 96 bytes each): what a commit sends over a network
/// must fit in one request.
pub const MAX_TXN_READ_BYTES: usize = 8 << 20;

const FORMAT_KEY: &str = "format_version";
const NEXT_COLLECTION: &str = "next_collection";
const DATABASES: TableDefinition<&str, u64> = TableDefinition::new("databases");
const COLLECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("collections");

fn docs_table(id: u64) -> String {
    format!("docs.{id}")
}

fn collection_key(db: &str, coll: &str) -> String {
    format!("{db}/{coll}")
}

/// How a write must reach the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteDurability {
    /// fsync before the acknowledgement, shared by concurrent writers (group commit).
    #[default]
    Always,
    /// No fsync: a crash may lose recent acknowledged writes (never corrupt the file).
    Never,
}

/// Options of [`Engine::open_with`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// When writes are durable.
    pub durability: WriteDurability,
    /// The clock of commit times and TTL expiry (the system clock by default).
    pub clock: Arc<dyn Clock>,
    /// How often the writer looks for expired documents to reclaim (default 5 s). An
    /// expired document is invisible at once; this only frees its space.
    pub ttl_sweep: std::time::Duration,
    /// With the `gpu` feature and an adapter: the fewest numbers (vectors × dimensions)
    /// a flat index needs for its unfiltered exact searches to run on the GPU (default
    /// 4M: smaller ones are faster on the CPU than a device round trip).
    pub gpu_exact_min: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            durability: WriteDurability::Always,
            clock: Arc::new(SystemClock),
            ttl_sweep: std::time::Duration::from_secs(5),
            gpu_exact_min: 4 << 20,
        }
    }
}

/// What is stored about a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Its name.
    pub name: String,
    /// The partition-key path, e.g. `/region`.
    pub partition_key: String,
    /// Its secondary indexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexInfo>,
    /// The time to live of its documents in seconds: `None` off, -1 on without a default
    /// (documents with their own `ttl` expire), or a default for documents without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_ttl: Option<i64>,
    /// Its vector indexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector_indexes: Vec<VectorIndexInfo>,
    /// What its change feed gives.
    #[serde(default, skip_serializing_if = "ChangeFeedMode::is_latest_version")]
    pub change_feed: ChangeFeedMode,
    /// With [`ChangeFeedMode::AllVersions`]: how long (seconds) versions and deletes stay
    /// in the history; `None` keeps them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention: Option<u64>,
    /// The sequence at which the history began (all versions).
    #[serde(skip)]
    history_since: u64,
    #[serde(skip)]
    table: u64,
}

#[derive(Serialize, Deserialize)]
struct CollectionRecord {
    table: u64,
    partition_key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    indexes: Vec<IndexRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_ttl: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    vector_indexes: Vec<VectorIndexRecord>,
    #[serde(default, skip_serializing_if = "ChangeFeedMode::is_latest_version")]
    change_feed: ChangeFeedMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history_retention: Option<u64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    history_since: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
struct IndexRecord {
    #[serde(flatten)]
    info: IndexInfo,
    table: u64,
}

#[derive(Serialize, Deserialize)]
struct VectorIndexRecord {
    #[serde(flatten)]
    info: VectorIndexInfo,
    table: u64,
}

impl CollectionInfo {
    fn from_record(name: &str, record: CollectionRecord) -> CollectionInfo {
        CollectionInfo {
            name: name.to_string(),
            partition_key: record.partition_key,
            indexes: record
                .indexes
                .into_iter()
                .map(|r| IndexInfo {
                    table: r.table,
                    ..r.info
                })
                .collect(),
            default_ttl: record.default_ttl,
            vector_indexes: record
                .vector_indexes
                .into_iter()
                .map(|r| VectorIndexInfo {
                    table: r.table,
                    docs: record.table,
                    ..r.info
                })
                .collect(),
            change_feed: record.change_feed,
            history_retention: record.history_retention,
            history_since: record.history_since,
            table: record.table,
        }
    }

    fn to_record(&self) -> CollectionRecord {
        CollectionRecord {
            table: self.table,
            partition_key: self.partition_key.clone(),
            indexes: self
                .indexes
                .iter()
                .map(|i| IndexRecord {
                    info: i.clone(),
                    table: i.table,
                })
                .collect(),
            default_ttl: self.default_ttl,
            vector_indexes: self
                .vector_indexes
                .iter()
                .map(|i| VectorIndexRecord {
                    info: i.clone(),
                    table: i.table,
                })
                .collect(),
            change_feed: self.change_feed,
            history_retention: self.history_retention,
            history_since: self.history_since,
        }
    }

    /// With all versions kept: the sequence at which the history began.
    pub(crate) fn history_since(&self) -> Option<u64> {
        (self.change_feed == ChangeFeedMode::AllVersions).then_some(self.history_since)
    }

    /// With a history and a retention: the commit time (µs) before which its entries
    /// are past the retention at `now_micros`.
    pub(crate) fn history_cutoff(&self, now_micros: u64) -> Option<u64> {
        let secs = self
            .history_retention
            .filter(|_| self.history_since().is_some())?;
        Some(now_micros.saturating_sub(secs.saturating_mul(1_000_000)))
    }

    /// Every table the collection owns: its documents, its feed and its indexes.
    fn tables(&self) -> Vec<String> {
        [
            docs_table(self.table),
            feed::feed_table(self.table),
            feed::history_table(self.table),
            ttl::exp_table(self.table),
        ]
        .into_iter()
        .chain(self.indexes.iter().map(|i| index::index_table(i.table)))
        .chain(
            self.vector_indexes
                .iter()
                .map(|i| vector::vector_table(i.table)),
        )
        .collect()
    }
}

/// One operation of a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteOp {
    /// Stores a new document; `AlreadyExists` if one has its key.
    Insert {
        /// The document (an object with a string `id` and the partition key).
        document: Value,
    },
    /// Stores the document whether or not one has its key.
    Upsert {
        /// The document.
        document: Value,
        /// If set, the current document must have this ETag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<String>,
    },
    /// Replaces an existing document; `NotFound` if there is none.
    Replace {
        /// The document.
        document: Value,
        /// If set, the current document must have this ETag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<String>,
    },
    /// Changes parts of an existing document.
    Patch {
        /// Partition-key value.
        partition_key: Value,
        /// Document id.
        id: String,
        /// The changes, in order.
        operations: Vec<PatchOp>,
        /// If set, the current document must have this ETag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<String>,
    },
    /// Deletes an existing document; `NotFound` if there is none.
    Delete {
        /// Partition-key value.
        partition_key: Value,
        /// Document id.
        id: String,
        /// If set, the current document must have this ETag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<String>,
    },
}

/// The outcome of one write operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    /// The document's id.
    pub id: String,
    /// Its new ETag (`None` after a delete).
    pub etag: Option<String>,
    /// The commit sequence number of the write.
    pub seq: u64,
}

/// The key of a document: partition-key value and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocKey {
    /// Partition-key value.
    pub partition_key: Value,
    /// Document id.
    pub id: String,
}

/// An open AvilaDB engine: one redb file, one writer at a time, any number of readers.
/// Cheap to clone and share (`Send + Sync`).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    /// The last committed sequence number, for change-feed waiters.
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    /// Read snapshots of open transactions.
    snapshots: snapshot::Snapshots,
    /// Commit times and expiry.
    clock: Arc<dyn Clock>,
    path: PathBuf,
    /// Collection metadata by database and name; cleared whenever the catalog changes.
    catalog: RwLock<HashMap<String, HashMap<String, Arc<CollectionInfo>>>>,
    /// Moves with every catalog change (see `collection`).
    catalog_generation: std::sync::atomic::AtomicU64,
    /// The graph vector indexes.
    graphs: Arc<graphs::Graphs>,
    /// The snapshot readers see (the last durable group).
    visible: Arc<visible::Visible>,
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    gpu_exact_min: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every write is in first, so the saved graphs match the tables.
        self.writer.stop();
        // After a failed commit the file may lag the log: no graph is saved then.
        self.graphs.close(!self.writer.failed());
        self.visible.clear();
    }
}

/// Every graph vector index in the catalog.
fn graph_indexes(db: &Database) -> Result<Vec<VectorIndexInfo>> {
    let txn = db.begin_read()?;
    let colls = match txn.open_table(COLLECTIONS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in colls.iter()? {
        let (_, value) = entry?;
        let info = CollectionInfo::from_record("", decode_collection(value.value())?);
        out.extend(graphs::graph_indexes(&info.vector_indexes).cloned());
    }
    Ok(out)
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Engine {
    /// Opens (creating if needed) the engine in directory `dir`, with durable writes.
    pub fn open(dir: impl AsRef<Path>) -> Result<Engine> {
        Engine::open_with(dir, EngineOptions::default())
    }

    /// Opens the engine in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: EngineOptions) -> Result<Engine> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => DbError::Unavailable(format!(
                "{} is already open (by `avl serve`? reach a server with AVL_ENDPOINT)",
                path.display()
            )),
            other => DbError::Storage(format!("{}: {other}", path.display())),
        })?;
        let db = Arc::new(db);
        check_format(&db)?;
        let (wal, clean) = recover(&db, dir)?;
        let (durability, wal) = match options.durability {
            WriteDurability::Always => (redb::Durability::Immediate, Some(wal)),
            WriteDurability::Never => (redb::Durability::None, None),
        };
        let commits = Arc::new(tokio::sync::watch::Sender::new(0));
        let chores = commit::Chores {
            every: options.ttl_sweep,
            due: Box::new(ttl::due),
            job: Arc::new(|ctx: &mut TxnCtx<'_>| {
                ttl::reclaim(ctx, ttl::RECLAIM_BATCH).map(Reply::Count)
            }),
        };
        let visible = Arc::new(visible::Visible::new(&db)?);
        let graphs = graphs::Graphs::open(
            dir,
            Arc::clone(&db),
            Arc::clone(&visible),
            graph_indexes(&db)?,
            clean,
        )?;
        let writer = match Writer::start(
            Arc::clone(&db),
            durability,
            wal,
            Arc::clone(&commits),
            Arc::clone(&options.clock),
            Some(chores),
            Some(Arc::clone(&graphs)),
            Arc::clone(&visible),
        ) {
            Ok(w) => w,
            Err(e) => {
                graphs.close(false);
                return Err(e);
            }
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                writer,
                commits,
                snapshots: snapshot::Snapshots::default(),
                clock: options.clock,
                path,
                catalog: RwLock::new(HashMap::new()),
                catalog_generation: std::sync::atomic::AtomicU64::new(0),
                graphs,
                visible,
                gpu_exact_min: options.gpu_exact_min,
            }),
        })
    }

    /// The redb file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    // ---- databases -------------------------------------------------------------------

    /// Creates a database; `AlreadyExists` if it does.
    pub fn create_database(&self, name: &str) -> Result<()> {
        check_name("database", name)?;
        let name = name.to_string();
        self.catalog_job(move |ctx| {
            let mut dbs = ctx.txn.open_table(DATABASES)?;
            if dbs.get(name.as_str())?.is_some() {
                return Err(DbError::AlreadyExists(format!(
                    "database `{name}` already exists"
                )));
            }
            dbs.insert(name.as_str(), ctx.ts_micros)?;
            Ok(Reply::Done)
        })
    }

    /// The databases, by name.
    pub fn list_databases(&self) -> Result<Vec<String>> {
        let txn = self.inner.visible.read()?;
        let dbs = txn.open_table(DATABASES)?;
        let mut names = Vec::new();
        for entry in dbs.iter()? {
            names.push(entry?.0.value().to_string());
        }
        Ok(names)
    }

    /// Drops a database with all its collections and documents.
    pub fn drop_database(&self, name: &str) -> Result<()> {
        check_name("database", name)?;
        let name = name.to_string();
        let graphs = Arc::clone(&self.inner.graphs);
        self.catalog_job(move |ctx| {
            let mut dbs = ctx.txn.open_table(DATABASES)?;
            if dbs.get(name.as_str())?.is_none() {
                return Err(no_database(&name));
            }
            dbs.remove(name.as_str())?;
            let mut colls = ctx.txn.open_table(COLLECTIONS)?;
            let prefix = format!("{name}/");
            let mut doomed = Vec::new();
            for entry in colls.range(prefix.as_str()..)? {
                let (key, value) = entry?;
                if !key.value().starts_with(&prefix) {
                    break;
                }
                doomed.push((
                    key.value().to_string(),
                    CollectionInfo::from_record("", decode_collection(value.value())?),
                ));
            }
            for (key, info) in doomed {
                colls.remove(key.as_str())?;
                graphs.forget(info.vector_indexes.iter().map(|i| i.table));
                for table in info.tables() {
                    ctx.txn
                        .delete_table(TableDefinition::<&[u8], &[u8]>::new(&table))?;
                }
                feed::forget_trimmed(ctx.txn, info.table)?;
            }
            Ok(Reply::Done)
        })
    }

    // ---- collections -----------------------------------------------------------------

    /// Creates a collection partitioned by `partition_key` (a path such as `/region`).
    pub fn create_collection(&self, db: &str, name: &str, partition_key: &str) -> Result<()> {
        check_name("database", db)?;
        check_name("collection", name)?;
        check_path("partition_key", partition_key)?;
        let (db, name, pk) = (db.to_string(), name.to_string(), partition_key.to_string());
        self.catalog_job(move |ctx| {
            let dbs = ctx.txn.open_table(DATABASES)?;
            if dbs.get(db.as_str())?.is_none() {
                return Err(no_database(&db));
            }
            let mut colls = ctx.txn.open_table(COLLECTIONS)?;
            let key = collection_key(&db, &name);
            if colls.get(key.as_str())?.is_some() {
                return Err(DbError::AlreadyExists(format!(
                    "collection `{name}` already exists in `{db}`"
                )));
            }
            let mut meta = ctx.txn.open_table(META)?;
            let table = meta.get(NEXT_COLLECTION)?.map_or(1, |v| v.value());
            meta.insert(NEXT_COLLECTION, table + 1)?;
            let record = serde_json::to_vec(&CollectionRecord {
                table,
                partition_key: pk,
                indexes: Vec::new(),
                default_ttl: None,
                vector_indexes: Vec::new(),
                change_feed: ChangeFeedMode::LatestVersion,
                history_retention: None,
                history_since: 0,
            })
            .map_err(|e| DbError::Storage(e.to_string()))?;
            colls.insert(key.as_str(), record.as_slice())?;
            ctx.txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(table)))?;
            Ok(Reply::Done)
        })
    }

    /// The collections of a database.
    pub fn list_collections(&self, db: &str) -> Result<Vec<CollectionInfo>> {
        check_name("database", db)?;
        let txn = self.inner.visible.read()?;
        if txn.open_table(DATABASES)?.get(db)?.is_none() {
            return Err(no_database(db));
        }
        let colls = txn.open_table(COLLECTIONS)?;
        let prefix = format!("{db}/");
        let mut out = Vec::new();
        for entry in colls.range(prefix.as_str()..)? {
            let (key, value) = entry?;
            let Some(name) = key.value().strip_prefix(&prefix) else {
                break;
            };
            out.push(CollectionInfo::from_record(
                name,
                decode_collection(value.value())?,
            ));
        }
        Ok(out)
    }

    /// Drops a collection with all its documents.
    pub fn drop_collection(&self, db: &str, name: &str) -> Result<()> {
        check_name("database", db)?;
        check_name("collection", name)?;
        let key = collection_key(db, name);
        let (db, name) = (db.to_string(), name.to_string());
        let graphs = Arc::clone(&self.inner.graphs);
        self.catalog_job(move |ctx| {
            let mut colls = ctx.txn.open_table(COLLECTIONS)?;
            let info = match colls.get(key.as_str())? {
                Some(v) => CollectionInfo::from_record(&name, decode_collection(v.value())?),
                None => return Err(no_collection(&db, &name)),
            };
            colls.remove(key.as_str())?;
            graphs.forget(info.vector_indexes.iter().map(|i| i.table));
            for table in info.tables() {
                ctx.txn
                    .delete_table(TableDefinition::<&[u8], &[u8]>::new(&table))?;
            }
            feed::forget_trimmed(ctx.txn, info.table)?;
            Ok(Reply::Done)
        })
    }

    /// Runs a catalog change and forgets the cached catalog once it is durable.
    fn catalog_job(
        &self,
        job: impl FnOnce(&mut TxnCtx<'_>) -> Result<Reply> + Send + 'static,
    ) -> Result<()> {
        self.catalog_job_with(job).map(|_| ())
    }

    /// [`Engine::catalog_job`] that answers the job's reply.
    fn catalog_job_with(
        &self,
        job: impl FnOnce(&mut TxnCtx<'_>) -> Result<Reply> + Send + 'static,
    ) -> Result<Reply> {
        let result = self.inner.writer.submit_barrier(move |ctx| {
            ctx.catalog_changed();
            let reply = job(ctx);
            ctx.catalog_changed();
            reply
        });
        // A reader that read the catalog before this change must not cache what it read:
        // the generation moves, then the cache empties, under the cache's lock.
        let mut cache = self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner());
        self.inner
            .catalog_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.clear();
        drop(cache);
        result
    }

    // ---- indexes ---------------------------------------------------------------------

    /// Creates a secondary index on a collection and fills it from the documents already
    /// there; answers how many were indexed. A unique index over documents that already
    /// share values is `Conflict`, and nothing changes.
    pub fn create_index(&self, db: &str, coll: &str, index: IndexInfo) -> Result<u64> {
        check_name("database", db)?;
        check_name("collection", coll)?;
        index.check()?;
        let (db, coll) = (db.to_string(), coll.to_string());
        let reply = self.catalog_job_with(move |ctx| {
            let mut info = read_collection_for_write(ctx.txn, &db, &coll)?;
            if info.indexes.iter().any(|i| i.name == index.name) {
                return Err(DbError::AlreadyExists(format!(
                    "index `{}` already exists on `{coll}`",
                    index.name
                )));
            }
            if info.indexes.len() >= MAX_INDEXES {
                return Err(DbError::invalid(
                    "index",
                    format!("a collection has at most {MAX_INDEXES} indexes"),
                ));
            }
            let table = next_table_id(ctx.txn)?;
            let index = IndexInfo { table, ..index };
            let expiry = record::Expiry {
                default_ttl: info.default_ttl,
                now_micros: ctx.ts_micros,
            };
            let count = index::backfill(ctx.txn, &docs_table(info.table), &index, &expiry)?;
            info.indexes.push(index);
            save_collection(ctx.txn, &db, &coll, &info)?;
            Ok(Reply::Count(count))
        })?;
        reply.count()
    }

    /// Drops a secondary index.
    pub fn drop_index(&self, db: &str, coll: &str, name: &str) -> Result<()> {
        check_name("database", db)?;
        check_name("collection", coll)?;
        check_name("index", name)?;
        let (db, coll, name) = (db.to_string(), coll.to_string(), name.to_string());
        self.catalog_job(move |ctx| {
            let mut info = read_collection_for_write(ctx.txn, &db, &coll)?;
            let Some(at) = info.indexes.iter().position(|i| i.name == name) else {
                return Err(DbError::NotFound(format!(
                    "index `{name}` does not exist on `{coll}`"
                )));
            };
            let index = info.indexes.remove(at);
            ctx.txn
                .delete_table(TableDefinition::<&[u8], &[u8]>::new(&index::index_table(
                    index.table,
                )))?;
            save_collection(ctx.txn, &db, &coll, &info)?;
            Ok(Reply::Done)
        })
    }

    /// Sets a collection's default time to live: `None` turns TTL off (documents with
    /// their own `ttl` still expire), -1 turns it on without a default, a positive number
    /// of seconds expires documents without their own `ttl` that long after their last
    /// write. Applies at once to documents already stored.
    pub fn set_default_ttl(&self, db: &str, coll: &str, ttl: Option<i64>) -> Result<()> {
        check_name("database", db)?;
        check_name("collection", coll)?;
        if let Some(t) = ttl
            && t != -1
            && t <= 0
        {
            return Err(DbError::invalid(
                "default_ttl",
                "must be -1 or a positive whole number of seconds",
            ));
        }
        let (db, coll) = (db.to_string(), coll.to_string());
        self.catalog_job(move |ctx| {
            let mut info = read_collection_for_write(ctx.txn, &db, &coll)?;
            info.default_ttl = ttl;
            save_collection(ctx.txn, &db, &coll, &info)?;
            Ok(Reply::Done)
        })
    }

    /// Sets what a collection's change feed gives. [`ChangeFeedMode::AllVersions`] keeps
    /// every version written from now on, for `retention` seconds after its commit (the
    /// writer trims older ones as it reclaims expired documents) or, with `None`, until
    /// the mode is set back: [`ChangeFeedMode::LatestVersion`] drops the history (and
    /// takes no retention).
    pub fn set_change_feed(
        &self,
        db: &str,
        coll: &str,
        mode: ChangeFeedMode,
        retention: Option<u64>,
    ) -> Result<()> {
        check_name("database", db)?;
        check_name("collection", coll)?;
        match (mode, retention) {
            (_, Some(0)) => {
                return Err(DbError::invalid(
                    "retention",
                    "must be a positive number of seconds",
                ));
            }
            (ChangeFeedMode::LatestVersion, Some(_)) => {
                return Err(DbError::invalid(
                    "retention",
                    "only a feed of all versions keeps a history to retain",
                ));
            }
            _ => {}
        }
        let (db, coll) = (db.to_string(), coll.to_string());
        self.catalog_job(move |ctx| {
            let mut info = read_collection_for_write(ctx.txn, &db, &coll)?;
            match (info.change_feed, mode) {
                (ChangeFeedMode::AllVersions, ChangeFeedMode::LatestVersion) => {
                    let history = feed::history_table(info.table);
                    ctx.txn
                        .delete_table(TableDefinition::<u64, &[u8]>::new(&history))?;
                    feed::forget_trimmed(ctx.txn, info.table)?;
                    info.history_since = 0;
                }
                // Every change after this sequence is in the history; the ones before
                // stay in the feed, which readers go through first.
                (ChangeFeedMode::LatestVersion, ChangeFeedMode::AllVersions) => {
                    info.history_since = ctx.next_seq();
                    raise_format(ctx.txn, 2)?;
                }
                _ => {}
            }
            info.change_feed = mode;
            info.history_retention = retention;
            save_collection(ctx.txn, &db, &coll, &info)?;
            Ok(Reply::Done)
        })
    }

    /// Deletes expired documents now (the writer also does it every `ttl_sweep`);
    /// answers how many went. Each call reclaims at most a few thousand.
    pub fn reclaim_expired(&self) -> Result<u64> {
        self.inner
            .writer
            .submit(|ctx| ttl::reclaim(ctx, ttl::RECLAIM_BATCH).map(Reply::Count))?
            .count()
    }

    /// The expiry rule of a collection, now.
    pub(crate) fn expiry(&self, info: &CollectionInfo) -> record::Expiry {
        record::Expiry {
            default_ttl: info.default_ttl,
            now_micros: self.inner.clock.now_micros(),
        }
    }

    /// A collection's metadata, with its indexes.
    pub fn describe_collection(&self, db: &str, coll: &str) -> Result<CollectionInfo> {
        check_name("database", db)?;
        check_name("collection", coll)?;
        let txn = self.inner.visible.read()?;
        read_collection(&txn, db, coll)
    }

    /// A collection's metadata, cached.
    fn collection(&self, db: &str, name: &str) -> Result<Arc<CollectionInfo>> {
        if let Some(info) = self
            .inner
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(db)
            .and_then(|colls| colls.get(name))
        {
            return Ok(Arc::clone(info));
        }
        check_name("database", db)?;
        check_name("collection", name)?;
        let generation = self
            .inner
            .catalog_generation
            .load(std::sync::atomic::Ordering::SeqCst);
        let txn = self.inner.visible.read()?;
        let info = Arc::new(read_collection(&txn, db, name)?);
        let mut cache = self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // Cached only if no catalog change committed since the read began.
        if self
            .inner
            .catalog_generation
            .load(std::sync::atomic::Ordering::SeqCst)
            == generation
        {
            cache
                .entry(db.to_string())
                .or_default()
                .insert(name.to_string(), Arc::clone(&info));
        }
        Ok(info)
    }

    // ---- documents -------------------------------------------------------------------

    /// The document with this key, with its system properties, or `None`.
    pub fn get(
        &self,
        db: &str,
        coll: &str,
        partition_key: &Value,
        id: &str,
    ) -> Result<Option<Value>> {
        self.get_raw(db, coll, partition_key, id)?
            .map(RawDocument::into_value)
            .transpose()
    }

    /// The document with this key as stored: sequence, time and JSON, not yet parsed.
    pub(crate) fn get_raw(
        &self,
        db: &str,
        coll: &str,
        partition_key: &Value,
        id: &str,
    ) -> Result<Option<RawDocument>> {
        check_id(id)?;
        let key = record::doc_key(partition_key, id)?;
        Ok(self.get_keys(db, coll, &[key])?.pop().flatten())
    }

    /// Up to [`MAX_BATCH`] documents in one consistent snapshot, in the order asked.
    pub fn get_many(&self, db: &str, coll: &str, keys: &[DocKey]) -> Result<Vec<Option<Value>>> {
        self.get_many_raw(db, coll, keys)?
            .into_iter()
            .map(|d| d.map(RawDocument::into_value).transpose())
            .collect()
    }

    pub(crate) fn get_many_raw(
        &self,
        db: &str,
        coll: &str,
        keys: &[DocKey],
    ) -> Result<Vec<Option<RawDocument>>> {
        if keys.len() > MAX_BATCH {
            return Err(DbError::invalid(
                "keys",
                format!("more than {MAX_BATCH} keys"),
            ));
        }
        self.get_keys(db, coll, &encode_keys(keys)?)
    }

    /// A read snapshot in which collection `coll` exists, with its metadata.
    pub(crate) fn snapshot(
        &self,
        db: &str,
        coll: &str,
    ) -> Result<(Arc<CollectionInfo>, Arc<redb::ReadTransaction>)> {
        self.snapshot_docs(db, coll)
            .map(|(info, txn, _, _)| (info, txn))
    }

    /// [`Engine::snapshot`] with the snapshot's generation (see `visible`).
    pub(crate) fn snapshot_at(
        &self,
        db: &str,
        coll: &str,
    ) -> Result<(Arc<CollectionInfo>, Arc<redb::ReadTransaction>, u64)> {
        self.snapshot_docs(db, coll)
            .map(|(info, txn, _, generation)| (info, txn, generation))
    }

    /// [`Engine::snapshot`] with the collection's documents table open. A collection
    /// dropped (and perhaps re-created) after its metadata was cached shows as a missing
    /// table: it is looked up again once.
    fn snapshot_docs(
        &self,
        db: &str,
        coll: &str,
    ) -> Result<(
        Arc<CollectionInfo>,
        Arc<redb::ReadTransaction>,
        DocsReader,
        u64,
    )> {
        for attempt in 0..2 {
            let info = self.collection(db, coll)?;
            let (txn, generation) = self.inner.visible.read_at()?;
            let name = docs_table(info.table);
            match txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name)) {
                Ok(table) => return Ok((info, txn, table, generation)),
                Err(TableError::TableDoesNotExist(_)) if attempt == 0 => self.forget_catalog(),
                Err(TableError::TableDoesNotExist(_)) => return Err(no_collection(db, coll)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(no_collection(db, coll))
    }

    fn get_keys(&self, db: &str, coll: &str, keys: &[Vec<u8>]) -> Result<Vec<Option<RawDocument>>> {
        let (info, _txn, table, _) = self.snapshot_docs(db, coll)?;
        read_batch(&table, keys, &self.expiry(&info))
    }

    fn forget_catalog(&self) {
        self.inner
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Applies `ops` to one collection atomically (all or none), durably, and returns a
    /// result per operation. At most [`MAX_BATCH`] operations and [`MAX_BATCH_BYTES`].
    ///
    /// Documents are checked, serialized and framed on the calling thread; the writer
    /// thread only checks keys and ETags against storage and writes, so concurrent
    /// writers share the work as well as the fsync.
    pub fn write(&self, db: &str, coll: &str, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>> {
        if ops.is_empty() {
            return Err(DbError::invalid("operations", "no operations"));
        }
        let ops = ops.into_iter().map(|op| (coll, op)).collect();
        self.commit_writes(db, Vec::new(), ops)
    }

    /// Commits a transaction over collections of database `db`: every read in `reads`
    /// must still hold the version it saw (else `Conflict`, and nothing is written), then
    /// `writes` apply atomically. At most [`MAX_TXN_READS`] reads and [`MAX_BATCH`] writes.
    pub fn commit_transaction(
        &self,
        db: &str,
        reads: Vec<ReadCheck>,
        writes: Vec<TxnWrite>,
    ) -> Result<Vec<WriteResult>> {
        if reads.is_empty() && writes.is_empty() {
            return Err(DbError::invalid("transaction", "no reads and no writes"));
        }
        if reads.len() > MAX_TXN_READS {
            return Err(DbError::invalid(
                "reads",
                format!("more than {MAX_TXN_READS} reads"),
            ));
        }
        let mut checks = Vec::with_capacity(reads.len());
        for (i, r) in reads.into_iter().enumerate() {
            check_name("collection", &r.collection).map_err(|e| in_batch(e, i, true))?;
            check_id(&r.id).map_err(|e| in_batch(e, i, true))?;
            let key = record::doc_key(&r.partition_key, &r.id).map_err(|e| in_batch(e, i, true))?;
            checks.push((r.collection, key, r.id, r.seq));
        }
        let writes = writes
            .iter()
            .map(|w| (w.collection.as_str(), w.op.clone()))
            .collect();
        self.commit_writes(db, checks, writes)
    }

    fn commit_writes(
        &self,
        db: &str,
        reads: Vec<(String, Vec<u8>, String, Option<u64>)>,
        ops: Vec<(&str, WriteOp)>,
    ) -> Result<Vec<WriteResult>> {
        if ops.len() > MAX_BATCH {
            return Err(DbError::invalid(
                "operations",
                format!("more than {MAX_BATCH} operations"),
            ));
        }
        let many = ops.len() > 1;
        let mut targets: Vec<(Arc<CollectionInfo>, String)> = Vec::new();
        let mut total = 0usize;
        let mut staged = Vec::with_capacity(ops.len());
        for (i, (coll, op)) in ops.into_iter().enumerate() {
            let at = match targets.iter().position(|(_, name)| name == coll) {
                Some(at) => at,
                None => {
                    let info = self
                        .collection(db, coll)
                        .map_err(|e| in_batch(e, i, many))?;
                    targets.push((info, coll.to_string()));
                    targets.len() - 1
                }
            };
            let info = &targets[at].0;
            let keep_body = many || !info.indexes.is_empty() || !info.vector_indexes.is_empty();
            let step =
                stage(op, &info.partition_key, keep_body).map_err(|e| in_batch(e, i, many))?;
            if let Staged::Put { json_len, .. } = &step {
                total += json_len;
                if total > MAX_BATCH_BYTES {
                    return Err(DbError::TooLarge(format!(
                        "the batch holds more than {MAX_BATCH_BYTES} bytes of JSON"
                    )));
                }
            }
            staged.push((at, step));
        }
        let targets: Vec<Target> = targets
            .into_iter()
            .map(|(info, name)| Target {
                name,
                table: info.table,
                pk_path: info.partition_key.clone(),
            })
            .collect();
        let db = db.to_string();
        match self
            .inner
            .writer
            .submit(move |ctx| write_job(ctx, &db, &reads, &targets, staged))?
        {
            Reply::Writes(results) => Ok(results),
            _ => Err(DbError::Storage("a write answered without results".into())),
        }
    }
}

/// A document a transaction read, and the version it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadCheck {
    /// The collection.
    pub collection: String,
    /// Partition-key value.
    pub partition_key: Value,
    /// Document id.
    pub id: String,
    /// The sequence number of the version read; `None` if the document did not exist.
    pub seq: Option<u64>,
}

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnWrite {
    /// The collection.
    pub collection: String,
    /// The operation.
    #[serde(flatten)]
    pub op: WriteOp,
}

/// A collection a write job changes, as its operations were staged.
struct Target {
    name: String,
    table: u64,
    pk_path: String,
}

/// The storage keys of `keys`, each id checked.
pub(crate) fn encode_keys(keys: &[DocKey]) -> Result<Vec<Vec<u8>>> {
    keys.iter()
        .map(|k| {
            check_id(&k.id)?;
            record::doc_key(&k.partition_key, &k.id)
        })
        .collect()
}

/// The live documents at `keys`, in order: at most [`MAX_BATCH_BYTES`] of JSON, as a batch
/// write takes, so that the answer crosses HTTP as it comes back in process.
pub(crate) fn read_batch(
    table: &DocsReader,
    keys: &[Vec<u8>],
    expiry: &record::Expiry,
) -> Result<Vec<Option<RawDocument>>> {
    let mut out = Vec::with_capacity(keys.len());
    let mut bytes = 0usize;
    for key in keys {
        let doc = match table.get(key.as_slice())? {
            Some(v) => RawDocument::live(v.value(), expiry)?,
            None => None,
        };
        bytes += doc.as_ref().map_or(0, RawDocument::reply_bytes);
        if bytes > MAX_BATCH_BYTES {
            return Err(DbError::TooLarge(format!(
                "the documents asked for hold more than {MAX_BATCH_BYTES} bytes of JSON; \
                 ask for fewer at once"
            )));
        }
        out.push(doc);
    }
    Ok(out)
}

/// A stored document before parsing: for callers that deserialize it to their own type.
#[derive(Debug, Clone)]
pub(crate) struct RawDocument {
    pub(crate) seq: u64,
    pub(crate) ts_micros: u64,
    pub(crate) json: Vec<u8>,
}

impl RawDocument {
    /// The document's JSON with its system properties, about as a reply carries it.
    pub(crate) fn reply_bytes(&self) -> usize {
        self.json.len() + 64
    }

    /// The document a record holds, unless it has expired.
    pub(crate) fn live(bytes: &[u8], expiry: &record::Expiry) -> Result<Option<RawDocument>> {
        if expiry.expired(&record::header(bytes)?) {
            return Ok(None);
        }
        let (h, json) = record::decode_raw(bytes)?;
        Ok(Some(RawDocument {
            seq: h.seq,
            ts_micros: h.ts_micros,
            json,
        }))
    }

    /// The document with its system properties.
    pub(crate) fn into_value(self) -> Result<Value> {
        let header = record::Header::of(self.seq, self.ts_micros);
        record::document_from(&header, &self.json)
    }
}

/// Names the operation of a batch in its error.
fn in_batch(e: DbError, i: usize, many: bool) -> DbError {
    if !many {
        return e;
    }
    match e {
        DbError::InvalidInput { field, reason } => {
            DbError::invalid(format!("operations[{i}].{field}"), reason)
        }
        DbError::NotFound(m) if !m.starts_with("operation ") => {
            DbError::NotFound(format!("operation {i}: {m}"))
        }
        DbError::AlreadyExists(m) => DbError::AlreadyExists(format!("operation {i}: {m}")),
        DbError::Conflict(m) => DbError::Conflict(format!("operation {i}: {m}")),
        DbError::TooLarge(m) => DbError::TooLarge(format!("operation {i}: {m}")),
        other => other,
    }
}

/// A fresh table number (collections and indexes share one counter).
pub(crate) fn next_table_id(txn: &redb::WriteTransaction) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let table = meta.get(NEXT_COLLECTION)?.map_or(1, |v| v.value());
    meta.insert(NEXT_COLLECTION, table + 1)?;
    Ok(table)
}

fn save_collection(
    txn: &redb::WriteTransaction,
    db: &str,
    name: &str,
    info: &CollectionInfo,
) -> Result<()> {
    let record =
        serde_json::to_vec(&info.to_record()).map_err(|e| DbError::Storage(e.to_string()))?;
    txn.open_table(COLLECTIONS)?
        .insert(collection_key(db, name).as_str(), record.as_slice())?;
    Ok(())
}

fn decode_collection(bytes: &[u8]) -> Result<CollectionRecord> {
    serde_json::from_slice(bytes).map_err(|e| DbError::Corrupted(format!("collection record: {e}")))
}

fn no_database(db: &str) -> DbError {
    DbError::NotFound(format!("database `{db}` does not exist"))
}

fn no_collection(db: &str, name: &str) -> DbError {
    DbError::NotFound(format!("collection `{name}` does not exist in `{db}`"))
}

/// A collection's metadata from the catalog tables of any transaction (both tables exist
/// from the moment the file is opened: see `check_format`).
fn find_collection(
    dbs: &impl ReadableTable<&'static str, u64>,
    colls: &impl ReadableTable<&'static str, &'static [u8]>,
    db: &str,
    name: &str,
) -> Result<CollectionInfo> {
    if dbs.get(db)?.is_none() {
        return Err(no_database(db));
    }
    let record = match colls.get(collection_key(db, name).as_str())? {
        Some(v) => decode_collection(v.value())?,
        None => return Err(no_collection(db, name)),
    };
    Ok(CollectionInfo::from_record(name, record))
}

fn read_collection(txn: &redb::ReadTransaction, db: &str, name: &str) -> Result<CollectionInfo> {
    find_collection(
        &txn.open_table(DATABASES)?,
        &txn.open_table(COLLECTIONS)?,
        db,
        name,
    )
}

fn read_collection_for_write(
    txn: &redb::WriteTransaction,
    db: &str,
    name: &str,
) -> Result<CollectionInfo> {
    find_collection(
        &txn.open_table(DATABASES)?,
        &txn.open_table(COLLECTIONS)?,
        db,
        name,
    )
}

/// Applies the commit log's records after the last checkpoint (groups acknowledged
/// before a crash that the database file had not made durable), checkpoints them, and
/// answers the log ready for new records.
/// Replays the commit log; answers it, and the checkpoint (lsn, salt) the file had when
/// nothing needed replaying (what saved graphs are stamped with).
fn recover(db: &Database, dir: &Path) -> Result<(wal::Wal, Option<(u64, u64)>)> {
    let (checkpoint, salt) = {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        (
            meta.get(wal::CHECKPOINT_KEY)?.map_or(0, |v| v.value()),
            meta.get(wal::SALT_KEY)?.map_or(0, |v| v.value()),
        )
    };
    let (mut log, records) = wal::Wal::open(dir, checkpoint, salt)?;
    let clean = records.is_empty().then_some((checkpoint, salt));
    // Applied, and checkpointed with a fresh seed for this run's records.
    let txn = db.begin_write()?;
    {
        let mut replay = wal::Replay::new(&txn);
        for (_, payload) in &records {
            replay.apply(payload)?;
        }
    }
    let last = records.last().map_or(checkpoint, |(lsn, _)| *lsn);
    let salt = wal::new_salt();
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(wal::CHECKPOINT_KEY, last)?;
        meta.insert(wal::SALT_KEY, salt)?;
    }
    txn.commit()?;
    log.restart(salt);
    Ok((log, clean))
}

/// Moves the file to format `to` (at least), in a catalog change: it is durable before
/// anything of the newer format is written.
fn raise_format(txn: &redb::WriteTransaction, to: u64) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    let now = meta.get(FORMAT_KEY)?.map_or(BASE_FORMAT, |v| v.value());
    if now < to {
        meta.insert(FORMAT_KEY, to)?;
    }
    Ok(())
}

/// Checks (or, on a new file, writes) the format version. A file of format 1 that holds a
/// history of all versions (switched by a build that did not yet move the format) moves
/// to 2 here.
fn check_format(db: &Database) -> Result<()> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(FORMAT_KEY)?.map(|v| v.value());
        match found {
            None => {
                meta.insert(FORMAT_KEY, BASE_FORMAT)?;
            }
            Some(BASE_FORMAT..=FORMAT_VERSION) => {}
            Some(other) => {
                return Err(DbError::UnsupportedFormat(format!(
                    "database format version {other}; this build reads {BASE_FORMAT} to {FORMAT_VERSION}"
                )));
            }
        }
        txn.open_table(DATABASES)?;
        let colls = txn.open_table(COLLECTIONS)?;
        let mut histories = false;
        for entry in colls.iter()? {
            let (_, value) = entry?;
            // A record that does not decode fails where it is used, not here.
            histories |= decode_collection(value.value())
                .is_ok_and(|r| CollectionInfo::from_record("", r).history_since().is_some());
        }
        drop(meta);
        if histories {
            raise_format(&txn, 2)?;
        }
    }
    build_feeds(&txn)?;
    txn.commit()?;
    Ok(())
}

const FEED_VERSION_KEY: &str = "feed_version";

/// Files written before collections had change feeds get theirs once: an entry per stored
/// document at its sequence number.
fn build_feeds(txn: &redb::WriteTransaction) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    if meta.get(FEED_VERSION_KEY)?.is_some() {
        return Ok(());
    }
    let colls = txn.open_table(COLLECTIONS)?;
    for entry in colls.iter()? {
        let (_, value) = entry?;
        let table = decode_collection(value.value())?.table;
        let docs = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(table)))?;
        let mut feed = feed::FeedWriter::open(txn, table, ChangeFeedMode::LatestVersion)?;
        // A durable commit at open: nothing to log.
        let mut log = wal::Log::new(false);
        for doc in docs.iter()? {
            let (key, record) = doc?;
            feed.put(
                &mut log,
                record::header(record.value())?.seq,
                key.value(),
                record.value(),
                None,
            )?;
        }
    }
    meta.insert(FEED_VERSION_KEY, 1)?;
    Ok(())
}

/// A document as it will be stored: its key, its id, its compact JSON and its `ttl`.
struct Prepared {
    key: Vec<u8>,
    id: String,
    body: Map<String, Value>,
    /// The framed record, not yet stamped.
    frame: Vec<u8>,
    json_len: usize,
    ttl: Option<i64>,
}

/// The value at a JSON-pointer path inside a document.
fn pointer_in<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segs = path
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"));
    let mut current = map.get(&segs.next()?)?;
    for seg in segs {
        current = match current {
            Value::Object(m) => m.get(&seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The framed record of a document (see [`record::encode_unstamped`]) and its length as
/// compact JSON, checked against [`MAX_DOCUMENT_BYTES`] and [`record::MAX_DOCUMENT_DEPTH`].
/// The JSON is written into a buffer each thread keeps: a fresh vector would grow by
/// doubling, and its last step (to 1 KiB or more) makes glibc's malloc merge every small
/// block it holds free (4% of the samples at 32 writers, with the growth itself).
fn frame_checked(
    id: &str,
    body: &Map<String, Value>,
    ttl: Option<i64>,
) -> Result<(Vec<u8>, usize)> {
    /// What a thread's buffer may keep between documents.
    const KEEP: usize = 256 << 10;
    thread_local! {
        static JSON: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    JSON.with(|cell| {
        // A document serialized inside another one's (a serializer calling back into
        // the database) gets a buffer of its own.
        let mut own = Vec::new();
        let mut borrowed = cell.try_borrow_mut();
        let json = match borrowed.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => &mut own,
        };
        json.clear();
        let framed = serde_json::to_writer(&mut *json, &record::Limited(body))
            .map_err(|e| {
                if e.to_string() == record::TOO_DEEP {
                    DbError::invalid(
                        "document",
                        format!(
                            "document `{id}` nests objects and arrays more than {} levels deep",
                            record::MAX_DOCUMENT_DEPTH
                        ),
                    )
                } else {
                    DbError::invalid("document", e.to_string())
                }
            })
            .and_then(|()| {
                if json.len() > MAX_DOCUMENT_BYTES {
                    return Err(DbError::TooLarge(format!(
                        "document `{id}` is {} bytes of JSON; the limit is {MAX_DOCUMENT_BYTES}",
                        json.len()
                    )));
                }
                Ok((record::encode_unstamped(json, ttl), json.len()))
            });
        if json.capacity() > KEEP {
            *json = Vec::new();
        }
        framed
    })
}

/// Checks a document: an object with a string `id`, the partition key at `pk_path`, at
/// most [`MAX_DOCUMENT_BYTES`] of compact JSON; system properties are dropped.
fn prepare(document: Value, pk_path: &str) -> Result<Prepared> {
    let Value::Object(mut body) = document else {
        return Err(DbError::invalid("document", "must be a JSON object"));
    };
    for p in SYSTEM_PROPERTIES {
        body.remove(p);
    }
    let id = match body.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(DbError::invalid("id", "must be a string")),
        None => return Err(DbError::invalid("id", "the document has no `id`")),
    };
    check_id(&id)?;
    let pk = pointer_in(&body, pk_path).ok_or_else(|| {
        DbError::invalid(
            "partition_key",
            format!("document `{id}` has no value at the partition key {pk_path}"),
        )
    })?;
    let key = record::doc_key(pk, &id)?;
    let ttl = record::ttl_of(&body)?;
    let (frame, json_len) = frame_checked(&id, &body, ttl)?;
    Ok(Prepared {
        key,
        id,
        body,
        frame,
        json_len,
        ttl,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutKind {
    Insert,
    Upsert,
    Replace,
}

/// An operation checked and encoded on the caller's thread, ready for the writer.
enum Staged {
    Put {
        kind: PutKind,
        key: Vec<u8>,
        id: String,
        body: Option<Map<String, Value>>,
        frame: Vec<u8>,
        json_len: usize,
        ttl: Option<i64>,
        if_match: Option<String>,
    },
    Patch {
        key: Vec<u8>,
        id: String,
        operations: Vec<PatchOp>,
        if_match: Option<String>,
    },
    Delete {
        key: Vec<u8>,
        id: String,
        if_match: Option<String>,
    },
}

/// Stages one operation; `keep_body` keeps the parsed body for later operations of the
/// batch and for indexes (otherwise it is freed here rather than on the busy writer
/// thread).
fn stage(op: WriteOp, pk_path: &str, keep_body: bool) -> Result<Staged> {
    let put = |kind, document, if_match| -> Result<Staged> {
        let p = prepare(document, pk_path)?;
        Ok(Staged::Put {
            kind,
            key: p.key,
            id: p.id,
            frame: p.frame,
            json_len: p.json_len,
            ttl: p.ttl,
            body: keep_body.then_some(p.body),
            if_match,
        })
    };
    match op {
        WriteOp::Insert { document } => put(PutKind::Insert, document, None),
        WriteOp::Upsert { document, if_match } => put(PutKind::Upsert, document, if_match),
        WriteOp::Replace { document, if_match } => put(PutKind::Replace, document, if_match),
        WriteOp::Patch {
            partition_key,
            id,
            operations,
            if_match,
        } => {
            check_id(&id)?;
            if operations.is_empty() || operations.len() > MAX_PATCH_OPS {
                return Err(DbError::invalid(
                    "operations",
                    format!("a patch needs 1 to {MAX_PATCH_OPS} operations"),
                ));
            }
            Ok(Staged::Patch {
                key: record::doc_key(&partition_key, &id)?,
                id,
                operations,
                if_match,
            })
        }
        WriteOp::Delete {
            partition_key,
            id,
            if_match,
        } => {
            check_id(&id)?;
            Ok(Staged::Delete {
                key: record::doc_key(&partition_key, &id)?,
                id,
                if_match,
            })
        }
    }
}

/// What a key holds at this point of a write: in storage (only the record's header is
/// read; an expired record is stored but does not exist for callers), or as changed
/// earlier in the same batch.
enum Current {
    Absent,
    Stored(record::Header),
    Expired(record::Header),
    Pending,
}

impl Current {
    /// Whether the document exists for callers.
    fn exists(&self) -> bool {
        matches!(self, Current::Stored(_) | Current::Pending)
    }
}

type Docs<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;
type DocsReader = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;
type Overlay = HashMap<Vec<u8>, Option<Map<String, Value>>>;

fn current(
    table: &Docs<'_>,
    overlay: &Overlay,
    key: &[u8],
    expiry: &record::Expiry,
) -> Result<Current> {
    if let Some(state) = overlay.get(key) {
        return Ok(match state {
            None => Current::Absent,
            Some(_) => Current::Pending,
        });
    }
    match table.get(key)? {
        Some(v) => {
            let h = record::header(v.value())?;
            Ok(if expiry.expired(&h) {
                Current::Expired(h)
            } else {
                Current::Stored(h)
            })
        }
        None => Ok(Current::Absent),
    }
}

/// The body a patch starts from.
fn current_body(table: &Docs<'_>, overlay: &Overlay, key: &[u8]) -> Result<Map<String, Value>> {
    if let Some(Some(body)) = overlay.get(key) {
        return Ok(body.clone());
    }
    match table.get(key)? {
        Some(v) => Ok(record::decode(v.value())?.body),
        None => Ok(Map::new()),
    }
}

/// `if_match` against what the key holds; a write earlier in the same batch has no
/// ETag the caller could know, so it never matches.
fn check_etag(if_match: Option<&String>, current: &Current, id: &str) -> Result<()> {
    let Some(tag) = if_match else {
        return Ok(());
    };
    match current {
        Current::Stored(h) if etag_of(h.seq) == *tag => Ok(()),
        Current::Absent | Current::Expired(_) => Err(DbError::Conflict(format!(
            "document `{id}` does not exist, so it cannot match ETag {tag}"
        ))),
        _ => Err(DbError::Conflict(format!(
            "ETag {tag} does not match document `{id}`: it changed"
        ))),
    }
}

/// One operation after its checks: what to write at `key`, and the bodies before and
/// after (kept only when the collection has indexes).
struct Planned {
    key: Vec<u8>,
    id: String,
    /// The framed new record; `None` deletes.
    frame: Option<Vec<u8>>,
    old: Option<Map<String, Value>>,
    new: Option<Map<String, Value>>,
    /// The sequence of the stored version this operation replaces or deletes.
    old_seq: Option<u64>,
    /// The new document's own `ttl`.
    ttl: Option<i64>,
    /// Whether the document existed for callers (an expired one is stored but not live).
    was_live: bool,
}

/// The sequence of the record stored at a key (expired or not).
fn stored_seq(cur: &Current) -> Option<u64> {
    match cur {
        Current::Stored(h) | Current::Expired(h) => Some(h.seq),
        _ => None,
    }
}

/// One batch in the writer: a transaction's reads checked, then keys, ETags and unique
/// indexes checked against storage and the batch's own earlier operations, then written
/// with index and feed entries; a failing check fails the batch before any write.
fn write_job(
    ctx: &mut TxnCtx<'_>,
    db: &str,
    reads: &[(String, Vec<u8>, String, Option<u64>)],
    targets: &[Target],
    staged: Vec<(usize, Staged)>,
) -> Result<Reply> {
    let mut infos = Vec::with_capacity(targets.len());
    for t in targets {
        let info = ctx.collection(db, &t.name, read_collection_for_write)?;
        if info.table != t.table {
            return Err(DbError::Conflict(format!(
                "collection `{}` was dropped and created again during the write; retry it",
                t.name
            )));
        }
        infos.push(info);
    }
    // Each collection's documents table, opened once for all the reads of it.
    let mut read_tables: Vec<(&str, Docs<'_>, record::Expiry)> = Vec::new();
    for (i, (coll, key, id, seen)) in reads.iter().enumerate() {
        let at = match read_tables
            .iter()
            .position(|(name, ..)| *name == coll.as_str())
        {
            Some(at) => at,
            None => {
                let info = match ctx.collection(db, coll, read_collection_for_write) {
                    Ok(info) => info,
                    Err(DbError::NotFound(m)) => {
                        return Err(DbError::Conflict(format!("read {i}: {m} any more")));
                    }
                    Err(e) => return Err(e),
                };
                let txn = ctx.txn;
                let table = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
                    info.table,
                )))?;
                let expiry = record::Expiry {
                    default_ttl: info.default_ttl,
                    now_micros: ctx.ts_micros,
                };
                read_tables.push((coll.as_str(), table, expiry));
                read_tables.len() - 1
            }
        };
        let (_, table, expiry) = &read_tables[at];
        let now = match table.get(key.as_slice())? {
            Some(v) => {
                let h = record::header(v.value())?;
                (!expiry.expired(&h)).then_some(h.seq)
            }
            None => None,
        };
        if now != *seen {
            return Err(DbError::Conflict(format!(
                "read {i}: document `{id}` in `{coll}` changed after the transaction read it"
            )));
        }
    }
    // Closed before the writes open the tables they change.
    drop(read_tables);
    let txn = ctx.txn;
    let mut tables = Vec::with_capacity(infos.len());
    for info in &infos {
        tables.push(
            txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
                info.table,
            )))?,
        );
    }
    let many = staged.len() > 1;
    let mut overlays: Vec<Overlay> = vec![HashMap::new(); infos.len()];
    let mut unique = index::UniqueOverlay::default();
    let mut planned: Vec<(usize, Planned)> = Vec::with_capacity(staged.len());
    for (i, (at, op)) in staged.into_iter().enumerate() {
        let info = &infos[at];
        let indexed = !info.indexes.is_empty() || !info.vector_indexes.is_empty();
        let expiry = record::Expiry {
            default_ttl: info.default_ttl,
            now_micros: ctx.ts_micros,
        };
        let step = plan_one(
            &tables[at],
            &overlays[at],
            &targets[at].pk_path,
            op,
            indexed,
            &expiry,
        )
        .and_then(|step| {
            vector::check(&info.vector_indexes, step.new.as_ref(), &step.id)?;
            if info.indexes.iter().any(|i| i.unique) {
                let docs = &tables[at];
                let live = |key: &[u8]| -> Result<bool> {
                    Ok(match docs.get(key)? {
                        Some(v) => !expiry.expired(&record::header(v.value())?),
                        None => false,
                    })
                };
                unique.check(
                    txn,
                    &info.indexes,
                    &step.key,
                    &step.id,
                    step.old.as_ref().filter(|_| step.was_live),
                    step.new.as_ref(),
                    &live,
                )?;
            }
            Ok(step)
        })
        .map_err(|e| in_batch(e, i, many))?;
        // Only a batch can touch a key twice.
        if many {
            overlays[at].insert(step.key.clone(), step.new.clone());
        }
        planned.push((at, step));
    }
    let mut results = Vec::with_capacity(planned.len());
    let mut feeds = Vec::with_capacity(infos.len());
    for info in &infos {
        feeds.push(feed::FeedWriter::open(txn, info.table, info.change_feed)?);
    }
    // Feed entries written by this batch, by key: a later write of the key replaces them.
    let mut in_feed: HashMap<(usize, Vec<u8>), u64> = HashMap::new();
    for (at, step) in planned {
        let seq = ctx.next_seq();
        let info = &infos[at];
        let previous = if many {
            let slot = (at, step.key.clone());
            in_feed.insert(slot, seq).or(step.old_seq)
        } else {
            step.old_seq
        };
        if !info.indexes.is_empty() {
            index::update(
                txn,
                &mut ctx.log,
                &info.indexes,
                &step.key,
                step.old.as_ref(),
                step.new.as_ref(),
            )?;
        }
        if !info.vector_indexes.is_empty() {
            vector::update(
                txn,
                &mut ctx.log,
                &info.vector_indexes,
                &step.key,
                step.new.as_ref(),
                &step.id,
                graphs::Meta {
                    seq,
                    ts_micros: ctx.ts_micros,
                    ttl: step.ttl,
                },
            )?;
        }
        match step.frame {
            Some(mut frame) => {
                record::stamp(&mut frame, seq, ctx.ts_micros);
                tables[at].insert(step.key.as_slice(), frame.as_slice())?;
                ctx.log
                    .record(wal::Kind::Docs, info.table, &step.key, Some(&frame));
                feeds[at].put(&mut ctx.log, seq, &step.key, &frame, previous)?;
                if let Some(at_micros) = record::Expiry::expires_at(None, ctx.ts_micros, step.ttl) {
                    ttl::schedule(txn, &mut ctx.log, info.table, at_micros, &step.key)?;
                }
                results.push(WriteResult {
                    id: step.id,
                    etag: Some(etag_of(seq)),
                    seq,
                });
            }
            None => {
                tables[at].remove(step.key.as_slice())?;
                ctx.log.record(wal::Kind::Docs, info.table, &step.key, None);
                feeds[at].delete(&mut ctx.log, seq, ctx.ts_micros, &step.key, previous)?;
                results.push(WriteResult {
                    id: step.id,
                    etag: None,
                    seq,
                });
            }
        }
    }
    Ok(Reply::Writes(results))
}

/// The body at `key` before this operation, when indexes need it.
fn old_body(
    table: &Docs<'_>,
    overlay: &Overlay,
    key: &[u8],
    cur: &Current,
    indexed: bool,
) -> Result<Option<Map<String, Value>>> {
    if !indexed || matches!(cur, Current::Absent) {
        return Ok(None);
    }
    // An expired document is still stored, with its index entries.
    current_body(table, overlay, key).map(Some)
}

fn plan_one(
    table: &Docs<'_>,
    overlay: &Overlay,
    pk_path: &str,
    op: Staged,
    indexed: bool,
    expiry: &record::Expiry,
) -> Result<Planned> {
    match op {
        Staged::Put {
            kind,
            key,
            id,
            body,
            frame,
            ttl,
            if_match,
            ..
        } => {
            let cur = current(table, overlay, &key, expiry)?;
            match kind {
                PutKind::Insert if cur.exists() => {
                    return Err(DbError::AlreadyExists(format!(
                        "document `{id}` already exists"
                    )));
                }
                PutKind::Replace if !cur.exists() => {
                    return Err(DbError::NotFound(format!("document `{id}` does not exist")));
                }
                _ => {}
            }
            check_etag(if_match.as_ref(), &cur, &id)?;
            let old = old_body(table, overlay, &key, &cur, indexed)?;
            let new = match body {
                Some(body) => Some(body),
                // Staged before the collection had indexes: the frame holds the body.
                None if indexed => Some(record::decode(&frame)?.body),
                None => None,
            };
            Ok(Planned {
                key,
                id,
                frame: Some(frame),
                old,
                new,
                old_seq: stored_seq(&cur),
                ttl,
                was_live: cur.exists(),
            })
        }
        Staged::Patch {
            key,
            id,
            operations,
            if_match,
        } => {
            let cur = current(table, overlay, &key, expiry)?;
            if !cur.exists() {
                return Err(DbError::NotFound(format!("document `{id}` does not exist")));
            }
            check_etag(if_match.as_ref(), &cur, &id)?;
            let before = current_body(table, overlay, &key)?;
            let mut body = before.clone();
            patch::apply(&mut body, &operations, &["/id", pk_path])?;
            // The key must come out as it went in: a patch of a partition key's parent,
            // or a remove that shifts the array it sits in, would otherwise leave the
            // document stored under a key it no longer has. Compared with the key as read
            // from the same stored JSON (a float read back may differ from the one the
            // key was made from in its last digit).
            let key_in = |b: &Map<String, Value>| {
                pointer_in(b, pk_path).and_then(|pk| record::doc_key(pk, &id).ok())
            };
            let after = key_in(&body);
            let same_key = after.is_some() && after == key_in(&before);
            if !same_key {
                return Err(DbError::invalid(
                    "patch",
                    format!(
                        "the patch would change the partition key ({pk_path}) of document `{id}`; write the document again under its new key instead"
                    ),
                ));
            }
            let ttl = record::ttl_of(&body)?;
            let (frame, _) = frame_checked(&id, &body, ttl)?;
            Ok(Planned {
                key,
                id,
                frame: Some(frame),
                old: indexed.then_some(before),
                new: Some(body),
                old_seq: stored_seq(&cur),
                ttl,
                was_live: cur.exists(),
            })
        }
        Staged::Delete { key, id, if_match } => {
            let cur = current(table, overlay, &key, expiry)?;
            if !cur.exists() {
                return Err(DbError::NotFound(format!("document `{id}` does not exist")));
            }
            check_etag(if_match.as_ref(), &cur, &id)?;
            let old = old_body(table, overlay, &key, &cur, indexed)?;
            Ok(Planned {
                key,
                id,
                frame: None,
                old,
                new: None,
                old_seq: stored_seq(&cur),
                ttl: None,
                was_live: cur.exists(),
            })
        }
    }
}
