//! The database as an avl-core service: the engine behind every transport.

use std::path::Path;

use avl_core::{Context, OpenLocal, Service};

use crate::api::{DbRequest, DbResponse};
use crate::engine::{Engine, FeedStart, MAX_BATCH_BYTES, MAX_DOCUMENT_BYTES, MAX_TXN_READ_BYTES};
use crate::error::DbError;

/// The engine, answering [`DbRequest`]s. Engine calls block (reads are fast, writes wait
/// for their group's fsync), so they run on Tokio's blocking threads.
#[derive(Debug, Clone)]
pub struct DbService {
    engine: Engine,
}

/// The longest a change-feed read waits for a change.
pub const MAX_FEED_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Where the service keeps its files inside a data directory.
pub const DATA_SUBDIR: &str = "db";

impl DbService {
    /// The service over `engine`.
    pub fn new(engine: Engine) -> Self {
        DbService { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Answers one request on the calling thread.
pub(crate) fn handle(engine: &Engine, request: DbRequest) -> Result<DbResponse, DbError> {
    Ok(match request {
        DbRequest::CreateDatabase { database } => {
            engine.create_database(&database)?;
            DbResponse::Done
        }
        DbRequest::ListDatabases => DbResponse::Databases {
            databases: engine.list_databases()?,
        },
        DbRequest::DropDatabase { database } => {
            engine.drop_database(&database)?;
            DbResponse::Done
        }
        DbRequest::CreateCollection {
            database,
            collection,
            partition_key,
        } => {
            engine.create_collection(&database, &collection, &partition_key)?;
            DbResponse::Done
        }
        DbRequest::ListCollections { database } => DbResponse::Collections {
            collections: engine.list_collections(&database)?,
        },
        DbRequest::DropCollection {
            database,
            collection,
        } => {
            engine.drop_collection(&database, &collection)?;
            DbResponse::Done
        }
        DbRequest::CreateVectorIndex {
            database,
            collection,
            index,
        } => DbResponse::Indexed {
            documents: engine.create_vector_index(&database, &collection, index)?,
        },
        DbRequest::DropVectorIndex {
            database,
            collection,
            path,
        } => {
            engine.drop_vector_index(&database, &collection, &path)?;
            DbResponse::Done
        }
        DbRequest::VectorSearch {
            database,
            collection,
            query,
        } => DbResponse::Hits {
            hits: engine.vector_search(&database, &collection, &query)?,
        },
        DbRequest::SetDefaultTtl {
            database,
            collection,
            default_ttl,
        } => {
            engine.set_default_ttl(&database, &collection, default_ttl)?;
            DbResponse::Done
        }
        DbRequest::SetChangeFeed {
            database,
            collection,
            mode,
            retention,
        } => {
            engine.set_change_feed(&database, &collection, mode, retention)?;
            DbResponse::Done
        }
        DbRequest::CreateIndex {
            database,
            collection,
            index,
        } => DbResponse::Indexed {
            documents: engine.create_index(&database, &collection, index)?,
        },
        DbRequest::DropIndex {
            database,
            collection,
            name,
        } => {
            engine.drop_index(&database, &collection, &name)?;
            DbResponse::Done
        }
        DbRequest::Get {
            database,
            collection,
            partition_key,
            id,
        } => DbResponse::Document {
            document: engine.get(&database, &collection, &partition_key, &id)?,
        },
        DbRequest::GetMany {
            database,
            collection,
            keys,
            snapshot: None,
        } => DbResponse::Documents {
            documents: engine.get_many(&database, &collection, &keys)?,
        },
        DbRequest::GetMany {
            database,
            collection,
            keys,
            snapshot: Some(id),
        } => DbResponse::Documents {
            documents: engine
                .snapshot_get(id, &database, &collection, &keys)?
                .into_iter()
                .map(|d| d.map(crate::engine::RawDocument::into_value).transpose())
                .collect::<Result<_, _>>()?,
        },
        DbRequest::BeginTransaction { database } => {
            engine.list_collections(&database)?;
            DbResponse::Transaction {
                snapshot: engine.begin_snapshot()?,
            }
        }
        DbRequest::Commit {
            database,
            snapshot,
            reads,
            writes,
        } => {
            let result = engine.commit_transaction(&database, reads, writes);
            if let Some(id) = snapshot {
                engine.release_snapshot(id);
            }
            DbResponse::Written { results: result? }
        }
        DbRequest::Abort { snapshot, .. } => {
            engine.release_snapshot(snapshot);
            DbResponse::Done
        }
        DbRequest::Write {
            database,
            collection,
            operations,
        } => DbResponse::Written {
            results: engine.write(&database, &collection, operations)?,
        },
        DbRequest::Query {
            database,
            collection,
            query,
            options,
            snapshot,
        } => {
            let (page, reads) = match snapshot {
                Some(id) => engine.snapshot_query(id, &database, &collection, &query, &options)?,
                None => (
                    engine.query(&database, &collection, &query, &options)?,
                    Vec::new(),
                ),
            };
            DbResponse::Page {
                items: page.items,
                continuation: page.continuation,
                reads,
            }
        }
        DbRequest::Changes {
            database,
            collection,
            options,
            ..
        } => {
            let page = engine.changes(&database, &collection, &options)?;
            DbResponse::Changes {
                changes: page.changes,
                continuation: page.continuation,
            }
        }
        DbRequest::Explain {
            database,
            collection,
            query,
        } => DbResponse::Plan {
            plan: engine.explain(&database, &collection, &query)?,
        },
    })
}

impl DbService {
    /// Answers a request on Tokio's blocking threads. The blocking task runs to the end
    /// even if the caller goes away, so a write that started is never cut off between
    /// validation and commit.
    async fn blocking(&self, request: DbRequest) -> avl_core::Result<DbResponse> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || handle(&engine, request))
            .await
            .map_err(|e| avl_core::Error::internal(format!("database task failed: {e}")))?
            .map_err(avl_core::Error::from)
    }
}

impl Service for DbService {
    const NAME: &'static str = "db";
    type Request = DbRequest;
    type Response = DbResponse;

