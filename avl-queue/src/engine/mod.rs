//! The in-process engine: topics of partitioned logs, and consumer groups' committed
//! offsets. Synchronous, owns its files.
//!
//! Files: `queue.redb` (tables `topics`: name → config as JSON; `offsets`: group, topic,
//! partition → the next offset the group will read) and `topics/{name}/{partition}/`,
//! each partition's segment files ([`partition`]).

pub(crate) mod groups;
pub(crate) mod partition;
pub(crate) mod queues;
pub(crate) mod record;
pub(crate) mod subscribe;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability as RedbDurability, ReadableDatabase, ReadableTable, TableDefinition,
};
use serde::{Deserialize, Serialize};

use crate::error::{QueueError, Result};
pub use groups::{MAX_SESSION_TIMEOUT, Membership};
use partition::Partition;
pub use partition::{Durability, Retention};
pub use queues::{
    Clock, DEDUP_WINDOW_MS, DeadLetter, MAX_DELAY_SECS, MAX_ID_LEN, MAX_QUEUE_BATCH,
    MAX_RECEIVE_WAIT, MAX_VISIBILITY_SECS, ManualClock, QueueConfig, QueueStats, Received,
    SendMessage, SystemClock,
};
pub use record::{Message, Record};
pub use subscribe::{Delivery, StartAt, Subscription, topic_matches};

/// The metadata database's file name.
pub const FILE_NAME: &str = "queue.redb";

const TOPICS: TableDefinition<&str, &[u8]> = TableDefinition::new("topics");
const OFFSETS: TableDefinition<&[u8], u64> = TableDefinition::new("offsets");

/// The largest message size a topic may allow.
pub const MAX_MESSAGE_BYTES_LIMIT: usize = 16 << 20;
/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;
/// Partitions in one engine, all topics together. Each holds its active segment open:
/// one file descriptor per partition, so a process with many partitions needs its
/// descriptor limit (`ulimit -n`, often 1,024 by default) above their count.
pub const MAX_TOTAL_PARTITIONS: u32 = 8192;
/// The most messages in one batch.
pub const MAX_BATCH: usize = 10_000;
/// The largest segment file size a topic may set.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
/// The most bytes (keys, values, headers) in one batch.
pub const MAX_BATCH_BYTES: usize = 64 << 20;
/// The most bytes a waiting read answers with (past the first record).
const READ_WAIT_BYTES: usize = 16 << 20;
/// The most headers on one message.
pub const MAX_HEADERS: usize = 64;
/// The longest topic or group name.
pub const MAX_NAME_LEN: usize = 249;

/// How a topic is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Partitions (1 to [`MAX_PARTITIONS`]).
    pub partitions: u32,
    /// When a publish is acknowledged.
    pub durability: Durability,
    /// The largest message (key, value and headers), 1 MiB unless set, at most 16 MiB.
    pub max_message_bytes: usize,
    /// Segment files roll over past this many bytes.
    pub segment_bytes: u64,
    /// How much is kept (everything by default).
    #[serde(default)]
    pub retention: Retention,
    /// Batches of more than one message are stored compressed (consumers see the
    /// original bytes).
    #[serde(default)]
    pub compression: Compression,
    /// Keep only the latest message of each key (offsets then skip what went).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<Compaction>,
}

/// Compaction by key: closed segments keep each key's latest message only; a tombstone
/// (a keyed message with an empty value) deletes its key, and goes itself after
/// `tombstone_retention_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// How long a tombstone stays for consumers to see it.
    pub tombstone_retention_ms: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            tombstone_retention_ms: 24 * 3600 * 1000,
        }
    }
}

/// How a topic's batches are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// As they are.
    #[default]
    None,
    /// LZ4: fast.
    Lz4,
    /// Zstandard: smaller.
    Zstd,
    /// avila-compress decides per batch (incompressible batches stay raw).
    Auto,
}

impl Compression {
    fn codec(self) -> Option<avila_compress::Codec> {
        match self {
            Compression::None => None,
            Compression::Lz4 => Some(avila_compress::Codec::Lz4),
            Compression::Zstd => Some(avila_compress::Codec::Zstd),
            Compression::Auto => Some(avila_compress::Codec::Auto(avila_compress::Profile::Hot)),
        }
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            durability: Durability::Always,
            max_message_bytes: 1 << 20,
            segment_bytes: 64 << 20,
            retention: Retention::default(),
            compression: Compression::None,
            compaction: None,
        }
    }
}

