//! Model-based test: random sequences of writes (single and batched, with and without
//! ETag conditions) against the engine and against a small in-memory model; every answer
//! and every document must agree, including after reopening the files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aviladb::engine::etag_of;
use aviladb::{DbError, Engine, PatchOp, WriteOp};
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

/// The model: (pk, id) -> (seq of last write, n).
#[derive(Debug, Clone, Default)]
struct Model {
    docs: BTreeMap<(usize, usize), (u64, i64)>,
    next_seq: u64,
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
        }
        *self = next;
        Ok(())
    }
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

fn batches() -> impl Strategy<Value = Vec<Vec<Op>>> {
    prop::collection::vec(prop::collection::vec(op(), 1..4), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn engine_agrees_with_the_model(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        {
            let engine = Engine::open(dir.path()).unwrap();
            let db = engine.database("m");
            db.create().unwrap();
            db.create_collection("c", "/pk").unwrap();
            let c = db.collection("c");
            for ops in &batches {
                let writes: Vec<WriteOp> = ops.iter().map(|op| model.to_write(op)).collect();
                let expected = model.apply(ops);
                let got = c.write(writes).map(|_| ()).map_err(|e: DbError| e.code());
                prop_assert_eq!(got, expected, "batch {:?}", ops);
                check_state(&engine, &model);
            }
        }
        // Everything acknowledged is there after reopening.
        let engine = Engine::open(dir.path()).unwrap();
        check_state(&engine, &model);
    }
}
