//! What readers see: a redb read transaction of the last group that is durable.
//!
//! The writer commits a group to redb (without a sync) while the group's commit-log
//! record is still being synced, so a fresh redb read transaction could see a group that
//! is not durable yet. Readers therefore never begin their own: they share the snapshot
//! the writer publishes once a group is durable (and after every catalog change), which
//! also spares each read a `begin_read`.

use std::sync::{Arc, PoisonError, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase};

use crate::error::{DbError, Result};

pub(crate) struct Visible {
    current: RwLock<Option<Arc<ReadTransaction>>>,
}

impl Visible {
    /// The state of `db` now (at open, before any write).
    pub(crate) fn new(db: &Database) -> Result<Visible> {
        Ok(Visible {
            current: RwLock::new(Some(Arc::new(db.begin_read()?))),
        })
    }

    /// The last published snapshot.
    pub(crate) fn read(&self) -> Result<Arc<ReadTransaction>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| DbError::Unavailable("the database is closed".into()))
    }

    /// Makes `txn` what readers see (the writer's, once what it holds is durable).
    pub(crate) fn publish(&self, txn: ReadTransaction) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.is_some() {
            *current = Some(Arc::new(txn));
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
