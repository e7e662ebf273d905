//! Model-based test: random sequences of writes (single and batched, with and without
//! ETag conditions and `ttl`), transactions (with a competing write between their reads
//! and their commit), index changes (plain, composite, unique), clock moves and reclaims
//! against the engine and against a small in-memory model; every answer, every document
//! and the answers of queries (read through indexes or not, whole or in small pages)
//! must agree, including after reopening the files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aviladb::engine::etag_of;
use aviladb::{
    DbError, Engine, EngineOptions, ManualClock, PageOptions, PatchOp, QuerySpec, WriteOp,
};
use avl_core::ErrorCode;
use proptest::prelude::*;
use serde_json::{Value, json};

const PKS: [&str; 2] = ["a", "b"];
const IDS: [&str; 3] = ["1", "2", "3"];
const T0: u64 = 1_800_000_000;

#[derive(Debug, Clone)]
enum Etag {
    None,
    Current,
    Stale,
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize, usize, i64),
    Upsert(usize, usize, i64, Etag),
    /// An upsert of a document with its own `ttl` in seconds.
    UpsertTtl(usize, usize, i64, i64),
    Replace(usize, usize, i64, Etag),
    Increment(usize, usize, i64, Etag),
    /// A patch of other kinds than an increment.
    Patch(usize, usize, Patch, Etag),
    Delete(usize, usize, Etag),
}

/// What an [`Op::Patch`] does.
#[derive(Debug, Clone)]
enum Patch {
    /// Sets `/n`.
    SetN(i64),
    /// Sets the document's own `ttl` (its expiry then counts from this write).
    SetTtl(i64),
    /// Removes `ttl`: refused when the document has none.
    RemoveTtl,
    /// Sets a field and removes it again: nothing changes but the version.
    Touch,
}

fn etag() -> impl Strategy<Value = Etag> {
    prop_oneof![Just(Etag::None), Just(Etag::Current), Just(Etag::Stale)]
}

fn op() -> impl Strategy<Value = Op> {
    let k = (0..PKS.len(), 0..IDS.len());
    prop_oneof![
        (k.clone(), -5i64..5).prop_map(|((p, i), n)| Op::Insert(p, i, n)),
        (k.clone(), -5i64..5, etag()).prop_map(|((p, i), n, e)| Op::Upsert(p, i, n, e)),
        (k.clone(), -5i64..5, 1i64..4).prop_map(|((p, i), n, t)| Op::UpsertTtl(p, i, n, t)),
        (k.clone(), -5i64..5, etag()).prop_map(|((p, i), n, e)| Op::Replace(p, i, n, e)),
        (k.clone(), -5i64..5, etag()).prop_map(|((p, i), n, e)| Op::Increment(p, i, n, e)),
        (
            k.clone(),
            prop_oneof![
                (-5i64..5).prop_map(Patch::SetN),
                (1i64..4).prop_map(Patch::SetTtl),
                Just(Patch::RemoveTtl),
                Just(Patch::Touch),
            ],
            etag()
        )
            .prop_map(|((p, i), kind, e)| Op::Patch(p, i, kind, e)),
        (k, etag()).prop_map(|((p, i), e)| Op::Delete(p, i, e)),
    ]
}

/// An index change.
#[derive(Debug, Clone, Copy)]
enum IndexOp {
    /// `by_n` on `/n`.
    N,
    /// `by_pk_n` on `/pk`, `/n`.
    PkN,
    /// `unique_n`, unique on `/n`.
    UniqueN,
    /// Drop every index.
    DropAll,
}

#[derive(Debug, Clone)]
enum Step {
    Batch(Vec<Op>),
    Index(IndexOp),
    /// Move the clock forward by this many seconds.
    Advance(u64),
    /// Reclaim expired documents now.
    Reclaim,
    /// A transaction: reads, then perhaps a competing write, then its writes.
    Txn {
        reads: Vec<(usize, usize)>,
        competing: Option<Op>,
        writes: Vec<Op>,
    },
}

/// A stored document in the model.
#[derive(Debug, Clone, Copy)]
struct Doc {
    seq: u64,
    n: i64,
    written: u64,
    ttl: Option<i64>,
}

