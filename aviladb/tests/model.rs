//! Model-based test: random sequences of writes (single and batched, with and without
//! ETag conditions) and index changes (plain, composite, unique) against the engine and
//! against a small in-memory model; every answer, every document and the answers of
//! queries (read through indexes or not, whole or in small pages) must agree, including
//! after reopening the files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aviladb::engine::etag_of;
use aviladb::{DbError, Engine, PageOptions, PatchOp, QuerySpec, WriteOp};
use avl_core::ErrorCode;
use proptest::prelude::*;
use serde_json::{Value, json};

const PKS: [&str; 2] = ["a", "b"];
const IDS: [&str; 3] = ["1", "2", "3"];

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
    Replace(usize, usize, i64, Etag),
    Increment(usize, usize, i64, Etag),
    Delete(usize, usize, Etag),
}

fn etag() -> impl Strategy<Value = Etag> {
    prop_oneof![Just(Etag::None), Just(Etag::Current), Just(Etag::Stale)]
}

fn op() -> impl Strategy<Value = Op> {
    let k = (0..PKS.len(), 0..IDS.len());
    prop_oneof![
        (k.clone(), -5i64..5).prop_map(|((p, i), n)| Op::Insert(p, i, n)),
        (k.clone(), -5i64..5, etag()).prop_map(|((p, i), n, e)| Op::Upsert(p, i, n, e)),
        (k.clone(), -5i64..5, etag()).prop_map(|((p, i), n, e)| Op::Replace(p, i, n, e)),
        (k.clone(), -5i64..5, etag()).prop_map(|((p, i), n, e)| Op::Increment(p, i, n, e)),
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
}

/// The model: (pk, id) -> (seq of last write, n), and the indexes that exist.
#[derive(Debug, Clone, Default)]
struct Model {
    docs: BTreeMap<(usize, usize), (u64, i64)>,
    next_seq: u64,
    indexes: Vec<&'static str>,
}

fn doc(p: usize, i: usize, n: i64) -> Value {
    json!({"id": IDS[i], "pk": PKS[p], "n": n})
}

impl Model {
    fn etag(&self, p: usize, i: usize, e: &Etag) -> Option<String> {
        match e {
            Etag::None => None,
            Etag::Current => Some(
                self.docs
                    .get(&(p, i))
                    .map_or("ffffffffffffffff".into(), |d| etag_of(d.0)),
            ),
            Etag::Stale => Some(etag_of(0)),
        }
    }

    fn to_write(&self, op: &Op) -> WriteOp {
        match op {
            Op::Insert(p, i, n) => WriteOp::Insert {
                document: doc(*p, *i, *n),
            },
            Op::Upsert(p, i, n, e) => WriteOp::Upsert {
                document: doc(*p, *i, *n),
                if_match: self.etag(*p, *i, e),
            },
            Op::Replace(p, i, n, e) => WriteOp::Replace {
                document: doc(*p, *i, *n),
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
        let mut touched = std::collections::BTreeSet::new();
        for op in ops {
            let (p, i, e) = match op {
                Op::Insert(p, i, _) => (*p, *i, &Etag::None),
                Op::Upsert(p, i, _, e)
                | Op::Replace(p, i, _, e)
                | Op::Increment(p, i, _, e)
                | Op::Delete(p, i, e) => (*p, *i, e),
            };
            let exists = next.docs.contains_key(&(p, i));
            let etag_ok = match e {
                Etag::None => true,
                Etag::Current => self.docs.contains_key(&(p, i)) && !touched.contains(&(p, i)),
                Etag::Stale => false,
            };
            match op {
                Op::Insert(..) if exists => return Err(ErrorCode::AlreadyExists),
                Op::Replace(..) | Op::Increment(..) | Op::Delete(..) if !exists => {
                    return Err(ErrorCode::NotFound);
                }
                _ if !etag_ok => return Err(ErrorCode::Conflict),
                _ => {}
            }
            next.next_seq += 1;
            let seq = next.next_seq;
            match op {
                Op::Insert(_, _, n) | Op::Upsert(_, _, n, _) | Op::Replace(_, _, n, _) => {
                    next.docs.insert((p, i), (seq, *n));
                }
                Op::Increment(_, _, n, _) => {
                    let current = next.docs[&(p, i)].1;
                    next.docs.insert((p, i), (seq, current + n));
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

    fn has_duplicate_n(&self) -> bool {
        let mut seen = std::collections::BTreeSet::new();
        !self.docs.values().all(|(_, n)| seen.insert(*n))
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

fn apply_index(engine: &Engine, op: IndexOp) -> Result<(), ErrorCode> {
    let c = engine.database("m").collection("c");
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

/// Rows of a query read in pages of `page`.
fn paged(engine: &Engine, spec: &QuerySpec, page: usize) -> Vec<Value> {
    let c = engine.database("m").collection("c");
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
    let rows = |m: &Model, pk: Option<usize>| -> Vec<(String, String, i64)> {
        m.docs
            .iter()
            .filter(|((p, _), (_, n))| *n >= lo && *n <= hi && pk.is_none_or(|k| k == *p))
            .map(|((p, i), (_, n))| (PKS[*p].to_string(), IDS[*i].to_string(), *n))
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
        let plan = engine
            .database("m")
            .collection("c")
            .explain(spec.clone())
            .unwrap();
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
            let mut want = rows(model, pk);
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
    let want = model.docs.values().filter(|(_, n)| *n == lo).count();
    assert_eq!(count, vec![json!(want)]);
}

fn check_state(engine: &Engine, model: &Model) {
    let c = engine.database("m").collection("c");
    for (p, pk) in PKS.iter().enumerate() {
        for (i, id) in IDS.iter().enumerate() {
            let got = c.get::<Value>(*pk, id).unwrap();
            match (got, model.docs.get(&(p, i))) {
                (None, None) => {}
                (Some(d), Some((seq, n))) => {
                    assert_eq!(d.body["n"], json!(n), "doc {p}/{i}");
                    assert_eq!(d.etag, etag_of(*seq), "etag of {p}/{i}");
                    assert_eq!(d.seq, *seq);
                }
                (got, want) => panic!("doc {p}/{i}: engine {got:?}, model {want:?}"),
            }
        }
    }
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let index = prop_oneof![
        Just(IndexOp::N),
        Just(IndexOp::PkN),
        Just(IndexOp::UniqueN),
        Just(IndexOp::DropAll)
    ];
    let step = prop_oneof![
        6 => prop::collection::vec(op(), 1..4).prop_map(Step::Batch),
        1 => index.prop_map(Step::Index),
    ];
    prop::collection::vec(step, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn engine_agrees_with_the_model(steps in steps(), lo in -6i64..6, span in 0i64..8) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        {
            let engine = Engine::open(dir.path()).unwrap();
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
                }
                check_state(&engine, &model);
                check_queries(&engine, &model, lo, lo + span);
            }
        }
        // Everything acknowledged is there after reopening.
        let engine = Engine::open(dir.path()).unwrap();
        check_state(&engine, &model);
        check_queries(&engine, &model, lo, lo + span);
    }
}
