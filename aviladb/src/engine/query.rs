//! Queries on the engine: one read snapshot per page.

use std::ops::Bound;

use redb::{ReadTransaction, TableDefinition};
use serde_json::Value;

use super::feed::{self, ChangePage, FeedOptions, FeedStart};
use super::record::Expiry;
use super::vector::{VectorHit, VectorIndexInfo, VectorMetric, VectorQuery};
use super::{Engine, docs_table, index, read_collection};
use crate::error::DbError;
use crate::error::Result;
use crate::query::ast::{Expr, Projection, Query};
use crate::query::eval::Params;
use crate::query::exec::{self, Each, Explain, PageOptions, QueryPage, Source};
use crate::query::plan::{self, Access};
use crate::query::{QuerySpec, parse, token};

type IndexEntry<'a> = std::result::Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// The rows of one collection in one snapshot.
pub(crate) struct Snapshot<'t> {
    txn: &'t ReadTransaction,
    table: u64,
    expiry: Expiry,
}

impl<'t> Snapshot<'t> {
    pub(crate) fn new(txn: &'t ReadTransaction, table: u64, expiry: Expiry) -> Self {
        Snapshot { txn, table, expiry }
    }
}

impl Source for Snapshot<'_> {
    fn rows(&self, access: &Access, after: Option<&[u8]>, each: &mut Each<'_>) -> Result<()> {
        let name = docs_table(self.table);
        let docs = self
            .txn
            .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?;
        match access {
            Access::Scan => {
                let start = match after {
                    Some(a) => Bound::Excluded(a),
                    None => Bound::Unbounded,
                };
                for entry in docs.range::<&[u8]>((start, Bound::Unbounded))? {
                    let (key, value) = entry?;
                    let Some((doc, size)) = sized_document(value.value(), &self.expiry)? else {
                        continue;
                    };
                    if !each(key.value(), doc, size)? {
                        break;
                    }
                }
                Ok(())
            }
            Access::Index {
                table,
                ranges,
                reverse,
                ..
            } => {
                let entries = self.txn.open_table(TableDefinition::<&[u8], &[u8]>::new(
                    &index::index_table(*table),
                ))?;
                let mut fetch = Fetch::new(&docs, *reverse);
                let mut visit = |entry: IndexEntry<'_>| -> Result<bool> {
                    let (key, doc_key) = entry?;
                    let Some(record) = fetch.get(doc_key.value())? else {
                        return Err(DbError::Corrupted(
                            "an index entry names a document that is not stored".into(),
                        ));
                    };
                    match sized_document(record.value(), &self.expiry)? {
                        Some((doc, size)) => each(key.value(), doc, size),
                        None => Ok(true),
                    }
                };
                // The ranges are sorted and disjoint: in reading order, each is cut at the
                // position a page stopped at, and skipped when wholly before it.
                let in_order: Box<dyn Iterator<Item = &crate::query::plan::IndexRange>> =
                    if *reverse {
                        Box::new(ranges.iter().rev())
                    } else {
                        Box::new(ranges.iter())
                    };
                for (start, end) in in_order {
                    let mut low = Bound::Included(start.as_slice());
                    let mut high = match end {
                        Some(e) => Bound::Excluded(e.as_slice()),
                        None => Bound::Unbounded,
                    };
                    match (after, reverse) {
                        (Some(a), false) if a >= start.as_slice() => low = Bound::Excluded(a),
                        (Some(a), true) if end.as_deref().is_none_or(|e| a < e) => {
                            high = Bound::Excluded(a);
                        }
                        _ => {}
                    }
                    if let (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h)) =
                        (low, high)
                        && l >= h
                    {
                        continue;
                    }
                    let range = entries.range::<&[u8]>((low, high))?;
                    if *reverse {
                        for entry in range.rev() {
                            if !visit(entry)? {
                                return Ok(());
                            }
                        }
                    } else {
                        for entry in range {
                            if !visit(entry)? {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

type DocsTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;
type Doc = redb::AccessGuard<'static, &'static [u8]>;

/// Reads the documents an index names, in the order its entries come. Entries of equal
/// values are in document-key order, so one after another they often name neighbours in
/// the documents table (documents written together, or sharing a partition): the cursor
/// left after the last document found is tried first, one step, and a lookup from the
/// root is made only when that step is not the document wanted.
struct Fetch<'d> {
    docs: &'d DocsTable,
    reverse: bool,
    cursor: Option<redb::Range<'static, &'static [u8], &'static [u8]>>,
}

impl<'d> Fetch<'d> {
    fn new(docs: &'d DocsTable, reverse: bool) -> Self {
        Fetch {
            docs,
            reverse,
            cursor: None,
        }
    }

    /// The stored record at `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Doc>> {
        if let Some(cursor) = &mut self.cursor {
            let step = if self.reverse {
                cursor.next_back()
            } else {
                cursor.next()
            };
            // A step that fails read a page the lookup below may not need (the next
            // leaf): the lookup decides.
            if let Some(Ok((k, v))) = step
                && k.value() == key
            {
                return Ok(Some(v));
            }
        }
        let (cursor, step) = if self.reverse {
            let mut c = self.docs.range::<&[u8]>(..=key)?;
            let step = c.next_back();
            (c, step)
        } else {
            let mut c = self.docs.range::<&[u8]>(key..)?;
            let step = c.next();
            (c, step)
        };
        match step {
            Some(Ok((k, v))) if k.value() == key => {
                self.cursor = Some(cursor);
                Ok(Some(v))
            }
            Some(Err(e)) => Err(e.into()),
            _ => {
                self.cursor = None;
                Ok(None)
            }
        }
    }
}

/// Gives each `VectorDistance(c.path, v)` the metric of the vector index on that path
/// (cosine when there is none, or when the call names its own), and makes `ORDER BY
/// VectorDistance(..)` put the most similar first: the highest score for cosine and dot
/// product, the lowest distance for euclidean.
fn vector_metrics(query: &mut Query, indexes: &[VectorIndexInfo]) {
    let metric_of = |args: &[Expr]| -> String {
        if let Some(Expr::Literal(Value::String(m))) = args.get(3) {
            return m.to_ascii_lowercase();
        }
        if let Some(Expr::Literal(Value::Object(o))) = args.get(3)
            && let Some(m) = o.get("distanceFunction").and_then(Value::as_str)
        {
            return m.to_ascii_lowercase();
        }
        let pointer = match args.first() {
            Some(Expr::Path(p)) => p.pointer(),
            _ => String::new(),
        };
        match indexes.iter().find(|i| i.path == pointer).map(|i| i.metric) {
            Some(VectorMetric::Euclidean) => "euclidean".into(),
            Some(VectorMetric::DotProduct) => "dotproduct".into(),
            _ => "cosine".into(),
        }
    };
    let mut fill = |e: &mut Expr| {
        if let Expr::Call(name, args) = e
            && name == "VECTORDISTANCE"
            && args.len() < 4
        {
            let metric = metric_of(args);
            while args.len() < 3 {
                args.push(Expr::Literal(Value::Bool(false)));
            }
            args.push(Expr::Literal(Value::String(metric)));
        }
    };
    match &mut query.projection {
        Projection::Star => {}
        Projection::Value(e) => e.walk_mut(&mut fill),
        Projection::Fields(items) => items.iter_mut().for_each(|(e, _)| e.walk_mut(&mut fill)),
    }
    if let Some(f) = &mut query.filter {
        f.walk_mut(&mut fill);
    }
    for item in &mut query.order_by {
        if let Some(e) = &mut item.computed {
            e.walk_mut(&mut fill);
            if let Expr::Call(_, args) = e
                && metric_of(args) != "euclidean"
            {
                item.descending = !item.descending;
            }
        }
    }
}

/// The vector search a query is, if it orders by `VectorDistance` on an indexed path,
/// closest first, with a row limit: `SELECT TOP k .. ORDER BY VectorDistance(c.path, @q)`.
fn vector_route(
    query: &Query,
    params: &Params,
    indexes: &[VectorIndexInfo],
) -> Option<VectorQuery> {
    if query.is_aggregate() || query.order_by.len() != 1 {
        return None;
    }
    let item = &query.order_by[0];
    let Some(Expr::Call(name, args)) = &item.computed else {
        return None;
    };
    if name != "VECTORDISTANCE" || args.len() != 4 {
        return None;
    }
    let (Expr::Path(path), Expr::Literal(Value::Bool(false)), Expr::Literal(Value::String(metric))) =
        (&args[0], &args[2], &args[3])
    else {
        return None;
    };
    let index = indexes.iter().find(|i| i.path == path.pointer())?;
    let named = match index.metric {
        VectorMetric::Cosine => "cosine",
        VectorMetric::Euclidean => "euclidean",
        VectorMetric::DotProduct => "dotproduct",
    };
    // Similarities sort descending, distances ascending: closest first either way.
    let closest_first = item.descending != (index.metric == VectorMetric::Euclidean);
    if metric != named || !closest_first {
        return None;
    }
    let vector = crate::query::eval::eval(&args[1], &Value::Null, params)?;
    let vector = super::vector::parse_vector(&vector, index.dimensions, "").ok()?;
    let k = query.row_limit()?.checked_add(query.offset.unwrap_or(0))?;
    let k = usize::try_from(k)
        .ok()
        .filter(|k| (1..=super::vector::MAX_K).contains(k))?;
    Some(VectorQuery::new(&index.path, vector, k))
}

/// Records what a query in a transaction matched, as read checks.
struct Recorder<'a, 'r> {
    reads: std::cell::RefCell<&'r mut Vec<super::ReadCheck>>,
    collection: &'a str,
    partition_key: crate::query::ast::Path,
    query: &'a Query,
    params: &'a Params,
}

impl<'a, 'r> Recorder<'a, 'r> {
    fn wrap<'s>(&'s self, inner: &'s dyn Source) -> Recording<'s, 'a, 'r> {
        Recording {
            recorder: self,
            inner,
        }
    }

    fn record(&self, doc: &Value) {
        let matches = self.query.filter.as_ref().is_none_or(|f| {
            crate::query::eval::is_true(&crate::query::eval::eval(f, doc, self.params))
        });
        if !matches {
            return;
        }
        let (Some(id), Some(pk)) = (
            doc.get("id").and_then(Value::as_str),
            self.partition_key.read(doc),
        ) else {
            return;
        };
        let check = super::ReadCheck {
            collection: self.collection.to_string(),
            partition_key: pk.clone(),
            id: id.to_string(),
            seq: doc.get("_seq").and_then(Value::as_u64),
        };
        let mut reads = self.reads.borrow_mut();
        if !reads.contains(&check) {
            reads.push(check);
        }
    }
}

/// A source whose matching rows are recorded.
struct Recording<'s, 'a, 'r> {
    recorder: &'s Recorder<'a, 'r>,
    inner: &'s dyn Source,
}

impl Source for Recording<'_, '_, '_> {
    fn rows(&self, access: &Access, after: Option<&[u8]>, each: &mut Each<'_>) -> Result<()> {
        self.inner.rows(access, after, &mut |pos, doc, size| {
            self.recorder.record(&doc);
            each(pos, doc, size)
        })
    }
}

/// The documents a vector search found, as query rows.
struct Hits(Vec<VectorHit>);

impl Source for Hits {
    fn rows(&self, _: &Access, _: Option<&[u8]>, each: &mut Each<'_>) -> Result<()> {
        for (i, hit) in self.0.iter().enumerate() {
            let size = exec::approximate_size(&hit.document);
            if !each(&(i as u32).to_be_bytes(), hit.document.clone(), size)? {
                break;
            }
        }
        Ok(())
    }
}

/// A stored record as the document callers see, unless it has expired.
pub(crate) fn document(record: &[u8], expiry: &Expiry) -> Result<Option<Value>> {
    Ok(sized_document(record, expiry)?.map(|(doc, _)| doc))
}

/// [`document`], with the size of its stored JSON.
pub(crate) fn sized_document(record: &[u8], expiry: &Expiry) -> Result<Option<(Value, usize)>> {
    if expiry.expired(&super::record::header(record)?) {
        return Ok(None);
    }
    let (h, json) = super::record::decode_borrowed(record)?;
    let doc = super::record::document_from(&h, &json)?;
    Ok(Some((doc, json.len())))
}

impl Engine {
    /// Runs one page of a query on collection `coll`.
    pub fn query(
        &self,
        db: &str,
        coll: &str,
        spec: &QuerySpec,
        options: &PageOptions,
    ) -> Result<QueryPage> {
        let (_, txn) = self.snapshot(db, coll)?;
        self.query_in(&txn, db, coll, spec, options, None)
    }

    /// Runs one page of a query in a transaction's snapshot; answers the page and a read
    /// check for every document the query matched (the commit fails with `Conflict` if
    /// one of them changed; documents that came to match later are not seen: no phantom
    /// protection).
    pub fn snapshot_query(
        &self,
        snapshot: u64,
        db: &str,
        coll: &str,
        spec: &QuerySpec,
        options: &PageOptions,
    ) -> Result<(QueryPage, Vec<super::ReadCheck>)> {
        super::names::check_name("database", db)?;
        super::names::check_name("collection", coll)?;
        let txn = self.snapshot_txn(snapshot)?;
        let mut reads = Vec::new();
        let page = self.query_in(&txn, db, coll, spec, options, Some(&mut reads))?;
        Ok((page, reads))
    }

    fn query_in(
        &self,
        txn: &ReadTransaction,
        db: &str,
        coll: &str,
        spec: &QuerySpec,
        options: &PageOptions,
        reads: Option<&mut Vec<super::ReadCheck>>,
    ) -> Result<QueryPage> {
        let mut query = parse::parse(&spec.text)?;
        let params = spec.params()?;
        exec::check_params(&query, &params)?;
        // The indexes as this snapshot has them (the cached catalog may be older).
        let info = read_collection(txn, db, coll)?;
        vector_metrics(&mut query, &info.vector_indexes);
        let recorder = reads.map(|reads| Recorder {
            reads: std::cell::RefCell::new(reads),
            collection: coll,
            partition_key: crate::query::ast::Path::from_pointer(&info.partition_key),
            query: &query,
            params: &params,
        });
        let fp = token::fingerprint(info.table, &spec.text, &spec.params_fingerprint());
        let hits;
        let snapshot;
        let (source, plan): (&dyn Source, plan::Plan) =
            match vector_route(&query, &params, &info.vector_indexes) {
                Some(vq) => {
                    let filter = query
                        .filter
                        .is_some()
                        .then(|| (query.clone(), params.clone()));
                    hits = Hits(
                        self.vector_search_in(txn, None, &info, &vq, filter.as_ref())?
                            .0,
                    );
                    (&hits, plan::Plan::sorted())
                }
                None => {
                    snapshot = Snapshot {
                        txn,
                        table: info.table,
                        expiry: self.expiry(&info),
                    };
                    // A continuation resumes on the access path it was made with, while
                    // that path exists (an index created since does not move it).
                    let resumed = match options.continuation.as_deref() {
                        Some(text) => {
                            let (token, _) = crate::query::token::Token::decode(text, fp)?;
                            plan::resume(&query, &params, &info.indexes, &token.access)
                        }
                        None => None,
                    };
                    let plan =
                        resumed.unwrap_or_else(|| plan::plan(&query, &params, &info.indexes));
                    (&snapshot, plan)
                }
            };
        match &recorder {
            Some(r) => exec::run(&r.wrap(source), &plan, &query, &params, fp, options),
            None => exec::run(source, &plan, &query, &params, fp, options),
        }
    }

    /// Reads a page of a collection's change feed.
    pub fn changes(&self, db: &str, coll: &str, options: &FeedOptions) -> Result<ChangePage> {
        let max = options
            .max_items
            .unwrap_or(crate::query::DEFAULT_PAGE_ITEMS)
            .clamp(1, feed::MAX_CHANGES);
        let (info, txn) = self.snapshot(db, coll)?;
        // How far the history's retention has trimmed (a latest-version feed keeps no
        // history, so nothing of it is trimmed).
        let trimmed = match info.history_since() {
            Some(_) => feed::trimmed_through(&txn, info.table)?,
            None => 0,
        };
        let after = match &options.start {
            FeedStart::Beginning => 0,
            FeedStart::Now => feed::last_seq(&txn, info.table)?,
            FeedStart::Continuation(token) => {
                let (after, seen) = feed::decode_token(token, info.table)?;
                // Changes this reader had not read were trimmed after its last page: it
                // must learn that rather than skip them. (What was trimmed before it
                // started was never in its feed.)
                if trimmed > seen && after < trimmed {
                    return Err(DbError::Conflict(format!(
                        "changes after this continuation token are gone: the history's \
                         retention removed those up to sequence {trimmed}; read the feed \
                         from the beginning"
                    )));
                }
                after
            }
        };
        let (changes, last) = feed::read(
            &txn,
            info.table,
            info.history_since(),
            &docs_table(info.table),
            after,
            max,
            options.include_deletes,
            &self.expiry(&info),
        )?;
        Ok(ChangePage {
            changes,
            continuation: feed::encode_token(info.table, last, trimmed),
        })
    }

    /// Waits until a commit after sequence `seen` (any collection), or `timeout`.
    /// Answers whether one came.
    pub async fn wait_for_commit(&self, seen: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.inner.commits.subscribe();
        let wait = rx.wait_for(|&last| last > seen);
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }

    /// The last committed sequence number seen by this process.
    pub fn last_commit(&self) -> u64 {
        *self.inner.commits.borrow()
    }

    /// How a query would run, without running it.
    pub fn explain(&self, db: &str, coll: &str, spec: &QuerySpec) -> Result<Explain> {
        let mut query = parse::parse(&spec.text)?;
        let params = spec.params()?;
        exec::check_params(&query, &params)?;
        let (_, txn) = self.snapshot(db, coll)?;
        let info = read_collection(&txn, db, coll)?;
        vector_metrics(&mut query, &info.vector_indexes);
        if let Some(vq) = vector_route(&query, &params, &info.vector_indexes) {
            let filter = query
                .filter
                .is_some()
                .then(|| (query.clone(), params.clone()));
            let (_, access) = self.vector_search_in(&txn, None, &info, &vq, filter.as_ref())?;
            let mut explain = plan::Plan::sorted().explain(&query);
            explain.access = "vector".into();
            explain.index = Some(vq.path);
            explain.order = "vector".into();
            explain.vector = Some(access.to_string());
            return Ok(explain);
        }
        Ok(plan::plan(&query, &params, &info.indexes).explain(&query))
    }
}
