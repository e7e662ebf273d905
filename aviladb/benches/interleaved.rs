//! AvilaDB and SQLite on the same documents, one operation of each in turn: a durable
//! insert, a point get and an indexed equality query returning 100 documents. The peers
//! alternate operation by operation, so both see the same moments of this machine (its
//! speed moves ~20% from one minute to the next, which criterion's one-peer-after-the-other
//! groups take in as a difference between the peers). SQLite is set up as in `sqlite.rs`
//! (`common::sqlite`).
//!
//! `AVILADB_BENCH_DOCS=100000 cargo bench -p aviladb --bench interleaved` (rounds per
//! operation: `AVILADB_BENCH_ROUNDS`, default 3000; one operation only, for a profile:
//! `AVILADB_BENCH_ONLY=insert|get|query`).

#![allow(clippy::unwrap_used, clippy::expect_used)]
// The report is what this bench prints.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use aviladb::QuerySpec;
use rusqlite::params;
use serde_json::Value;

mod common;
use common::{
    SQLITE_INSERT, SQLITE_TEAM, doc_count, document, key_of, peers, sqlite_insert, sqlite_team,
};

/// Times of one operation of each peer, in µs, the first tenth left out (warm-up).
struct Pair {
    sqlite: Vec<f64>,
    aviladb: Vec<f64>,
}

impl Pair {
    fn run(rounds: usize, mut sqlite: impl FnMut(usize), mut aviladb: impl FnMut(usize)) -> Pair {
        let mut pair = Pair {
            sqlite: Vec::with_capacity(rounds),
            aviladb: Vec::with_capacity(rounds),
        };
        for r in 0..rounds {
            let t = Instant::now();
            sqlite(r);
            let s = t.elapsed().as_secs_f64() * 1e6;
            let t = Instant::now();
            aviladb(r);
            let a = t.elapsed().as_secs_f64() * 1e6;
            if r >= rounds / 10 {
                pair.sqlite.push(s);
                pair.aviladb.push(a);
            }
        }
        pair
    }

    fn report(mut self, name: &str) {
        let stats = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (mean, v[v.len() / 2], v[v.len() * 99 / 100])
        };
        let (sm, s50, s99) = stats(&mut self.sqlite);
        let (am, a50, a99) = stats(&mut self.aviladb);
        println!(
            "{name:<28} sqlite mean {sm:8.1} p50 {s50:8.1} p99 {s99:8.1} | aviladb mean {am:8.1} p50 {a50:8.1} p99 {a99:8.1} | speed vs sqlite: mean {:.2}x, p50 {:.2}x",
            sm / am,
            s50 / a50
        );
    }
}

fn main() {
    let n = doc_count().max(200);
    let rounds: usize = std::env::var("AVILADB_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().unwrap();
    // The same documents in both, loaded in batches.
    let (players, conn) = peers(dir.path(), n);
    println!("{n} documents, {rounds} rounds per operation, the peers in turn");
    let only = std::env::var("AVILADB_BENCH_ONLY").ok();
    let runs = |op: &str| only.as_deref().is_none_or(|o| o == op);

    let mut insert = conn.prepare_cached(SQLITE_INSERT).unwrap();
    if runs("insert") {
        Pair::run(
            rounds,
            |r| sqlite_insert(&mut insert, n + 2 * r),
            |r| {
                players.insert(document(n + 2 * r + 1)).unwrap();
            },
        )
        .report("durable insert");
    }

    let keys: Vec<(Value, String)> = (0..4096).map(|k| key_of((k * 2_654_435_761) % n)).collect();
    let mut get = conn
        .prepare_cached("SELECT body FROM docs WHERE pk = ?1 AND id = ?2")
        .unwrap();
    if runs("get") {
        Pair::run(
            rounds * 10,
            |r| {
                let (pk, id) = &keys[r % keys.len()];
                let body: String = get
                    .query_row(params![pk.as_str().unwrap(), id], |row| row.get(0))
                    .unwrap();
                black_box(serde_json::from_str::<Value>(&body).unwrap());
            },
            |r| {
                let (pk, id) = &keys[r % keys.len()];
                black_box(players.get::<Value>(pk.clone(), id).unwrap().unwrap());
            },
        )
        .report("point get");
    }

    let teams = (n / 100).max(1);
    let mut query = conn.prepare_cached(SQLITE_TEAM).unwrap();
    if runs("query") {
        Pair::run(
            rounds,
            |r| {
                black_box(sqlite_team(&mut query, (r * 7) % teams));
            },
            |r| {
                let team = (r * 7) % teams;
                let rows: Vec<Value> = players
                    .query_all(
                        QuerySpec::new("SELECT * FROM c WHERE c.team = @team").param("team", team),
                    )
                    .unwrap();
                assert_eq!(rows.len(), 100);
                black_box(rows);
            },
        )
        .report("indexed query, 100 docs");
    }
}
