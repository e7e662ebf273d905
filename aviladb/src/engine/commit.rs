//! Group commit: one writer thread takes every write that is waiting, applies them in one
//! redb transaction, makes them durable with one sync of the commit log (see `wal`), and
//! only then commits the transaction (readers see it) and answers each caller. Durable
//! throughput therefore grows with the number of concurrent writers.
//!
//! A job must validate before it writes: when it returns a caller error (not found,
//! conflict, invalid input) it has written nothing, and the group goes on without it. A
//! storage error aborts the whole group and fails every job in it.
//!
//! Catalog changes (databases, collections, indexes) are barriers: each runs alone in a
//! durable redb commit that is also a checkpoint of the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

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
    reply: mpsc::SyncSender<Result<Reply>>,
    /// Runs alone, in a durable commit that checkpoints the log (catalog changes).
    barrier: bool,
}

/// The handle on the writer thread.
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer; after each durable commit it publishes the last sequence
    /// number on `commits`.
    /// Starts the writer. With a commit log, groups are made durable by it; without
    /// one, by redb with `durability`. After each commit it publishes the last sequence
    /// number on `commits`.
    pub(crate) fn start(
        db: Arc<Database>,
        durability: Durability,
        wal: Option<Wal>,
        commits: Arc<tokio::sync::watch::Sender<u64>>,
        clock: Arc<dyn Clock>,
        chores: Option<Chores>,
        graphs: Option<Arc<super::graphs::Graphs>>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("aviladb-writer".into())
            .spawn(move || {
                let writer = WriterThread {
                    db: &db,
                    durability,
                    wal,
                    commits: &commits,
                    clock: &*clock,
                    seqs: None,
                    failed: &flag,
                    catalog: Catalog::new(),
                    graphs: graphs.as_deref(),
                };
                writer.run(&rx, chores.as_ref());
            })?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
            failed,
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
        if self.failed.load(Ordering::SeqCst) {
            return Err(failed_error());
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self.jobs.as_ref().map(|jobs| {
            jobs.send(Job {
                run,
                reply,
                barrier,
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            return Err(DbError::Unavailable("the database is closed".into()));
        }
        answer
            .recv()
            .map_err(|_| DbError::Unavailable("the database writer stopped".into()))?
    }
}

impl Writer {
    /// Whether a commit failed in a way that only a reopen settles.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Closes the queue and waits until the queued groups are done.
    pub(crate) fn stop(&mut self) {
        // Closing the channel ends the thread once the queued groups are done.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

struct WriterThread<'a> {
    db: &'a Database,
    durability: Durability,
    wal: Option<Wal>,
    commits: &'a tokio::sync::watch::Sender<u64>,
    clock: &'a dyn Clock,
    seqs: Option<Seqs>,
    failed: &'a AtomicBool,
    /// Collection metadata as of the last commit.
    catalog: Catalog,
    /// The graph vector indexes, told of each group's vectors before readers see it.
    graphs: Option<&'a super::graphs::Graphs>,
}

impl WriterThread<'_> {
    fn run(mut self, jobs: &mpsc::Receiver<Job>, chores: Option<&Chores>) {
        let mut held: Option<Job> = None;
        loop {
            let first = match held.take() {
                Some(job) => job,
                None => match self.next(jobs, chores) {
                    Some(job) => job,
                    None => break,
                },
            };
            if first.barrier {
                self.barrier(first);
                continue;
            }
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) if job.barrier => {
                        held = Some(job);
                        break;
                    }
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit(group);
            if self
                .wal
                .as_ref()
                .is_some_and(|w| w.written() >= wal::CHECKPOINT_BYTES)
            {
                self.checkpoint();
            }
        }
        // Closing: leave nothing to replay.
        self.checkpoint();
    }

    /// The next job; between jobs, chores and idle checkpoints. `None` once closed.
    fn next(&mut self, jobs: &mpsc::Receiver<Job>, chores: Option<&Chores>) -> Option<Job> {
        let Some(c) = chores else {
            return jobs.recv().ok();
        };
        loop {
            match jobs.recv_timeout(c.every) {
                Ok(job) => return Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if (c.due)(self.db, self.clock.now_micros()) {
                        let (reply, _answer) = mpsc::sync_channel(1);
                        let chore = Arc::clone(&c.job);
                        let run: JobFn = Box::new(move |ctx| chore(ctx));
                        self.commit(vec![Job {
                            run,
                            reply,
                            barrier: false,
                        }]);
                    }
                    if self.wal.as_ref().is_some_and(|w| w.written() > 0) {
                        self.checkpoint();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn commit(&mut self, group: Vec<Job>) {
        if self.failed.load(Ordering::SeqCst) {
            for job in group {
                let _ = job.reply.send(Err(failed_error()));
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
    fn barrier(&mut self, job: Job) {
        if self.failed.load(Ordering::SeqCst) {
            let _ = job.reply.send(Err(failed_error()));
            return;
        }
        let now = self.clock.now_micros();
        commit_group(self, now, vec![job], true);
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
        let done = (|| -> Result<()> {
            let txn = self.db.begin_write()?;
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(wal::CHECKPOINT_KEY, last)?;
                meta.insert(wal::SALT_KEY, salt)?;
            }
            txn.commit()?;
            Ok(())
        })();
        match done {
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
}

/// Runs a group in one transaction and answers its callers once it is durable: through
/// the commit log, or (for a barrier, or without a log) through redb.
fn commit_group(w: &mut WriterThread<'_>, now_micros: u64, group: Vec<Job>, barrier: bool) {
    let fail_all = |group: Vec<Job>, e: &DbError| {
        for job in group {
            let _ = job.reply.send(Err(DbError::Storage(e.to_string())));
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
        log: Log::new(logged),
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
    let mut replies: Vec<mpsc::SyncSender<Result<Reply>>> = Vec::with_capacity(group.len());
    for job in group {
        let mark = ctx.log.mark();
        let result = (job.run)(&mut ctx);
        match &result {
            Err(e @ (DbError::Storage(_) | DbError::Corrupted(_))) => {
                // The transaction may be half-written: nothing in it may commit.
                let message = e.to_string();
                let _ = job.reply.send(Err(DbError::Storage(message.clone())));
                for reply in replies {
                    let _ = reply.send(Err(DbError::Storage(message.clone())));
                }
                return;
            }
            // A caller error wrote nothing; whatever it logged is not part of the group.
            Err(_) => ctx.log.truncate(mark),
            Ok(_) => {}
        }
        answers.push(result);
        replies.push(job.reply);
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
            let _ = reply.send(Err(DbError::Storage(e.to_string())));
        }
        return;
    }
    // Durable first (in the log), visible second (the redb commit).
    if logged
        && !log.is_empty()
        && let Some(wal) = w.wal.as_mut()
        && let Err(e) = wal.append(log.bytes())
    {
        // The record may be in the file even though its sync failed: it could come back
        // after a crash, so nothing may be written after it until a reopen.
        w.failed.store(true, Ordering::SeqCst);
        for reply in replies {
            let _ = reply.send(Err(DbError::Storage(e.to_string())));
        }
        return;
    }
    let vectors = log.take_vectors();
    let mut changed: Vec<u64> = vectors.iter().map(|v| v.table).collect();
    changed.sort_unstable();
    changed.dedup();
    let graphs_took = !vectors.is_empty() && w.graphs.is_some();
    if graphs_took && let Some(graphs) = w.graphs {
        graphs.record(vectors);
    }
    match txn.commit().map_err(DbError::from) {
        Ok(()) => {
            if let Some(graphs) = w.graphs
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
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
            if graphs_took && let Some(graphs) = w.graphs {
                // They took vectors that are not committed: rebuild them from the tables.
                graphs.reset();
            }
            if (logged && !log.is_empty()) || checkpointed.is_some() {
                // The log has the group but the file does not, or a checkpoint may or
                // may not be durable: only a reopen (which replays the log) settles it.
                w.failed.store(true, Ordering::SeqCst);
            }
            for reply in replies {
                let _ = reply.send(Err(DbError::Storage(e.to_string())));
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
