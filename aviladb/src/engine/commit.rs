//! Group commit: whoever holds the writer's state (a caller that found it free, or the
//! writer thread for jobs queued meanwhile) takes every write that is waiting, applies
//! them in one redb transaction, writes their effects to the commit log (see `wal`),
//! commits redb while the log's write-back runs, syncs the log, and only then publishes
//! the group to readers (see `visible`) and answers each caller. Durable throughput
//! therefore grows with the number of concurrent writers.
//!
//! A job must validate before it writes: when it returns a caller error (not found,
//! conflict, invalid input) it has written nothing, and the group goes on without it. A
//! storage error aborts the whole group and fails every job in it.
//!
//! Catalog changes (databases, collections, indexes) are barriers: each runs alone in a
//! durable redb commit that is also a checkpoint of the log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::clock::Clock;
use super::wal::{self, Kind, Log, Wal};
use crate::error::{DbError, Result};

/// Engine counters.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// A ceiling above every commit sequence number handed out (the first write gets 1).
/// Raised by [`SEQ_RESERVE`] at a time, in the transaction that needs it, so most commits
/// do not rewrite it; after a crash numbering resumes at the ceiling, leaving a gap.
pub(crate) const NEXT_SEQ: &str = "next_seq";
const SEQ_RESERVE: u64 = 4096;
/// The most jobs applied in one transaction.
const MAX_GROUP: usize = 1024;

/// What a job sees: the write transaction, the group's commit time, and sequence numbers.
pub(crate) struct TxnCtx<'t> {
    pub(crate) txn: &'t WriteTransaction,
    pub(crate) ts_micros: u64,
    /// The group's effects, for the commit log.
    pub(crate) log: Log,
    seqs: Seqs,
    raised: bool,
    /// Collections looked up by earlier jobs (kept by the writer between groups, since
    /// only its own barrier jobs change the catalog; a barrier clears it).
    collections: Catalog,
}

type Catalog = std::collections::HashMap<(String, String), crate::engine::CollectionInfo>;

/// The writer's numbering: the next sequence number and the durable ceiling.
#[derive(Debug, Clone, Copy)]
struct Seqs {
    next: u64,
    ceiling: u64,
}

impl TxnCtx<'_> {
    /// A collection's metadata as this transaction sees it, looked up once per group.
    pub(crate) fn collection(
        &mut self,
        db: &str,
        name: &str,
        lookup: impl FnOnce(&WriteTransaction, &str, &str) -> Result<crate::engine::CollectionInfo>,
    ) -> Result<crate::engine::CollectionInfo> {
        let key = (db.to_string(), name.to_string());
        if let Some(info) = self.collections.get(&key) {
            return Ok(info.clone());
        }
        let info = lookup(self.txn, db, name)?;
        self.collections.insert(key, info.clone());
        Ok(info)
    }

    /// Forgets looked-up collections (after a catalog change).
    pub(crate) fn catalog_changed(&mut self) {
        self.collections.clear();
    }

    /// A fresh commit sequence number.
    pub(crate) fn next_seq(&mut self) -> u64 {
        if self.seqs.next >= self.seqs.ceiling {
            self.seqs.ceiling = self.seqs.next + SEQ_RESERVE;
            self.raised = true;
        }
        let seq = self.seqs.next;
        self.seqs.next += 1;
        seq
    }
}

