//! Group commit: one writer thread takes every write that is waiting, applies them in one
//! redb transaction, makes it durable with one fsync, and only then answers each caller.
//! Durable throughput therefore grows with the number of concurrent writers.
//!
//! A job must validate before it writes: when it returns a caller error (not found,
//! conflict, invalid input) it has written nothing, and the group goes on without it. A
//! storage error aborts the whole group and fails every job in it.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use super::clock::Clock;
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
    seqs: Seqs,
    raised: bool,
    /// Collections looked up by earlier jobs of this group (a catalog job clears it).
    collections: std::collections::HashMap<(String, String), crate::engine::CollectionInfo>,
}

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

struct Job {
    run: JobFn,
    reply: mpsc::SyncSender<Result<Reply>>,
}

/// The handle on the writer thread.
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer; after each durable commit it publishes the last sequence
    /// number on `commits`.
    pub(crate) fn start(
        db: Arc<Database>,
        durability: Durability,
        commits: Arc<tokio::sync::watch::Sender<u64>>,
        clock: Arc<dyn Clock>,
        chores: Option<Chores>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("aviladb-writer".into())
            .spawn(move || {
                let writer = WriterThread {
                    db: &db,
                    durability,
                    commits: &commits,
                    clock: &*clock,
                    seqs: None,
                };
                writer.run(&rx, chores.as_ref());
            })?;
        Ok(Writer {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `job` in the next group and waits until it is durable (or failed).
    pub(crate) fn submit(
        &self,
        job: impl FnOnce(&mut TxnCtx<'_>) -> Result<Reply> + Send + 'static,
    ) -> Result<Reply> {
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self.jobs.as_ref().map(|jobs| {
            jobs.send(Job {
                run: Box::new(job),
                reply,
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

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the queued groups are done.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

struct WriterThread<'a> {
    db: &'a Database,
    durability: Durability,
    commits: &'a tokio::sync::watch::Sender<u64>,
    clock: &'a dyn Clock,
    seqs: Option<Seqs>,
}

impl WriterThread<'_> {
    fn run(mut self, jobs: &mpsc::Receiver<Job>, chores: Option<&Chores>) {
        loop {
            let first = match chores {
                Some(c) => match jobs.recv_timeout(c.every) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if (c.due)(self.db, self.clock.now_micros()) {
                            let (reply, _answer) = mpsc::sync_channel(1);
                            let chore = Arc::clone(&c.job);
                            let run: JobFn = Box::new(move |ctx| chore(ctx));
                            self.commit(vec![Job { run, reply }]);
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Job>) {
        let before = self.seqs.map(|s| s.next);
        commit_group(
            self.db,
            self.durability,
            self.clock.now_micros(),
            group,
            &mut self.seqs,
        );
        if let Some(after) = self.seqs
            && Some(after.next) != before
        {
            self.commits.send_replace(after.next - 1);
        }
    }
}

fn commit_group(
    db: &Database,
    durability: Durability,
    now_micros: u64,
    group: Vec<Job>,
    seqs: &mut Option<Seqs>,
) {
    let fail_all = |group: Vec<Job>, e: &DbError| {
        for job in group {
            let _ = job.reply.send(Err(DbError::Storage(e.to_string())));
        }
    };
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail_all(group, &e.into()),
    };
    let mut txn = txn;
    if let Err(e) = txn.set_durability(durability) {
        return fail_all(group, &e.into());
    }
    let start = match *seqs {
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
        seqs: start,
        raised: false,
        collections: std::collections::HashMap::new(),
    };
    let mut answers = Vec::with_capacity(group.len());
    let mut replies: Vec<mpsc::SyncSender<Result<Reply>>> = Vec::with_capacity(group.len());
    for job in group {
        let result = (job.run)(&mut ctx);
        if let Err(e @ (DbError::Storage(_) | DbError::Corrupted(_))) = &result {
            // The transaction may be half-written: nothing in it may commit.
            let message = e.to_string();
            let _ = job.reply.send(Err(DbError::Storage(message.clone())));
            for reply in replies {
                let _ = reply.send(Err(DbError::Storage(message.clone())));
            }
            return;
        }
        answers.push(result);
        replies.push(job.reply);
    }
    let (after, raised) = (ctx.seqs, ctx.raised);
    let saved = if raised {
        save_next_seq(&txn, after.ceiling)
    } else {
        Ok(())
    };
    let outcome = saved.and_then(|()| txn.commit().map_err(DbError::from));
    match outcome {
        Ok(()) => {
            *seqs = Some(after);
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        Err(e) => {
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

fn save_next_seq(txn: &WriteTransaction, next: u64) -> Result<()> {
    let mut meta = txn.open_table(META)?;
    meta.insert(NEXT_SEQ, next)?;
    Ok(())
}