/// The model: (pk, id) -> document, the clock, and the indexes that exist.
#[derive(Debug, Clone)]
struct Model {
    docs: BTreeMap<(usize, usize), Doc>,
    next_seq: u64,
    now: u64,
    indexes: Vec<&'static str>,
}

fn doc(p: usize, i: usize, n: i64, ttl: Option<i64>) -> Value {
    let mut d = json!({"id": IDS[i], "pk": PKS[p], "n": n});
    if let Some(t) = ttl {
        d["ttl"] = json!(t);
    }
    d
}

impl Model {
    fn new() -> Self {
        Model {
            docs: BTreeMap::new(),
            next_seq: 0,
            now: T0,
            indexes: Vec::new(),
        }
    }

    /// The document at a key, if it exists for callers (not expired).
    fn live(&self, k: (usize, usize)) -> Option<Doc> {
        self.docs.get(&k).copied().filter(|d| {
            d.ttl
                .is_none_or(|t| t < 0 || self.now < d.written + t as u64)
        })
    }

    fn etag(&self, p: usize, i: usize, e: &Etag) -> Option<String> {
        match e {
            Etag::None => None,
            Etag::Current => Some(
                self.docs
                    .get(&(p, i))
                    .map_or("ffffffffffffffff".into(), |d| etag_of(d.seq)),
            ),
            Etag::Stale => Some(etag_of(0)),
        }
    }

    fn to_write(&self, op: &Op) -> WriteOp {
        match op {
            Op::Insert(p, i, n) => WriteOp::Insert {
                document: doc(*p, *i, *n, None),
            },
            Op::Upsert(p, i, n, e) => WriteOp::Upsert {
                document: doc(*p, *i, *n, None),
                if_match: self.etag(*p, *i, e),
            },
            Op::UpsertTtl(p, i, n, t) => WriteOp::Upsert {
                document: doc(*p, *i, *n, Some(*t)),
                if_match: None,
            },
            Op::Replace(p, i, n, e) => WriteOp::Replace {
                document: doc(*p, *i, *n, None),
                if_match: self.etag(*p, *i, e),
            },
            Op::Increment(p, i, n, e) => WriteOp::Patch {
                partition_key: json!(PKS[*p]),
                id: IDS[*i].into(),
                operations: vec![PatchOp::Increment {
                    path: "/n".into(),
                    value: json!(n),
                }],
                if_match: self.etag(*p, *i, e),
            },
            Op::Patch(p, i, kind, e) => WriteOp::Patch {
                partition_key: json!(PKS[*p]),
                id: IDS[*i].into(),
                operations: match kind {
                    Patch::SetN(n) => vec![PatchOp::Set {
                        path: "/n".into(),
                        value: json!(n),
                    }],
                    Patch::SetTtl(t) => vec![PatchOp::Set {
                        path: "/ttl".into(),
                        value: json!(t),
                    }],
                    Patch::RemoveTtl => vec![PatchOp::Remove {
                        path: "/ttl".into(),
                    }],
                    Patch::Touch => vec![
                        PatchOp::Set {
                            path: "/x".into(),
                            value: json!(1),
                        },
                        PatchOp::Remove { path: "/x".into() },
                    ],
                },
                if_match: self.etag(*p, *i, e),
            },
            Op::Delete(p, i, e) => WriteOp::Delete {
                partition_key: json!(PKS[*p]),
                id: IDS[*i].into(),
                if_match: self.etag(*p, *i, e),
            },
        }
    }

