//! Handles on databases and collections, in-process (sync) and through a transport
//! (async), with typed documents.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{DbRequest, DbResponse};
use crate::document::{Document, IntoDocument};
use crate::engine::{
    ChangeFeedMode, ChangePage, CollectionInfo, DocKey, Engine, FeedOptions, FeedStart, IndexInfo,
    PatchOp, VectorHit, VectorIndexInfo, VectorMetric, VectorQuery, WriteOp, WriteResult,
};
use crate::error::{DbError, Result};
use crate::query::{Explain, PageOptions, QueryPage, QuerySpec};
use crate::service::DbService;

fn one(mut results: Vec<WriteResult>) -> Result<WriteResult> {
    results
        .pop()
        .ok_or_else(|| DbError::Storage("a write answered without a result".into()))
}

fn typed<T: DeserializeOwned>(doc: Option<Value>) -> Result<Option<Document<T>>> {
    doc.map(Document::from_value).transpose()
}

fn typed_raw<T: DeserializeOwned>(
    doc: Option<crate::engine::RawDocument>,
) -> Result<Option<Document<T>>> {
    doc.map(Document::from_raw).transpose()
}

/// The rows of a page as `T`.
fn rows<T: DeserializeOwned + 'static>(items: Vec<Value>) -> Result<Vec<T>> {
    // Rows asked for as JSON values are handed over as they are, not converted again.
    let items: Box<dyn std::any::Any> = Box::new(items);
    let items = match items.downcast::<Vec<T>>() {
        Ok(same) => return Ok(*same),
        Err(other) => *other
            .downcast::<Vec<Value>>()
            .map_err(|_| DbError::Storage("query rows changed type".into()))?,
    };
    items
        .into_iter()
        .map(|v| {
            serde_json::from_value(v).map_err(|e| {
                DbError::invalid(
                    "query",
                    format!("a row does not fit the type asked for: {e}"),
                )
            })
        })
        .collect()
}

/// Pages a query to the end, following continuation tokens.
macro_rules! query_all {
    ($self:ident, $spec:ident $(, $await_:tt)?) => {{
        let spec: QuerySpec = $spec.into();
        let mut options = PageOptions {
            max_items: Some(crate::query::MAX_PAGE_ITEMS),
            continuation: None,
        };
        let mut out = Vec::new();
        loop {
            let page = $self.query(spec.clone(), options.clone())$(.$await_)??;
            let page_rows = rows::<T>(page.items)?;
            if out.is_empty() {
                out = page_rows;
            } else {
                out.extend(page_rows);
            }
            match page.continuation {
                Some(token) => options.continuation = Some(token),
                None => return Ok(out),
            }
        }
    }};
}

macro_rules! collection_writes {
    ($($async_:ident $await_:tt)?) => {
        /// Stores a new document; `AlreadyExists` if its key is taken.
        pub $($async_)? fn insert(&self, document: impl IntoDocument) -> Result<WriteResult> {
            let document = document.into_document()?;
            one(self.write(vec![WriteOp::Insert { document }])$(.$await_)??)
        }

        /// Stores a document, replacing any with its key.
        pub $($async_)? fn upsert(&self, document: impl IntoDocument) -> Result<WriteResult> {
            let document = document.into_document()?;
            one(self.write(vec![WriteOp::Upsert { document, if_match: None }])$(.$await_)??)
        }

        /// Stores a document; with `if_match`, only if a document with its key exists
        /// and has that ETag (`Conflict` otherwise, and nothing changes).
        pub $($async_)? fn upsert_if_match(&self, document: impl IntoDocument, if_match: Option<&str>) -> Result<WriteResult> {
            let document = document.into_document()?;
            let if_match = if_match.map(str::to_owned);
            one(self.write(vec![WriteOp::Upsert { document, if_match }])$(.$await_)??)
        }

        /// Replaces an existing document; with `if_match`, only if its ETag matches.
        pub $($async_)? fn replace(&self, document: impl IntoDocument, if_match: Option<&str>) -> Result<WriteResult> {
            let document = document.into_document()?;
            let if_match = if_match.map(str::to_owned);
            one(self.write(vec![WriteOp::Replace { document, if_match }])$(.$await_)??)
        }

        /// Changes parts of a document.
        pub $($async_)? fn patch(&self, partition_key: impl Into<Value>, id: &str, operations: Vec<PatchOp>, if_match: Option<&str>) -> Result<WriteResult> {
            let op = WriteOp::Patch {
                partition_key: partition_key.into(),
                id: id.to_string(),
                operations,
                if_match: if_match.map(str::to_owned),
            };
            one(self.write(vec![op])$(.$await_)??)
        }

        /// Deletes a document.
        pub $($async_)? fn delete(&self, partition_key: impl Into<Value>, id: &str, if_match: Option<&str>) -> Result<WriteResult> {
            let op = WriteOp::Delete {
                partition_key: partition_key.into(),
                id: id.to_string(),
                if_match: if_match.map(str::to_owned),
            };
            one(self.write(vec![op])$(.$await_)??)
        }
    };
}

