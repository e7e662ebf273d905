//! Crash test: a child process writes (single inserts, 3-document batches and
//! transactions across two collections, from several threads so commits are grouped, into
//! a collection with a secondary index) and reports each acknowledgement; the parent kills
//! it with SIGKILL at a random point, reopens the files (replaying the commit log), and
//! checks that every acknowledged write is there, that no batch or transaction is half
//! there, that the index and the change feed agree with the documents, and that the file
//! opens cleanly. Many rounds on the same files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use aviladb::{DbError, Engine, WriteOp};
use serde_json::{Value, json};

const CHILD_ENV: &str = "AVILADB_CRASH_CHILD_DIR";
const THREADS: usize = 4;

/// The child: runs only when the parent starts this test binary with `CHILD_ENV` set.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("AVILADB_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let engine = Engine::open(&dir).unwrap();
    let db = engine.database("crash");
    db.create_if_missing().unwrap();
    for name in ["docs", "audit"] {
        match db.create_collection(name, "/id") {
            Ok(_) | Err(DbError::AlreadyExists(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // The audit collection keeps every version (its history is written and logged
    // beside the documents).
    db.collection("audit")
        .set_change_feed(aviladb::ChangeFeedMode::AllVersions, None)
        .unwrap();
    match db
        .collection("docs")
        .create_index("by_kind", &["/kind"], false)
    {
        Ok(_) | Err(DbError::AlreadyExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let vectors =
        aviladb::VectorIndexInfo::new("/at", 3, aviladb::VectorMetric::Euclidean).unwrap();
    match db.collection("docs").create_vector_index_with(vectors) {
        Ok(_) | Err(DbError::AlreadyExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = db.collection("docs");
            let db = db.clone();
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                for n in 0.. {
                    let name = format!("r{round}-t{t}-{n}");
                    let line = if n % 5 == 4 {
                        let mut tx = db.begin().unwrap();
                        tx.insert("docs", json!({"id": name, "kind": "txn", "n": n})).unwrap();
                        tx.insert("audit", json!({"id": name, "of": name})).unwrap();
                        tx.commit().unwrap();
                        format!("txn {name}")
                    } else if n % 3 == 2 {
                        let ops = (0..3)
                            .map(|k| WriteOp::Insert { document: json!({"id": format!("{name}-{k}"), "kind": "batch", "n": n, "pad": "x".repeat(200)}) })
                            .collect();
                        c.write(ops).unwrap();
                        format!("batch {name}")
                    } else {
                        c.insert(json!({"id": name, "kind": "single", "n": n, "at": vector_of(&name), "pad": "y".repeat(100)})).unwrap();
                        format!("ack {name}")
                    };
                    let mut out = out.lock().unwrap();
                    writeln!(out, "{line}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// The vector of a single write: three numbers drawn from its name. Not the integer
/// point (round, thread, n): a lattice with holes (rows cut short by the kills) traps a
/// graph walk for about 1% of its points even with the widest list, a limit of the
/// graph on such data, not of what a crash leaves.
fn vector_of(name: &str) -> [f32; 3] {
    let mut h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    std::array::from_fn(|_| {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        (h >> 40) as f32 / (1u64 << 24) as f32 * 1000.0
    })
}

/// A small deterministic generator for kill points.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut acked: Vec<String> = Vec::new();
    let mut batches: Vec<String> = Vec::new();
    let mut txns: Vec<String> = Vec::new();
    let rounds: u64 = std::env::var("AVILADB_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("AVILADB_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let kill_after = 5 + rng.below(150) as usize;
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("ack ") {
                acked.push(name.to_string());
                seen += 1;
            } else if let Some(name) = line.strip_prefix("batch ") {
                batches.push(name.to_string());
                seen += 1;
            } else if let Some(name) = line.strip_prefix("txn ") {
                txns.push(name.to_string());
                seen += 1;
            }
            if seen >= kill_after {
                // SIGKILL in the middle of whatever the writers are doing.
                child.kill().unwrap();
                break;
            }
        }
        child.wait().unwrap();

        let engine = Engine::open(dir.path()).expect("the file opens cleanly after SIGKILL");
        let c = engine.database("crash").collection("docs");
        for name in &acked {
            let doc = c.get::<Value>(name.as_str(), name).unwrap();
            assert!(doc.is_some(), "round {round}: acknowledged {name} is lost");
        }
        for name in &batches {
            for k in 0..3 {
                let id = format!("{name}-{k}");
                assert!(
                    c.get::<Value>(id.as_str(), &id).unwrap().is_some(),
                    "round {round}: batch {name} part {k} is lost"
                );
            }
        }
        // The vector index holds exactly the stored documents: each acknowledged single
        // write is its own nearest neighbour, through the graph rebuilt after the crash,
        // and every document a search returns is stored.
        assert!(
            c.wait_vector_indexes(std::time::Duration::from_secs(60))
                .unwrap()
        );
        let wide = c.vector_search("/at", &[0.0, 0.0, 0.0], 200).unwrap();
        for hit in &wide {
            let id = hit.document["id"].as_str().unwrap();
            assert!(
                c.get::<Value>(id, id).unwrap().is_some(),
                "round {round}: {id} came back"
            );
        }
        for name in acked.iter().rev().take(20) {
            let mut query = aviladb::VectorQuery::new("/at", vector_of(name).to_vec(), 1);
            query.ef = Some(512);
            let hits = c
                .vector_query(&query)
                .unwrap_or_else(|e| panic!("round {round}: {e}: {:?}", c.describe()));
            assert_eq!(
                hits[0].document["id"],
                json!(name),
                "round {round}: vector of {name}"
            );
            assert!(hits[0].distance < 1e-6);
        }
        let audit = engine.database("crash").collection("audit");
        for name in &txns {
            assert!(
                c.get::<Value>(name.as_str(), name).unwrap().is_some()
                    && audit.get::<Value>(name.as_str(), name).unwrap().is_some(),
                "round {round}: transaction {name} is lost"
            );
        }
        // Every transaction is whole: its two documents, or neither.
        let audited: HashSet<String> = audit
            .query_all::<String>("SELECT VALUE c.id FROM c")
            .unwrap()
            .into_iter()
            .collect();
        let in_docs: HashSet<String> = c
            .query_all::<String>("SELECT VALUE c.id FROM c WHERE c.kind = 'txn'")
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(audited, in_docs, "round {round}: a transaction is partial");
        // The audit history holds one version of each audit document, no more.
        let mut history = Vec::new();
        let mut options = aviladb::FeedOptions {
            max_items: Some(1000),
            include_deletes: true,
            ..aviladb::FeedOptions::default()
        };
        loop {
            let page = audit.changes(&options).unwrap();
            if page.changes.is_empty() {
                break;
            }
            history.extend(
                page.changes
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string()),
            );
            options.start = aviladb::FeedStart::Continuation(page.continuation);
        }
        assert_eq!(history.len(), audited.len(), "round {round}: audit history");
        assert_eq!(
            history.into_iter().collect::<HashSet<_>>(),
            audited,
            "round {round}: audit history"
        );
        // The index and the change feed agree with the documents.
        for kind in ["single", "batch", "txn"] {
            let text = format!("SELECT VALUE c.id FROM c WHERE c.kind = '{kind}'");
            assert_eq!(c.explain(text.as_str()).unwrap().access, "index");
            let mut by_index: Vec<String> = c.query_all(text.as_str()).unwrap();
            let mut by_scan: Vec<String> = c
                .query_all(format!("SELECT VALUE c.id FROM c WHERE STARTSWITH(c.kind, '{kind}') AND LENGTH(c.kind) = {}", kind.len()))
                .unwrap();
            by_index.sort();
            by_scan.sort();
            assert_eq!(by_index, by_scan, "round {round}: index of {kind}");
        }
        let count = c.query_all::<u64>("SELECT VALUE COUNT(1) FROM c").unwrap()[0];
        let mut feed_count = 0u64;
        let mut options = aviladb::FeedOptions {
            max_items: Some(1000),
            ..aviladb::FeedOptions::default()
        };
        loop {
            let page = c.changes(&options).unwrap();
            if page.changes.is_empty() {
                break;
            }
            feed_count += page.changes.len() as u64;
            options.start = aviladb::FeedStart::Continuation(page.continuation);
        }
        assert_eq!(
            feed_count, count,
            "round {round}: feed and documents differ"
        );
        // Unacknowledged batches are all there or not at all.
        let acked_batches: HashSet<&String> = batches.iter().collect();
        for t in 0..THREADS {
            for n in (2..2000).step_by(3) {
                let name = format!("r{round}-t{t}-{n}");
                if acked_batches.contains(&name) {
                    continue;
                }
                let present: Vec<bool> = (0..3)
                    .map(|k| {
                        let id = format!("{name}-{k}");
                        c.get::<Value>(id.as_str(), &id).unwrap().is_some()
                    })
                    .collect();
                assert!(
                    present.iter().all(|p| *p) || present.iter().all(|p| !*p),
                    "round {round}: batch {name} is partial: {present:?}"
                );
                if present.iter().all(|p| !*p) {
                    break;
                }
            }
        }
    }
    println!(
        "{} single writes, {} batches and {} transactions acknowledged over {rounds} kills, none lost",
        acked.len(),
        batches.len(),
        txns.len()
    );
}