    /// Applies a batch as the engine must: all or nothing; the error code if it fails.
    fn apply(&mut self, ops: &[Op]) -> Result<(), ErrorCode> {
        let mut next = self.clone();
        // Writes earlier in the batch have ETags the caller cannot know: any if_match on a
        // key written earlier in the batch fails.
        let mut touched = BTreeSet::new();
        for op in ops {
            let (p, i, e) = match op {
                Op::Insert(p, i, _) | Op::UpsertTtl(p, i, _, _) => (*p, *i, &Etag::None),
                Op::Upsert(p, i, _, e)
                | Op::Replace(p, i, _, e)
                | Op::Increment(p, i, _, e)
                | Op::Patch(p, i, _, e)
                | Op::Delete(p, i, e) => (*p, *i, e),
            };
            let exists = next.live((p, i)).is_some();
            let etag_ok = match e {
                Etag::None => true,
                Etag::Current => self.live((p, i)).is_some() && !touched.contains(&(p, i)),
                Etag::Stale => false,
            };
            match op {
                Op::Insert(..) if exists => return Err(ErrorCode::AlreadyExists),
                Op::Replace(..) | Op::Increment(..) | Op::Patch(..) | Op::Delete(..) if !exists => {
                    return Err(ErrorCode::NotFound);
                }
                _ if !etag_ok => return Err(ErrorCode::Conflict),
                Op::Patch(_, _, Patch::RemoveTtl, _) if next.docs[&(p, i)].ttl.is_none() => {
                    return Err(ErrorCode::InvalidInput);
                }
                _ => {}
            }
            next.next_seq += 1;
            let seq = next.next_seq;
            let now = next.now;
            let written = |n, ttl| Doc {
                seq,
                n,
                written: now,
                ttl,
            };
            match op {
                Op::Insert(_, _, n) | Op::Upsert(_, _, n, _) | Op::Replace(_, _, n, _) => {
                    next.docs.insert((p, i), written(*n, None));
                }
                Op::UpsertTtl(_, _, n, t) => {
                    next.docs.insert((p, i), written(*n, Some(*t)));
                }
                Op::Increment(_, _, n, _) => {
                    let current = next.docs[&(p, i)];
                    next.docs
                        .insert((p, i), written(current.n + n, current.ttl));
                }
                Op::Patch(_, _, kind, _) => {
                    let current = next.docs[&(p, i)];
                    let (n, ttl) = match kind {
                        Patch::SetN(n) => (*n, current.ttl),
                        Patch::SetTtl(t) => (current.n, Some(*t)),
                        Patch::RemoveTtl => (current.n, None),
                        Patch::Touch => (current.n, current.ttl),
                    };
                    next.docs.insert((p, i), written(n, ttl));
                }
                Op::Delete(..) => {
                    next.docs.remove(&(p, i));
                }
            }
            touched.insert((p, i));
            if next.indexes.contains(&"unique_n") && next.has_duplicate_n() {
                return Err(ErrorCode::Conflict);
            }
        }
        *self = next;
        Ok(())
    }

    fn live_docs(&self) -> Vec<((usize, usize), Doc)> {
        self.docs
            .keys()
            .filter_map(|k| self.live(*k).map(|d| (*k, d)))
            .collect()
    }

    fn has_duplicate_n(&self) -> bool {
        let mut seen = BTreeSet::new();
        !self.live_docs().iter().all(|(_, d)| seen.insert(d.n))
    }

    /// Applies an index change as the engine must.
    fn index(&mut self, op: IndexOp) -> Result<(), ErrorCode> {
        let name = match op {
            IndexOp::N => "by_n",
            IndexOp::PkN => "by_pk_n",
            IndexOp::UniqueN => "unique_n",
            IndexOp::DropAll => {
                self.indexes.clear();
                return Ok(());
            }
        };
        if self.indexes.contains(&name) {
            return Err(ErrorCode::AlreadyExists);
        }
        if name == "unique_n" && self.has_duplicate_n() {
            return Err(ErrorCode::Conflict);
        }
        self.indexes.push(name);
        Ok(())
    }
}

fn collection(engine: &Engine) -> aviladb::Collection {
    engine.database("m").collection("c")
}

fn apply_index(engine: &Engine, op: IndexOp) -> Result<(), ErrorCode> {
    let c = collection(engine);
    let result = match op {
        IndexOp::N => c.create_index("by_n", &["/n"], false).map(|_| ()),
        IndexOp::PkN => c.create_index("by_pk_n", &["/pk", "/n"], false).map(|_| ()),
        IndexOp::UniqueN => c.create_index("unique_n", &["/n"], true).map(|_| ()),
        IndexOp::DropAll => c
            .describe()
            .unwrap()
            .indexes
            .iter()
            .try_for_each(|i| c.drop_index(&i.name)),
    };
    result.map_err(|e| e.code())
}

