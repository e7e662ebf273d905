//! The one protocol of the database service: what every transport carries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{
    ChangeFeedMode, CollectionInfo, DocKey, FeedOptions, IndexInfo, ReadCheck, TxnWrite, VectorHit,
    VectorIndexInfo, VectorQuery, WriteOp, WriteResult,
};
use crate::query::{Explain, PageOptions, QuerySpec};

/// The partition key of a collection created without one: each document its own
/// partition.
pub const DEFAULT_PARTITION_KEY: &str = "/id";

fn default_partition_key() -> String {
    DEFAULT_PARTITION_KEY.to_string()
}

/// A request to the database service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DbRequest {
    /// Create a database.
    CreateDatabase {
        /// Its name.
        database: String,
    },
    /// List the databases.
    ListDatabases,
    /// Drop a database and everything in it.
    DropDatabase {
        /// Its name.
        database: String,
    },
    /// Create a collection.
    CreateCollection {
        /// The database.
        database: String,
        /// The collection's name.
        collection: String,
        /// The partition-key path, e.g. `/region` (`/id` when left out).
        #[serde(default = "default_partition_key")]
        partition_key: String,
    },
    /// List a database's collections.
    ListCollections {
        /// The database.
        database: String,
    },
    /// Drop a collection and its documents.
    DropCollection {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
    },
    /// Create a vector index and fill it from the stored documents.
    CreateVectorIndex {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// Path, dimensions, metric, kind.
        index: VectorIndexInfo,
    },
    /// Drop the vector index on a path.
    DropVectorIndex {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// The indexed path.
        path: String,
    },
    /// Find the documents nearest to a vector.
    VectorSearch {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// Path, vector, k, filter.
        #[serde(flatten)]
        query: VectorQuery,
    },
    /// Set a collection's default time to live.
    SetDefaultTtl {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// `None` off, -1 on without a default, or seconds.
        default_ttl: Option<i64>,
    },
    /// Set what a collection's change feed gives.
    SetChangeFeed {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// Each document's latest version, or every version written.
        mode: ChangeFeedMode,
        /// With every version: how long (seconds) the history keeps each; none: all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retention: Option<u64>,
    },
    /// Create a secondary index and fill it from the stored documents.
    CreateIndex {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// The index: name, paths, unique.
        index: IndexInfo,
    },
    /// Drop a secondary index.
    DropIndex {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// The index name.
        name: String,
    },
    /// Read one document.
    Get {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// Partition-key value.
        partition_key: Value,
        /// Document id.
        id: String,
    },
    /// Read up to 100 documents in one snapshot.
    GetMany {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// Their keys.
        keys: Vec<DocKey>,
        /// Read from this transaction's snapshot instead of the latest commit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<u64>,
    },
    /// Open a read snapshot for a transaction.
    BeginTransaction {
        /// The database.
        database: String,
    },
    /// Commit a transaction: check its reads, apply its writes, close its snapshot.
    Commit {
        /// The database.
        database: String,
        /// The snapshot to close.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<u64>,
        /// What the transaction read, with the versions it saw.
        reads: Vec<ReadCheck>,
        /// What it writes.
        writes: Vec<TxnWrite>,
    },
    /// Abandon a transaction: close its snapshot.
    Abort {
        /// The database.
        database: String,
        /// The snapshot.
        snapshot: u64,
    },
    /// Apply up to 100 write operations atomically.
    Write {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// The operations, in order.
        operations: Vec<WriteOp>,
    },
    /// Run one page of a query.
    Query {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// The query and its parameters.
        #[serde(flatten)]
        query: QuerySpec,
        /// Page size and continuation.
        #[serde(flatten)]
        options: PageOptions,
        /// Run in this transaction's snapshot; the response then says what it read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<u64>,
    },
    /// Read a page of a collection's change feed, waiting up to `wait_ms` (at most
    /// 20 s) for a change when there is none yet (long polling).
    Changes {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// Where to start, page size, deletes.
        #[serde(flatten)]
        options: FeedOptions,
        /// How long to wait for a first change, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_ms: Option<u64>,
    },
    /// Say how a query would run.
    Explain {
        /// The database.
        database: String,
        /// The collection.
        collection: String,
        /// The query and its parameters.
        #[serde(flatten)]
        query: QuerySpec,
    },
}

impl avl_core::Message for DbRequest {}