impl TopicConfig {
    /// A topic of `partitions` partitions, the other settings default.
    pub fn with_partitions(partitions: u32) -> Self {
        TopicConfig {
            partitions,
            ..TopicConfig::default()
        }
    }

    fn check(&self) -> Result<()> {
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(QueueError::invalid(
                "partitions",
                format!("must be 1 to {MAX_PARTITIONS}"),
            ));
        }
        if !(1..=MAX_MESSAGE_BYTES_LIMIT).contains(&self.max_message_bytes) {
            return Err(QueueError::invalid(
                "max_message_bytes",
                format!("must be 1 to {MAX_MESSAGE_BYTES_LIMIT}"),
            ));
        }
        if !(4096..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(QueueError::invalid(
                "segment_bytes",
                format!("4096 to {MAX_SEGMENT_BYTES}"),
            ));
        }
        if let Durability::Interval(ms) = self.durability
            && !(1..=60_000).contains(&ms)
        {
            return Err(QueueError::invalid(
                "durability",
                "an interval of 1 to 60000 ms",
            ));
        }
        Ok(())
    }
}

/// Where a published message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Its partition.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
}

/// A partition's readable range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// The partition.
    pub partition: u32,
    /// The first offset kept.
    pub start: u64,
    /// The next offset to be written (readable: `start..end`).
    pub end: u64,
    /// Syncs of its log since the engine opened (messages per sync show how well
    /// concurrent producers share them).
    pub syncs: u64,
    /// Offset ranges (`from..to`) that failed their checks when the log was opened:
    /// reads of them answer [`QueueError::Damaged`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<(u64, u64)>,
}

/// Where [`Engine::seek`] moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeekTo {
    /// The first offset kept.
    Beginning,
    /// The end: only messages published from now on.
    End,
    /// This offset (within `start..=end`).
    Offset(u64),
    /// The first message published at or after this time (ms since the epoch).
    Time(u64),
}

/// A group's position in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// The partition.
    pub partition: u32,
    /// The next offset the group will read (its committed offset, else the start).
    pub committed: Option<u64>,
    /// The partition's end.
    pub end: u64,
    /// Messages the group has not read.
    pub lag: u64,
}

struct Topic {
    config: TopicConfig,
    partitions: Vec<Partition>,
    round_robin: AtomicU64,
    /// Tells this topic from one of the same name created after it was deleted.
    incarnation: u64,
}

struct Inner {
    dir: PathBuf,
    db: Arc<Database>,
    queues: queues::Queues,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    groups: groups::Groups,
    notifier: Arc<partition::Notifier>,
    stop: AtomicBool,
}

/// The queue engine. `Send + Sync`: clone it or share it through `Arc`.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Checks a topic or group name: 1 to 249 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid(
            field,
            format!("`{name}`: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -, not . or .."),
        ))
    }
}

/// A random number, never 0: std's per-process random hasher keys over a counter, so
/// no two calls answer alike (producer ids, lease nonces).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn offset_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + topic.len() + 6);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The topic in an `offsets` key (group, 0, topic, 0, partition).
fn topic_of_offset_key(key: &[u8]) -> Option<&[u8]> {
    let rest = &key[key.iter().position(|&b| b == 0)? + 1..];
    let topic = rest.get(..rest.len().checked_sub(5)?)?;
    (rest.get(topic.len()) == Some(&0)).then_some(topic)
}

/// The one answer of a batch of one.
fn only<T>(mut answers: Vec<Result<T>>) -> Result<T> {
    answers
        .pop()
        .unwrap_or_else(|| Err(QueueError::Io("a batch of one answered nothing".into())))
}

/// The partition a key goes to: a stable hash, the same across restarts and versions.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (twox_hash::XxHash3_64::oneshot(key) % u64::from(partitions.max(1))) as u32
}

impl Engine {
    /// Opens (creating if needed) the engine in `dir`, recovering every partition's log.
    pub fn open(dir: impl AsRef<Path>) -> Result<Engine> {
        Engine::open_with_clock(dir, Arc::new(SystemClock::default()))
    }