/// Runs a transaction on the engine and the model; both answers.
fn transaction(
    engine: &Engine,
    model: &mut Model,
    reads: &[(usize, usize)],
    competing: Option<&Op>,
    writes: &[Op],
) -> (Result<(), ErrorCode>, Result<(), ErrorCode>) {
    let mut tx = engine.database("m").begin().unwrap();
    let mut seen = Vec::new();
    for &(p, i) in reads {
        let got = tx.get::<Value>("c", PKS[p], IDS[i]).unwrap().map(|d| d.seq);
        assert_eq!(got, model.live((p, i)).map(|d| d.seq), "read {p}/{i}");
        seen.push(((p, i), got));
    }
    if let Some(op) = competing {
        let write = model.to_write(op);
        let expected = model.apply(std::slice::from_ref(op));
        let got = collection(engine)
            .write(vec![write])
            .map(|_| ())
            .map_err(|e| e.code());
        assert_eq!(got, expected, "competing {op:?}");
    }
    for op in writes {
        tx.write("c", model.to_write(op)).unwrap();
    }
    let got = tx.commit().map(|_| ()).map_err(|e: DbError| e.code());
    let changed = seen
        .iter()
        .any(|(k, seq)| model.live(*k).map(|d| d.seq) != *seq);
    let expected = if changed {
        Err(ErrorCode::Conflict)
    } else {
        model.apply(writes)
    };
    (got, expected)
}

fn check_state(engine: &Engine, model: &Model) {
    let c = collection(engine);
    for (p, pk) in PKS.iter().enumerate() {
        for (i, id) in IDS.iter().enumerate() {
            let got = c.get::<Value>(*pk, id).unwrap();
            match (got, model.live((p, i))) {
                (None, None) => {}
                (Some(d), Some(want)) => {
                    assert_eq!(d.body["n"], json!(want.n), "doc {p}/{i}");
                    assert_eq!(d.etag, etag_of(want.seq), "etag of {p}/{i}");
                    assert_eq!(d.seq, want.seq);
                }
                (got, want) => panic!("doc {p}/{i}: engine {got:?}, model {want:?}"),
            }
        }
    }
}

/// Rows of a query read in pages of `page`.
fn paged(engine: &Engine, spec: &QuerySpec, page: usize) -> Vec<Value> {
    let c = collection(engine);
    let mut out = Vec::new();
    let mut options = PageOptions {
        max_items: Some(page),
        continuation: None,
    };
    loop {
        let p = c.query(spec.clone(), options.clone()).unwrap();
        out.extend(p.items);
        match p.continuation {
            Some(t) => options.continuation = Some(t),
            None => return out,
        }
    }
}