impl avl_core::Request for DbRequest {
    fn operation(&self) -> &'static str {
        match self {
            DbRequest::CreateDatabase { .. } => "CreateDatabase",
            DbRequest::ListDatabases => "ListDatabases",
            DbRequest::DropDatabase { .. } => "DropDatabase",
            DbRequest::CreateCollection { .. } => "CreateCollection",
            DbRequest::ListCollections { .. } => "ListCollections",
            DbRequest::DropCollection { .. } => "DropCollection",
            DbRequest::CreateIndex { .. } => "CreateIndex",
            DbRequest::SetDefaultTtl { .. } => "SetDefaultTtl",
            DbRequest::SetChangeFeed { .. } => "SetChangeFeed",
            DbRequest::CreateVectorIndex { .. } => "CreateVectorIndex",
            DbRequest::DropVectorIndex { .. } => "DropVectorIndex",
            DbRequest::VectorSearch { .. } => "VectorSearch",
            DbRequest::DropIndex { .. } => "DropIndex",
            DbRequest::Get { .. } => "GetDocument",
            DbRequest::GetMany { .. } => "GetDocuments",
            DbRequest::BeginTransaction { .. } => "BeginTransaction",
            DbRequest::Commit { .. } => "CommitTransaction",
            DbRequest::Abort { .. } => "AbortTransaction",
            DbRequest::Write { .. } => "WriteDocuments",
            DbRequest::Query { .. } => "Query",
            DbRequest::Explain { .. } => "Explain",
            DbRequest::Changes { .. } => "ReadChanges",
        }
    }

    fn resource(&self) -> String {
        match self {
            DbRequest::ListDatabases => String::new(),
            DbRequest::CreateDatabase { database }
            | DbRequest::DropDatabase { database }
            | DbRequest::ListCollections { database }
            | DbRequest::BeginTransaction { database }
            | DbRequest::Commit { database, .. }
            | DbRequest::Abort { database, .. } => database.clone(),
            DbRequest::CreateCollection {
                database,
                collection,
                ..
            }
            | DbRequest::DropCollection {
                database,
                collection,
            }
            | DbRequest::Get {
                database,
                collection,
                ..
            }
            | DbRequest::GetMany {
                database,
                collection,
                ..
            }
            | DbRequest::Write {
                database,
                collection,
                ..
            }
            | DbRequest::Query {
                database,
                collection,
                ..
            }
            | DbRequest::CreateIndex {
                database,
                collection,
                ..
            }
            | DbRequest::Changes {
                database,
                collection,
                ..
            }
            | DbRequest::SetDefaultTtl {
                database,
                collection,
                ..
            }
            | DbRequest::SetChangeFeed {
                database,
                collection,
                ..
            }
            | DbRequest::CreateVectorIndex {
                database,
                collection,
                ..
            }
            | DbRequest::DropVectorIndex {
                database,
                collection,
                ..
            }
            | DbRequest::VectorSearch {
                database,
                collection,
                ..
            }
            | DbRequest::DropIndex {
                database,
                collection,
                ..
            }
            | DbRequest::Explain {
                database,
                collection,
                ..
            } => format!("{database}/{collection}"),
        }
    }
}

/// A response of the database service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DbResponse {
    /// Done.
    Done,
    /// Database names.
    Databases {
        /// The names.
        databases: Vec<String>,
    },
    /// Collections.
    Collections {
        /// The collections.
        collections: Vec<CollectionInfo>,
    },
    /// One document, if it exists.
    Document {
        /// The document with its system properties.
        document: Option<Value>,
    },
    /// Documents in the order asked.
    Documents {
        /// Each one, if it exists.
        documents: Vec<Option<Value>>,
    },
    /// Results of a write, per operation.
    Written {
        /// The results.
        results: Vec<WriteResult>,
    },
    /// An index was created over this many documents.
    Indexed {
        /// Documents indexed.
        documents: u64,
    },
    /// A page of query results.
    Page {
        /// The rows.
        items: Vec<Value>,
        /// Where to go on; `None` on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continuation: Option<String>,
        /// For a query in a transaction: the documents it matched, for the commit's check.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reads: Vec<ReadCheck>,
    },
    /// The results of a vector search, nearest first.
    Hits {
        /// Documents with their distances.
        hits: Vec<VectorHit>,
    },
    /// A transaction's snapshot.
    Transaction {
        /// The snapshot id.
        snapshot: u64,
    },
    /// A page of a change feed.
    Changes {
        /// The changes in commit order.
        changes: Vec<Value>,
        /// Where to continue.
        continuation: String,
    },
    /// How a query runs.
    Plan {
        /// The plan.
        plan: Explain,
    },
}

impl avl_core::Message for DbResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_collection_created_without_a_partition_key_gets_id() {
        let request: DbRequest = serde_json::from_value(
            serde_json::json!({"op": "create_collection", "database": "d", "collection": "c"}),
        )
        .unwrap();
        assert_eq!(
            request,
            DbRequest::CreateCollection {
                database: "d".into(),
                collection: "c".into(),
                partition_key: "/id".into(),
            }
        );
    }
}
