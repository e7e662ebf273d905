//! Read snapshots that outlive one call: a transaction reads all its documents from one
//! snapshot, in-process or through a server, and its commit checks they did not change.
//!
//! A snapshot is a redb read transaction kept in a table by id. One unused for
//! [`SNAPSHOT_IDLE`] is dropped (a later read with it is `Conflict`: the transaction must
//! start again); at most [`MAX_SNAPSHOTS`] are open at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{ReadTransaction, TableDefinition};

use super::{DocKey, Engine, RawDocument, docs_table, read_collection};
use crate::error::{DbError, Result};

/// How long an unused snapshot lives.
pub const SNAPSHOT_IDLE: Duration = Duration::from_secs(60);
/// The most snapshots open at once.
pub const MAX_SNAPSHOTS: usize = 4096;

#[derive(Default)]
pub(crate) struct Snapshots {
    open: Mutex<HashMap<u64, (Arc<ReadTransaction>, Instant)>>,
    next: AtomicU64,
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<ReadTransaction>, Instant)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Engine {
    /// Opens a read snapshot for a transaction; answers its id.
    pub fn begin_snapshot(&self) -> Result<u64> {
        let txn = self.inner.visible.read()?;
        let snapshots = &self.inner.snapshots;
        let mut open = snapshots.lock();
        let now = Instant::now();
        open.retain(|_, (_, used)| now.duration_since(*used) < SNAPSHOT_IDLE);
        if open.len() >= MAX_SNAPSHOTS {
            return Err(DbError::Unavailable(format!(
                "{MAX_SNAPSHOTS} transactions are open; commit or abort some first"
            )));
        }
        // Ids start from the clock, so an id from before a restart does not name a new
        // snapshot.
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let id = base.max(snapshots.next.load(Ordering::Relaxed)) + 1;
        snapshots.next.store(id, Ordering::Relaxed);
        open.insert(id, (txn, now));
        Ok(id)
    }

    /// Closes a snapshot (nothing happens if it is gone already).
    pub fn release_snapshot(&self, id: u64) {
        self.inner.snapshots.lock().remove(&id);
    }

    pub(crate) fn snapshot_txn(&self, id: u64) -> Result<Arc<ReadTransaction>> {
        let mut open = self.inner.snapshots.lock();
        match open.get_mut(&id) {
            Some((txn, used)) if used.elapsed() < SNAPSHOT_IDLE => {
                *used = Instant::now();
                Ok(Arc::clone(txn))
            }
            _ => {
                open.remove(&id);
                Err(DbError::Conflict(format!(
                    "transaction snapshot {id} expired or does not exist; start the transaction again"
                )))
            }
        }
    }

    /// Reads up to [`super::MAX_BATCH`] documents from a snapshot.
    pub(crate) fn snapshot_get(
        &self,
        id: u64,
        db: &str,
        coll: &str,
        keys: &[DocKey],
    ) -> Result<Vec<Option<RawDocument>>> {
        if keys.len() > super::MAX_BATCH {
            return Err(DbError::invalid(
                "keys",
                format!("more than {} keys", super::MAX_BATCH),
            ));
        }
        let txn = self.snapshot_txn(id)?;
        let info = read_collection(&txn, db, coll)?;
        let table = txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&docs_table(
            info.table,
        )))?;
        super::read_batch(&table, &super::encode_keys(keys)?, &self.expiry(&info))
    }
}