/// A database in an in-process [`Engine`].
#[derive(Debug, Clone)]
pub struct Database {
    engine: Engine,
    name: String,
}

/// A collection in an in-process [`Engine`]: synchronous, typed.
#[derive(Debug, Clone)]
pub struct Collection {
    engine: Engine,
    database: String,
    name: String,
}

impl Engine {
    /// A handle on database `name` (which may not exist yet).
    pub fn database(&self, name: &str) -> Database {
        Database {
            engine: self.clone(),
            name: name.to_string(),
        }
    }
}

impl Database {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Creates it.
    pub fn create(&self) -> Result<()> {
        self.engine.create_database(&self.name)
    }

    /// Creates it unless it exists.
    pub fn create_if_missing(&self) -> Result<()> {
        match self.create() {
            Err(DbError::AlreadyExists(_)) => Ok(()),
            other => other,
        }
    }

    /// A handle on collection `name`.
    pub fn collection(&self, name: &str) -> Collection {
        Collection {
            engine: self.engine.clone(),
            database: self.name.clone(),
            name: name.to_string(),
        }
    }

    /// Creates collection `name` partitioned by `partition_key` and returns its handle.
    pub fn create_collection(&self, name: &str, partition_key: &str) -> Result<Collection> {
        self.engine
            .create_collection(&self.name, name, partition_key)?;
        Ok(self.collection(name))
    }

    /// Its collections.
    pub fn collections(&self) -> Result<Vec<CollectionInfo>> {
        self.engine.list_collections(&self.name)
    }

    /// Drops it with everything in it.
    pub fn drop_database(&self) -> Result<()> {
        self.engine.drop_database(&self.name)
    }
}

impl Collection {
    /// Applies operations atomically.
    pub fn write(&self, operations: Vec<WriteOp>) -> Result<Vec<WriteResult>> {
        self.engine.write(&self.database, &self.name, operations)
    }

    /// Reads a document as `T` (use `serde_json::Value` for raw JSON), straight from its
    /// stored bytes.
    pub fn get<T: DeserializeOwned>(
        &self,
        partition_key: impl Into<Value>,
        id: &str,
    ) -> Result<Option<Document<T>>> {
        typed_raw(
            self.engine
                .get_raw(&self.database, &self.name, &partition_key.into(), id)?,
        )
    }

    /// Reads up to 100 documents in one snapshot.
    pub fn get_many<T: DeserializeOwned>(
        &self,
        keys: &[DocKey],
    ) -> Result<Vec<Option<Document<T>>>> {
        self.engine
            .get_many_raw(&self.database, &self.name, keys)?
            .into_iter()
            .map(typed_raw)
            .collect()
    }

    /// Drops it with its documents.
    pub fn drop_collection(&self) -> Result<()> {
        self.engine.drop_collection(&self.database, &self.name)
    }

    /// Creates a secondary index on `paths` (JSON pointers such as `/stats/score`) and
    /// fills it; answers how many documents were indexed.
    pub fn create_index(&self, name: &str, paths: &[&str], unique: bool) -> Result<u64> {
        self.engine.create_index(
            &self.database,
            &self.name,
            IndexInfo::new(name, paths, unique)?,
        )
    }

    /// Creates a cosine vector index on `path` (`"embedding"` or `"/embedding"`) for
    /// vectors of `dimensions` numbers, and fills it; answers how many documents were
    /// indexed.
    pub fn create_vector_index(&self, path: &str, dimensions: usize) -> Result<u64> {
        self.create_vector_index_with(VectorIndexInfo::new(
            path,
            dimensions,
            VectorMetric::Cosine,
        )?)
    }

    /// Creates a vector index from a full definition (metric, kind).
    pub fn create_vector_index_with(&self, index: VectorIndexInfo) -> Result<u64> {
        self.engine
            .create_vector_index(&self.database, &self.name, index)
    }

    /// Drops the vector index on `path`.
    pub fn drop_vector_index(&self, path: &str) -> Result<()> {
        self.engine
            .drop_vector_index(&self.database, &self.name, path)
    }