    async fn call(&self, _context: Context, request: DbRequest) -> avl_core::Result<DbResponse> {
        if let DbRequest::Changes {
            database,
            collection,
            mut options,
            wait_ms: Some(wait),
        } = request
        {
            // Long polling: read; while empty, wait for the next commit and read again
            // from where the empty page stopped.
            let deadline = tokio::time::Instant::now()
                + std::time::Duration::from_millis(wait).min(MAX_FEED_WAIT);
            loop {
                let seen = self.engine.last_commit();
                let request = DbRequest::Changes {
                    database: database.clone(),
                    collection: collection.clone(),
                    options: options.clone(),
                    wait_ms: None,
                };
                let response = self.blocking(request).await?;
                let DbResponse::Changes {
                    changes,
                    continuation,
                } = &response
                else {
                    return Ok(response);
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !changes.is_empty()
                    || left.is_zero()
                    || !self.engine.wait_for_commit(seen, left).await
                {
                    return Ok(response);
                }
                options.start = FeedStart::Continuation(continuation.clone());
            }
        }
        self.blocking(request).await
    }

    fn max_request_bytes(&self) -> u64 {
        // A transaction's commit: its writes, its reads, and room for the message around
        // them.
        (MAX_BATCH_BYTES + MAX_TXN_READ_BYTES + MAX_DOCUMENT_BYTES) as u64
    }
}

impl OpenLocal for DbService {
    fn open_local(data_dir: &Path) -> avl_core::Result<Self> {
        Engine::open(data_dir.join(DATA_SUBDIR))
            .map(DbService::new)
            .map_err(avl_core::Error::from)
    }
}
