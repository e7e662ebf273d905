//! SQS-like queues in redb: standard and FIFO, leases with single-use receipt handles,
//! delays, dead-letter queues and redrive, deduplication that survives restarts.
//!
//! Tables (in `queue.redb`):
//! - `queues`: name → config (JSON);
//! - `queue_messages`: queue, 0, seq (big-endian) → the message (JSON);
//! - `queue_ready`: queue, 0, visible at (ms, big-endian), seq → (): what a standard
//!   queue's receive scans, in the order messages become visible;
//! - `queue_in_flight`: queue, 0, group → seq: the one message of a FIFO group out;
//! - `queue_dedup`: queue, 0, deduplication id → (seq, expires at ms);
//! - `queue_meta`: queue → next seq.
//!
//! **Group commit.** Every change is an operation run inside a shared durable redb write
//! transaction: callers queue theirs, the first one finding no commit running leads,
//! runs every queued operation in one transaction and commits it once (one sync for all
//! of them), then hands each its answer. An operation checks everything before it
//! writes, so one that fails leaves nothing in the shared transaction.
//!
//! **Time.** Leases and delays use the engine's [`Clock`]: by default the wall-clock
//! time at open plus a monotonic clock since, so a wall-clock jump while running moves no
//! lease; tests drive a [`ManualClock`].

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability as RedbDurability, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::partition::Durability;
use super::record::b64;
use crate::error::{QueueError, Result};

const QUEUES: TableDefinition<&str, &[u8]> = TableDefinition::new("queues");
const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue_messages");
const READY: TableDefinition<&[u8], ()> = TableDefinition::new("queue_ready");
const IN_FLIGHT: TableDefinition<&[u8], u64> = TableDefinition::new("queue_in_flight");
const DEDUP: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("queue_dedup");
const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");
/// FIFO: (queue, group, 0, seq) for every message of a group, so its next one is found
/// without a scan.
const GROUP_MESSAGES: TableDefinition<&[u8], ()> = TableDefinition::new("queue_group_messages");
/// FIFO: (queue, seq) → group of each group's oldest message (its head), in seq order:
/// what a receive looks at, instead of every stored message.
const HEADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("queue_fifo_heads");
/// A `META` key (no queue name starts with a space): set once the FIFO tables above
/// cover every stored message.
const HEADS_BUILT: &str = " fifo heads";

/// The longest visibility timeout (12 hours).
pub const MAX_VISIBILITY_SECS: u64 = 12 * 3600;
/// The longest delay (15 minutes).
pub const MAX_DELAY_SECS: u64 = 15 * 60;
/// The most messages in one send, receive or delete batch.
pub const MAX_QUEUE_BATCH: usize = 10;
/// The longest receive wait (long polling).
pub const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// How long a deduplication id is remembered.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;
/// The longest deduplication id or message group id.
pub const MAX_ID_LEN: usize = 128;

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, never going back.
    fn now_ms(&self) -> u64;
}

/// The wall-clock time at start plus a monotonic clock since.
#[derive(Debug)]
pub struct SystemClock {
    base_ms: u64,
    started: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            base_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            started: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + self.started.elapsed().as_millis() as u64
    }
}

/// A clock that moves only when told (for tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock at `ms`.
    pub fn at(ms: u64) -> Self {
        ManualClock {
            now: AtomicU64::new(ms),
        }
    }

    /// Moves it forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// How a queue behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// FIFO: strict order per message group, one message of a group out at a time,
    /// deduplication.
    #[serde(default)]
    pub fifo: bool,
    /// How long a received message stays hidden (default 30 s, at most 12 h).
    pub visibility_timeout_secs: u64,
    /// Delay before a sent message can be received (at most 15 min).
    #[serde(default)]
    pub delay_secs: u64,
    /// Messages older than this are dropped (default 4 days).
    pub retention_secs: u64,
    /// The largest message body.
    pub max_message_bytes: usize,
    /// Where messages go after `max_receive_count` receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetter>,
    /// FIFO: a message without a deduplication id is deduplicated by its body's hash.
    #[serde(default)]
    pub content_based_deduplication: bool,
    /// When sends, receives and deletes are acknowledged: after a sync (`Always`, the
    /// default; concurrent callers share it), with a sync every so many milliseconds, or
    /// when the OS writes.
    #[serde(default = "always")]
    pub durability: Durability,
}

fn always() -> Durability {
    Durability::Always
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            fifo: false,
            visibility_timeout_secs: 30,
            delay_secs: 0,
            retention_secs: 4 * 24 * 3600,
            max_message_bytes: 1 << 20,
            dead_letter: None,
            content_based_deduplication: false,
            durability: Durability::Always,
        }
    }
}

/// A dead-letter policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The dead-letter queue (it must exist).
    pub queue: String,
    /// Receives after which a message moves there (1 to 1000).
    pub max_receive_count: u32,
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The body.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// Attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// This message's delay (standard queues), instead of the queue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_secs: Option<u64>,
    /// FIFO: its group (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// FIFO: its deduplication id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplication_id: Option<String>,
}

impl SendMessage {
    /// A message with a body.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        SendMessage {
            body: body.into(),
            ..SendMessage::default()
        }
    }

    /// In a FIFO group.
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// With a deduplication id.
    pub fn dedup(mut self, id: impl Into<String>) -> Self {
        self.deduplication_id = Some(id.into());
        self
    }

    /// Delayed.
    pub fn delayed(mut self, secs: u64) -> Self {
        self.delay_secs = Some(secs);
        self
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The message's id (its sequence number in the queue).
    pub id: u64,
    /// What deletes it or changes its visibility, for this lease only.
    pub receipt_handle: String,
    /// The body.
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    /// Attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Times received, this one included.
    pub receive_count: u32,
    /// When it was sent (ms).
    pub sent_ms: u64,
    /// FIFO: its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// A queue's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Receivable now.
    pub available: u64,
    /// Received and not yet deleted or visible again.
    pub in_flight: u64,
    /// Waiting out a delay.
    pub delayed: u64,
}