    /// The `k` documents nearest to `vector` on the indexed `path`, nearest first.
    pub fn vector_search(&self, path: &str, vector: &[f32], k: usize) -> Result<Vec<VectorHit>> {
        self.vector_query(&VectorQuery::new(path, vector.to_vec(), k))
    }

    /// Where each vector index of the collection stands (built, nodes, tombstones,
    /// pending vectors).
    pub fn vector_index_status(&self) -> Result<Vec<crate::VectorIndexStatus>> {
        self.engine.vector_index_status(&self.database, &self.name)
    }

    /// Waits until every graph vector index of the collection is built and has linked
    /// every written vector (searches are exact or partly exact until then); answers
    /// whether that happened within `timeout`.
    pub fn wait_vector_indexes(&self, timeout: std::time::Duration) -> Result<bool> {
        self.engine
            .wait_vector_indexes(&self.database, &self.name, timeout)
    }

    /// A vector search with every option (a filter such as `c.lang = @lang`).
    pub fn vector_query(&self, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        self.engine.vector_search(&self.database, &self.name, query)
    }

    /// Sets the default time to live of its documents (see
    /// [`Engine::set_default_ttl`]).
    pub fn set_default_ttl(&self, ttl: Option<i64>) -> Result<()> {
        self.engine.set_default_ttl(&self.database, &self.name, ttl)
    }

    /// Sets what its change feed gives, and with every version for how long (seconds)
    /// the history keeps each (see [`Engine::set_change_feed`]).
    pub fn set_change_feed(&self, mode: ChangeFeedMode, retention: Option<u64>) -> Result<()> {
        self.engine
            .set_change_feed(&self.database, &self.name, mode, retention)
    }

    /// Drops a secondary index.
    pub fn drop_index(&self, name: &str) -> Result<()> {
        self.engine.drop_index(&self.database, &self.name, name)
    }

    /// The collection's metadata with its indexes.
    pub fn describe(&self) -> Result<CollectionInfo> {
        self.engine.describe_collection(&self.database, &self.name)
    }

    /// Reads a page of the collection's change feed.
    pub fn changes(&self, options: &FeedOptions) -> Result<ChangePage> {
        self.engine.changes(&self.database, &self.name, options)
    }

    /// Runs one page of a query.
    pub fn query(&self, spec: impl Into<QuerySpec>, options: PageOptions) -> Result<QueryPage> {
        self.engine
            .query(&self.database, &self.name, &spec.into(), &options)
    }

    /// Runs a query to its last page, each row as `T` (`serde_json::Value` for raw rows).
    pub fn query_all<T: DeserializeOwned + 'static>(
        &self,
        spec: impl Into<QuerySpec>,
    ) -> Result<Vec<T>> {
        query_all!(self, spec)
    }

    /// How a query would run.
    pub fn explain(&self, spec: impl Into<QuerySpec>) -> Result<Explain> {
        self.engine
            .explain(&self.database, &self.name, &spec.into())
    }

    collection_writes!();
}

/// An async client of the database service, in-process or through `avl serve`.
#[derive(Debug, Clone)]
pub struct Client {
    inner: avl_core::Client<DbService>,
}

impl Client {
    /// A client over any transport.
    pub fn new(inner: avl_core::Client<DbService>) -> Self {
        Client { inner }
    }

    /// A client of an engine in this process.
    pub fn local(engine: Engine) -> Self {
        Client::new(avl_core::Client::local(std::sync::Arc::new(
            DbService::new(engine),
        )))
    }

    /// The client `config` names: the server at its endpoint, or the engine in its data
    /// directory (see `avl_core::connect`).
    pub fn connect(config: &avl_core::ClientConfig) -> Result<Self> {
        Ok(Client::new(avl_core::Client::new(avl_core::connect::<
            DbService,
        >(config)?)))
    }

    /// [`Client::connect`] with the configuration of `AVL_*` and the config file.
    pub fn from_env() -> Result<Self> {
        Client::connect(&avl_core::ClientConfig::load()?)
    }

    /// Sends one request.
    pub async fn call(&self, request: DbRequest) -> Result<DbResponse> {
        Ok(self.inner.call(request).await?)
    }

    /// Where requests go.
    pub fn target(&self) -> String {
        self.inner.target()
    }

    /// Creates a database.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        self.call(DbRequest::CreateDatabase {
            database: name.into(),
        })
        .await
        .map(|_| ())
    }

    /// The databases.
    pub async fn list_databases(&self) -> Result<Vec<String>> {
        match self.call(DbRequest::ListDatabases).await? {
            DbResponse::Databases { databases } => Ok(databases),
            other => Err(unexpected(&other)),
        }
    }

    /// Drops a database.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        self.call(DbRequest::DropDatabase {
            database: name.into(),
        })
        .await
        .map(|_| ())
    }

    /// A handle on database `name`.
    pub fn database(&self, name: &str) -> ClientDatabase {
        ClientDatabase {
            client: self.clone(),
            name: name.to_string(),
        }
    }
}

