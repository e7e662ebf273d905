//! One partition: an append-only log in segment files, with group commit.
//!
//! Files: `{dir}/{base:020}.log`, each holding records from offset `base` on; the last is
//! the active segment and a new one starts when it passes the segment size. In memory, a
//! sparse index per segment maps an offset every [`INDEX_EVERY`] bytes to its position.
//!
//! **Group commit.** An append writes its records (under the partition's lock, so offsets
//! and file order agree) and, under `Always`, waits until a sync covers them: the first
//! waiter syncs everything written so far while the others wait, and each sync serves
//! every append that finished writing before it started. **Architecture Invariant:**
//! readers see only offsets below `visible`, which under `Always` moves only after a sync,
//! so a consumer never sees a message that a crash could take back.
//!
//! **Recovery.** Opening reads every segment, checking each record's CRC and that offsets
//! run on without a gap. A record that fails with nothing whole after it in the last
//! segment is a torn tail: the file is cut there. One that fails with checked records
//! after it (looked for byte by byte) is damage: its offsets up to the next record that
//! reads are remembered as damaged and reported, and every read of them answers
//! [`QueueError::Damaged`], so they are neither served nor skipped without a word; the
//! records after them stay. The same holds for the end of a closed segment that falls
//! short of the next segment's first offset.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::record::{self, Decoded, Message, Record};
use crate::error::{QueueError, Result};

/// An index entry every this many bytes of log.
pub(crate) const INDEX_EVERY: u64 = 4096;
/// A write buffer larger than this is not kept between appends.
const KEEP_BUFFER: usize = 1 << 20;
/// Bytes read at a time when scanning a segment for a read.
const READ_WINDOW: usize = 256 << 10;

/// How much of a partition's log is kept: whole segments go from the head once every
/// message in them is past one of the limits (the active segment always stays).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Messages older than this (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<u64>,
    /// Beyond this many bytes of log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Beyond this many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
}

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// After a sync covers it (concurrent appends share syncs). The default.
    Always,
    /// At once; a background sync runs every this many milliseconds.
    Interval(u64),
    /// At once; the operating system writes it out when it will.
    Never,
}

struct Segment {
    base: u64,
    /// Open while it is the active segment; a closed one is opened for each read (under
    /// the partition's lock, so the file matches `len` and `index`), and holds no file
    /// descriptor in between.
    file: Option<Arc<File>>,
    len: u64,
    /// The newest timestamp in it (ms), for retention by age.
    newest_ms: u64,
    /// (offset, position) of a record every [`INDEX_EVERY`] bytes, ascending.
    index: Vec<(u64, u64)>,
    indexed_at: u64,
}

impl Segment {
    /// Its file: the open one, or opened now.
    fn handle(&self, dir: &Path) -> Result<Arc<File>> {
        match &self.file {
            Some(f) => Ok(Arc::clone(f)),
            None => Ok(Arc::new(File::open(segment_path(dir, self.base))?)),
        }
    }

    /// Where to start scanning for `offset`.
    fn position_of(&self, offset: u64) -> u64 {
        let at = self.index.partition_point(|&(o, _)| o <= offset);
        if at == 0 { 0 } else { self.index[at - 1].1 }
    }
}

/// What a partition remembers of an idempotent producer: its last sequence number and
/// the offsets of its recent ones (what a resent duplicate is answered with).
#[derive(Default)]
struct ProducerState {
    last: u64,
    recent: std::collections::VecDeque<(u64, u64)>,
}

/// Sequence numbers per producer whose offsets are remembered.
const PRODUCER_WINDOW: usize = 1024;

impl ProducerState {
    fn note(&mut self, sequence: u64, offset: u64) {
        self.last = sequence;
        if self.recent.len() == PRODUCER_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((sequence, offset));
    }

    fn offset_of(&self, sequence: u64) -> Option<u64> {
        self.recent
            .binary_search_by_key(&sequence, |&(s, _)| s)
            .ok()
            .map(|i| self.recent[i].1)
    }
}

struct State {
    segments: Vec<Segment>,
    /// Idempotent producers seen in the log.
    producers: std::collections::HashMap<u64, ProducerState>,
    /// The next offset to assign.
    next: u64,
    /// Segments rolled over since the last sync: they are synced with it.
    unsynced: Vec<Arc<File>>,
    /// A segment was created since the last sync: the directory is synced too.
    dir_dirty: bool,
    /// A write or sync failed: no more writes until the partition is reopened.
    failed: Option<String>,
    /// The topic was deleted: appends still holding it are refused.
    deleted: bool,
    /// Offset ranges (`from..to`, ascending) found damaged at open.
    damaged: Vec<(u64, u64)>,
    /// The newest timestamp written (ms).
    newest_ms: u64,
    buf: Vec<u8>,
}

struct SyncState {
    /// Offsets below this are durable.
    synced: u64,
    /// The highest offset an appender is waiting to see durable.
    wanted: u64,
    syncing: bool,
}

/// The most syncs one appender runs back to back for the others.
const LEAD_ROUNDS: u32 = 4;

pub(crate) struct Partition {
    dir: PathBuf,
    durability: Durability,
    segment_bytes: u64,
    /// Batches of more than one message are stored compressed with this.
    compression: Option<avila_compress::Codec>,
    /// Compacted by key: offsets may skip (what compaction removed).
    compacted: bool,
    /// One compaction at a time.
    compacting: Mutex<()>,
    state: Mutex<State>,
    sync: Mutex<SyncState>,
    synced_cv: Condvar,
    /// Offsets below this may be read.
    visible: AtomicU64,
    /// Wakes readers waiting for new records.
    arrived: Mutex<()>,
    arrived_cv: Condvar,
    /// Syncs done since open (how well group commit shares them).
    syncs: AtomicU64,
    /// Wakes subscribers of any partition of the engine.
    notifier: Arc<Notifier>,
}