/// What a stored message says of its state, read without its body.
#[derive(Debug, Clone, Deserialize)]
struct Meta {
    #[serde(default)]
    group_id: Option<String>,
    sent_ms: u64,
    visible_at: u64,
    leased: bool,
}

/// A message as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(with = "b64")]
    body: Vec<u8>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    group_id: Option<String>,
    sent_ms: u64,
    visible_at: u64,
    receive_count: u32,
    /// The current lease's nonce (0: never received).
    nonce: u64,
    /// Whether a lease is out (visible_at is its end).
    leased: bool,
    /// The queue it was first sent to (kept through dead-lettering, for redrive).
    source: String,
}

fn key(queue: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(queue.len() + 1 + rest.len());
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

fn msg_key(queue: &str, seq: u64) -> Vec<u8> {
    key(queue, &seq.to_be_bytes())
}

fn ready_key(queue: &str, visible_at: u64, seq: u64) -> Vec<u8> {
    let mut rest = [0u8; 16];
    rest[..8].copy_from_slice(&visible_at.to_be_bytes());
    rest[8..].copy_from_slice(&seq.to_be_bytes());
    key(queue, &rest)
}

fn encode(m: &Stored) -> Result<Vec<u8>> {
    serde_json::to_vec(m).map_err(|e| QueueError::Io(format!("queued message: {e}")))
}

fn decode(bytes: &[u8]) -> Result<Stored> {
    serde_json::from_slice(bytes).map_err(|e| QueueError::Corrupted(format!("queued message: {e}")))
}

fn decode_meta(bytes: &[u8]) -> Result<Meta> {
    serde_json::from_slice(bytes).map_err(|e| QueueError::Corrupted(format!("queued message: {e}")))
}

/// (queue, group, 0, seq): group ids are printable ASCII, so the 0 ends the group.
fn group_key(queue: &str, group: &str, seq: u64) -> Vec<u8> {
    let mut k = group_prefix(queue, group);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn group_prefix(queue: &str, group: &str) -> Vec<u8> {
    let mut k = key(queue, group.as_bytes());
    k.push(0);
    k
}

/// The oldest message of `group` still stored.
fn first_of_group(txn: &WriteTransaction, queue: &str, group: &str) -> Result<Option<u64>> {
    let prefix = group_prefix(queue, group);
    let table = txn.open_table(GROUP_MESSAGES)?;
    let first = table.range(prefix.as_slice()..)?.next().transpose()?;
    Ok(first.and_then(|(k, _)| {
        k.value()
            .strip_prefix(prefix.as_slice())
            .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
            .map(u64::from_be_bytes)
    }))
}

/// `{seq:x}-{nonce:x}`.
fn handle_of(seq: u64, nonce: u64) -> String {
    format!("{seq:x}-{nonce:x}")
}

fn parse_handle(handle: &str) -> Result<(u64, u64)> {
    let bad = || QueueError::InvalidReceiptHandle(handle.chars().take(64).collect());
    let (seq, nonce) = handle.split_once('-').ok_or_else(bad)?;
    Ok((
        u64::from_str_radix(seq, 16).map_err(|_| bad())?,
        u64::from_str_radix(nonce, 16).map_err(|_| bad())?,
    ))
}

type Op = Box<dyn FnOnce(&WriteTransaction, u64) -> Result<Reply> + Send>;

/// What an operation answers.
enum Reply {
    Received(Vec<Received>),
    Done,
    Moved(u64),
}

struct Slot {
    answer: Mutex<Option<Result<Reply>>>,
}

#[derive(Default)]
struct Pending {
    ops: Vec<(Op, Arc<Slot>)>,
    /// Some queued operation is for a queue that syncs before it answers.
    sync: bool,
    committing: bool,
}

/// The queues of an engine.
pub(crate) struct Queues {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
    pending: Mutex<Pending>,
    done: Condvar,
    /// Commits made without a sync since the last one.
    unsynced: std::sync::atomic::AtomicBool,
    /// Bumped when something may have become receivable (a send, a release).
    arrived: Mutex<u64>,
    arrived_cv: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn check_queue_name(name: &str) -> Result<()> {
    super::check_name("queue", name)
}

fn config_of(txn: &WriteTransaction, queue: &str) -> Result<QueueConfig> {
    let table = txn.open_table(QUEUES)?;
    let bytes = table
        .get(queue)?
        .ok_or_else(|| QueueError::NoSuchQueue(queue.to_string()))?;
    serde_json::from_slice(bytes.value())
        .map_err(|e| QueueError::Corrupted(format!("queue config: {e}")))
}

impl Queues {
    pub(crate) fn open(db: Arc<Database>, clock: Arc<dyn Clock>) -> Result<Self> {
        let txn = db.begin_write()?;
        txn.open_table(QUEUES)?;
        txn.open_table(MESSAGES)?;
        txn.open_table(READY)?;
        txn.open_table(IN_FLIGHT)?;
        txn.open_table(DEDUP)?;
        txn.open_table(GROUP_MESSAGES)?;
        txn.open_table(HEADS)?;
        let built = txn.open_table(META)?.get(HEADS_BUILT)?.is_some();
        if !built {
            build_heads(&txn)?;
            txn.open_table(META)?.insert(HEADS_BUILT, 1)?;
        }
        txn.commit()?;
        Ok(Queues {
            db,
            clock,
            pending: Mutex::new(Pending::default()),
            done: Condvar::new(),
            unsynced: std::sync::atomic::AtomicBool::new(false),
            arrived: Mutex::new(0),
            arrived_cv: Condvar::new(),
        })
    }

    /// Whether changes to `queue` wait for a sync (its durability is `Always`; an unknown
    /// queue's answer is an error anyway).
    fn syncs(&self, queue: &str) -> bool {
        let config = (|| -> Result<Option<QueueConfig>> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(QUEUES)?;
            let Some(v) = table.get(queue)? else {
                return Ok(None);
            };
            Ok(serde_json::from_slice(v.value()).ok())
        })();
        !matches!(
            config,
            Ok(Some(QueueConfig {
                durability: Durability::Interval(_) | Durability::Never,
                ..
            }))
        )
    }

    /// Makes every commit so far durable (what `Interval` queues' background sync does).
    pub(crate) fn flush(&self) -> Result<()> {
        if self.unsynced.swap(false, Ordering::AcqRel) {
            self.run(Box::new(|_, _| Ok(Reply::Done)))?;
        }
        Ok(())
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn bump(&self) {
        *lock(&self.arrived) += 1;
        self.arrived_cv.notify_all();
    }

    /// Runs `op` in the next shared durable transaction; answers what it answered.
    fn run(&self, op: Op) -> Result<Reply> {
        self.run_as(op, true)
    }

    /// [`Queues::run`]; `sync` says whether its answer waits for a sync (an `Always`
    /// queue's, or the queues' own metadata) or not (`Interval` and `Never` queues, whose
    /// commits a later sync makes durable).
    fn run_as(&self, op: Op, sync: bool) -> Result<Reply> {
        let slot = Arc::new(Slot {
            answer: Mutex::new(None),
        });
        let mut pending = lock(&self.pending);
        pending.ops.push((op, Arc::clone(&slot)));
        pending.sync |= sync;
        loop {
            if let Some(answer) = lock(&slot.answer).take() {
                return answer;
            }
            if pending.committing {
                pending = self
                    .done
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            pending.committing = true;
            let ops = std::mem::take(&mut pending.ops);
            let sync = std::mem::take(&mut pending.sync);
            drop(pending);
            // Whatever happens in the commit (a panic included), the next caller can lead
            // and every caller of this batch gets an answer.
            let slots: Vec<Arc<Slot>> = ops.iter().map(|(_, s)| Arc::clone(s)).collect();
            let committed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(ops, sync)));
            if committed.is_err() {
                for slot in &slots {
                    let mut answer = lock(&slot.answer);
                    if answer.is_none() {
                        *answer = Some(Err(QueueError::Io(
                            "a queue operation failed unexpectedly; nothing of its batch was committed"
                                .into(),
                        )));
                    }
                }
            }
            pending = lock(&self.pending);
            pending.committing = false;
            self.done.notify_all();
        }
    }

    /// Runs `ops` in one durable transaction and hands out their answers. An operation
    /// refused for its input wrote nothing (each checks before it writes) and the others
    /// commit; one that fails on storage or stored data may have written part of its work,
    /// so the whole transaction is abandoned and every operation of it fails.
    fn commit(&self, ops: Vec<(Op, Arc<Slot>)>, sync: bool) {
        let now = self.now();
        let durability = if sync {
            RedbDurability::Immediate
        } else {
            self.unsynced.store(true, Ordering::Release);
            RedbDurability::None
        };
        let begun = self
            .db
            .begin_write()
            .map_err(|e| QueueError::Io(e.to_string()))
            .and_then(|mut txn| {
                txn.set_durability(durability)
                    .map_err(|e| QueueError::Io(e.to_string()))?;
                Ok(txn)
            });
        let txn = match begun {
            Ok(txn) => txn,
            Err(e) => {
                for (_, slot) in ops {
                    *lock(&slot.answer) = Some(Err(QueueError::Io(e.to_string())));
                }
                return;
            }
        };
        let mut answers = Vec::with_capacity(ops.len());
        let mut fatal = None;
        for (op, slot) in ops {
            let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&txn, now)))
                .unwrap_or_else(|_| {
                    Err(QueueError::Io(
                        "a queue operation failed unexpectedly".into(),
                    ))
                });
            if let Err(e) = &answer
                && matches!(e, QueueError::Io(_) | QueueError::Corrupted(_))
                && fatal.is_none()
            {
                fatal = Some(e.to_string());
            }
            answers.push((answer, slot));
        }
        let committed = match fatal {
            None => txn.commit().map_err(|e| format!("commit failed: {e}")),
            Some(why) => {
                let _ = txn.abort();
                Err(format!("nothing of this batch was committed: {why}"))
            }
        };
        for (answer, slot) in answers {
            let answer = match &committed {
                Ok(()) => answer,
                Err(why) => match answer {
                    Err(e @ (QueueError::Io(_) | QueueError::Corrupted(_))) => Err(e),
                    _ => Err(QueueError::Io(why.clone())),
                },
            };
            *lock(&slot.answer) = Some(answer);
        }
    }

    pub(crate) fn create(&self, name: &str, config: QueueConfig) -> Result<()> {
        check_queue_name(name)?;
        check_config(&config)?;
        let name = name.to_string();
        self.run(Box::new(move |txn, _| {
            if let Some(dl) = &config.dead_letter {
                let dlq = config_of(txn, &dl.queue)?;
                if dlq.fifo != config.fifo {
                    return Err(QueueError::invalid(
                        "dead_letter",
                        "a FIFO queue's dead-letter queue is FIFO, a standard one's standard",
                    ));
                }
            }
            let mut queues = txn.open_table(QUEUES)?;
            if queues.get(name.as_str())?.is_some() {
                return Err(QueueError::QueueExists(name));
            }
            let bytes = serde_json::to_vec(&config)
                .map_err(|e| QueueError::Io(format!("queue config: {e}")))?;
            queues.insert(name.as_str(), bytes.as_slice())?;
            Ok(Reply::Done)
        }))
        .map(|_| ())
    }

    pub(crate) fn delete(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.run(Box::new(move |txn, _| {
            config_of(txn, &name)?;
            let named_by = {
                let queues = txn.open_table(QUEUES)?;
                let mut found = None;
                for row in queues.iter()? {
                    let (k, v) = row?;
                    let config: QueueConfig = serde_json::from_slice(v.value())
                        .map_err(|e| QueueError::Corrupted(format!("queue config: {e}")))?;
                    if config.dead_letter.is_some_and(|dl| dl.queue == name) {
                        found = Some(k.value().to_string());
                        break;
                    }
                }
                found
            };
            if let Some(other) = named_by {
                return Err(QueueError::invalid(
                    "queue",
                    format!("`{name}` is the dead-letter queue of `{other}`"),
                ));
            }
            txn.open_table(QUEUES)?.remove(name.as_str())?;
            txn.open_table(META)?.remove(name.as_str())?;
            remove_prefix(txn, MESSAGES, &name)?;
            remove_prefix(txn, READY, &name)?;
            remove_prefix(txn, IN_FLIGHT, &name)?;
            remove_prefix(txn, DEDUP, &name)?;
            remove_prefix(txn, GROUP_MESSAGES, &name)?;
            remove_prefix(txn, HEADS, &name)?;
            Ok(Reply::Done)
        }))
        .map(|_| ())
    }

    pub(crate) fn list(&self) -> Result<Vec<(String, QueueConfig)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(QUEUES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let config = serde_json::from_slice(v.value())
                .map_err(|e| QueueError::Corrupted(format!("queue config: {e}")))?;
            out.push((k.value().to_string(), config));
        }
        Ok(out)
    }

    /// Sends a batch: a result per message (one that fails does not stop the others).
    pub(crate) fn send(&self, queue: &str, messages: Vec<SendMessage>) -> Result<Vec<Result<u64>>> {
        if messages.is_empty() || messages.len() > MAX_QUEUE_BATCH {
            return Err(QueueError::invalid(
                "messages",
                format!("1 to {MAX_QUEUE_BATCH} in a batch"),
            ));
        }
        let queue_name = queue.to_string();
        let results = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&results);
        let sync = self.syncs(queue);
        self.run_as(
            Box::new(move |txn, now| {
                let config = config_of(txn, &queue_name)?;
                let mut answers = Vec::with_capacity(messages.len());
                for m in messages {
                    answers.push(fatal_or(send_one(txn, &queue_name, &config, m, now))?);
                }
                *lock(&out) = answers;
                Ok(Reply::Done)
            }),
            sync,
        )?;
        self.bump();
        let answers = std::mem::take(&mut *lock(&results));
        Ok(answers)
    }

    /// Receives up to `max` messages, leasing each for the visibility timeout; waits up
    /// to `wait` for one.
    pub(crate) fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Option<u64>,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        if !(1..=MAX_QUEUE_BATCH).contains(&max) {
            return Err(QueueError::invalid(
                "max",
                format!("1 to {MAX_QUEUE_BATCH}"),
            ));
        }
        if visibility.is_some_and(|v| v > MAX_VISIBILITY_SECS) {
            return Err(QueueError::invalid(
                "visibility_timeout",
                format!("0 to {MAX_VISIBILITY_SECS} s"),
            ));
        }
        if wait > MAX_RECEIVE_WAIT {
            return Err(QueueError::invalid(
                "wait",
                format!(
                    "{} ms; at most {} s",
                    wait.as_millis(),
                    MAX_RECEIVE_WAIT.as_secs()
                ),
            ));
        }
        let deadline = Instant::now() + wait;
        let sync = self.syncs(queue);
        loop {
            let seen = *lock(&self.arrived);
            let queue_name = queue.to_string();
            let got = match self.run_as(
                Box::new(move |txn, now| {
                    receive_some(txn, &queue_name, max, visibility, now).map(Reply::Received)
                }),
                sync,
            )? {
                Reply::Received(got) => got,
                _ => Vec::new(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            // Wakes on a send or release, or to look again as leases and delays end.
            let guard = lock(&self.arrived);
            if *guard == seen {
                let _ = self
                    .arrived_cv
                    .wait_timeout(guard, left.min(Duration::from_millis(100)))
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Deletes received messages (each by its lease's handle only), up to 10 in one
    /// commit: a result per handle.
    pub(crate) fn delete_messages(
        &self,
        queue: &str,
        handles: Vec<String>,
    ) -> Result<Vec<Result<()>>> {
        check_batch_len("receipt_handles", handles.len())?;
        let sync = self.syncs(queue);
        let queue = queue.to_string();
        let results = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&results);
        self.run_as(
            Box::new(move |txn, _| {
                config_of(txn, &queue)?;
                let mut answers = Vec::with_capacity(handles.len());
                for handle in handles {
                    let one = parse_handle(&handle).and_then(|(seq, nonce)| {
                        let stored = leased(txn, &queue, seq, nonce, &handle)?;
                        remove_message(
                            txn,
                            &queue,
                            seq,
                            stored.visible_at,
                            stored.group_id.as_deref(),
                        )
                    });
                    answers.push(fatal_or(one)?);
                }
                *lock(&out) = answers;
                Ok(Reply::Done)
            }),
            sync,
        )?;
        self.bump();
        Ok(std::mem::take(&mut *lock(&results)))
    }

    /// Changes how long received messages stay hidden, `(handle, seconds)` each (0:
    /// visible at once; a nack with delay), up to 10 in one commit: a result per entry.
    /// A lease that already ran out is refused (the message may be another's by now).
    pub(crate) fn change_visibility(
        &self,
        queue: &str,
        entries: Vec<(String, u64)>,
    ) -> Result<Vec<Result<()>>> {
        check_batch_len("entries", entries.len())?;
        let sync = self.syncs(queue);
        let queue = queue.to_string();
        let results = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&results);
        self.run_as(
            Box::new(move |txn, now| {
                config_of(txn, &queue)?;
                let mut answers = Vec::with_capacity(entries.len());
                for (handle, secs) in entries {
                    let one = change_one(txn, &queue, &handle, secs, now);
                    answers.push(fatal_or(one)?);
                }
                *lock(&out) = answers;
                Ok(Reply::Done)
            }),
            sync,
        )?;
        self.bump();
        Ok(std::mem::take(&mut *lock(&results)))
    }

    /// Moves every message of a dead-letter queue back to the queue it came from.
    pub(crate) fn redrive(&self, dlq: &str) -> Result<u64> {
        let dlq = dlq.to_string();
        let moved = self.run(Box::new(move |txn, now| {
            config_of(txn, &dlq)?;
            let seqs = seqs_of(txn, &dlq)?;
            let mut moved = 0;
            for seq in seqs {
                let Some(stored) = get(txn, &dlq, seq)? else {
                    continue;
                };
                // Only messages that came from another queue, and none out on a lease.
                if stored.source == dlq || (stored.leased && stored.visible_at > now) {
                    continue;
                }
                let Ok(config) = config_of(txn, &stored.source) else {
                    // Its queue is gone: it stays here.
                    continue;
                };
                // A queue of that name now of the other kind (FIFO or not) could not
                // deliver it: it stays here too.
                if config.fifo != stored.group_id.is_some() {
                    continue;
                }
                remove_message(
                    txn,
                    &dlq,
                    seq,
                    stored.visible_at,
                    stored.group_id.as_deref(),
                )?;
                let mut back = stored.clone();
                back.receive_count = 0;
                back.leased = false;
                back.nonce = 0;
                back.visible_at = now;
                insert_message(txn, &stored.source.clone(), &config, back)?;
                moved += 1;
            }
            Ok(Reply::Moved(moved))
        }))?;
        self.bump();
        Ok(match moved {
            Reply::Moved(n) => n,
            _ => 0,
        })
    }

    /// Drops every message of a queue.
    pub(crate) fn purge(&self, queue: &str) -> Result<()> {
        let queue = queue.to_string();
        self.run(Box::new(move |txn, _| {
            config_of(txn, &queue)?;
            remove_prefix(txn, MESSAGES, &queue)?;
            remove_prefix(txn, READY, &queue)?;
            remove_prefix(txn, IN_FLIGHT, &queue)?;
            remove_prefix(txn, GROUP_MESSAGES, &queue)?;
            remove_prefix(txn, HEADS, &queue)?;
            Ok(Reply::Done)
        }))
        .map(|_| ())
    }

    /// Drops messages past their queue's retention and deduplication ids past their
    /// window; answers how many rows went. Run by the engine's background thread.
    pub(crate) fn sweep(&self) -> Result<usize> {
        let queues = self.list()?;
        let removed = self.run(Box::new(move |txn, now| {
            let mut removed = 0;
            for (queue, config) in &queues {
                let retention_ms = config.retention_secs * 1000;
                let mut expired = Vec::new();
                each_of(txn, MESSAGES, queue, |seq, v| {
                    let m = decode_meta(v)?;
                    if m.sent_ms + retention_ms <= now {
                        expired.push((seq, m));
                    }
                    Ok(())
                })?;
                for (seq, m) in expired {
                    remove_message(txn, queue, seq, m.visible_at, m.group_id.as_deref())?;
                    removed += 1;
                }
                let prefix = key(queue, &[]);
                let mut dedup = txn.open_table(DEDUP)?;
                let expired: Vec<Vec<u8>> = dedup
                    .range(prefix.as_slice()..)?
                    .map_while(|row| row.ok())
                    .take_while(|(k, _)| k.value().starts_with(&prefix))
                    .filter(|(_, v)| v.value().1 <= now)
                    .map(|(k, _)| k.value().to_vec())
                    .collect();
                for k in expired {
                    dedup.remove(k.as_slice())?;
                    removed += 1;
                }
            }
            Ok(Reply::Moved(removed))
        }))?;
        Ok(match removed {
            Reply::Moved(n) => n as usize,
            _ => 0,
        })
    }

    pub(crate) fn stats(&self, queue: &str) -> Result<QueueStats> {
        let now = self.now();
        let txn = self.db.begin_read()?;
        let queues = txn.open_table(QUEUES)?;
        if queues.get(queue)?.is_none() {
            return Err(QueueError::NoSuchQueue(queue.to_string()));
        }
        let messages = txn.open_table(MESSAGES)?;
        let prefix = key(queue, &[]);
        let mut stats = QueueStats::default();
        for row in messages.range(prefix.as_slice()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            let m = decode_meta(v.value())?;
            if m.visible_at <= now {
                stats.available += 1;
            } else if m.leased {
                stats.in_flight += 1;
            } else {
                stats.delayed += 1;
            }
        }
        Ok(stats)
    }
}

fn check_config(c: &QueueConfig) -> Result<()> {
    if c.visibility_timeout_secs > MAX_VISIBILITY_SECS {
        return Err(QueueError::invalid(
            "visibility_timeout_secs",
            format!("at most {MAX_VISIBILITY_SECS}"),
        ));
    }
    if c.delay_secs > MAX_DELAY_SECS {
        return Err(QueueError::invalid(
            "delay_secs",
            format!("at most {MAX_DELAY_SECS}"),
        ));
    }
    if !(60..=14 * 24 * 3600).contains(&c.retention_secs) {
        return Err(QueueError::invalid("retention_secs", "60 s to 14 days"));
    }
    if !(1..=super::MAX_MESSAGE_BYTES_LIMIT).contains(&c.max_message_bytes) {
        return Err(QueueError::invalid(
            "max_message_bytes",
            format!("1 to {}", super::MAX_MESSAGE_BYTES_LIMIT),
        ));
    }
    if let Durability::Interval(ms) = c.durability
        && !(1..=60_000).contains(&ms)
    {
        return Err(QueueError::invalid(
            "durability",
            "an interval of 1 to 60000 ms",
        ));
    }
    if let Some(dl) = &c.dead_letter {
        check_queue_name(&dl.queue)?;
        if !(1..=1000).contains(&dl.max_receive_count) {
            return Err(QueueError::invalid("max_receive_count", "1 to 1000"));
        }
    }
    Ok(())
}

fn check_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(QueueError::invalid(
            field,
            format!("1 to {MAX_ID_LEN} printable ASCII characters"),
        ));
    }
    Ok(())
}

