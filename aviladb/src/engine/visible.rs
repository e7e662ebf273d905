//! What readers see: a redb read transaction of the last group that is durable.
//!
//! The writer commits a group to redb (without a sync) while the group's commit-log
//! record is still being synced, so a fresh redb read transaction could see a group that
//! is not durable yet. Readers therefore never begin their own: they share the snapshot
//! the writer publishes once a group is durable (and after every catalog change), which
//! also spares each read a `begin_read`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::error::{DbError, Result};

pub(crate) struct Visible {
    current: RwLock<Option<Arc<ReadTransaction>>>,
    /// How many snapshots were published: the generation of the current one. Only the
    /// writer publishes, so it knows the generation its next publish gets.
    generation: AtomicU64,
}

impl Visible {
    /// The state of `db` now (at open, before any write).
    pub(crate) fn new(db: &Database) -> Result<Visible> {
        Ok(Visible {
            current: RwLock::new(Some(Arc::new(db.begin_read()?))),
            generation: AtomicU64::new(0),
        })
    }

    /// The last published snapshot.
    pub(crate) fn read(&self) -> Result<Arc<ReadTransaction>> {
        self.read_at().map(|(txn, _)| txn)
    }

    /// The last published snapshot and its generation.
    pub(crate) fn read_at(&self) -> Result<(Arc<ReadTransaction>, u64)> {
        let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation.load(Ordering::SeqCst);
        current
            .clone()
            .map(|txn| (txn, generation))
            .ok_or_else(|| DbError::Unavailable("the database is closed".into()))
    }

    /// The generation of the last published snapshot.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Makes `txn` what readers see (the writer's, once what it holds is durable).
    pub(crate) fn publish(&self, txn: ReadTransaction) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.is_some() {
            *current = Some(Arc::new(txn));
            // Under the lock, so `read_at` pairs each snapshot with its own generation.
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Lets go of the snapshot (on close, so the database file can close).
    pub(crate) fn clear(&self) {
        self.current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
