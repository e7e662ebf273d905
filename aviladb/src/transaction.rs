//! Transactions across the collections of one database: reads from one snapshot, writes
//! buffered, and a commit that fails with `Conflict` (writing nothing) when a document it
//! read changed since. Optimistic: nothing is locked, so readers and writers never wait
//! on a transaction; an aborted or abandoned one costs nothing but its snapshot.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let engine = aviladb::Engine::open(dir.path())?;
//! # let db = engine.database("shop");
//! # db.create()?;
//! # let wallets = db.create_collection("wallets", "/id")?;
//! # let items = db.create_collection("items", "/owner")?;
//! # wallets.insert(&serde_json::json!({"id": "ana", "coins": 10}))?;
//! let mut tx = db.begin()?;
//! let wallet = tx.get::<serde_json::Value>("wallets", "ana", "ana")?.expect("exists");
//! let coins = wallet.body["coins"].as_i64().unwrap_or(0);
//! tx.upsert("wallets", &serde_json::json!({"id": "ana", "coins": coins - 3}))?;
//! tx.insert("items", &serde_json::json!({"id": "sword", "owner": "ana"}))?;
//! tx.commit()?; // Conflict if the wallet changed after it was read
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{DbRequest, DbResponse};
use crate::document::{Document, IntoDocument};
use crate::engine::{DocKey, Engine, PatchOp, ReadCheck, TxnWrite, WriteOp, WriteResult};
use crate::error::{DbError, Result};
use crate::handle::{Client, ClientDatabase, Database};
use crate::query::{PageOptions, QueryPage, QuerySpec};

/// What a transaction has read and what it will write.
#[derive(Debug, Default)]
struct Buffer {
    reads: Vec<ReadCheck>,
    /// The documents in `reads`: collection, partition key (as JSON text) and id.
    seen: std::collections::HashSet<(String, String, String)>,
    /// What `reads` take, as [`crate::engine::MAX_TXN_READ_BYTES`] counts it.
    read_bytes: usize,
    writes: Vec<TxnWrite>,
}

impl Buffer {
    fn read(
        &mut self,
        collection: &str,
        partition_key: &Value,
        id: &str,
        seq: Option<u64>,
    ) -> Result<()> {
        let slot = (
            collection.to_string(),
            partition_key.to_string(),
            id.to_string(),
        );
        if self.seen.contains(&slot) {
            return Ok(());
        }
        if self.reads.len() >= crate::engine::MAX_TXN_READS {
            return Err(DbError::invalid(
                "reads",
                format!(
                    "a transaction reads at most {} documents (each is checked at its commit)",
                    crate::engine::MAX_TXN_READS
                ),
            ));
        }
        let bytes = slot.0.len() + slot.1.len() + slot.2.len() + 96;
        if self.read_bytes + bytes > crate::engine::MAX_TXN_READ_BYTES {
            return Err(DbError::invalid(
                "reads",
                format!(
                    "a transaction's reads take at most {} bytes of keys (each is checked at its commit)",
                    crate::engine::MAX_TXN_READ_BYTES
                ),
            ));
        }
        self.read_bytes += bytes;
        self.seen.insert(slot);
        self.reads.push(ReadCheck {
            collection: collection.to_string(),
            partition_key: partition_key.clone(),
            id: id.to_string(),
            seq,
        });
        Ok(())
    }

    fn read_all(&mut self, reads: Vec<ReadCheck>) -> Result<()> {
        for r in reads {
            self.read(&r.collection, &r.partition_key, &r.id, r.seq)?;
        }
        Ok(())
    }

    fn write(&mut self, collection: &str, op: WriteOp) -> Result<()> {
        if self.writes.len() >= crate::engine::MAX_BATCH {
            return Err(DbError::invalid(
                "writes",
                format!(
                    "a transaction writes at most {} documents",
                    crate::engine::MAX_BATCH
                ),
            ));
        }
        self.writes.push(TxnWrite {
            collection: collection.to_string(),
            op,
        });
        Ok(())
    }
}