/// Query answers against the model: a range on `n` (ascending and descending), an
/// equality on the partition key with a range, and a count.
fn check_queries(engine: &Engine, model: &Model, lo: i64, hi: i64) {
    let rows = |pk: Option<usize>| -> Vec<(String, String, i64)> {
        model
            .live_docs()
            .into_iter()
            .filter(|((p, _), d)| d.n >= lo && d.n <= hi && pk.is_none_or(|k| k == *p))
            .map(|((p, i), d)| (PKS[p].to_string(), IDS[i].to_string(), d.n))
            .collect()
    };
    let triple = |v: &Value| {
        (
            v["pk"].as_str().unwrap().to_string(),
            v["id"].as_str().unwrap().to_string(),
            v["n"].as_i64().unwrap(),
        )
    };
    for (text, pk, desc) in [
        (
            "SELECT c.pk, c.id, c.n FROM c WHERE c.n >= @lo AND c.n <= @hi ORDER BY c.n",
            None,
            false,
        ),
        (
            "SELECT c.pk, c.id, c.n FROM c WHERE c.n BETWEEN @lo AND @hi ORDER BY c.n DESC",
            None,
            true,
        ),
        (
            "SELECT c.pk, c.id, c.n FROM c WHERE c.pk = 'a' AND c.n >= @lo AND c.n <= @hi",
            Some(0),
            false,
        ),
    ] {
        let spec = QuerySpec::new(text).param("lo", lo).param("hi", hi);
        let plan = collection(engine).explain(spec.clone()).unwrap();
        let usable = if pk.is_some() {
            !model.indexes.is_empty()
        } else {
            model.indexes.iter().any(|i| *i != "by_pk_n")
        };
        assert_eq!(
            plan.access == "index",
            usable,
            "{text}: {plan:?} with {:?}",
            model.indexes
        );
        for page in [1, 2, 100] {
            let got: Vec<(String, String, i64)> =
                paged(engine, &spec, page).iter().map(triple).collect();
            let mut want = rows(pk);
            let mut sorted_got = got.clone();
            sorted_got.sort();
            want.sort();
            assert_eq!(sorted_got, want, "{text} page {page} lo {lo} hi {hi}");
            if text.contains("ORDER BY") {
                let ns: Vec<i64> = got.iter().map(|r| r.2).collect();
                let mut ordered = ns.clone();
                ordered.sort();
                if desc {
                    ordered.reverse();
                }
                assert_eq!(ns, ordered, "{text} order");
            }
        }
    }
    let count = paged(
        engine,
        &QuerySpec::new("SELECT VALUE COUNT(1) FROM c WHERE c.n = @lo").param("lo", lo),
        10,
    );
    let want = model.live_docs().iter().filter(|(_, d)| d.n == lo).count();
    assert_eq!(count, vec![json!(want)]);
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let index = prop_oneof![
        Just(IndexOp::N),
        Just(IndexOp::PkN),
        Just(IndexOp::UniqueN),
        Just(IndexOp::DropAll)
    ];
    let key = (0..PKS.len(), 0..IDS.len());
    let txn = (
        prop::collection::vec(key, 0..3),
        prop::option::of(op()),
        prop::collection::vec(op(), 0..3),
    )
        .prop_map(|(reads, competing, writes)| Step::Txn {
            reads,
            competing,
            writes,
        });
    let step = prop_oneof![
        8 => prop::collection::vec(op(), 1..4).prop_map(Step::Batch),
        1 => index.prop_map(Step::Index),
        2 => (0u64..3).prop_map(Step::Advance),
        1 => Just(Step::Reclaim),
        2 => txn,
    ];
    prop::collection::vec(step, 1..40)
}

fn open(dir: &std::path::Path, clock: &ManualClock) -> Engine {
    Engine::open_with(
        dir,
        EngineOptions {
            clock: Arc::new(clock.clone()),
            // Reclaims happen when a step asks, so the model knows when.
            ttl_sweep: std::time::Duration::from_secs(3600),
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn engine_agrees_with_the_model(steps in steps(), lo in -6i64..6, span in 0i64..8) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0 * 1_000_000);
        let mut model = Model::new();
        {
            let engine = open(dir.path(), &clock);
            let db = engine.database("m");
            db.create().unwrap();
            db.create_collection("c", "/pk").unwrap();
            let c = db.collection("c");
            for step in &steps {
                match step {
                    Step::Batch(ops) => {
                        let writes: Vec<WriteOp> = ops.iter().map(|op| model.to_write(op)).collect();
                        let expected = model.apply(ops);
                        let got = c.write(writes).map(|_| ()).map_err(|e: DbError| e.code());
                        prop_assert_eq!(got, expected, "batch {:?}", ops);
                    }
                    Step::Index(op) => {
                        let expected = model.index(*op);
                        prop_assert_eq!(apply_index(&engine, *op), expected, "index {:?}", op);
                    }
                    Step::Advance(secs) => {
                        clock.advance_secs(*secs);
                        model.now += secs;
                    }
                    Step::Reclaim => {
                        let expired = model.docs.len() - model.live_docs().len();
                        prop_assert_eq!(engine.reclaim_expired().unwrap(), expired as u64);
                        let live: BTreeSet<_> = model.live_docs().iter().map(|(k, _)| *k).collect();
                        model.docs.retain(|k, _| live.contains(k));
                        // Each reclaimed document's delete takes a sequence number.
                        model.next_seq += expired as u64;
                    }
                    Step::Txn { reads, competing, writes } => {
                        let (got, expected) =
                            transaction(&engine, &mut model, reads, competing.as_ref(), writes);
                        prop_assert_eq!(got, expected, "transaction {:?}", step);
                    }
                }
                check_state(&engine, &model);
                check_queries(&engine, &model, lo, lo + span);
            }
        }
        // Everything acknowledged is there after reopening.
        let engine = open(dir.path(), &clock);
        check_state(&engine, &model);
        check_queries(&engine, &model, lo, lo + span);
    }
}