fn next_seq(txn: &WriteTransaction, queue: &str) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let seq = meta.get(queue)?.map_or(1, |v| v.value());
    meta.insert(queue, seq + 1)?;
    Ok(seq)
}

fn send_one(
    txn: &WriteTransaction,
    queue: &str,
    config: &QueueConfig,
    m: SendMessage,
    now: u64,
) -> Result<u64> {
    if m.body.len() > config.max_message_bytes {
        return Err(QueueError::TooLarge {
            what: "the message".into(),
            size: m.body.len(),
            max: config.max_message_bytes,
        });
    }
    let attr_bytes: usize = m.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
    if m.attributes.len() > 10 || attr_bytes > 8192 {
        return Err(QueueError::invalid(
            "attributes",
            "at most 10, 8 KiB in all",
        ));
    }
    let delay = m.delay_secs.unwrap_or(config.delay_secs);
    if delay > MAX_DELAY_SECS {
        return Err(QueueError::invalid(
            "delay_secs",
            format!("at most {MAX_DELAY_SECS}"),
        ));
    }
    if config.fifo {
        if m.delay_secs.is_some() {
            return Err(QueueError::invalid(
                "delay_secs",
                "FIFO queues have a queue-level delay only",
            ));
        }
        let group = m
            .group_id
            .as_deref()
            .ok_or_else(|| QueueError::invalid("group_id", "required on a FIFO queue"))?;
        check_id("group_id", group)?;
        let dedup = match &m.deduplication_id {
            Some(id) => {
                check_id("deduplication_id", id)?;
                id.clone()
            }
            None if config.content_based_deduplication => {
                // A space: no explicit id can have one, so the two never collide.
                format!(" content {:016x}", twox_hash::XxHash3_64::oneshot(&m.body))
            }
            None => {
                return Err(QueueError::invalid(
                    "deduplication_id",
                    "required unless the queue deduplicates by content",
                ));
            }
        };
        let dkey = key(queue, dedup.as_bytes());
        let mut dedups = txn.open_table(DEDUP)?;
        if let Some(v) = dedups.get(dkey.as_slice())? {
            let (seq, expires) = v.value();
            if expires > now {
                return Ok(seq);
            }
        }
        let seq = insert_message(
            txn,
            queue,
            config,
            Stored {
                body: m.body,
                attributes: m.attributes,
                group_id: m.group_id,
                sent_ms: now,
                visible_at: now + delay * 1000,
                receive_count: 0,
                nonce: 0,
                leased: false,
                source: queue.to_string(),
            },
        )?;
        dedups.insert(dkey.as_slice(), (seq, now + DEDUP_WINDOW_MS))?;
        return Ok(seq);
    }
    if m.group_id.is_some() || m.deduplication_id.is_some() {
        return Err(QueueError::invalid(
            "group_id",
            "message groups and deduplication ids are for FIFO queues",
        ));
    }
    insert_message(
        txn,
        queue,
        config,
        Stored {
            body: m.body,
            attributes: m.attributes,
            group_id: None,
            sent_ms: now,
            visible_at: now + delay * 1000,
            receive_count: 0,
            nonce: 0,
            leased: false,
            source: queue.to_string(),
        },
    )
}