    /// [`Engine::open`] with the clock queues' leases and delays use (tests move a
    /// [`ManualClock`]).
    pub fn open_with_clock(dir: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Engine> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(dir.join("topics"))?;
        let db = Arc::new(Database::create(dir.join(FILE_NAME))?);
        {
            let txn = db.begin_write()?;
            txn.open_table(TOPICS)?;
            txn.open_table(OFFSETS)?;
            txn.commit()?;
        }
        let mut topics = HashMap::new();
        let notifier = Arc::new(partition::Notifier::default());
        {
            let txn = db.begin_read()?;
            let table = txn.open_table(TOPICS)?;
            for row in table.iter()? {
                let (name, config) = row?;
                let config: TopicConfig = serde_json::from_slice(config.value())
                    .map_err(|e| QueueError::Corrupted(format!("topic config: {e}")))?;
                config.check().map_err(|e| {
                    QueueError::Corrupted(format!("topic `{}`'s config: {e}", name.value()))
                })?;
                let topic = open_topic(&dir, name.value(), config, &notifier)?;
                topics.insert(name.value().to_string(), Arc::new(topic));
            }
        }
        let queues = queues::Queues::open(Arc::clone(&db), clock)?;
        let engine = Engine {
            inner: Arc::new(Inner {
                dir,
                db,
                queues,
                topics: RwLock::new(topics),
                groups: groups::Groups::default(),
                notifier,
                stop: AtomicBool::new(false),
            }),
        };
        engine.start_flusher();
        Ok(engine)
    }

    /// Syncs `Interval` topics in the background, each at its own interval (the thread
    /// sleeps 100 ms while there are none, and ends with the engine).
    fn start_flusher(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("avl-queue-flush".into())
            .spawn(move || {
                let mut last: HashMap<String, std::time::Instant> = HashMap::new();
                let mut nap = Duration::from_millis(100);
                let mut retention_due = std::time::Instant::now();
                let mut sweep_due = std::time::Instant::now();
                let mut queue_flush_due = std::time::Instant::now();
                loop {
                    std::thread::sleep(nap);
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.stop.load(Ordering::Acquire) {
                        return;
                    }
                    let topics: Vec<(String, Arc<Topic>, u64)> = inner
                        .topics
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .iter()
                        .filter_map(|(n, t)| match t.config.durability {
                            Durability::Interval(ms) => Some((n.clone(), Arc::clone(t), ms)),
                            _ => None,
                        })
                        .collect();
                    drop(inner);
                    if retention_due.elapsed() >= Duration::from_secs(1) {
                        if let Some(inner) = weak.upgrade()
                            && let Err(e) = apply_retention(&inner, now_ms())
                        {
                            tracing::warn!(error = %e, "applying retention failed");
                        }
                        retention_due = std::time::Instant::now();
                    }
                    if sweep_due.elapsed() >= Duration::from_secs(30) {
                        if let Some(inner) = weak.upgrade() {
                            let topics: Vec<Arc<Topic>> = inner
                                .topics
                                .read()
                                .unwrap_or_else(PoisonError::into_inner)
                                .values()
                                .filter(|t| t.config.compaction.is_some())
                                .cloned()
                                .collect();
                            for t in topics {
                                if let Err(e) = compact_topic(&t, now_ms()) {
                                    tracing::warn!(error = %e, "compacting a topic failed");
                                }
                            }
                        }
                        if let Some(inner) = weak.upgrade()
                            && let Err(e) = inner.queues.sweep()
                        {
                            tracing::warn!(error = %e, "sweeping queues failed");
                        }
                        sweep_due = std::time::Instant::now();
                    }
                    nap = Duration::from_millis(100);
                    if let Some(inner) = weak.upgrade() {
                        // Interval queues: one sync for everything committed since the last.
                        let every = inner
                            .queues
                            .list()
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|(_, c)| match c.durability {
                                Durability::Interval(ms) => Some(ms),
                                _ => None,
                            })
                            .min();
                        if let Some(ms) = every {
                            nap = nap.min(Duration::from_millis(ms));
                            if queue_flush_due.elapsed() >= Duration::from_millis(ms) {
                                if let Err(e) = inner.queues.flush() {
                                    tracing::warn!(error = %e, "syncing queues failed");
                                }
                                queue_flush_due = std::time::Instant::now();
                            }
                        }
                    }
                    for (name, topic, ms) in topics {
                        let every = Duration::from_millis(ms);
                        nap = nap.min(every);
                        if last.get(&name).is_none_or(|t| t.elapsed() >= every) {
                            for p in &topic.partitions {
                                // A failure is kept by the partition, which then refuses
                                // writes; nothing else to do here.
                                let _ = p.sync_now();
                            }
                            last.insert(name, std::time::Instant::now());
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "the queue's flush thread did not start: Interval topics are synced only by the OS");
        }
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| QueueError::NoSuchTopic(name.to_string()))
    }

    /// Applies every topic's retention now (the background thread does it every second);
    /// answers how many segment files were deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        apply_retention(&self.inner, now_ms())
    }