type JobFn = Box<dyn FnOnce(&mut TxnCtx<'_>) -> Result<Reply> + Send>;

/// What a job answers.
pub(crate) enum Reply {
    /// Done, nothing to report.
    Done,
    /// Per-operation results of a document write.
    Writes(Vec<crate::engine::WriteResult>),
    /// A count (documents indexed).
    Count(u64),
}

impl Reply {
    /// The count a job answered.
    pub(crate) fn count(self) -> Result<u64> {
        match self {
            Reply::Count(n) => Ok(n),
            _ => Err(DbError::Storage("a job answered without a count".into())),
        }
    }
}

struct Job {
    run: JobFn,
    answer: Answer,
    /// Runs alone, in a durable commit that checkpoints the log (catalog changes).
    barrier: bool,
}

/// Where a caller waits for its job's answer.
#[derive(Default)]
struct Slot {
    answer: Mutex<Answered>,
    cv: Condvar,
}

/// A slot's answer, whether its caller sleeps waiting for it, and the answers this
/// caller passes on when it wakes (see [`wake`]).
#[derive(Default)]
struct Answered {
    answer: Option<Result<Reply>>,
    waiting: bool,
    relay: Relay,
}

/// Answers for callers that sleep. The leader wakes two of them and hands each half of
/// the rest, and so on: each wake-up is a system call that can also hand the leader's
/// core to the woken thread, and one per caller cost the leader 165-233 us per group at
/// 32 writers on two cores (a third of the group's time), in which no group committed.
/// Each entry keeps its [`Answer`], so an answer dropped on the way still wakes its
/// caller (with an error).
type Relay = Vec<(Answer, Result<Reply>)>;

/// Wakes two callers of `relay`, each with half of the rest to pass on.
fn wake(mut left: Relay) {
    let mut right = left.split_off(left.len().div_ceil(2));
    if let Some((to, answer)) = left.pop() {
        to.relay(answer, left);
    }
    if let Some((to, answer)) = right.pop() {
        to.relay(answer, right);
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Answered> {
        self.answer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers; wakes the caller only if it sleeps (a caller that committed its own job
    /// is awake, and a wake-up is a system call).
    fn finish(&self, answer: Result<Reply>) {
        let mut slot = self.lock();
        slot.answer = Some(answer);
        if slot.waiting {
            drop(slot);
            self.cv.notify_one();
        }
    }

    /// Answers a caller that is awake; gives the answer back if it sleeps.
    fn try_finish(&self, answer: Result<Reply>) -> Option<Result<Reply>> {
        let mut slot = self.lock();
        if slot.waiting {
            return Some(answer);
        }
        slot.answer = Some(answer);
        None
    }

    /// Answers a sleeping caller, with answers for it to pass on, and wakes it.
    fn finish_relay(&self, answer: Result<Reply>, relay: Relay) {
        let mut slot = self.lock();
        slot.answer = Some(answer);
        slot.relay = relay;
        drop(slot);
        self.cv.notify_one();
    }

    fn done(&self) -> bool {
        self.lock().answer.is_some()
    }

    fn wait(&self) -> Result<Reply> {
        let mut slot = self.lock();
        loop {
            if let Some(answer) = slot.answer.take() {
                // Woken with answers to pass on: before anything else.
                let relay = std::mem::take(&mut slot.relay);
                drop(slot);
                wake(relay);
                return answer;
            }
            // Set under the lock `finish` and `try_finish` take: they see it (and wake
            // this caller, or put it on a relay), or answered before.
            slot.waiting = true;
            slot = self.cv.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The writer's end of a slot: answering consumes it, and one dropped unanswered (a
/// panic in the writer) answers with an error, so no caller waits forever.
struct Answer(Option<Arc<Slot>>);

impl Answer {
    fn finish(mut self, answer: Result<Reply>) {
        if let Some(slot) = self.0.take() {
            slot.finish(answer);
        }
    }

    /// Answers a caller that is awake, or adds it to `sleepers` (for [`wake`]).
    fn finish_or_relay(mut self, answer: Result<Reply>, sleepers: &mut Relay) {
        let Some(slot) = &self.0 else {
            return;
        };
        match slot.try_finish(answer) {
            None => {
                self.0.take();
            }
            Some(answer) => sleepers.push((self, answer)),
        }
    }

    /// Answers a sleeping caller with `relay` to pass on, and wakes it.
    fn relay(mut self, answer: Result<Reply>, relay: Relay) {
        if let Some(slot) = self.0.take() {
            slot.finish_relay(answer, relay);
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.finish(Err(DbError::Storage(
                "the write stopped unexpectedly (see the log); reopen the database".into(),
            )));
        }
    }
}

/// Jobs waiting for a leader, in arrival order.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    closed: bool,
}

/// What callers and the writer thread share: the queue, and the writer's state, whose
/// holder (the leader) commits groups.
struct Shared {
    queue: Mutex<Queue>,
    state: Mutex<State>,
    /// Wakes the writer thread: jobs wait that no caller leads, or the writer closes.
    work: Condvar,
    failed: Arc<AtomicBool>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state if no one else leads now.
    fn try_lead(&self) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The next group: every job waiting (up to [`MAX_GROUP`]), or a barrier alone.
    fn next_group(&self) -> Vec<Job> {
        let mut queue = self.queue();
        // Sized up front: grown by doubling, a group of 32 reached 1 KiB, where glibc's
        // malloc first merges every small block it holds free.
        let mut group = Vec::with_capacity(queue.waiting.len().min(MAX_GROUP));
        while group.len() < MAX_GROUP {
            match queue.waiting.front() {
                Some(job) if job.barrier && !group.is_empty() => break,
                Some(_) => {}
                None => break,
            }
            let Some(job) = queue.waiting.pop_front() else {
                break;
            };
            let barrier = job.barrier;
            group.push(job);
            if barrier {
                break;
            }
        }
        group
    }

    /// Commits groups until `mine` is done (a caller that found the state free) or, for
    /// the writer thread, until nothing waits; then lets go of the state and leaves what
    /// is still queued to the writer thread.
    fn lead(&self, mut state: MutexGuard<'_, State>, mine: Option<&Slot>) {
        loop {
            if mine.is_some_and(Slot::done) {
                break;
            }
            let group = self.next_group();
            let Some(first) = group.first() else {
                break;
            };
            let barrier = first.barrier;
            let state = &mut *state;
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if barrier {
                    state.barrier(group);
                } else {
                    state.commit(group);
                    if state
                        .wal
                        .as_ref()
                        .is_some_and(|w| w.written() >= wal::CHECKPOINT_BYTES)
                    {
                        state.checkpoint();
                    }
                }
            }));
            if done.is_err() {
                // The group's callers were answered with an error as it unwound; what
                // it left in redb is settled on close (see `State::close`).
                state.failed.store(true, Ordering::SeqCst);
            }
        }
        drop(state);
        // After letting go: a job queued meanwhile, whose caller found the state taken,
        // is seen here (or taken by a caller that finds the state free).
        if !self.queue().waiting.is_empty() {
            self.work.notify_one();
        }
    }

    /// The writer thread: commits what callers queued while the state was taken, and
    /// when nothing waits for a while, runs the chores and checkpoints the log.
    fn run(&self, chores: Option<&Chores>) {
        let every = chores.map_or(Duration::from_secs(3600), |c| c.every);
        loop {
            {
                let mut queue = self.queue();
                // `closed` and the queue change under this lock: checked before
                // waiting, no wake-up is missed.
                while queue.waiting.is_empty() {
                    if queue.closed {
                        return;
                    }
                    let (woken, wait) = self
                        .work
                        .wait_timeout(queue, every)
                        .unwrap_or_else(PoisonError::into_inner);
                    queue = woken;
                    if wait.timed_out() && queue.waiting.is_empty() {
                        drop(queue);
                        self.idle(chores);
                        queue = self.queue();
                    }
                }
            }
            let state = self.state();
            self.lead(state, None);
        }
    }

    /// Nothing waited for a while: chores, and a checkpoint of the log.
    fn idle(&self, chores: Option<&Chores>) {
        let Some(mut state) = self.try_lead() else {
            return;
        };
        if let Some(chores) = chores
            && (chores.due)(&state.db, state.clock.now_micros())
        {
            let chore = Arc::clone(&chores.job);
            state.commit(vec![Job {
                run: Box::new(move |ctx| chore(ctx)),
                answer: Answer(None),
                barrier: false,
            }]);
        }
        if self.queue().waiting.is_empty() && state.wal.as_ref().is_some_and(|w| w.written() > 0) {
            state.checkpoint();
        }
        self.lead(state, None);
    }
}

/// The writer. A caller that finds the state free commits its own job (with whatever
/// else waits) on its own thread, so a lone writer pays no hand-off between threads;
/// jobs queued while the state is taken are committed by the writer thread, which also
/// runs the chores and the idle checkpoints.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    stopped: bool,
}

impl Writer {
    /// Starts the writer. With a commit log, groups are made durable by it; without
    /// one, by redb with `durability`. After each commit it publishes the last sequence
    /// number on `commits`, and what readers see on `visible`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        db: Arc<Database>,
        durability: Durability,
        wal: Option<Wal>,
        commits: Arc<tokio::sync::watch::Sender<u64>>,
        clock: Arc<dyn Clock>,
        chores: Option<Chores>,
        graphs: Option<Arc<super::graphs::Graphs>>,
        visible: Arc<super::visible::Visible>,
    ) -> Result<Writer> {
        let failed = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            state: Mutex::new(State {
                db,
                durability,
                wal,
                commits,
                clock,
                seqs: None,
                failed: Arc::clone(&failed),
                catalog: Catalog::new(),
                log_buffer: Vec::new(),
                graphs,
                visible,
            }),
            work: Condvar::new(),
            failed,
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("aviladb-writer".into())
                .spawn(move || shared.run(chores.as_ref()))?
        };
        Ok(Writer {
            shared,
            thread: Some(thread),
            stopped: false,
        })
    }

    /// Runs `job` in the next group and waits until it is durable (or failed).
    pub(crate) fn submit(
        &self,
        job: impl FnOnce(&mut TxnCtx<'_>) -> Result<Reply> + Send + 'static,
    ) -> Result<Reply> {
        self.send(Box::new(job), false)
    }

    /// Runs `job` alone in a durable commit that checkpoints the commit log.
    pub(crate) fn submit_barrier(
        &self,
        job: impl FnOnce(&mut TxnCtx<'_>) -> Result<Reply> + Send + 'static,
    ) -> Result<Reply> {
        self.send(Box::new(job), true)
    }

    fn send(&self, run: JobFn, barrier: bool) -> Result<Reply> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(failed_error());
        }
        let slot = Arc::new(Slot::default());
        {
            let mut queue = self.shared.queue();
            if queue.closed {
                return Err(DbError::Unavailable("the database is closed".into()));
            }
            queue.waiting.push_back(Job {
                run,
                answer: Answer(Some(Arc::clone(&slot))),
                barrier,
            });
        }
        // Whoever holds the state now takes this job in its next group, or leaves it to
        // the writer thread when it lets go.
        if let Some(state) = self.shared.try_lead() {
            self.shared.lead(state, Some(&slot));
        }
        slot.wait()
    }

    /// Tests: makes every later sync of the commit log fail (or not).
    #[cfg(test)]
    pub(crate) fn fail_log_syncs(&self, on: bool) {
        if let Some(wal) = self.shared.state().wal.as_mut() {
            wal.fail_sync = on;
        }
    }

    /// Whether a commit failed in a way that only a reopen settles.
    pub(crate) fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Refuses new jobs, finishes the queued ones and checkpoints the log.
    pub(crate) fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        self.shared.queue().closed = true;
        self.shared.work.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let state = self.shared.state();
        self.shared.lead(state, None);
        self.shared.state().close();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Work the writer does on its own between callers' jobs: `due` looks cheaply (in a read
/// transaction) whether there is any; `job` does it in a write transaction.
pub(crate) struct Chores {
    pub(crate) every: Duration,
    pub(crate) due: DueFn,
    pub(crate) job: ChoreFn,
}

/// Whether a chore has work at a time (µs).
pub(crate) type DueFn = Box<dyn Fn(&Database, u64) -> bool + Send>;
/// A chore's job, run as often as it is due.
pub(crate) type ChoreFn = Arc<dyn Fn(&mut TxnCtx<'_>) -> Result<Reply> + Send + Sync>;

fn failed_error() -> DbError {
    DbError::Unavailable(
        "a write reached the commit log but not the database file; reopen the database to recover it"
            .into(),
    )
}

/// The writer's state, held by the leader.
struct State {
    db: Arc<Database>,
    durability: Durability,
    wal: Option<Wal>,
    commits: Arc<tokio::sync::watch::Sender<u64>>,
    clock: Arc<dyn Clock>,
    seqs: Option<Seqs>,
    failed: Arc<AtomicBool>,
    /// Collection metadata as of the last commit.
    catalog: Catalog,
    /// The commit log's buffer, kept from group to group: grown afresh each time, it
    /// was reallocated a dozen times per group at 32 writers.
    log_buffer: Vec<u8>,
    /// The graph vector indexes, told of each group's vectors before readers see it.
    graphs: Option<Arc<super::graphs::Graphs>>,
    /// Where durable groups are published to readers.
    visible: Arc<super::visible::Visible>,
}

impl State {
    fn commit(&mut self, group: Vec<Job>) {
        if self.failed.load(Ordering::SeqCst) {
            for job in group {
                job.answer.finish(Err(failed_error()));
            }
            return;
        }
        let before = self.seqs.map(|s| s.next);
        let now = self.clock.now_micros();
        commit_group(self, now, group, false);
        if let Some(after) = self.seqs
            && Some(after.next) != before
        {
            self.commits.send_replace(after.next - 1);
        }
    }

    /// A catalog change: alone, durable in redb, checkpointing the log.
    fn barrier(&mut self, group: Vec<Job>) {
        if self.failed.load(Ordering::SeqCst) {
            for job in group {
                job.answer.finish(Err(failed_error()));
            }
            return;
        }
        let now = self.clock.now_micros();
        commit_group(self, now, group, true);
    }

    /// Makes every group durable in redb and starts the log again.
    fn checkpoint(&mut self) {
        if self.failed.load(Ordering::SeqCst) {
            return;
        }
        let Some(last) = self
            .wal
            .as_ref()
            .filter(|w| w.written() > 0)
            .map(Wal::last_lsn)
        else {
            return;
        };
        let salt = wal::new_salt();
        match self.save_checkpoint(last, salt) {
            Ok(()) => {
                if let Some(w) = self.wal.as_mut() {
                    w.restart(salt);
                }
            }
            // The checkpoint may or may not be durable: no record may follow it until a
            // reopen settles which (the log still holds everything).
            Err(_) => self.failed.store(true, Ordering::SeqCst),
        }
    }

    /// On close, leaves nothing to replay. After a failure this matters most: redb may
    /// hold a group committed (not durably) whose log record never became durable, and
    /// redb makes such a commit durable when it closes, under a log whose replay would
    /// then apply older records over it. A checkpoint covering every record makes the
    /// file and the log agree (that group applied: its callers had an error, whose
    /// outcome a reopen decides anyway). If even that fails, the database is never
    /// closed in this process, so the file keeps its last durable state and the log.
    /// Without a log, a durable redb commit makes the earlier ones durable here, before
    /// the graphs are saved: a graph file must never describe commits that a crash during
    /// the rest of the close could still lose.
    fn close(&mut self) {
        if !self.failed.load(Ordering::SeqCst) {
            if self.wal.is_none() {
                if self.persist().is_err() {
                    self.failed.store(true, Ordering::SeqCst);
                }
                return;
            }
            self.checkpoint();
            return;
        }
        let Some(last) = self.wal.as_ref().map(Wal::last_lsn) else {
            return;
        };
        if self.save_checkpoint(last, wal::new_salt()).is_err() {
            std::mem::forget(Arc::clone(&self.db));
        }
    }

    /// A durable redb commit that changes nothing (the salt written again as it is), so
    /// that every commit before it is durable.
    fn persist(&self) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            let salt = meta.get(wal::SALT_KEY)?.map(|v| v.value());
            meta.insert(wal::SALT_KEY, salt.unwrap_or(0))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// A durable redb commit recording that the file holds every log record up to
    /// `last`, and the checksum seed of the records after it.
    fn save_checkpoint(&self, last: u64, salt: u64) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(wal::CHECKPOINT_KEY, last)?;
            meta.insert(wal::SALT_KEY, salt)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Runs a group in one transaction and answers its callers once it is durable: through
/// the commit log, or (for a barrier, or without a log) through redb.
fn commit_group(w: &mut State, now_micros: u64, group: Vec<Job>, barrier: bool) {
    let fail_all = |group: Vec<Job>, e: &DbError| {
        for job in group {
            job.answer.finish(Err(DbError::Storage(e.to_string())));
        }
    };
    let logged = w.wal.is_some() && !barrier;
    let txn = match w.db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail_all(group, &e.into()),
    };
    let mut txn = txn;
    let durability = if logged {
        Durability::None
    } else {
        w.durability
    };
    if let Err(e) = txn.set_durability(durability) {
        return fail_all(group, &e.into());
    }
    let start = match w.seqs {
        Some(s) => s,
        None => match read_next_seq(&txn) {
            // Numbering resumes at the ceiling: what was handed out below it is unknown.
            Ok(ceiling) => Seqs {
                next: ceiling,
                ceiling,
            },
            Err(e) => return fail_all(group, &e),
        },
    };
    let mut ctx = TxnCtx {
        txn: &txn,
        ts_micros: now_micros,
        log: Log::with_buffer(logged, std::mem::take(&mut w.log_buffer)),
        seqs: start,
        raised: false,
        // A barrier may change the catalog: it starts (and leaves) without the cache.
        collections: if barrier {
            w.catalog.clear();
            Catalog::new()
        } else {
            std::mem::take(&mut w.catalog)
        },
    };
    let mut answers = Vec::with_capacity(group.len());
    let mut replies: Vec<Answer> = Vec::with_capacity(group.len());
    for job in group {
        let mark = ctx.log.mark();
        let result = (job.run)(&mut ctx);
        match &result {
            Err(e @ (DbError::Storage(_) | DbError::Corrupted(_))) => {
                // The transaction may be half-written: nothing in it may commit.
                let message = e.to_string();
                job.answer.finish(Err(DbError::Storage(message.clone())));
                for reply in replies {
                    reply.finish(Err(DbError::Storage(message.clone())));
                }
                return;
            }
            // A caller error wrote nothing; whatever it logged is not part of the group.
            Err(_) => ctx.log.truncate(mark),
            Ok(_) => {}
        }
        answers.push(result);
        replies.push(job.answer);
    }
    let (after, raised) = (ctx.seqs, ctx.raised);
    let mut log = std::mem::take(&mut ctx.log);
    let looked_up = std::mem::take(&mut ctx.collections);
    let saved = if raised {
        save_next_seq(&txn, &mut log, after.ceiling)
    } else {
        Ok(())
    };
    // A barrier commits durably in redb: it covers every record of the log so far.
    let checkpointed = if barrier {
        w.wal.as_ref().map(|wal| (wal.last_lsn(), wal::new_salt()))
    } else {
        None
    };
    let saved = saved.and_then(|()| match checkpointed {
        Some((lsn, salt)) => {
            let mut meta = txn.open_table(META)?;
            meta.insert(wal::CHECKPOINT_KEY, lsn)?;
            meta.insert(wal::SALT_KEY, salt)?;
            Ok(())
        }
        None => Ok(()),
    });
    if let Err(e) = saved {
        for reply in replies {
            reply.finish(Err(DbError::Storage(e.to_string())));
        }
        return;
    }
    // Written to the log (its write-back starts at once), committed to redb while that
    // runs, then synced, and only then visible: readers see published snapshots only.
    let written = logged && !log.is_empty();
    if written
        && let Some(wal) = w.wal.as_mut()
        && let Err(e) = wal.write(log.bytes())
    {
        // The record may be in the file even though it failed: it could come back after
        // a crash, so nothing may be written after it until a reopen.
        w.failed.store(true, Ordering::SeqCst);
        for reply in replies {
            reply.finish(Err(DbError::Storage(e.to_string())));
        }
        return;
    }
    let vectors = log.take_vectors();
    w.log_buffer = log.into_buffer();
    let mut changed: Vec<u64> = vectors.iter().map(|v| v.table).collect();
    changed.sort_unstable();
    changed.dedup();
    let committed = txn.commit().map_err(DbError::from);
    let commit_failed = committed.is_err();
    // What readers will see: this group and every one before it.
    let snapshot = committed.and_then(|()| w.db.begin_read().map_err(DbError::from));
    // Synced whatever happened to the commit: a record that reached the file may be
    // replayed, and must not be torn by a later one.
    let synced = match (written, w.wal.as_ref()) {
        (true, Some(wal)) => wal.sync(),
        _ => Ok(()),
    };
    match (snapshot, synced) {
        (Ok(snapshot), Ok(())) => {
            // The graphs take the group before readers can see it.
            if let Some(graphs) = &w.graphs {
                graphs.record(vectors);
            }
            w.visible.publish(snapshot);
            if let Some(graphs) = &w.graphs
                && !changed.is_empty()
            {
                graphs.committed(&changed);
            }
            w.seqs = Some(after);
            if !barrier {
                w.catalog = looked_up;
            }
            if let Some((_, salt)) = checkpointed
                && let Some(wal) = w.wal.as_mut()
            {
                wal.restart(salt);
            }
            let mut sleepers = Vec::with_capacity(replies.len());
            for (reply, answer) in replies.into_iter().zip(answers) {
                reply.finish_or_relay(answer, &mut sleepers);
            }
            wake(sleepers);
        }
        (Err(e), _) | (_, Err(e)) => {
            if !commit_failed || written || checkpointed.is_some() {
                // Committed but not durable or not visible, in the log but not in the
                // file, or a checkpoint that may or may not be durable: only a reopen
                // (which replays the log) settles it.
                w.failed.store(true, Ordering::SeqCst);
            }
            for reply in replies {
                reply.finish(Err(DbError::Storage(e.to_string())));
            }
        }
    }
}

fn read_next_seq(txn: &WriteTransaction) -> Result<u64> {
    let meta = txn.open_table(META)?;
    Ok(meta.get(NEXT_SEQ)?.map_or(1, |v| v.value()))
}

fn save_next_seq(txn: &WriteTransaction, log: &mut Log, next: u64) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    meta.insert(NEXT_SEQ, next)?;
    log.record(
        Kind::Meta,
        0,
        NEXT_SEQ.as_bytes(),
        Some(&next.to_le_bytes()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` callers asleep in `Slot::wait`, on their own threads.
    fn sleeping(n: usize) -> (Vec<Arc<Slot>>, Vec<JoinHandle<Result<Reply>>>) {
        let slots: Vec<Arc<Slot>> = (0..n).map(|_| Arc::new(Slot::default())).collect();
        let waiters = slots
            .iter()
            .map(|slot| {
                let slot = Arc::clone(slot);
                std::thread::spawn(move || slot.wait())
            })
            .collect();
        while slots.iter().any(|slot| !slot.lock().waiting) {
            std::thread::yield_now();
        }
        (slots, waiters)
    }

    #[test]
    fn relayed_answers_reach_their_own_callers() {
        for n in [1, 2, 3, 37] {
            let (slots, waiters) = sleeping(n);
            let mut sleepers = Vec::new();
            for (i, slot) in slots.iter().enumerate() {
                Answer(Some(Arc::clone(slot)))
                    .finish_or_relay(Ok(Reply::Count(i as u64)), &mut sleepers);
            }
            assert_eq!(sleepers.len(), n, "every caller sleeps");
            wake(sleepers);
            for (i, waiter) in waiters.into_iter().enumerate() {
                let answer = waiter.join().unwrap().unwrap().count().unwrap();
                assert_eq!(answer, i as u64);
            }
        }
    }

    #[test]
    fn an_awake_caller_is_answered_without_a_relay() {
        let slot = Arc::new(Slot::default());
        let mut sleepers = Vec::new();
        Answer(Some(Arc::clone(&slot))).finish_or_relay(Ok(Reply::Count(7)), &mut sleepers);
        assert!(sleepers.is_empty());
        assert_eq!(slot.wait().unwrap().count().unwrap(), 7);
    }

    #[test]
    fn sleepers_dropped_before_their_wake_up_are_answered_with_an_error() {
        let (slots, waiters) = sleeping(5);
        let mut sleepers = Vec::new();
        for slot in &slots {
            Answer(Some(Arc::clone(slot))).finish_or_relay(Ok(Reply::Done), &mut sleepers);
        }
        drop(sleepers);
        for waiter in waiters {
            let e = waiter.join().unwrap().err().expect("an error");
            assert!(matches!(e, DbError::Storage(_)), "{e}");
        }
    }
}