fn insert_message(
    txn: &WriteTransaction,
    queue: &str,
    _config: &QueueConfig,
    m: Stored,
) -> Result<u64> {
    let seq = next_seq(txn, queue)?;
    txn.open_table(READY)?
        .insert(ready_key(queue, m.visible_at, seq).as_slice(), ())?;
    txn.open_table(MESSAGES)?
        .insert(msg_key(queue, seq).as_slice(), encode(&m)?.as_slice())?;
    if let Some(group) = &m.group_id {
        note_in_group(txn, queue, group, seq)?;
    }
    Ok(seq)
}

/// Files message `seq` (the newest) under its FIFO group; the first of its group is
/// the group's head.
fn note_in_group(txn: &WriteTransaction, queue: &str, group: &str, seq: u64) -> Result<()> {
    txn.open_table(GROUP_MESSAGES)?
        .insert(group_key(queue, group, seq).as_slice(), ())?;
    if first_of_group(txn, queue, group)? == Some(seq) {
        txn.open_table(HEADS)?
            .insert(msg_key(queue, seq).as_slice(), group.as_bytes())?;
    }
    Ok(())
}

fn get(txn: &WriteTransaction, queue: &str, seq: u64) -> Result<Option<Stored>> {
    let messages = txn.open_table(MESSAGES)?;
    let found = messages.get(msg_key(queue, seq).as_slice())?;
    found.map(|v| decode(v.value())).transpose()
}