    /// Compacts a topic now (the background thread does it every 30 s for topics with
    /// compaction); answers how many messages went.
    pub fn compact(&self, topic: &str) -> Result<usize> {
        let t = self.topic(topic)?;
        compact_topic(&t, now_ms())
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<()> {
        check_name("topic", name)?;
        config.check()?;
        let mut topics = self
            .inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if topics.contains_key(name) {
            return Err(QueueError::TopicExists(name.to_string()));
        }
        let held: usize = topics.values().map(|t| t.partitions.len()).sum();
        if held + config.partitions as usize > MAX_TOTAL_PARTITIONS as usize {
            return Err(QueueError::invalid(
                "partitions",
                format!(
                    "{} more would pass {MAX_TOTAL_PARTITIONS} in this engine ({held} held)",
                    config.partitions
                ),
            ));
        }
        let topics_dir = self.inner.dir.join("topics");
        let dir = topics_dir.join(name);
        // Leftovers of a topic deleted before a crash are not this topic's.
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            partition::sync_dir(&topics_dir)?;
        }
        // Every directory entry is durable before the topic is (open_topic syncs each
        // new directory's parent).
        let topic = open_topic(&self.inner.dir, name, config.clone(), &self.inner.notifier)?;
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| QueueError::Io(format!("topic config: {e}")))?;
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(RedbDurability::Immediate)
            .map_err(|e| QueueError::Io(e.to_string()))?;
        txn.open_table(TOPICS)?.insert(name, bytes.as_slice())?;
        txn.commit()?;
        topics.insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    /// Deletes a topic, its messages and its groups' offsets. Appends still under way on
    /// it fail with `TopicDeleted`.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let mut topics = self
            .inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(topic) = topics.get(name).cloned() else {
            return Err(QueueError::NoSuchTopic(name.to_string()));
        };
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(RedbDurability::Immediate)
            .map_err(|e| QueueError::Io(e.to_string()))?;
        {
            txn.open_table(TOPICS)?.remove(name)?;
            let mut offsets = txn.open_table(OFFSETS)?;
            let mut doomed = Vec::new();
            for row in offsets.iter()? {
                let (k, _) = row?;
                if topic_of_offset_key(k.value()) == Some(name.as_bytes()) {
                    doomed.push(k.value().to_vec());
                }
            }
            for k in doomed {
                offsets.remove(k.as_slice())?;
            }
        }
        txn.commit()?;
        topics.remove(name);
        self.inner.groups.forget_topic(name);
        for p in &topic.partitions {
            p.close_for_delete();
        }
        // Still under the lock: a topic of the same name created next gets a clean
        // directory, never one this removal is still emptying.
        let topics_dir = self.inner.dir.join("topics");
        std::fs::remove_dir_all(topics_dir.join(name))?;
        partition::sync_dir(&topics_dir)?;
        Ok(())
    }

    /// The topics and their configs, by name.
    pub fn list_topics(&self) -> Vec<(String, TopicConfig)> {
        let topics = self
            .inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = topics
            .iter()
            .map(|(n, t)| (n.clone(), t.config.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A topic's partitions and their readable ranges.
    pub fn partitions(&self, topic: &str) -> Result<Vec<PartitionInfo>> {
        let t = self.topic(topic)?;
        Ok(t.partitions
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (start, end) = p.bounds();
                PartitionInfo {
                    partition: i as u32,
                    start,
                    end,
                    syncs: p.syncs(),
                    damaged: p.damaged(),
                }
            })
            .collect())
    }

    /// Checks a batch: its count, its bytes, each message.
    fn check_batch(&self, t: &Topic, messages: &[Message]) -> Result<()> {
        if messages.len() > MAX_BATCH {
            return Err(QueueError::invalid(
                "messages",
                format!("{} in one batch; at most {MAX_BATCH}", messages.len()),
            ));
        }
        let mut total = 0usize;
        for m in messages {
            total += self.check_message(t, m)?;
        }
        if total > MAX_BATCH_BYTES {
            return Err(QueueError::TooLarge {
                what: "the batch".into(),
                size: total,
                max: MAX_BATCH_BYTES,
            });
        }
        Ok(())
    }

    /// Checks one message; answers its size.
    fn check_message(&self, t: &Topic, m: &Message) -> Result<usize> {
        if m.headers.len() > MAX_HEADERS {
            return Err(QueueError::invalid(
                "headers",
                format!("{} headers; at most {MAX_HEADERS}", m.headers.len()),
            ));
        }
        if m.headers
            .iter()
            .any(|(n, _)| n.len() > usize::from(u16::MAX))
        {
            return Err(QueueError::invalid(
                "headers",
                "a header name over 65535 bytes",
            ));
        }
        let size = m.value.len()
            + m.key.as_ref().map_or(0, Vec::len)
            + m.headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>();
        if size > t.config.max_message_bytes {
            return Err(QueueError::TooLarge {
                what: "the message".into(),
                size,
                max: t.config.max_message_bytes,
            });
        }
        Ok(size)
    }

    /// Publishes one message: to its key's partition, or round robin without a key.
    pub fn publish(&self, topic: &str, message: Message) -> Result<Published> {
        let mut out = self.publish_batch(topic, vec![message])?;
        out.pop()
            .ok_or_else(|| QueueError::Io("a batch of one published nothing".into()))
    }

    /// Publishes a batch (up to [`MAX_BATCH`] messages): each partition's share is
    /// appended, and synced, together; answers where each message went, in order.
    /// A message over the limits fails the whole batch before anything is written; a
    /// write that fails on one partition leaves the shares of the partitions before it
    /// written (use one partition, or an idempotent producer, to retry without
    /// duplicates).
    pub fn publish_batch(&self, topic: &str, messages: Vec<Message>) -> Result<Vec<Published>> {
        let t = self.topic(topic)?;
        self.check_batch(&t, &messages)?;
        let n = t.config.partitions;
        let mut by_partition: Vec<Vec<(usize, &Message)>> = vec![Vec::new(); n as usize];
        for (i, m) in messages.iter().enumerate() {
            let p = match &m.key {
                Some(k) => partition_for_key(k, n),
                None => (t.round_robin.fetch_add(1, Ordering::Relaxed) % u64::from(n)) as u32,
            };
            by_partition[p as usize].push((i, m));
        }
        let mut out = vec![
            Published {
                partition: 0,
                offset: 0
            };
            messages.len()
        ];
        let now = now_ms();
        for (p, share) in by_partition.iter().enumerate() {
            if share.is_empty() {
                continue;
            }
            let batch: Vec<&Message> = share.iter().map(|(_, m)| *m).collect();
            let first = t.partitions[p].append(&batch, now)?;
            for (k, (i, _)) in share.iter().enumerate() {
                out[*i] = Published {
                    partition: p as u32,
                    offset: first + k as u64,
                };
            }
        }
        Ok(out)
    }

    /// Publishes `messages` to one partition, in order; answers the first offset.
    pub fn publish_to(&self, topic: &str, partition: u32, messages: &[Message]) -> Result<u64> {
        let t = self.topic(topic)?;
        let p = partition_of(&t, topic, partition)?;
        self.check_batch(&t, messages)?;
        let batch: Vec<&Message> = messages.iter().collect();
        if batch.is_empty() {
            return Ok(p.bounds().1);
        }
        p.append(&batch, now_ms())
    }

    /// Publishes `messages` to one partition as idempotent producer `producer` (not 0),
    /// numbered from `first_sequence` (the producer numbers each partition's messages
    /// 0, 1, 2, ...): messages it already published there are not written again and
    /// answer their offsets, so a producer that resends after a lost answer makes no
    /// duplicates. Survives restarts (the numbers are in the log). Answers each
    /// message's offset.
    pub fn publish_idempotent(
        &self,
        topic: &str,
        partition: u32,
        producer: u64,
        first_sequence: u64,
        messages: &[Message],
    ) -> Result<Vec<u64>> {
        if producer == 0 {
            return Err(QueueError::invalid("producer", "0 means no producer"));
        }
        let t = self.topic(topic)?;
        let p = partition_of(&t, topic, partition)?;
        self.check_batch(&t, messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<&Message> = messages.iter().collect();
        p.append_as(&batch, Some((producer, first_sequence)), now_ms())
    }

    /// A fresh idempotent producer id (random, never 0).
    pub fn new_producer_id() -> u64 {
        random_u64()
    }

    /// Up to `max` records of a partition from `offset` on (fewer past `max_bytes` of
    /// values); empty at the end. An offset outside `start..=end` is `OffsetOutOfRange`.
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        let t = self.topic(topic)?;
        read_in(&t, topic, partition, offset, max, max_bytes)
    }

    /// Which incarnation of `topic` is there now, if any.
    pub(crate) fn incarnation(&self, topic: &str) -> Option<u64> {
        self.topic(topic).ok().map(|t| t.incarnation)
    }

    /// [`Engine::read`] of one incarnation of `topic`: `None` when the topic there now is
    /// another (deleted and created again).
    pub(crate) fn read_incarnation(
        &self,
        topic: &str,
        incarnation: u64,
        partition: u32,
        offset: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Option<Vec<Record>>> {
        let t = self.topic(topic)?;
        if t.incarnation != incarnation {
            return Ok(None);
        }
        read_in(&t, topic, partition, offset, max, max_bytes).map(Some)
    }
}

/// Reads a partition of `t` (named `topic`), its errors naming the partition.
fn read_in(
    t: &Topic,
    topic: &str,
    partition: u32,
    offset: u64,
    max: usize,
    max_bytes: usize,
) -> Result<Vec<Record>> {
    let p = partition_of(t, topic, partition)?;
    p.read(offset, max, max_bytes).map_err(|e| match e {
        QueueError::OffsetOutOfRange {
            offset, start, end, ..
        } => QueueError::OffsetOutOfRange {
            partition,
            offset,
            start,
            end,
        },
        QueueError::Damaged { from, to, .. } => QueueError::Damaged {
            partition,
            from,
            to,
        },
        other => other,
    })
}

impl Engine {
    /// [`Engine::read`] that waits up to `wait` for a record when there is none yet.
    pub fn read_wait(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let t = self.topic(topic)?;
        let p = partition_of(&t, topic, partition)?;
        p.wait_for(offset, wait);
        self.read(topic, partition, offset, max, READ_WAIT_BYTES)
    }

    /// Records that `group` has read `topic`'s `partition` up to (not including)
    /// `offset`: where it resumes. Durable when this returns.
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        self.commit_offsets(group, topic, &[(partition, offset)])
    }

    /// Commits several partitions' offsets in one durable transaction, all or none.
    fn commit_offsets(&self, group: &str, topic: &str, offsets: &[(u32, u64)]) -> Result<()> {
        check_name("group", group)?;
        let t = self.topic(topic)?;
        for &(partition, offset) in offsets {
            let p = partition_of(&t, topic, partition)?;
            let (start, end) = p.bounds();
            if offset < start || offset > end {
                return Err(QueueError::OffsetOutOfRange {
                    partition,
                    offset,
                    start,
                    end,
                });
            }
        }
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(RedbDurability::Immediate)
            .map_err(|e| QueueError::Io(e.to_string()))?;
        // Checked in the transaction: a deletion that committed since the check above
        // leaves no offset behind for a later topic of the same name.
        if txn.open_table(TOPICS)?.get(topic)?.is_none() {
            return Err(QueueError::NoSuchTopic(topic.to_string()));
        }
        {
            let mut table = txn.open_table(OFFSETS)?;
            for &(partition, offset) in offsets {
                table.insert(offset_key(group, topic, partition).as_slice(), offset)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Joins `member` to `group` on `topic` (or renews it): answers its partitions in the
    /// group's current generation. A member that does not heartbeat (or join) within
    /// `session_timeout` is dropped and its partitions dealt to the others.
    pub fn join_group(
        &self,
        group: &str,
        topic: &str,
        member: &str,
        session_timeout: Duration,
    ) -> Result<Membership> {
        check_name("group", group)?;
        let t = self.topic(topic)?;
        self.inner.groups.join(
            group,
            topic,
            member,
            session_timeout,
            t.config.partitions,
            std::time::Instant::now(),
        )
    }

    /// Keeps `member` alive; answers its current assignment (a new generation means the
    /// partitions moved: commit, then read the new ones).
    pub fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Membership> {
        let t = self.topic(topic)?;
        self.inner.groups.heartbeat(
            group,
            topic,
            member,
            t.config.partitions,
            std::time::Instant::now(),
        )
    }

    /// Takes `member` out of the group; its partitions go to the others at once.
    pub fn leave_group(&self, group: &str, topic: &str, member: &str) -> Result<()> {
        let t = self.topic(topic)?;
        self.inner.groups.leave(
            group,
            topic,
            member,
            t.config.partitions,
            std::time::Instant::now(),
        )
    }

    /// [`Engine::commit_offset`] by a member: refused (`StaleGeneration`) unless the
    /// member owns the partition in the group's current generation, so a member that was
    /// presumed dead cannot move an offset its successor owns.
    pub fn commit_as_member(
        &self,
        membership: &Membership,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        let t = self.topic(topic)?;
        self.inner.groups.check_owner(
            group,
            topic,
            &membership.member,
            membership.generation,
            partition,
            t.config.partitions,
            std::time::Instant::now(),
        )?;
        self.commit_offset(group, topic, partition, offset)
    }

    /// The first offset of a partition whose message was appended at or after
    /// `timestamp_ms` (the end when there is none): where to seek to read from a time.
    pub fn offset_for_time(&self, topic: &str, partition: u32, timestamp_ms: u64) -> Result<u64> {
        let t = self.topic(topic)?;
        let p = partition_of(&t, topic, partition)?;
        p.offset_for_time(timestamp_ms)
    }

    // ---- queues --------------------------------------------------------------------

    /// Creates a queue (its dead-letter queue, if it names one, must exist).
    pub fn create_queue(&self, name: &str, config: QueueConfig) -> Result<()> {
        self.inner.queues.create(name, config)
    }

    /// Deletes a queue and its messages.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        self.inner.queues.delete(name)
    }

    /// The queues, by name.
    pub fn list_queues(&self) -> Result<Vec<(String, QueueConfig)>> {
        self.inner.queues.list()
    }

    /// Sends one message; answers its id (a FIFO duplicate within the deduplication
    /// window answers the original's).
    pub fn send(&self, queue: &str, message: SendMessage) -> Result<u64> {
        only(self.inner.queues.send(queue, vec![message])?)
    }

    /// Sends up to 10 messages: a result per message.
    pub fn send_batch(&self, queue: &str, messages: Vec<SendMessage>) -> Result<Vec<Result<u64>>> {
        self.inner.queues.send(queue, messages)
    }

    /// Receives up to `max` (1 to 10) messages, each hidden from other receivers for
    /// `visibility_timeout_secs` (the queue's unless given); waits up to `wait` (at most
    /// 20 s) for one.
    pub fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout_secs: Option<u64>,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        self.inner
            .queues
            .receive(queue, max, visibility_timeout_secs, wait)
    }

    /// Deletes (acknowledges) a received message by its receipt handle: only the
    /// handle of its current lease works.
    pub fn delete_message(&self, queue: &str, receipt_handle: &str) -> Result<()> {
        only(
            self.inner
                .queues
                .delete_messages(queue, vec![receipt_handle.to_string()])?,
        )
    }

    /// Deletes up to 10 received messages in one commit: a result per handle.
    pub fn delete_message_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> Result<Vec<Result<()>>> {
        self.inner.queues.delete_messages(queue, receipt_handles)
    }

    /// Changes how long a received message stays hidden (a heartbeat extends it; 0
    /// makes it visible at once).
    pub fn change_visibility(&self, queue: &str, receipt_handle: &str, secs: u64) -> Result<()> {
        only(
            self.inner
                .queues
                .change_visibility(queue, vec![(receipt_handle.to_string(), secs)])?,
        )
    }

    /// Changes the visibility of up to 10 received messages, `(receipt handle,
    /// seconds)` each, in one commit: a result per entry.
    pub fn change_visibility_batch(
        &self,
        queue: &str,
        entries: Vec<(String, u64)>,
    ) -> Result<Vec<Result<()>>> {
        self.inner.queues.change_visibility(queue, entries)
    }

    /// Gives a received message back, to be received again after `delay_secs`.
    pub fn nack(&self, queue: &str, receipt_handle: &str, delay_secs: u64) -> Result<()> {
        self.change_visibility(queue, receipt_handle, delay_secs)
    }

    /// Moves every message of a dead-letter queue back to the queue it came from;
    /// answers how many.
    pub fn redrive(&self, dead_letter_queue: &str) -> Result<u64> {
        self.inner.queues.redrive(dead_letter_queue)
    }

    /// Drops every message of a queue.
    pub fn purge(&self, queue: &str) -> Result<()> {
        self.inner.queues.purge(queue)
    }

    /// Drops queued messages past their retention and deduplication ids past their
    /// window now (the background thread does it every 30 s); answers how many rows went.
    pub fn sweep_queues(&self) -> Result<usize> {
        self.inner.queues.sweep()
    }

    /// A queue's counts.
    pub fn queue_stats(&self, queue: &str) -> Result<QueueStats> {
        self.inner.queues.stats(queue)
    }

    /// Where `group` resumes in a partition, if it committed there.
    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>> {
        let t = self.topic(topic)?;
        partition_of(&t, topic, partition)?;
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(OFFSETS)?;
        Ok(table
            .get(offset_key(group, topic, partition).as_slice())?
            .map(|v| v.value()))
    }

    /// Moves `group`'s committed position on `topic` (one partition, or every one) to
    /// `to`, durably; answers the lag from there. Like committing by hand, it is not
    /// fenced: members reading meanwhile may commit over it.
    pub fn seek(
        &self,
        group: &str,
        topic: &str,
        partition: Option<u32>,
        to: SeekTo,
    ) -> Result<Vec<Lag>> {
        let partitions: Vec<u32> = match partition {
            Some(p) => vec![p],
            None => (0..self.partitions(topic)?.len() as u32).collect(),
        };
        let mut offsets = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (start, end) = {
                let t = self.topic(topic)?;
                partition_of(&t, topic, p)?.bounds()
            };
            let offset = match to {
                SeekTo::Beginning => start,
                SeekTo::End => end,
                SeekTo::Offset(o) => o,
                SeekTo::Time(ms) => self.offset_for_time(topic, p, ms)?,
            };
            offsets.push((p, offset));
        }
        // Every partition or none.
        self.commit_offsets(group, topic, &offsets)?;
        self.lag(group, topic)
    }

    /// How far behind `group` is in each partition of `topic`.
    pub fn lag(&self, group: &str, topic: &str) -> Result<Vec<Lag>> {
        let mut out = Vec::new();
        for info in self.partitions(topic)? {
            let committed = self.committed_offset(group, topic, info.partition)?;
            let from = committed.unwrap_or(info.start).max(info.start);
            out.push(Lag {
                partition: info.partition,
                committed,
                end: info.end,
                lag: info.end.saturating_sub(from),
            });
        }
        // A group is known on a topic once it committed there or while it has members.
        if out.iter().all(|l| l.committed.is_none())
            && !self.inner.groups.has_members(group, topic, Instant::now())
        {
            return Err(QueueError::NoSuchGroup {
                group: group.to_string(),
                topic: topic.to_string(),
            });
        }
        Ok(out)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Queues that do not sync on every change: what they committed is made durable
        // at a clean close.
        if let Err(e) = self.queues.flush() {
            tracing::warn!(error = %e, "syncing queues at close failed");
        }
    }
}

