//! `avl db`: the document database from the command line, in-process on `--data-dir` or
//! through a server.

use std::io::Read;

use aviladb::{
    Client, DbRequest, DbResponse, FeedOptions, FeedStart, IndexInfo, PageOptions, PatchOp,
    QuerySpec, WriteOp,
};
use avl_core::{ClientConfig, Error, Result};
use clap::Subcommand;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Create a database.
    Create {
        /// Database name.
        database: String,
    },
    /// List databases.
    List,
    /// Drop a database and everything in it.
    Drop {
        /// Database name.
        database: String,
    },
    /// Manage collections.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Manage secondary indexes.
    #[command(subcommand)]
    Index(IndexCommand),
    /// Manage vector indexes.
    #[command(subcommand, name = "vector-index")]
    VectorIndex(VectorIndexCommand),
    /// Find the documents nearest to a vector, one JSON object per line:
    /// `{"distance": D, "document": {...}}`, nearest first.
    VectorSearch {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// The indexed path.
        #[arg(long)]
        path: String,
        /// The query vector, as JSON (`[0.1, 0.2, ...]`), `@FILE` or `-`.
        #[arg(long)]
        vector: String,
        /// How many results.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// A condition on the documents, as in WHERE (`c.lang = 'pt'`).
        #[arg(long)]
        filter: Option<String>,
        /// A parameter of the filter: `name=JSON`.
        #[arg(long = "param", value_name = "NAME=JSON")]
        params: Vec<String>,
        /// The graph's candidate list for this search (hnsw indexes; default: the
        /// index's ef_search). Higher finds more of the true neighbours, slower.
        #[arg(long)]
        ef: Option<usize>,
        /// Return only these top-level fields of each document (comma-separated).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
    },
    /// Store a document, replacing any with its key (upsert).
    Put {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// The document: JSON, `@FILE`, or `-` for standard input.
        document: String,
        /// Write only if the current document has this ETag.
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Store a new document; fails if its key exists.
    Insert {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// The document: JSON, `@FILE`, or `-` for standard input.
        document: String,
    },
    /// Print a document (with `_etag`, `_ts`, `_seq`).
    Get {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Partition-key value (JSON for numbers and booleans; text otherwise).
        #[arg(allow_negative_numbers = true)]
        partition_key: String,
        /// Document id.
        id: String,
    },
    /// Change parts of a document: OPERATIONS is a JSON array such as
    /// `[{"op":"increment","path":"/score","value":5}]`.
    Patch {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Partition-key value (JSON for numbers and booleans; text otherwise).
        #[arg(allow_negative_numbers = true)]
        partition_key: String,
        /// Document id.
        id: String,
        /// The operations, as JSON.
        operations: String,
        /// Write only if the current document has this ETag.
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete a document.
    Delete {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Partition-key value (JSON for numbers and booleans; text otherwise).
        #[arg(allow_negative_numbers = true)]
        partition_key: String,
        /// Document id.
        id: String,
        /// Delete only if the current document has this ETag.
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Load documents from a JSON-lines file (one object per line), in atomic batches,
    /// with a progress bar; prints the count and the rate.
    Import {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// The file.
        file: std::path::PathBuf,
        /// Documents per batch (at most 100).
        #[arg(long, default_value_t = 100)]
        batch_size: usize,
        /// Fail on documents that exist instead of replacing them.
        #[arg(long)]
        insert_only: bool,
    },
    /// Print a collection's change feed, one JSON object per change, in commit order.
    Changes {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Start after the changes committed so far (default: from the beginning).
        #[arg(long, conflicts_with = "continuation")]
        from_now: bool,
        /// Start after the page that printed this token (printed to stderr at the end).
        #[arg(long)]
        continuation: Option<String>,
        /// Include deletes.
        #[arg(long)]
        deletes: bool,
        /// Keep waiting for new changes until interrupted.
        #[arg(long)]
        follow: bool,
        /// Stop after this many changes.
        #[arg(long)]
        max: Option<usize>,
    },
    /// Run a query and print its rows, one JSON value per line. The collection is the
    /// name after FROM (`SELECT * FROM players p WHERE p.score > 10`), unless
    /// `--collection` names it.
    Query {
        /// Database.
        database: String,
        /// The query.
        query: String,
        /// A parameter: `name=JSON` (`--param min=10 --param region='"sa"'`); a value that
        /// is not JSON is taken as text; `name=@FILE` reads the JSON from a file (a text
        /// that starts with @ is given as a JSON string: `h='"@ana"'`).
        #[arg(long = "param", value_name = "NAME=JSON")]
        params: Vec<String>,
        /// The collection, when FROM does not name it.
        #[arg(long)]
        collection: Option<String>,
        /// Rows fetched per request.
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
        /// Print the plan instead of running the query.
        #[arg(long)]
        explain: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CollectionCommand {
    /// Create a collection.
    Create {
        /// Database.
        database: String,
        /// Collection name.
        collection: String,
        /// Partition-key path.
        #[arg(long, default_value = aviladb::DEFAULT_PARTITION_KEY)]
        partition_key: String,
        /// Default time to live of its documents, in seconds (-1: on, no default).
        #[arg(long, allow_hyphen_values = true)]
        default_ttl: Option<i64>,
    },
    /// Set a collection's default time to live: seconds, -1 (on, no default) or `off`.
    Ttl {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Seconds, -1, or `off`.
        #[arg(allow_negative_numbers = true)]
        ttl: String,
    },
    /// Set what a collection's change feed gives: `latest-version` (each document's
    /// latest version, and deletes) or `all-versions` (every version written from now on).
    Feed {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// `latest-version` or `all-versions`.
        mode: String,
        /// With `all-versions`: seconds each version stays in the history (default: all
        /// are kept).
        #[arg(long)]
        retention: Option<u64>,
    },
    /// List a database's collections.
    List {
        /// Database.
        database: String,
    },
    /// Drop a collection and its documents.
    Drop {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum IndexCommand {
    /// Create an index (filled from the documents already stored).
    Create {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Index name.
        name: String,
        /// An indexed path such as `/stats/score`; repeat for a composite index.
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// Refuse two documents with the same values.
        #[arg(long)]
        unique: bool,
    },
    /// List a collection's indexes.
    List {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
    },
    /// Drop an index.
    Drop {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// Index name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VectorIndexCommand {
    /// Create a vector index (filled from the documents already stored).
    Create {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// The path of the vectors, e.g. /embedding.
        #[arg(long)]
        path: String,
        /// Their dimension.
        #[arg(long)]
        dimensions: usize,
        /// cosine, euclidean or dot_product.
        #[arg(long, default_value = "cosine")]
        metric: String,
        /// hnsw (a graph: fast, approximate) or flat (exact: every vector compared).
        #[arg(long, default_value = "hnsw")]
        kind: String,
        /// Graph neighbours per node (hnsw).
        #[arg(long, default_value_t = 16)]
        m: usize,
        /// Graph build candidate list (hnsw).
        #[arg(long, default_value_t = 200)]
        ef_construction: usize,
        /// Default search candidate list (hnsw).
        #[arg(long, default_value_t = 64)]
        ef_search: usize,
    },
    /// Drop the vector index on a path.
    Drop {
        /// Database.
        database: String,
        /// Collection.
        collection: String,
        /// The indexed path.
        #[arg(long)]
        path: String,
    },
}

/// Parameters from `--param name=JSON` (a value that is not JSON is text; `@FILE` reads
/// JSON from a file).
fn parameters(params: Vec<String>) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            return Err(Error::invalid_input(
                "param",
                format!("`{param}` is not NAME=JSON"),
            ));
        };
        let value = if value.starts_with('@') {
            json_argument(name, value)?
        } else {
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()))
        };
        out.insert(name.trim_start_matches('@').to_string(), value);
    }
    Ok(out)
}

/// A partition-key value from the command line: JSON if it is a number, boolean or
/// null (or a quoted string), text otherwise.
fn partition_key(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

/// A JSON argument: inline, `@FILE`, or `-` for standard input.
fn json_argument(field: &str, text: &str) -> Result<Value> {
    let raw = if text == "-" {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf)?;
        buf
    } else if let Some(path) = text.strip_prefix('@') {
        std::fs::read_to_string(path)
            .map_err(|e| Error::from(e).context(format!("cannot read {path}")))?
    } else {
        text.to_string()
    };
    serde_json::from_str(&raw).map_err(|e| {
        Error::invalid_input(
            field,
            format!(
                "not valid JSON (line {} column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

fn print(value: &impl serde::Serialize) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|e| Error::internal(e.to_string()))?;
    out!("{line}");
    Ok(())
}

fn write(database: String, collection: String, op: WriteOp) -> DbRequest {
    DbRequest::Write {
        database,
        collection,
        operations: vec![op],
    }
}

/// `avl db query`: every page, each row on its own line.
async fn query(
    client: &Client,
    database: String,
    text: String,
    params: Vec<String>,
    collection: Option<String>,
    page_size: usize,
    explain: bool,
) -> Result<()> {
    let parsed = aviladb::query::parse::parse(&text).map_err(Error::from)?;
    let collection = collection.unwrap_or(parsed.source);
    let spec = QuerySpec {
        text,
        parameters: parameters(params)?,
    };
    let coll = client.database(&database).collection(&collection);
    if explain {
        return print(&coll.explain(spec).await.map_err(Error::from)?);
    }
    let mut options = PageOptions {
        max_items: Some(page_size),
        continuation: None,
    };
    loop {
        let page = coll
            .query(spec.clone(), options.clone())
            .await
            .map_err(Error::from)?;
        page.items.iter().try_for_each(print)?;
        match page.continuation {
            Some(token) => options.continuation = Some(token),
            None => return Ok(()),
        }
    }
}

/// `avl db changes`.
async fn changes(client: &Client, command: DbCommand) -> Result<()> {
    let DbCommand::Changes {
        database,
        collection,
        from_now,
        continuation,
        deletes,
        follow,
        max,
    } = command
    else {
        return Ok(());
    };
    let coll = client.database(&database).collection(&collection);
    let mut options = FeedOptions {
        start: match (from_now, continuation) {
            (_, Some(token)) => FeedStart::Continuation(token),
            (true, None) => FeedStart::Now,
            (false, None) => FeedStart::Beginning,
        },
        max_items: Some(aviladb::MAX_CHANGES),
        include_deletes: deletes,
    };
    let mut left = max.unwrap_or(usize::MAX);
    loop {
        // Never read past what will be printed: the token must resume right after it.
        options.max_items = Some(left.min(aviladb::MAX_CHANGES));
        let wait = follow.then_some(aviladb::MAX_FEED_WAIT);
        let page = coll
            .changes(options.clone(), wait)
            .await
            .map_err(Error::from)?;
        let empty = page.changes.is_empty();
        for change in page.changes.iter().take(left) {
            print(change)?;
            left -= 1;
        }
        options.start = FeedStart::Continuation(page.continuation.clone());
        if left == 0 || (empty && !follow) {
            eprintln!("continuation: {}", page.continuation);
            return Ok(());
        }
    }
}

pub(crate) async fn run(config: &ClientConfig, command: DbCommand) -> Result<()> {
    let client = Client::connect(config)?;
    let request = match command {
        command @ DbCommand::Changes { .. } => return changes(&client, command).await,
        DbCommand::Import {
            database,
            collection,
            file,
            batch_size,
            insert_only,
        } => {
            let done = crate::import::import(
                &client,
                &database,
                &collection,
                &file,
                batch_size,
                !insert_only,
            )
            .await?;
            let rate = done.documents as f64 / done.seconds.max(1e-9);
            return print(&serde_json::json!({
                "imported": done.documents,
                "seconds": (done.seconds * 1000.0).round() / 1000.0,
                "documents_per_second": rate.round(),
            }));
        }
        DbCommand::Query {
            database,
            query: text,
            params,
            collection,
            page_size,
            explain,
        } => {
            return query(
                &client, database, text, params, collection, page_size, explain,
            )
            .await;
        }
        DbCommand::Create { database } => DbRequest::CreateDatabase { database },
        DbCommand::List => DbRequest::ListDatabases,
        DbCommand::Drop { database } => DbRequest::DropDatabase { database },
        DbCommand::Collection(CollectionCommand::Create {
            database,
            collection,
            partition_key,
            default_ttl,
        }) => {
            let coll = client.database(&database).collection(&collection);
            client
                .call(DbRequest::CreateCollection {
                    database,
                    collection,
                    partition_key,
                })
                .await
                .map_err(Error::from)?;
            if default_ttl.is_some() {
                coll.set_default_ttl(default_ttl)
                    .await
                    .map_err(Error::from)?;
            }
            return Ok(());
        }
        DbCommand::Collection(CollectionCommand::Ttl {
            database,
            collection,
            ttl,
        }) => {
            let default_ttl = match ttl.as_str() {
                "off" => None,
                n => Some(n.parse::<i64>().map_err(|_| {
                    Error::invalid_input("ttl", format!("`{n}` is not seconds, -1 or `off`"))
                })?),
            };
            DbRequest::SetDefaultTtl {
                database,
                collection,
                default_ttl,
            }
        }
        DbCommand::Collection(CollectionCommand::Feed {
            database,
            collection,
            mode,
            retention,
        }) => {
            let mode = match mode.as_str() {
                "latest-version" => aviladb::ChangeFeedMode::LatestVersion,
                "all-versions" => aviladb::ChangeFeedMode::AllVersions,
                other => {
                    return Err(Error::invalid_input(
                        "mode",
                        format!("`{other}` is not latest-version or all-versions"),
                    ));
                }
            };
            DbRequest::SetChangeFeed {
                database,
                collection,
                mode,
                retention,
            }
        }
        DbCommand::Collection(CollectionCommand::List { database }) => {
            DbRequest::ListCollections { database }
        }
        DbCommand::Collection(CollectionCommand::Drop {
            database,
            collection,
        }) => DbRequest::DropCollection {
            database,
            collection,
        },
        DbCommand::Index(IndexCommand::Create {
            database,
            collection,
            name,
            paths,
            unique,
        }) => {
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            DbRequest::CreateIndex {
                database,
                collection,
                index: IndexInfo::new(&name, &paths, unique).map_err(Error::from)?,
            }
        }
        DbCommand::VectorIndex(VectorIndexCommand::Create {
            database,
            collection,
            path,
            dimensions,
            metric,
            kind,
            m,
            ef_construction,
            ef_search,
        }) => {
            let metric: aviladb::VectorMetric =
                serde_json::from_value(Value::String(metric.clone())).map_err(|_| {
                    Error::invalid_input(
                        "metric",
                        format!("`{metric}` is not cosine, euclidean or dot_product"),
                    )
                })?;
            let index = aviladb::VectorIndexInfo::new(&path, dimensions, metric)
                .and_then(|i| {
                    i.with_params(aviladb::graph::GraphParams {
                        m,
                        ef_construction,
                        ef_search,
                    })
                })
                .map_err(Error::from)?;
            let index = match kind.as_str() {
                "hnsw" => index,
                "flat" => index.flat(),
                other => {
                    return Err(Error::invalid_input(
                        "kind",
                        format!("`{other}` is not hnsw or flat"),
                    ));
                }
            };
            DbRequest::CreateVectorIndex {
                database,
                collection,
                index,
            }
        }
        DbCommand::VectorIndex(VectorIndexCommand::Drop {
            database,
            collection,
            path,
        }) => DbRequest::DropVectorIndex {
            database,
            collection,
            path,
        },
        DbCommand::VectorSearch {
            database,
            collection,
            path,
            vector,
            k,
            filter,
            params,
            ef,
            fields,
        } => {
            let vector: Vec<f32> = serde_json::from_value(json_argument("vector", &vector)?)
                .map_err(|e| Error::invalid_input("vector", e.to_string()))?;
            DbRequest::VectorSearch {
                database,
                collection,
                query: aviladb::VectorQuery {
                    path,
                    vector,
                    k,
                    filter,
                    parameters: parameters(params)?,
                    ef,
                    fields: (!fields.is_empty()).then_some(fields),
                },
            }
        }
        DbCommand::Index(IndexCommand::Drop {
            database,
            collection,
            name,
        }) => DbRequest::DropIndex {
            database,
            collection,
            name,
        },
        DbCommand::Index(IndexCommand::List {
            database,
            collection,
        }) => {
            let info = client
                .database(&database)
                .collections()
                .await
                .map_err(Error::from)?
                .into_iter()
                .find(|c| c.name == collection)
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "collection `{collection}` does not exist in `{database}`"
                    ))
                })?;
            return info.indexes.iter().try_for_each(print);
        }
        DbCommand::Put {
            database,
            collection,
            document,
            if_match,
        } => write(
            database,
            collection,
            WriteOp::Upsert {
                document: json_argument("document", &document)?,
                if_match,
            },
        ),
        DbCommand::Insert {
            database,
            collection,
            document,
        } => write(
            database,
            collection,
            WriteOp::Insert {
                document: json_argument("document", &document)?,
            },
        ),
        DbCommand::Get {
            database,
            collection,
            partition_key: pk,
            id,
        } => DbRequest::Get {
            database,
            collection,
            partition_key: partition_key(&pk),
            id,
        },
        DbCommand::Patch {
            database,
            collection,
            partition_key: pk,
            id,
            operations,
            if_match,
        } => {
            let operations: Vec<PatchOp> =
                serde_json::from_value(json_argument("operations", &operations)?)
                    .map_err(|e| Error::invalid_input("operations", e.to_string()))?;
            write(
                database,
                collection,
                WriteOp::Patch {
                    partition_key: partition_key(&pk),
                    id,
                    operations,
                    if_match,
                },
            )
        }
        DbCommand::Delete {
            database,
            collection,
            partition_key: pk,
            id,
            if_match,
        } => write(
            database,
            collection,
            WriteOp::Delete {
                partition_key: partition_key(&pk),
                id,
                if_match,
            },
        ),
    };
    let not_found = match &request {
        DbRequest::Get { id, .. } => Some(id.clone()),
        _ => None,
    };
    match client.call(request).await.map_err(Error::from)? {
        DbResponse::Done => Ok(()),
        DbResponse::Databases { databases } => databases.iter().try_for_each(print),
        DbResponse::Collections { collections } => collections.iter().try_for_each(print),
        DbResponse::Document {
            document: Some(doc),
        } => print(&doc),
        DbResponse::Document { document: None } => Err(Error::not_found(format!(
            "document `{}` does not exist",
            not_found.unwrap_or_default()
        ))),
        DbResponse::Documents { documents } => documents.iter().try_for_each(print),
        DbResponse::Written { results } => results.iter().try_for_each(print),
        DbResponse::Page { items, .. } => items.iter().try_for_each(print),
        DbResponse::Changes { changes, .. } => changes.iter().try_for_each(print),
        DbResponse::Hits { hits } => hits.iter().try_for_each(print),
        DbResponse::Transaction { snapshot } => print(&serde_json::json!({ "snapshot": snapshot })),
        DbResponse::Indexed { documents } => print(&serde_json::json!({ "indexed": documents })),
        DbResponse::Plan { plan } => print(&plan),
    }
}