macro_rules! transaction_writes {
    () => {
        /// Buffers any write operation.
        pub fn write(&mut self, collection: &str, op: WriteOp) -> Result<()> {
            self.buffer.write(collection, op)
        }

        /// Buffers an insert (fails at commit if the key is taken).
        pub fn insert(&mut self, collection: &str, document: impl IntoDocument) -> Result<()> {
            let document = document.into_document()?;
            self.buffer.write(collection, WriteOp::Insert { document })
        }

        /// Buffers an upsert.
        pub fn upsert(&mut self, collection: &str, document: impl IntoDocument) -> Result<()> {
            self.upsert_if_match(collection, document, None)
        }

        /// Buffers an upsert that, with `if_match`, applies only if a document with the
        /// key exists with that ETag at the commit (else the commit is `Conflict`).
        pub fn upsert_if_match(
            &mut self,
            collection: &str,
            document: impl IntoDocument,
            if_match: Option<&str>,
        ) -> Result<()> {
            let document = document.into_document()?;
            let if_match = if_match.map(str::to_owned);
            self.buffer
                .write(collection, WriteOp::Upsert { document, if_match })
        }

        /// Buffers a replace, with an optional ETag condition.
        pub fn replace(
            &mut self,
            collection: &str,
            document: impl IntoDocument,
            if_match: Option<&str>,
        ) -> Result<()> {
            let document = document.into_document()?;
            let if_match = if_match.map(str::to_owned);
            self.buffer
                .write(collection, WriteOp::Replace { document, if_match })
        }

        /// Buffers a patch, with an optional ETag condition.
        pub fn patch(
            &mut self,
            collection: &str,
            partition_key: impl Into<Value>,
            id: &str,
            operations: Vec<PatchOp>,
            if_match: Option<&str>,
        ) -> Result<()> {
            let op = WriteOp::Patch {
                partition_key: partition_key.into(),
                id: id.to_string(),
                operations,
                if_match: if_match.map(str::to_owned),
            };
            self.buffer.write(collection, op)
        }

        /// Buffers a delete, with an optional ETag condition.
        pub fn delete(
            &mut self,
            collection: &str,
            partition_key: impl Into<Value>,
            id: &str,
            if_match: Option<&str>,
        ) -> Result<()> {
            let op = WriteOp::Delete {
                partition_key: partition_key.into(),
                id: id.to_string(),
                if_match: if_match.map(str::to_owned),
            };
            self.buffer.write(collection, op)
        }
    };
}

/// A transaction on an in-process engine. Dropping it without `commit` abandons it.
#[derive(Debug)]
pub struct Transaction {
    engine: Engine,
    database: String,
    snapshot: u64,
    buffer: Buffer,
    open: bool,
}

impl Database {
    /// Starts a transaction: its reads come from this moment's snapshot.
    pub fn begin(&self) -> Result<Transaction> {
        self.engine().list_collections(self.name())?;
        Ok(Transaction {
            engine: self.engine().clone(),
            database: self.name().to_string(),
            snapshot: self.engine().begin_snapshot()?,
            buffer: Buffer::default(),
            open: true,
        })
    }
}

impl Transaction {
    /// Reads a document from the snapshot (not the transaction's own buffered writes);
    /// the commit checks it did not change since.
    pub fn get<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        partition_key: impl Into<Value>,
        id: &str,
    ) -> Result<Option<Document<T>>> {
        let partition_key = partition_key.into();
        let key = DocKey {
            partition_key: partition_key.clone(),
            id: id.to_string(),
        };
        let doc = self
            .engine
            .snapshot_get(self.snapshot, &self.database, collection, &[key])?
            .pop()
            .flatten();
        self.buffer
            .read(collection, &partition_key, id, doc.as_ref().map(|d| d.seq))?;
        doc.map(Document::from_raw).transpose()
    }

    /// Runs one page of a query in the transaction's snapshot (not its own buffered
    /// writes); the commit checks that every document the query matched did not change
    /// since. Documents that came to match after the snapshot are not checked (no
    /// phantom protection).
    pub fn query(
        &mut self,
        collection: &str,
        spec: impl Into<QuerySpec>,
        options: PageOptions,
    ) -> Result<QueryPage> {
        let (page, reads) = self.engine.snapshot_query(
            self.snapshot,
            &self.database,
            collection,
            &spec.into(),
            &options,
        )?;
        self.buffer.read_all(reads)?;
        Ok(page)
    }

    transaction_writes!();

    /// Commits: `Conflict` (and nothing written) if a document read has changed.
    pub fn commit(mut self) -> Result<Vec<WriteResult>> {
        self.open = false;
        self.engine.release_snapshot(self.snapshot);
        let buffer = std::mem::take(&mut self.buffer);
        if buffer.writes.is_empty() && buffer.reads.is_empty() {
            return Ok(Vec::new());
        }
        self.engine
            .commit_transaction(&self.database, buffer.reads, buffer.writes)
    }

    /// Abandons the transaction.
    pub fn abort(mut self) {
        self.open = false;
        self.engine.release_snapshot(self.snapshot);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.open {
            self.engine.release_snapshot(self.snapshot);
        }
    }
}