fn apply_retention(inner: &Inner, now: u64) -> Result<usize> {
    let topics: Vec<Arc<Topic>> = inner
        .topics
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter(|t| t.config.retention != Retention::default())
        .cloned()
        .collect();
    let mut removed = 0;
    for t in topics {
        for p in &t.partitions {
            removed += p.retain(&t.config.retention, now)?;
        }
    }
    Ok(removed)
}

fn compact_topic(t: &Topic, now: u64) -> Result<usize> {
    let Some(c) = t.config.compaction else {
        return Ok(0);
    };
    let mut removed = 0;
    for p in &t.partitions {
        removed += p.compact(c.tombstone_retention_ms, now)?;
    }
    Ok(removed)
}

fn partition_of<'a>(t: &'a Topic, topic: &str, partition: u32) -> Result<&'a Partition> {
    t.partitions
        .get(partition as usize)
        .ok_or_else(|| QueueError::NoSuchPartition {
            topic: topic.to_string(),
            partition,
        })
}

fn open_topic(
    dir: &Path,
    name: &str,
    config: TopicConfig,
    notifier: &Arc<partition::Notifier>,
) -> Result<Topic> {
    let base = dir.join("topics").join(name);
    let partitions = (0..config.partitions)
        .map(|p| {
            Partition::open(
                &base.join(p.to_string()),
                config.durability,
                config.segment_bytes,
                config.compression.codec(),
                config.compaction.is_some(),
                Arc::clone(notifier),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Topic {
        config,
        partitions,
        round_robin: AtomicU64::new(0),
        incarnation: random_u64(),
    })
}