fn remove_message(
    txn: &WriteTransaction,
    queue: &str,
    seq: u64,
    visible_at: u64,
    group: Option<&str>,
) -> Result<()> {
    txn.open_table(MESSAGES)?
        .remove(msg_key(queue, seq).as_slice())?;
    txn.open_table(READY)?
        .remove(ready_key(queue, visible_at, seq).as_slice())?;
    if let Some(group) = group {
        let gkey = key(queue, group.as_bytes());
        let mut in_flight = txn.open_table(IN_FLIGHT)?;
        if in_flight.get(gkey.as_slice())?.map(|v| v.value()) == Some(seq) {
            in_flight.remove(gkey.as_slice())?;
        }
        drop(in_flight);
        txn.open_table(GROUP_MESSAGES)?
            .remove(group_key(queue, group, seq).as_slice())?;
        // The head went: the group's next message is its head.
        let was_head = txn
            .open_table(HEADS)?
            .remove(msg_key(queue, seq).as_slice())?
            .is_some();
        if was_head && let Some(next) = first_of_group(txn, queue, group)? {
            txn.open_table(HEADS)?
                .insert(msg_key(queue, next).as_slice(), group.as_bytes())?;
        }
    }
    Ok(())
}

/// The message a handle names, if the handle is its current lease's.
fn leased(
    txn: &WriteTransaction,
    queue: &str,
    seq: u64,
    nonce: u64,
    handle: &str,
) -> Result<Stored> {
    config_of(txn, queue)?;
    match get(txn, queue, seq)? {
        Some(m) if m.leased && m.nonce == nonce => Ok(m),
        _ => Err(QueueError::InvalidReceiptHandle(handle.to_string())),
    }
}