/// A transaction through a [`Client`], in-process or over the network. One abandoned
/// without `commit` or `abort` keeps its snapshot until it has been idle for a minute.
#[derive(Debug)]
pub struct ClientTransaction {
    client: Client,
    database: String,
    snapshot: u64,
    buffer: Buffer,
}

impl ClientDatabase {
    /// Starts a transaction: its reads come from this moment's snapshot.
    pub async fn begin(&self) -> Result<ClientTransaction> {
        match self
            .client()
            .call(DbRequest::BeginTransaction {
                database: self.name().to_string(),
            })
            .await?
        {
            DbResponse::Transaction { snapshot } => Ok(ClientTransaction {
                client: self.client().clone(),
                database: self.name().to_string(),
                snapshot,
                buffer: Buffer::default(),
            }),
            other => Err(DbError::Storage(format!("unexpected response: {other:?}"))),
        }
    }
}

impl ClientTransaction {
    /// Reads a document from the snapshot; the commit checks it did not change since.
    pub async fn get<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        partition_key: impl Into<Value>,
        id: &str,
    ) -> Result<Option<Document<T>>> {
        let partition_key = partition_key.into();
        let response = self
            .client
            .call(DbRequest::GetMany {
                database: self.database.clone(),
                collection: collection.to_string(),
                keys: vec![DocKey {
                    partition_key: partition_key.clone(),
                    id: id.to_string(),
                }],
                snapshot: Some(self.snapshot),
            })
            .await?;
        let DbResponse::Documents { mut documents } = response else {
            return Err(DbError::Storage(format!(
                "unexpected response: {response:?}"
            )));
        };
        let doc = documents.pop().flatten();
        let seq = doc.as_ref().and_then(|d| d["_seq"].as_u64());
        self.buffer.read(collection, &partition_key, id, seq)?;
        doc.map(Document::from_value).transpose()
    }

    /// Runs one page of a query in the transaction's snapshot (see
    /// [`Transaction::query`]).
    pub async fn query(
        &mut self,
        collection: &str,
        spec: impl Into<QuerySpec>,
        options: PageOptions,
    ) -> Result<QueryPage> {
        let response = self
            .client
            .call(DbRequest::Query {
                database: self.database.clone(),
                collection: collection.to_string(),
                query: spec.into(),
                options,
                snapshot: Some(self.snapshot),
            })
            .await?;
        let DbResponse::Page {
            items,
            continuation,
            reads,
        } = response
        else {
            return Err(DbError::Storage(format!(
                "unexpected response: {response:?}"
            )));
        };
        self.buffer.read_all(reads)?;
        Ok(QueryPage {
            items,
            continuation,
        })
    }

    transaction_writes!();

    /// Commits: `Conflict` (and nothing written) if a document read has changed.
    pub async fn commit(self) -> Result<Vec<WriteResult>> {
        if self.buffer.writes.is_empty() && self.buffer.reads.is_empty() {
            self.abort().await?;
            return Ok(Vec::new());
        }
        match self
            .client
            .call(DbRequest::Commit {
                database: self.database,
                snapshot: Some(self.snapshot),
                reads: self.buffer.reads,
                writes: self.buffer.writes,
            })
            .await?
        {
            DbResponse::Written { results } => Ok(results),
            other => Err(DbError::Storage(format!("unexpected response: {other:?}"))),
        }
    }

    /// Abandons the transaction.
    pub async fn abort(self) -> Result<()> {
        self.client
            .call(DbRequest::Abort {
                database: self.database,
                snapshot: self.snapshot,
            })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_count_each_document_once_up_to_the_limit() {
        let mut buffer = Buffer::default();
        let max = crate::engine::MAX_TXN_READS;
        for i in 0..max {
            buffer
                .read("c", &Value::from(i % 7), &format!("d{i}"), Some(1))
                .unwrap();
        }
        // Read again: not a new read, so not refused.
        buffer.read("c", &Value::from(0), "d0", Some(1)).unwrap();
        assert_eq!(buffer.reads.len(), max);
        // The same id under another key or collection is another document.
        let e = buffer.read("c", &Value::from(1), "d0", None).unwrap_err();
        assert_eq!(e.code(), avl_core::ErrorCode::InvalidInput);
        assert!(buffer.read("other", &Value::from(0), "d0", None).is_err());
        assert_eq!(buffer.reads.len(), max);

        // Long keys reach the byte budget first.
        let mut buffer = Buffer::default();
        let long = Value::from("k".repeat(1 << 20));
        let mut n = 0;
        while buffer.read("c", &long, &format!("d{n}"), None).is_ok() {
            n += 1;
        }
        assert_eq!(n, 7);
        assert!(buffer.read_bytes <= crate::engine::MAX_TXN_READ_BYTES);
    }
}