fn unexpected(response: &DbResponse) -> DbError {
    DbError::Storage(format!("unexpected response: {response:?}"))
}

/// A database through a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientDatabase {
    client: Client,
    name: String,
}

impl ClientDatabase {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Creates it.
    pub async fn create(&self) -> Result<()> {
        self.client.create_database(&self.name).await
    }

    /// A handle on collection `name`.
    pub fn collection(&self, name: &str) -> ClientCollection {
        ClientCollection {
            client: self.client.clone(),
            database: self.name.clone(),
            name: name.to_string(),
        }
    }

    /// Creates collection `name` partitioned by `partition_key` and returns its handle.
    pub async fn create_collection(
        &self,
        name: &str,
        partition_key: &str,
    ) -> Result<ClientCollection> {
        self.client
            .call(DbRequest::CreateCollection {
                database: self.name.clone(),
                collection: name.into(),
                partition_key: partition_key.into(),
            })
            .await?;
        Ok(self.collection(name))
    }

    /// Its collections.
    pub async fn collections(&self) -> Result<Vec<CollectionInfo>> {
        match self
            .client
            .call(DbRequest::ListCollections {
                database: self.name.clone(),
            })
            .await?
        {
            DbResponse::Collections { collections } => Ok(collections),
            other => Err(unexpected(&other)),
        }
    }

    /// Drops it with everything in it.
    pub async fn drop_database(&self) -> Result<()> {
        self.client.drop_database(&self.name).await
    }
}

/// A collection through a [`Client`]: async, typed.
#[derive(Debug, Clone)]
pub struct ClientCollection {
    client: Client,
    database: String,
    name: String,
}