fn seqs_of(txn: &WriteTransaction, queue: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    each_of(txn, MESSAGES, queue, |seq, _| {
        out.push(seq);
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` with each (seq, value) of `queue` in a table keyed (queue, seq), in seq
/// order.
fn each_of(
    txn: &WriteTransaction,
    table: TableDefinition<&'static [u8], &'static [u8]>,
    queue: &str,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let prefix = key(queue, &[]);
    let table = txn.open_table(table)?;
    for row in table.range(prefix.as_slice()..)? {
        let (k, v) = row?;
        let Some(rest) = k.value().strip_prefix(prefix.as_slice()) else {
            break;
        };
        if let Ok(seq) = <[u8; 8]>::try_from(rest).map(u64::from_be_bytes) {
            f(seq, v.value())?;
        }
    }
    Ok(())
}

/// Files every stored FIFO message under its group (a store written before the group
/// tables existed).
fn build_heads(txn: &WriteTransaction) -> Result<()> {
    let mut found = Vec::new();
    {
        let messages = txn.open_table(MESSAGES)?;
        for row in messages.iter()? {
            let (k, v) = row?;
            let k = k.value();
            let Some(zero) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let (Ok(queue), Ok(seq)) = (
                std::str::from_utf8(&k[..zero]),
                <[u8; 8]>::try_from(&k[zero + 1..]).map(u64::from_be_bytes),
            ) else {
                continue;
            };
            if let Some(group) = decode_meta(v.value())?.group_id {
                found.push((queue.to_string(), group, seq));
            }
        }
    }
    // In seq order per queue, as they were sent.
    found.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    for (queue, group, seq) in found {
        note_in_group(txn, &queue, &group, seq)?;
    }
    Ok(())
}

/// 1 to 10 entries.
fn check_batch_len(field: &str, len: usize) -> Result<()> {
    if (1..=MAX_QUEUE_BATCH).contains(&len) {
        Ok(())
    } else {
        Err(QueueError::invalid(
            field,
            format!("{len} in a batch; 1 to {MAX_QUEUE_BATCH}"),
        ))
    }
}

/// One entry's answer in a batch, unless it failed on storage or stored data: then the
/// operation fails, and its transaction (which may hold part of the entry) with it.
fn fatal_or<T>(answer: Result<T>) -> Result<Result<T>> {
    match answer {
        Err(e @ (QueueError::Io(_) | QueueError::Corrupted(_))) => Err(e),
        other => Ok(other),
    }
}

/// Moves the end of a lease: visible `secs` from now.
fn change_one(
    txn: &WriteTransaction,
    queue: &str,
    handle: &str,
    secs: u64,
    now: u64,
) -> Result<()> {
    if secs > MAX_VISIBILITY_SECS {
        return Err(QueueError::invalid(
            "visibility_timeout",
            format!("{secs} s; 0 to {MAX_VISIBILITY_SECS} s"),
        ));
    }
    let (seq, nonce) = parse_handle(handle)?;
    let mut stored = leased(txn, queue, seq, nonce, handle)?;
    if stored.visible_at <= now {
        // The lease ran out: the message may be another receiver's by now.
        return Err(QueueError::InvalidReceiptHandle(handle.to_string()));
    }
    txn.open_table(READY)?
        .remove(ready_key(queue, stored.visible_at, seq).as_slice())?;
    stored.visible_at = now + secs * 1000;
    txn.open_table(READY)?
        .insert(ready_key(queue, stored.visible_at, seq).as_slice(), ())?;
    txn.open_table(MESSAGES)?
        .insert(msg_key(queue, seq).as_slice(), encode(&stored)?.as_slice())?;
    Ok(())
}

/// Leases up to `max` receivable messages.
fn receive_some(
    txn: &WriteTransaction,
    queue: &str,
    max: usize,
    visibility: Option<u64>,
    now: u64,
) -> Result<Vec<Received>> {
    let config = config_of(txn, queue)?;
    let lease_ms = visibility.unwrap_or(config.visibility_timeout_secs) * 1000;
    let retention_ms = config.retention_secs * 1000;
    // FIFO groups whose message's lease ran out (or that was deleted) are free again.
    if config.fifo {
        let mut in_flight = txn.open_table(IN_FLIGHT)?;
        let prefix = key(queue, &[]);
        let mut free = Vec::new();
        for row in in_flight.range(prefix.as_slice()..)? {
            let (k, v) = row?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            free.push((k.value().to_vec(), v.value()));
        }
        let messages = txn.open_table(MESSAGES)?;
        let mut release = Vec::new();
        for (k, seq) in free {
            let out = match messages.get(msg_key(queue, seq).as_slice())? {
                Some(v) => decode(v.value())?.visible_at > now,
                None => false,
            };
            if !out {
                release.push(k);
            }
        }
        drop(messages);
        for k in release {
            in_flight.remove(k.as_slice())?;
        }
    }
    // Candidates: standard queues in the order they become visible, read a few at a
    // time until enough are leased (messages dropped or moved on the way do not count);
    // FIFO queues in sequence order, the first message of each group with none out.
    let mut got = Vec::new();
    let mut handled: HashSet<u64> = HashSet::new();
    let mut from = ready_key(queue, 0, 0);
    let to = ready_key(queue, now, u64::MAX);
    let mut fifo_done = false;
    loop {
        let candidates: Vec<u64> = if config.fifo {
            if fifo_done {
                break;
            }
            fifo_done = true;
            let heads = fifo_heads(txn, queue, now)?;
            handled.extend(heads.iter().copied());
            heads
        } else {
            let ready = txn.open_table(READY)?;
            let mut out = Vec::new();
            for row in ready.range(from.as_slice()..=to.as_slice())? {
                let (k, _) = row?;
                let Some(seq) = k
                    .value()
                    .get(k.value().len() - 8..)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                else {
                    continue;
                };
                // Past this key next time.
                from = k.value().to_vec();
                from.push(0);
                if handled.insert(seq) {
                    out.push(seq);
                }
                if out.len() >= 32 {
                    break;
                }
            }
            out
        };
        if candidates.is_empty() {
            break;
        }
        for seq in candidates {
            if got.len() >= max {
                break;
            }
            match lease_one(txn, queue, &config, seq, lease_ms, retention_ms, now)? {
                Some(r) => got.push(r),
                // A FIFO group whose head went (dead-lettered, or past retention) has a
                // new head: look again.
                None => fifo_done = false,
            }
        }
        // A cap on work per receive: at most this many handled in one transaction.
        if got.len() >= max || handled.len() > 4096 {
            break;
        }
    }
    Ok(got)
}

/// A FIFO queue's receivable group heads, in sequence order: the head of each group
/// with none in flight, visible now.
fn fifo_heads(txn: &WriteTransaction, queue: &str, now: u64) -> Result<Vec<u64>> {
    let mut heads = Vec::new();
    each_of(txn, HEADS, queue, |seq, group| {
        heads.push((seq, group.to_vec()));
        Ok(())
    })?;
    let in_flight = txn.open_table(IN_FLIGHT)?;
    let messages = txn.open_table(MESSAGES)?;
    let mut out = Vec::new();
    for (seq, group) in heads {
        if in_flight.get(key(queue, &group).as_slice())?.is_some() {
            continue;
        }
        let Some(v) = messages.get(msg_key(queue, seq).as_slice())? else {
            return Err(QueueError::Corrupted(format!(
                "queue `{queue}`: the head of a group, message {seq}, is missing"
            )));
        };
        if decode_meta(v.value())?.visible_at <= now {
            out.push(seq);
        }
    }
    Ok(out)
}

/// Leases message `seq` if it is still receivable: drops it past retention, moves it to
/// the dead-letter queue once received as often as allowed.
fn lease_one(
    txn: &WriteTransaction,
    queue: &str,
    config: &QueueConfig,
    seq: u64,
    lease_ms: u64,
    retention_ms: u64,
    now: u64,
) -> Result<Option<Received>> {
    let Some(mut m) = get(txn, queue, seq)? else {
        return Ok(None);
    };
    if m.sent_ms + retention_ms <= now {
        remove_message(txn, queue, seq, m.visible_at, m.group_id.as_deref())?;
        return Ok(None);
    }
    if let Some(dl) = &config.dead_letter
        && m.receive_count >= dl.max_receive_count
    {
        // Received as often as allowed: to the dead-letter queue, as it was (if that
        // queue is gone, the message stays here and is delivered).
        match config_of(txn, &dl.queue) {
            Ok(dlq_config) => {
                remove_message(txn, queue, seq, m.visible_at, m.group_id.as_deref())?;
                let mut dead = m.clone();
                dead.leased = false;
                dead.nonce = 0;
                dead.visible_at = now;
                insert_message(txn, &dl.queue, &dlq_config, dead)?;
                return Ok(None);
            }
            Err(QueueError::NoSuchQueue(_)) => {}
            Err(e) => return Err(e),
        }
    }
    txn.open_table(READY)?
        .remove(ready_key(queue, m.visible_at, seq).as_slice())?;
    m.receive_count = m.receive_count.saturating_add(1);
    m.nonce = super::random_u64();
    m.leased = true;
    m.visible_at = now + lease_ms;
    txn.open_table(READY)?
        .insert(ready_key(queue, m.visible_at, seq).as_slice(), ())?;
    if let Some(group) = &m.group_id {
        txn.open_table(IN_FLIGHT)?
            .insert(key(queue, group.as_bytes()).as_slice(), seq)?;
    }
    txn.open_table(MESSAGES)?
        .insert(msg_key(queue, seq).as_slice(), encode(&m)?.as_slice())?;
    Ok(Some(Received {
        id: seq,
        receipt_handle: handle_of(seq, m.nonce),
        body: m.body,
        attributes: m.attributes,
        receive_count: m.receive_count,
        sent_ms: m.sent_ms,
        group_id: m.group_id,
    }))
}

fn remove_prefix<V: redb::Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<&'static [u8], V>,
    queue: &str,
) -> Result<()> {
    let prefix = key(queue, &[]);
    let mut t = txn.open_table(table)?;
    let mut keys = Vec::new();
    for row in t.range(prefix.as_slice()..)? {
        let (k, _) = row?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        keys.push(k.value().to_vec());
    }
    for k in keys {
        t.remove(k.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, FILE_NAME};

    /// A store written before the FIFO group tables existed gets them at open.
    #[test]
    fn group_heads_are_built_for_a_store_without_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = Engine::open(dir.path()).unwrap();
            let fifo = QueueConfig {
                fifo: true,
                ..QueueConfig::default()
            };
            engine.create_queue("f.fifo", fifo).unwrap();
            for (n, group) in ["a", "b", "a", "c", "b"].iter().enumerate() {
                let m = SendMessage::new(format!("{group}{n}"))
                    .in_group(*group)
                    .dedup(format!("d{n}"));
                engine.send("f.fifo", m).unwrap();
            }
        }
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(GROUP_MESSAGES).unwrap();
            txn.delete_table(HEADS).unwrap();
            txn.open_table(META).unwrap().remove(HEADS_BUILT).unwrap();
            txn.commit().unwrap();
        }
        let engine = Engine::open(dir.path()).unwrap();
        let got = engine.receive("f.fifo", 10, None, Duration::ZERO).unwrap();
        let bodies: Vec<&[u8]> = got.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(bodies, [&b"a0"[..], b"b1", b"c3"]);
        for r in &got {
            engine.delete_message("f.fifo", &r.receipt_handle).unwrap();
        }
        let next = engine.receive("f.fifo", 10, None, Duration::ZERO).unwrap();
        let bodies: Vec<&[u8]> = next.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(bodies, [&b"a2"[..], b"b4"]);
    }
}