/// Something became visible somewhere in the engine: a counter and a condition variable
/// that subscriptions wait on.
#[derive(Default)]
pub(crate) struct Notifier {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl Notifier {
    pub(crate) fn bump(&self) {
        *lock(&self.seq) += 1;
        self.cv.notify_all();
    }

    pub(crate) fn current(&self) -> u64 {
        *lock(&self.seq)
    }

    /// Waits until the counter passes `seen` or `timeout` passes.
    pub(crate) fn wait_past(&self, seen: u64, timeout: Duration) {
        let deadline = Instant::now().checked_add(timeout);
        let mut seq = lock(&self.seq);
        while *seq <= seen {
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return;
            }
            seq = self
                .cv
                .wait_timeout(seq, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Partition {
    /// Opens (creating if needed) the partition in `dir`, recovering its log.
    pub(crate) fn open(
        dir: &Path,
        durability: Durability,
        segment_bytes: u64,
        compression: Option<avila_compress::Codec>,
        compacted: bool,
        notifier: Arc<Notifier>,
    ) -> Result<Self> {
        create_dir_durably(dir)?;
        let mut bases: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // A compaction a crash cut short: the segment it was rewriting is still whole.
            if name.ends_with(".log.compacting") {
                std::fs::remove_file(entry.path())?;
                continue;
            }
            // Only names this code writes: `+0.log` or `0.log` are not segments.
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<u64>().ok())
                && *name == *format!("{base:020}.log")
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        let mut producers: std::collections::HashMap<u64, ProducerState> = Default::default();
        let mut next = bases.first().copied().unwrap_or(0);
        let mut cut = false;
        let mut changed = false;
        let mut damaged: Vec<(u64, u64)> = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(dir, base);
            if !compacted && base > next && !cut {
                // Offsets missing between the segments: the end of the one before did
                // not read.
                tracing::error!(file = %path.display(), from = next, to = base, "offsets before this segment are damaged or missing");
                damaged.push((next, base));
                next = base;
            }
            if cut || base < next {
                // Overlapping the log before it: not part of the log. Kept aside
                // rather than deleted, for whoever wants to look.
                std::fs::rename(&path, path.with_extension("log.orphan"))?;
                tracing::error!(file = %path.display(), "a segment overlapping the log was set aside");
                cut = true;
                changed = true;
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)?;
            let layout = Layout {
                gaps: compacted,
                compressed: compression.is_some(),
                limit: bases.get(i + 1).copied(),
            };
            let scanned = scan(&file, base, layout, &mut producers)?;
            for &(from, to) in &scanned.damaged {
                tracing::error!(file = %path.display(), from, to, "damaged records in this segment: reads of them fail");
            }
            damaged.extend_from_slice(&scanned.damaged);
            next = scanned.next;
            let last = i + 1 == bases.len();
            let file_len = file.metadata()?.len();
            if !last && scanned.len < file_len {
                // A closed segment ends in bytes that do not read: its offsets up to the
                // next segment's first are damaged.
                let to = bases[i + 1];
                tracing::error!(file = %path.display(), at = scanned.len, from = next, to, "a closed segment ends in damaged records: reads of them fail");
                if to > next {
                    damaged.push((next, to));
                    next = to;
                }
            }
            let mut active = last;
            if last && scanned.tail == Tail::Torn {
                tracing::warn!(file = %path.display(), at = scanned.len, "the log ends inside this segment (a torn tail): cut there");
                file.set_len(scanned.len)?;
            } else if last && scanned.tail == Tail::Damaged {
                // Checked records may lie in what does not read: the bytes stay, every
                // offset they could hold is damaged (none is given out again), and new
                // records go to a segment of their own, so the next open finds this
                // one's damage ending where that one starts.
                let to = next.saturating_add(offsets_within(file_len - scanned.len, true));
                tracing::error!(file = %path.display(), at = scanned.len, from = next, to, "the active segment ends in damaged records: reads of them fail");
                damaged.push((next, to));
                next = to;
                active = false;
            }
            // What was read may have come from the page cache of a process that was
            // killed before syncing it: make it durable before calling it so (a later
            // sync covers only the active segment). Only the active segment stays open.
            file.sync_data()?;
            segments.push(Segment {
                base,
                file: active.then(|| Arc::new(file)),
                len: scanned.len,
                newest_ms: scanned.newest_ms,
                index: scanned.index,
                indexed_at: scanned.indexed_at,
            });
            if last && !active {
                segments.push(Segment {
                    base: next,
                    file: Some(Arc::new(create_segment(dir, next)?)),
                    len: 0,
                    newest_ms: 0,
                    index: Vec::new(),
                    indexed_at: 0,
                });
                changed = true;
            }
        }
        // Segments after the last one kept were set aside: it is the active one.
        if let Some(s) = segments.last_mut()
            && s.file.is_none()
        {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(segment_path(dir, s.base))?;
            s.file = Some(Arc::new(file));
        }
        if segments.is_empty() {
            let file = create_segment(dir, next)?;
            changed = true;
            segments.push(Segment {
                base: next,
                file: Some(Arc::new(file)),
                len: 0,
                newest_ms: 0,
                index: Vec::new(),
                indexed_at: 0,
            });
        }
        if changed {
            sync_dir(dir)?;
        }
        let newest_ms = segments.iter().map(|s| s.newest_ms).max().unwrap_or(0);
        Ok(Partition {
            dir: dir.to_path_buf(),
            durability,
            segment_bytes,
            compression,
            compacted,
            compacting: Mutex::new(()),
            state: Mutex::new(State {
                segments,
                producers,
                next,
                unsynced: Vec::new(),
                dir_dirty: false,
                failed: None,
                deleted: false,
                damaged,
                newest_ms,
                buf: Vec::new(),
            }),
            sync: Mutex::new(SyncState {
                synced: next,
                wanted: next,
                syncing: false,
            }),
            synced_cv: Condvar::new(),
            visible: AtomicU64::new(next),
            arrived: Mutex::new(()),
            arrived_cv: Condvar::new(),
            syncs: AtomicU64::new(0),
            notifier,
        })
    }

    /// The first offset whose message was appended at or after `timestamp_ms`, else the
    /// end. Timestamps only rise within a partition (they are taken under its lock), so
    /// the first segment whose newest message is late enough holds it.
    pub(crate) fn offset_for_time(&self, timestamp_ms: u64) -> Result<u64> {
        let end = self.visible.load(Ordering::Acquire);
        let start = {
            let st = lock(&self.state);
            match st.segments.iter().find(|s| s.newest_ms >= timestamp_ms) {
                Some(s) => s.base,
                None => return Ok(end),
            }
        };
        let mut at = start;
        while at < end {
            let records = match self.read(at, 1000, 4 << 20) {
                Ok(records) => records,
                // What cannot be read holds no timestamp to find.
                Err(QueueError::Damaged { to, .. }) => {
                    at = to;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = records.last() else { break };
            if let Some(r) = records.iter().find(|r| r.timestamp_ms >= timestamp_ms) {
                return Ok(r.offset);
            }
            at = last.offset + 1;
        }
        Ok(end)
    }

    /// Compacts the closed segments: of each key, only its latest message is kept (a
    /// tombstone, a keyed message with an empty value, only until `tombstone_ms` after
    /// it was written); messages without a key stay. Each segment is rewritten beside
    /// itself, synced, and renamed over the old one; offsets stay what they were.
    /// Answers how many messages went.
    pub(crate) fn compact(&self, tombstone_ms: u64, now_ms: u64) -> Result<usize> {
        let _one = lock(&self.compacting);
        let end = self.visible.load(Ordering::Acquire);
        let (start, closed, active_base, damaged) = {
            let st = lock(&self.state);
            if st.deleted {
                return Err(QueueError::TopicDeleted);
            }
            let start = st.segments.first().map_or(0, |s| s.base);
            let closed: Vec<(u64, u64)> = st.segments[..st.segments.len().saturating_sub(1)]
                .iter()
                .map(|s| (s.base, s.len))
                .collect();
            let active_base = st.segments.last().map_or(0, |s| s.base);
            (start, closed, active_base, st.damaged.clone())
        };
        if closed.is_empty() {
            return Ok(0);
        }
        // The latest offset of every key, over the whole log.
        let mut latest: std::collections::HashMap<Vec<u8>, u64> = Default::default();
        let mut at = start;
        while at < end {
            let records = match self.read(at, 10_000, 16 << 20) {
                Ok(records) => records,
                Err(QueueError::Damaged { to, .. }) => {
                    at = to;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = records.last() else { break };
            let next = last.offset + 1;
            for r in records {
                if let Some(k) = r.key {
                    latest.insert(k, r.offset);
                }
            }
            at = next;
        }
        let mut removed = 0;
        for (i, (base, len)) in closed.iter().enumerate() {
            // The segment's records end where the next one's start (the active one's,
            // after the last closed one).
            let upto = closed.get(i + 1).map_or(active_base, |(b, _)| *b);
            // A segment with damage stays as it is: rewriting it would drop what cannot
            // be read without a word. So does one holding records not visible yet (a
            // roll can close a segment whose end waits for its sync): the pass would
            // neither read nor keep them.
            if damaged.iter().any(|&(from, to)| from < upto && to > *base) || upto > end {
                continue;
            }
            let mut kept = Vec::new();
            let mut dropped = 0usize;
            let mut at = *base;
            loop {
                let records = self.read(at.max(start), 10_000, 16 << 20)?;
                let Some(last) = records.last() else { break };
                let next = last.offset + 1;
                let mut past = false;
                for r in records {
                    if r.offset >= upto {
                        past = true;
                        break;
                    }
                    let keep = match &r.key {
                        None => true,
                        Some(k) => {
                            latest.get(k) == Some(&r.offset)
                                && !(r.value.is_empty()
                                    && r.timestamp_ms.saturating_add(tombstone_ms) < now_ms)
                        }
                    };
                    if keep {
                        let m = Message {
                            key: r.key,
                            value: r.value,
                            headers: r.headers,
                        };
                        record::encode(&mut kept, r.offset, r.timestamp_ms, r.producer, &m);
                    } else {
                        dropped += 1;
                    }
                }
                if past || next >= upto || next >= end {
                    break;
                }
                at = next;
            }
            if dropped == 0 {
                continue;
            }
            let path = segment_path(&self.dir, *base);
            let temp = path.with_extension("log.compacting");
            {
                let f = std::fs::File::create(&temp)?;
                f.write_all_at(&kept, 0)?;
                f.sync_all()?;
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&temp)?;
            let mut producers = Default::default();
            let layout = Layout {
                gaps: true,
                compressed: false,
                limit: Some(upto),
            };
            let scanned = scan(&file, *base, layout, &mut producers)?;
            let mut st = lock(&self.state);
            if st.deleted {
                drop(st);
                std::fs::remove_file(&temp)?;
                return Err(QueueError::TopicDeleted);
            }
            // Retention may have taken it meanwhile; nothing else changes a closed segment.
            let Some(segment) = st
                .segments
                .iter_mut()
                .find(|s| s.base == *base && s.len == *len)
            else {
                drop(st);
                std::fs::remove_file(&temp)?;
                continue;
            };
            std::fs::rename(&temp, &path)?;
            sync_dir(&self.dir)?;
            drop(file);
            segment.file = None;
            segment.len = scanned.len;
            segment.index = scanned.index;
            segment.indexed_at = scanned.indexed_at;
            removed += dropped;
        }
        Ok(removed)
    }

    /// Refuses every later append (the topic is being deleted); waits for any append in
    /// progress, which holds the lock.
    pub(crate) fn close_for_delete(&self) {
        lock(&self.state).deleted = true;
    }

    /// Deletes whole segments from the head that `retention` no longer keeps (never the
    /// active one); answers how many.
    pub(crate) fn retain(&self, retention: &Retention, now_ms: u64) -> Result<usize> {
        let doomed: Vec<u64> = {
            let mut st = lock(&self.state);
            let mut total: u64 = st.segments.iter().map(|s| s.len).sum();
            let mut drop_count = 0usize;
            while drop_count + 1 < st.segments.len() {
                let head = &st.segments[drop_count];
                let after = &st.segments[drop_count + 1];
                let too_old = retention
                    .max_age_ms
                    .is_some_and(|age| head.newest_ms.saturating_add(age) < now_ms);
                let too_big = retention
                    .max_bytes
                    .is_some_and(|max| total - head.len >= max);
                let too_many = retention
                    .max_messages
                    .is_some_and(|max| st.next - after.base >= max);
                if !(too_old || too_big || too_many) {
                    break;
                }
                total -= head.len;
                drop_count += 1;
            }
            let doomed = st.segments.drain(..drop_count).map(|s| s.base).collect();
            let start = st.segments.first().map_or(0, |s| s.base);
            st.damaged.retain(|&(_, to)| to > start);
            doomed
        };
        for base in &doomed {
            // A removal a crash undoes is redone by the next pass.
            std::fs::remove_file(segment_path(&self.dir, *base))?;
        }
        Ok(doomed.len())
    }

    /// Offset ranges (`from..to`) found damaged at open.
    pub(crate) fn damaged(&self) -> Vec<(u64, u64)> {
        lock(&self.state).damaged.clone()
    }

    /// Syncs done since the partition was opened.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The first offset kept and the next one to be read: `start..end` are readable.
    pub(crate) fn bounds(&self) -> (u64, u64) {
        let start = lock(&self.state).segments.first().map_or(0, |s| s.base);
        (start, self.visible.load(Ordering::Acquire))
    }

    /// Appends `messages` with consecutive offsets; answers the first offset once the
    /// durability mode says they are acknowledged.
    pub(crate) fn append(&self, messages: &[&Message], now_ms: u64) -> Result<u64> {
        let offsets = self.append_as(messages, None, now_ms)?;
        Ok(offsets.first().copied().unwrap_or_default())
    }

    /// Appends `messages` as producer `producer` with sequence numbers from `first`:
    /// those it already published (a resend) are not written again and answer their
    /// first offsets; a gap in the numbers is `OutOfOrderSequence`. Answers each
    /// message's offset.
    pub(crate) fn append_as(
        &self,
        messages: &[&Message],
        producer: Option<(u64, u64)>,
        now_ms: u64,
    ) -> Result<Vec<u64>> {
        let (offsets, end) = {
            let mut st = lock(&self.state);
            if st.deleted {
                return Err(QueueError::TopicDeleted);
            }
            if let Some(why) = &st.failed {
                return Err(QueueError::SyncFailed(why.clone()));
            }
            // Timestamps never go back within a partition (callers read the clock before
            // they take the lock, and the clock itself may step back).
            let now_ms = now_ms.max(st.newest_ms);
            st.newest_ms = now_ms;
            // Resent messages (a prefix, since sequence numbers rise) keep their offsets.
            let mut offsets = Vec::with_capacity(messages.len());
            let mut fresh = messages;
            if let Some((id, first)) = producer
                && let Some(known) = st.producers.get(&id)
            {
                let mut skip = 0;
                for i in 0..messages.len() as u64 {
                    let sequence = first.saturating_add(i);
                    if sequence > known.last {
                        break;
                    }
                    let offset =
                        known
                            .offset_of(sequence)
                            .ok_or(QueueError::OutOfOrderSequence {
                                producer: id,
                                expected: known.last.saturating_add(1),
                                got: sequence,
                            })?;
                    offsets.push(offset);
                    skip += 1;
                }
                let next_sequence = first.saturating_add(skip as u64);
                if skip < messages.len() && next_sequence != known.last.saturating_add(1) {
                    return Err(QueueError::OutOfOrderSequence {
                        producer: id,
                        expected: known.last.saturating_add(1),
                        got: next_sequence,
                    });
                }
                fresh = &messages[skip..];
            }
            if !fresh.is_empty() {
                if st
                    .segments
                    .last()
                    .is_some_and(|s| s.len >= self.segment_bytes)
                {
                    self.roll(&mut st)?;
                }
                let base = st.next;
                let skipped = (messages.len() - fresh.len()) as u64;
                let State {
                    segments,
                    buf,
                    producers,
                    ..
                } = &mut *st;
                buf.clear();
                let Some(active) = segments.last_mut() else {
                    return Err(QueueError::Corrupted(
                        "a partition without a segment".into(),
                    ));
                };
                let stamp_of =
                    |i: usize| producer.map(|(id, first)| (id, first + skipped + i as u64));
                match self.compression.filter(|_| fresh.len() > 1) {
                    Some(codec) => {
                        // One compressed batch: one index entry, at its start.
                        let mut inner = Vec::new();
                        for (i, m) in fresh.iter().enumerate() {
                            record::encode(&mut inner, base + i as u64, now_ms, stamp_of(i), m);
                        }
                        let at = active.len;
                        if active.index.is_empty() || at >= active.indexed_at + INDEX_EVERY {
                            active.index.push((base, at));
                            active.indexed_at = at;
                        }
                        record::encode_batch(buf, base, fresh.len() as u32, &inner, codec);
                    }
                    None => {
                        for (i, m) in fresh.iter().enumerate() {
                            let offset = base + i as u64;
                            let at = active.len + buf.len() as u64;
                            if active.index.is_empty() || at >= active.indexed_at + INDEX_EVERY {
                                active.index.push((offset, at));
                                active.indexed_at = at;
                            }
                            record::encode(buf, offset, now_ms, stamp_of(i), m);
                        }
                    }
                }
                let Some(file) = &active.file else {
                    return Err(QueueError::Corrupted(
                        "the active segment has no open file".into(),
                    ));
                };
                if let Err(e) = file.write_all_at(buf, active.len) {
                    // Part of it may be in the file: later writes would follow a hole.
                    let why = format!("writing failed: {e}");
                    st.failed = Some(why.clone());
                    return Err(QueueError::Io(why));
                }
                active.len += buf.len() as u64;
                active.newest_ms = active.newest_ms.max(now_ms);
                if buf.capacity() > KEEP_BUFFER {
                    *buf = Vec::new();
                }
                if let Some((id, first)) = producer {
                    let state = producers.entry(id).or_default();
                    for i in 0..fresh.len() as u64 {
                        state.note(first + skipped + i, base + i);
                    }
                }
                offsets.extend((0..fresh.len() as u64).map(|i| base + i));
                st.next += fresh.len() as u64;
            }
            // Resent messages are acknowledged once they too are durable.
            let end = offsets.iter().max().map_or(st.next, |&o| o + 1);
            (offsets, end)
        };
        match self.durability {
            Durability::Always => self.sync_to(end)?,
            Durability::Interval(_) | Durability::Never => self.show(end),
        }
        Ok(offsets)
    }

    /// Starts a new active segment at the next offset.
    fn roll(&self, st: &mut State) -> Result<()> {
        let file = create_segment(&self.dir, st.next)?;
        // The old one closes once the next sync has covered it (at once under `Never`,
        // which no sync ever covers).
        if let Some(old) = st.segments.last_mut().and_then(|s| s.file.take())
            && self.durability != Durability::Never
        {
            st.unsynced.push(old);
        }
        st.dir_dirty = true;
        st.segments.push(Segment {
            base: st.next,
            file: Some(Arc::new(file)),
            len: 0,
            newest_ms: 0,
            index: Vec::new(),
            indexed_at: 0,
        });
        Ok(())
    }

    /// Lets readers see offsets below `end`, and wakes those waiting.
    fn show(&self, end: u64) {
        self.visible.fetch_max(end, Ordering::AcqRel);
        {
            let _guard = lock(&self.arrived);
            self.arrived_cv.notify_all();
        }
        self.notifier.bump();
    }

    /// Returns once offsets below `end` are durable (syncing them, or waiting for the
    /// sync that will). The appender that finds no sync running leads: it syncs, and
    /// while appenders are waiting for what was written during its sync it syncs again
    /// at once (up to [`LEAD_ROUNDS`] times), so the disk never idles between syncs
    /// waiting for a waiter to wake and take over.
    pub(crate) fn sync_to(&self, end: u64) -> Result<()> {
        let mut s = lock(&self.sync);
        s.wanted = s.wanted.max(end);
        loop {
            if s.synced >= end {
                return Ok(());
            }
            if s.syncing {
                s = self
                    .synced_cv
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            s.syncing = true;
            let mut rounds = 0;
            loop {
                drop(s);
                let result = self.sync_now();
                s = lock(&self.sync);
                rounds += 1;
                match result {
                    Ok(upto) => {
                        s.synced = s.synced.max(upto);
                        self.synced_cv.notify_all();
                        self.show(upto);
                    }
                    Err(e) => {
                        s.syncing = false;
                        self.synced_cv.notify_all();
                        return Err(e);
                    }
                }
                let others = s.wanted > s.synced;
                if s.synced < end || (others && rounds < LEAD_ROUNDS) {
                    continue;
                }
                s.syncing = false;
                self.synced_cv.notify_all();
                return Ok(());
            }
        }
    }

    /// Syncs everything written so far; answers the offset it covers.
    pub(crate) fn sync_now(&self) -> Result<u64> {
        let (upto, files, dir_dirty) = {
            let mut st = lock(&self.state);
            if let Some(why) = &st.failed {
                return Err(QueueError::SyncFailed(why.clone()));
            }
            let mut files = std::mem::take(&mut st.unsynced);
            if let Some(f) = st.segments.last().and_then(|s| s.file.as_ref()) {
                files.push(Arc::clone(f));
            }
            (st.next, files, std::mem::take(&mut st.dir_dirty))
        };
        let synced = files.iter().try_for_each(|f| f.sync_data()).and_then(|()| {
            if dir_dirty {
                sync_dir(&self.dir)
            } else {
                Ok(())
            }
        });
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = synced {
            // What the failed sync covered may be lost, and a later sync could claim it:
            // refuse writes until the partition is reopened and recovered.
            let why = format!("sync failed: {e}");
            lock(&self.state).failed = Some(why.clone());
            return Err(QueueError::SyncFailed(why));
        }
        Ok(upto)
    }

    /// Up to `max` records from `offset` on (at most `max_bytes` of them after the
    /// first), of those visible.
    /// Offsets found damaged at open answer [`QueueError::Damaged`]; a read from before
    /// them stops short of them.
    pub(crate) fn read(&self, offset: u64, max: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let mut end = self.visible.load(Ordering::Acquire);
        let found = {
            let st = lock(&self.state);
            if st.deleted {
                return Err(QueueError::TopicDeleted);
            }
            let start = st.segments.first().map_or(0, |s| s.base);
            if offset < start || offset > end {
                return Err(QueueError::OffsetOutOfRange {
                    partition: 0,
                    offset,
                    start,
                    end,
                });
            }
            if let Some(&(from, to)) = st.damaged.iter().find(|&&(_, to)| offset < to)
                && from <= offset
            {
                return Err(QueueError::Damaged {
                    partition: 0,
                    from,
                    to,
                });
            }
            if let Some(&(from, _)) = st.damaged.iter().find(|&&(from, _)| from > offset) {
                end = end.min(from);
            }
            let first = st
                .segments
                .partition_point(|s| s.base <= offset)
                .saturating_sub(1);
            match st.segments.get(first) {
                Some(s) => Some((s.base, s.handle(&self.dir)?, s.position_of(offset), s.len)),
                None => None,
            }
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut want = offset;
        let mut current = found;
        while let Some((base, file, mut pos, len)) = current {
            let mut window = Vec::new();
            while pos < len && want < end && out.len() < max {
                let size = READ_WINDOW.max(window.capacity()).min((len - pos) as usize);
                window.resize(size, 0);
                file.read_exact_at(&mut window, pos)?;
                let mut at = 0usize;
                let mut progressed = false;
                while at < window.len() && want < end && out.len() < max {
                    let (records, n) = match record::decode(&window[at..]) {
                        Decoded::Record(r, n) => (vec![r], n),
                        Decoded::Batch(rs, n) => (rs, n),
                        Decoded::End => break,
                    };
                    at += n;
                    progressed = true;
                    for r in records {
                        if r.offset < want || r.offset >= end || out.len() >= max {
                            continue;
                        }
                        if r.offset != want && !self.compacted {
                            return Err(QueueError::Corrupted(format!(
                                "offset {} where {want} was expected",
                                r.offset
                            )));
                        }
                        want = r.offset + 1;
                        bytes +=
                            record::HEADER_LEN + r.value.len() + r.key.as_ref().map_or(0, Vec::len);
                        out.push(r);
                    }
                    if bytes >= max_bytes {
                        return Ok(out);
                    }
                }
                if !progressed {
                    // A record larger than the window: read it whole.
                    let declared = record::declared_len(&window).unwrap_or(0);
                    let need = record::HEADER_LEN + declared;
                    if need <= window.len() || pos + need as u64 > len {
                        // Nothing whole here, below what is visible: damaged since open.
                        return Err(QueueError::Corrupted(format!(
                            "the record at offset {want} fails its check"
                        )));
                    }
                    window = Vec::with_capacity(need);
                    continue;
                }
                pos += at as u64;
            }
            if want >= end || out.len() >= max {
                break;
            }
            // On to the next segment (retention may have dropped some meanwhile; a
            // closed segment does not change but under the lock).
            current = {
                let st = lock(&self.state);
                if st.deleted {
                    return Err(QueueError::TopicDeleted);
                }
                let i = st.segments.partition_point(|s| s.base <= base);
                match st.segments.get(i) {
                    // Nothing readable starts there (a compacted log's gap may end at
                    // damage, or at what is not visible yet).
                    Some(s) if s.base >= end => None,
                    Some(s) => Some((s.base, s.handle(&self.dir)?, 0, s.len)),
                    None => None,
                }
            };
        }
        Ok(out)
    }

    /// Waits until an offset at or after `offset` is visible, or `timeout` passes;
    /// answers whether one is.
    pub(crate) fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = lock(&self.arrived);
        loop {
            if self.visible.load(Ordering::Acquire) > offset {
                return true;
            }
            let left = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return false;
            }
            guard = self
                .arrived_cv
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// What scanning a segment found.
struct Scanned {
    /// Bytes of whole, checked records from the start (or after damage).
    len: u64,
    /// The offset after the last of them.
    next: u64,
    newest_ms: u64,
    index: Vec<(u64, u64)>,
    indexed_at: u64,
    /// Offset ranges (`from..to`) of records that failed their checks with checked
    /// records after them.
    damaged: Vec<(u64, u64)>,
    /// How the segment ended.
    tail: Tail,
}

/// How a scanned segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// With a whole record.
    Clean,
    /// In bytes holding nothing whole after them: what a crash mid-write leaves.
    Torn,
    /// In bytes that do not read, after damage was met earlier in the segment (or past
    /// what the search for the next record may cost): not taken for a torn tail, since
    /// checked records could lie beyond.
    Damaged,
}

/// The most offsets `bytes` of log can hold: a plain record takes at least 50 bytes; a
/// compressed batch at least 16 for up to 10,000 messages.
fn offsets_within(bytes: u64, compressed: bool) -> u64 {
    if compressed {
        (bytes / 16 + 1).saturating_mul(super::MAX_BATCH as u64)
    } else {
        bytes / 50 + 1
    }
}

/// Where a segment's scan may find its records: offsets run on without gaps unless the
/// log is compacted; batches are compressed or not; the next segment's first offset.
#[derive(Clone, Copy)]
struct Layout {
    gaps: bool,
    compressed: bool,
    limit: Option<u64>,
}

/// Reads a segment a window at a time, checking each record and that offsets run on
/// from `base`. At the first that does not, it looks further for one that does: the
/// offsets between are damaged and it goes on from there; when none does, the segment
/// ends there ([`Tail`] says how).
fn scan(
    file: &File,
    base: u64,
    layout: Layout,
    producers: &mut std::collections::HashMap<u64, ProducerState>,
) -> Result<Scanned> {
    let size = file.metadata()?.len();
    let mut out = Scanned {
        len: 0,
        next: base,
        newest_ms: 0,
        index: Vec::new(),
        indexed_at: 0,
        damaged: Vec::new(),
        tail: Tail::Clean,
    };
    let mut window = Vec::new();
    // After damage, the next record gets an index entry whatever its distance.
    let mut index_next = false;
    let mut resynced = false;
    // What looking for the next record after damage may read in all.
    let mut budget = size.saturating_mul(4).saturating_add(64 << 20);
    while out.len < size {
        let want = (READ_WINDOW as u64)
            .max(window.capacity() as u64)
            .min(size - out.len) as usize;
        window.resize(want, 0);
        file.read_exact_at(&mut window, out.len)?;
        let mut at = 0usize;
        while at < window.len() {
            let (records, n) = match record::decode(&window[at..]) {
                Decoded::Record(r, n) => (vec![r], n),
                Decoded::Batch(rs, n) => (rs, n),
                Decoded::End => break,
            };
            let follows = |o: u64| {
                layout.limit.is_none_or(|l| o < l)
                    && if layout.gaps {
                        o >= out.next
                    } else {
                        o == out.next
                    }
            };
            match records.first() {
                Some(r) if follows(r.offset) => {}
                _ => break,
            }
            let pos = out.len + at as u64;
            if out.index.is_empty() || index_next || pos >= out.indexed_at + INDEX_EVERY {
                out.index.push((records[0].offset, pos));
                out.indexed_at = pos;
                index_next = false;
            }
            for r in records {
                out.newest_ms = out.newest_ms.max(r.timestamp_ms);
                if let Some((id, sequence)) = r.producer {
                    producers.entry(id).or_default().note(sequence, r.offset);
                }
                out.next = r.offset.checked_add(1).ok_or_else(|| {
                    QueueError::Corrupted("offsets past the largest number".into())
                })?;
            }
            at += n;
        }
        if at == 0 {
            // Not a whole record at the window's start: a larger one, or the end.
            let declared = record::declared_len(&window).unwrap_or(0) as u64;
            let need = record::HEADER_LEN as u64 + declared;
            if need <= window.len() as u64 || out.len + need > size {
                // Nothing whole and in order here: damage, if a good record follows.
                match resync(file, out.len, size, out.next, layout, &mut budget)? {
                    Resync::Found(pos, offset) => {
                        if offset > out.next {
                            out.damaged.push((out.next, offset));
                        }
                        out.len = pos;
                        out.next = offset;
                        index_next = true;
                        resynced = true;
                        window = Vec::new();
                    }
                    Resync::NotFound if !resynced => {
                        out.tail = Tail::Torn;
                        break;
                    }
                    Resync::NotFound | Resync::GaveUp => {
                        out.tail = Tail::Damaged;
                        break;
                    }
                }
            } else {
                window = Vec::with_capacity(need as usize);
            }
            continue;
        }
        out.len += at as u64;
    }
    Ok(out)
}

/// What looking for the next record after damage found.
enum Resync {
    /// A whole, checked record at this position, with this first offset.
    Found(u64, u64),
    /// None in the rest of the segment.
    NotFound,
    /// The search read as much as it may.
    GaveUp,
}

/// Looks from byte `from` of a segment of `size` bytes for the first position holding a
/// whole, checked record (or batch) whose offset is at least `next`, and no further
/// than the bytes skipped could hold (nor past the next segment's first offset): a
/// record hidden inside a message's value, met after damage, is not taken for one
/// unless its offset is where a real one could be. Each candidate is read whole to check
/// it, out of `budget` bytes.
fn resync(
    file: &File,
    from: u64,
    size: u64,
    next: u64,
    layout: Layout,
    budget: &mut u64,
) -> Result<Resync> {
    // Bytes of a header and the offset that starts every body.
    const PEEK: usize = record::HEADER_LEN + 8;
    let largest_plain = 2 * super::MAX_MESSAGE_BYTES_LIMIT;
    let largest_batch = 2 * super::MAX_BATCH_BYTES;
    let mut window = vec![0u8; READ_WINDOW];
    let mut base = from;
    while base + PEEK as u64 <= size {
        let n = (READ_WINDOW as u64).min(size - base) as usize;
        file.read_exact_at(&mut window[..n], base)?;
        let positions = n + 1 - PEEK;
        for i in 0..positions {
            let head = &window[i..i + PEEK];
            let Some(len) = record::declared_len(head) else {
                continue;
            };
            let batch = head[3] & 0x80 != 0;
            let pos = base + i as u64;
            if len < 8
                || len > if batch { largest_batch } else { largest_plain }
                || pos + (record::HEADER_LEN + len) as u64 > size
            {
                continue;
            }
            let offset = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
            let reach = if layout.gaps {
                1 << 40
            } else {
                offsets_within(pos - from, layout.compressed)
            };
            if offset < next || offset - next > reach || layout.limit.is_some_and(|l| offset >= l) {
                continue;
            }
            let cost = (record::HEADER_LEN + len) as u64;
            if *budget < cost {
                return Ok(Resync::GaveUp);
            }
            *budget -= cost;
            let mut whole = vec![0u8; record::HEADER_LEN + len];
            file.read_exact_at(&mut whole, pos)?;
            let first = match record::decode(&whole) {
                Decoded::Record(r, _) => r.offset,
                Decoded::Batch(rs, _) => rs.first().map_or(offset, |r| r.offset),
                Decoded::End => continue,
            };
            if first >= next {
                return Ok(Resync::Found(pos, first));
            }
        }
        base += positions as u64;
    }
    Ok(Resync::NotFound)
}

/// Creates `dir` (and its parents) and syncs each new entry's parent directory, so the
/// directories a durable write lands in are durable too.
pub(crate) fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

fn create_segment(dir: &Path, base: u64) -> Result<File> {
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(segment_path(dir, base))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(k: &str, size: usize) -> Message {
        Message::new(vec![b'x'; size]).with_key(k)
    }

    fn open(dir: &Path, compacted: bool, segment_bytes: u64) -> Partition {
        let notifier = Arc::new(Notifier::default());
        Partition::open(
            dir,
            Durability::Never,
            segment_bytes,
            None,
            compacted,
            notifier,
        )
        .unwrap()
    }

    fn offsets(p: &Partition, from: u64) -> Vec<u64> {
        p.read(from, 1000, usize::MAX)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect()
    }

    /// A roll can close a segment whose end still waits for its sync: compaction leaves
    /// that segment alone rather than drop what it cannot see yet.
    #[test]
    fn compaction_keeps_closed_records_not_yet_visible() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), true, 4096);
        p.append(&[&keyed("a", 500)], 1).unwrap();
        p.append(&[&keyed("a", 500)], 1).unwrap();
        for i in 0..7 {
            p.append(&[&keyed(&format!("b{i}"), 500)], 1).unwrap();
        }
        p.append(&[&keyed("c", 10)], 1).unwrap();
        let active = lock(&p.state).segments[1].base;
        // As under `Always` while the sync covering the closed segment's end runs.
        p.visible.store(active - 2, Ordering::Release);
        assert_eq!(p.compact(u64::MAX / 4, 2).unwrap(), 0);
        p.visible.store(active + 1, Ordering::Release);
        let got = offsets(&p, 0);
        assert!(
            got.contains(&(active - 1)) && got.contains(&(active - 2)),
            "{got:?}"
        );
        // Once all of it is visible, the pass runs.
        assert_eq!(p.compact(u64::MAX / 4, 2).unwrap(), 1);
        assert_eq!(offsets(&p, 0).first(), Some(&1));
    }

    /// A compacted log whose gap runs up to a segment that starts with damage: a read
    /// from before stops short of the damage instead of failing.
    #[test]
    fn a_compacted_gap_up_to_damage_reads_to_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let p = open(dir.path(), true, 4096);
            for i in 0..6 {
                p.append(&[&keyed(&format!("k{i}"), 500)], 1).unwrap();
            }
            p.append(&[&keyed("z", 500)], 1).unwrap();
            p.append(&[&keyed("z", 500)], 1).unwrap(); // 7: the first segment is full
            p.append(&[&keyed("first", 500)], 1).unwrap(); // 8: a new segment
            p.append(&[&keyed("z", 500)], 1).unwrap(); // 9: supersedes 6 and 7
            assert_eq!(lock(&p.state).segments[1].base, 8);
            assert_eq!(p.compact(u64::MAX / 4, 2).unwrap(), 2);
        }
        let path = segment_path(dir.path(), 8);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x04;
        std::fs::write(&path, &bytes).unwrap();
        let p = open(dir.path(), true, 4096);
        assert_eq!(p.damaged(), vec![(8, 9)]);
        assert_eq!(offsets(&p, 0), [0, 1, 2, 3, 4, 5]);
        assert!(matches!(
            p.read(8, 10, usize::MAX),
            Err(QueueError::Damaged { from: 8, to: 9, .. })
        ));
        assert_eq!(offsets(&p, 9), [9]);
    }

    /// A reader still holding a deleted topic's partition gets `TopicDeleted`, not an
    /// I/O error, and never a file of a topic created after it.
    #[test]
    fn a_read_of_a_deleted_partition_is_topic_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("p");
        let p = open(&pdir, false, 4096);
        for i in 0..20 {
            p.append(&[&keyed(&format!("k{i}"), 500)], 1).unwrap();
        }
        p.close_for_delete();
        std::fs::remove_dir_all(&pdir).unwrap();
        assert!(matches!(
            p.read(0, 100, usize::MAX),
            Err(QueueError::TopicDeleted)
        ));
        assert!(matches!(p.compact(0, 2), Err(QueueError::TopicDeleted)));
    }

    /// A record hidden inside a message's value, met after damage, is not taken for the
    /// log when its offset is further than the bytes skipped could hold.
    #[test]
    fn a_record_inside_a_value_is_not_taken_for_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), false, 1 << 20);
        p.append(&[&Message::new(vec![1u8; 100])], 1).unwrap();
        let mut forged = Vec::new();
        record::encode(
            &mut forged,
            1000,
            1,
            None,
            &Message::new(b"forged".to_vec()),
        );
        let mut v = vec![7u8; 40];
        v.extend_from_slice(&forged);
        v.extend_from_slice(&[9u8; 40]);
        p.append(&[&Message::new(v)], 1).unwrap(); // offset 1
        for i in 0..3u8 {
            p.append(&[&Message::new(vec![i; 100])], 1).unwrap(); // 2..4
        }
        drop(p);
        let path = segment_path(dir.path(), 0);
        let before = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        let first = Message::new(vec![1u8; 100]).encoded_len();
        bytes[first + 60] ^= 0x04; // inside offset 1's value, before the forged record
        std::fs::write(&path, &bytes).unwrap();
        let p = open(dir.path(), false, 1 << 20);
        assert_eq!(p.damaged(), vec![(1, 2)]);
        assert_eq!(p.bounds(), (0, 5));
        assert_eq!(offsets(&p, 2), [2, 3, 4]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            before,
            "nothing cut"
        );
    }

    /// Values crafted as headers that each claim megabytes: the search after damage
    /// stops at its budget, keeps the bytes, and gives no offset out twice.
    #[test]
    fn the_search_after_damage_has_a_budget() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), false, 64 << 20);
        p.append(&[&Message::new(vec![1u8; 100])], 1).unwrap();
        let mut v = Vec::new();
        for _ in 0..512 {
            v.extend_from_slice(&(8u32 << 20).to_le_bytes());
            v.extend_from_slice(&[0u8; 4]);
            v.extend_from_slice(&5u64.to_le_bytes());
        }
        p.append(&[&Message::new(v)], 1).unwrap();
        for _ in 0..8 {
            p.append(&[&Message::new(vec![2u8; 1 << 20])], 1).unwrap();
        }
        drop(p);
        let path = segment_path(dir.path(), 0);
        let before = std::fs::metadata(&path).unwrap().len();
        let mut bytes = std::fs::read(&path).unwrap();
        let first = Message::new(vec![1u8; 100]).encoded_len();
        bytes[first + 1] ^= 0x04; // the crafted record's length
        std::fs::write(&path, &bytes).unwrap();
        let p = open(dir.path(), false, 64 << 20);
        assert_eq!(offsets(&p, 0), [0]);
        let damaged = p.damaged();
        assert_eq!(damaged.len(), 1);
        let (from, to) = damaged[0];
        assert_eq!(from, 1);
        assert!(
            to >= 10,
            "offsets the kept bytes may hold are not given out: {damaged:?}"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            before,
            "nothing cut"
        );
        // Appends go after the kept bytes, and read back, now and after a reopen.
        let at = p.append(&[&Message::new("after")], 1).unwrap();
        assert_eq!(at, to);
        assert_eq!(offsets(&p, at), [at]);
        drop(p);
        let p = open(dir.path(), false, 64 << 20);
        assert_eq!(offsets(&p, at), [at]);
    }
}