impl ClientCollection {
    /// Applies operations atomically.
    pub async fn write(&self, operations: Vec<WriteOp>) -> Result<Vec<WriteResult>> {
        match self
            .client
            .call(DbRequest::Write {
                database: self.database.clone(),
                collection: self.name.clone(),
                operations,
            })
            .await?
        {
            DbResponse::Written { results } => Ok(results),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads a document as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        partition_key: impl Into<Value>,
        id: &str,
    ) -> Result<Option<Document<T>>> {
        match self
            .client
            .call(DbRequest::Get {
                database: self.database.clone(),
                collection: self.name.clone(),
                partition_key: partition_key.into(),
                id: id.into(),
            })
            .await?
        {
            DbResponse::Document { document } => typed(document),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads up to 100 documents in one snapshot.
    pub async fn get_many<T: DeserializeOwned>(
        &self,
        keys: Vec<DocKey>,
    ) -> Result<Vec<Option<Document<T>>>> {
        match self
            .client
            .call(DbRequest::GetMany {
                database: self.database.clone(),
                collection: self.name.clone(),
                keys,
                snapshot: None,
            })
            .await?
        {
            DbResponse::Documents { documents } => documents.into_iter().map(typed).collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a secondary index on `paths` and fills it; answers how many documents
    /// were indexed.
    pub async fn create_index(&self, name: &str, paths: &[&str], unique: bool) -> Result<u64> {
        match self
            .client
            .call(DbRequest::CreateIndex {
                database: self.database.clone(),
                collection: self.name.clone(),
                index: IndexInfo::new(name, paths, unique)?,
            })
            .await?
        {
            DbResponse::Indexed { documents } => Ok(documents),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates a vector index (see [`Collection::create_vector_index`]); answers how many
    /// documents were indexed.
    pub async fn create_vector_index(&self, index: VectorIndexInfo) -> Result<u64> {
        match self
            .client
            .call(DbRequest::CreateVectorIndex {
                database: self.database.clone(),
                collection: self.name.clone(),
                index,
            })
            .await?
        {
            DbResponse::Indexed { documents } => Ok(documents),
            other => Err(unexpected(&other)),
        }
    }

    /// Drops the vector index on `path`.
    pub async fn drop_vector_index(&self, path: &str) -> Result<()> {
        self.client
            .call(DbRequest::DropVectorIndex {
                database: self.database.clone(),
                collection: self.name.clone(),
                path: path.into(),
            })
            .await
            .map(|_| ())
    }

    /// The documents nearest to the query's vector, nearest first.
    pub async fn vector_search(&self, query: VectorQuery) -> Result<Vec<VectorHit>> {
        match self
            .client
            .call(DbRequest::VectorSearch {
                database: self.database.clone(),
                collection: self.name.clone(),
                query,
            })
            .await?
        {
            DbResponse::Hits { hits } => Ok(hits),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets the default time to live of its documents: `None` off, -1 on without a
    /// default, or seconds.
    pub async fn set_default_ttl(&self, ttl: Option<i64>) -> Result<()> {
        self.client
            .call(DbRequest::SetDefaultTtl {
                database: self.database.clone(),
                collection: self.name.clone(),
                default_ttl: ttl,
            })
            .await
            .map(|_| ())
    }

    /// Sets what its change feed gives: each document's latest version, or every
    /// version written from now on, kept `retention` seconds (`None`: all) (see
    /// [`Engine::set_change_feed`]).
    pub async fn set_change_feed(
        &self,
        mode: ChangeFeedMode,
        retention: Option<u64>,
    ) -> Result<()> {
        self.client
            .call(DbRequest::SetChangeFeed {
                database: self.database.clone(),
                collection: self.name.clone(),
                mode,
                retention,
            })
            .await
            .map(|_| ())
    }

    /// Drops a secondary index.
    pub async fn drop_index(&self, name: &str) -> Result<()> {
        self.client
            .call(DbRequest::DropIndex {
                database: self.database.clone(),
                collection: self.name.clone(),
                name: name.into(),
            })
            .await
            .map(|_| ())
    }

    /// Reads a page of the collection's change feed; with `wait`, an empty page is
    /// only answered after that long without a change (long polling, at most 20 s).
    pub async fn changes(
        &self,
        options: FeedOptions,
        wait: Option<std::time::Duration>,
    ) -> Result<ChangePage> {
        match self
            .client
            .call(DbRequest::Changes {
                database: self.database.clone(),
                collection: self.name.clone(),
                options,
                wait_ms: wait.map(|w| w.as_millis().min(u128::from(u64::MAX)) as u64),
            })
            .await?
        {
            DbResponse::Changes {
                changes,
                continuation,
            } => Ok(ChangePage {
                changes,
                continuation,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// The change feed as an endless stream: every change from `options.start` on, in
    /// commit order, waking as soon as a new commit lands (in-process or through a
    /// server, by long polling). The stream ends after yielding an error.
    pub fn change_stream(
        &self,
        options: FeedOptions,
    ) -> impl futures_util::Stream<Item = Result<Value>> + Send + 'static {
        let state = (
            self.clone(),
            options,
            std::collections::VecDeque::new(),
            false,
        );
        futures_util::stream::unfold(
            state,
            |(coll, mut options, mut buffer, failed)| async move {
                if failed {
                    return None;
                }
                loop {
                    if let Some(change) = buffer.pop_front() {
                        return Some((Ok(change), (coll, options, buffer, false)));
                    }
                    match coll
                        .changes(options.clone(), Some(crate::service::MAX_FEED_WAIT))
                        .await
                    {
                        Ok(page) => {
                            options.start = FeedStart::Continuation(page.continuation);
                            buffer.extend(page.changes);
                        }
                        Err(e) => return Some((Err(e), (coll, options, buffer, true))),
                    }
                }
            },
        )
    }

    /// Runs one page of a query.
    pub async fn query(
        &self,
        spec: impl Into<QuerySpec>,
        options: PageOptions,
    ) -> Result<QueryPage> {
        match self
            .client
            .call(DbRequest::Query {
                database: self.database.clone(),
                collection: self.name.clone(),
                query: spec.into(),
                options,
                snapshot: None,
            })
            .await?
        {
            DbResponse::Page {
                items,
                continuation,
                ..
            } => Ok(QueryPage {
                items,
                continuation,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a query to its last page, each row as `T`.
    pub async fn query_all<T: DeserializeOwned + 'static>(
        &self,
        spec: impl Into<QuerySpec>,
    ) -> Result<Vec<T>> {
        query_all!(self, spec, await)
    }

    /// How a query would run.
    pub async fn explain(&self, spec: impl Into<QuerySpec>) -> Result<Explain> {
        match self
            .client
            .call(DbRequest::Explain {
                database: self.database.clone(),
                collection: self.name.clone(),
                query: spec.into(),
            })
            .await?
        {
            DbResponse::Plan { plan } => Ok(plan),
            other => Err(unexpected(&other)),
        }
    }

    /// Drops it with its documents.
    pub async fn drop_collection(&self) -> Result<()> {
        self.client
            .call(DbRequest::DropCollection {
                database: self.database.clone(),
                collection: self.name.clone(),
            })
            .await
            .map(|_| ())
    }

    collection_writes!(async await);
}
