//! AvilaDB: an embedded document database. Databases hold collections of JSON documents,
//! each addressed by a partition-key value and an id, written with ETag preconditions and
//! made durable before they are acknowledged (many writers share each fsync).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Player { id: String, region: String, score: u32 }
//!
//! let dir = tempfile::tempdir()?;
//! let engine = aviladb::Engine::open(dir.path())?;
//! let db = engine.database("gamedb");
//! db.create()?;
//! let players = db.create_collection("players", "/region")?;
//!
//! let written = players.insert(&Player { id: "p1".into(), region: "sa-east-1".into(), score: 10 })?;
//! let mut p1 = players.get::<Player>("sa-east-1", "p1")?.expect("just written");
//! assert_eq!(p1.etag, written.etag.unwrap());
//!
//! p1.score += 5;
//! players.replace(&p1.body, Some(&p1.etag))?;          // only if nobody changed it
//! assert!(players.replace(&p1.body, Some(&p1.etag)).is_err()); // the ETag moved on
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Queries, indexes and transactions (the README's example):
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! let engine = aviladb::Engine::open(dir.path())?;
//! let db = engine.database("gamedb");
//! db.create_if_missing()?;
//! let players = db.create_collection("players", "/region")?;
//! players.create_index("by_score", &["/region", "/score"], false)?;
//! // A `Value` is stored as given (no copy); typed documents go by reference (`&player`).
//! players.insert(serde_json::json!({"id": "p1", "region": "sa-east-1", "score": 10}))?;
//! let top: Vec<serde_json::Value> = players.query_all(
//!     aviladb::QuerySpec::new("SELECT * FROM c WHERE c.region = @r ORDER BY c.score DESC")
//!         .param("r", "sa-east-1"),
//! )?;
//! assert_eq!(top.len(), 1);
//! let mut tx = db.begin()?; // snapshot reads, optimistic commit, any collections
//! let p1 = tx.get::<serde_json::Value>("players", "sa-east-1", "p1")?;
//! assert!(p1.is_some());
//! tx.upsert("players", serde_json::json!({"id": "p1", "region": "sa-east-1", "score": 11}))?;
//! tx.commit()?; // Conflict if p1 changed since it was read
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same API runs against a served database: [`Client`] (async) reaches the engine
//! in-process or through `avl serve` with avl-core's transports.

mod api;
mod document;
pub mod engine;
mod error;
pub mod graph;
mod handle;
pub mod query;
mod service;
mod transaction;

pub use api::{DEFAULT_PARTITION_KEY, DbRequest, DbResponse};
pub use document::{Document, IntoDocument};
pub use engine::{
    ChangeFeedMode, ChangePage, Clock, CollectionInfo, DocKey, Engine, EngineOptions, FeedOptions,
    FeedStart, IndexInfo, MAX_BATCH, MAX_CHANGES, MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH,
    MAX_TXN_READ_BYTES, MAX_TXN_READS, ManualClock, PatchOp, ReadCheck, SystemClock, TxnWrite,
    VectorAccess, VectorHit, VectorIndexInfo, VectorIndexKind, VectorIndexStatus, VectorMetric,
    VectorQuery, WriteDurability, WriteOp, WriteResult,
};
pub use error::{DbError, Result};
pub use handle::{Client, ClientCollection, ClientDatabase, Collection, Database};
pub use query::{Explain, PageOptions, QueryPage, QuerySpec};
pub use service::{DATA_SUBDIR, DbService, MAX_FEED_WAIT};
pub use transaction::{ClientTransaction, Transaction};
