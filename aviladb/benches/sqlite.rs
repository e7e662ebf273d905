//! AvilaDB against SQLite (rusqlite, bundled) on the same documents, in the same groups:
//! single durable insert, point get, and an indexed equality query returning 100
//! documents. SQLite runs as its users run it for this job: WAL, `synchronous=FULL`, the
//! JSON as a text column, a primary key on (partition key, id) and an expression index
//! on the queried path; every row is parsed back into a `serde_json::Value`, as AvilaDB
//! answers.
//!
//! `AVILADB_BENCH_DOCS=100000 cargo bench -p aviladb --bench sqlite`, then
//! `python3 benches/criterion_ratios.py aviladb-vs-sqlite/ --baseline sqlite`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aviladb::QuerySpec;
use criterion::{Criterion, criterion_group, criterion_main};
use rusqlite::params;
use serde_json::Value;

mod common;
use common::{
    SQLITE_INSERT, SQLITE_TEAM, config, doc_count, document, key_of, peers, sqlite_insert,
    sqlite_team,
};

fn pk_text(pk: &Value) -> String {
    pk.as_str().unwrap().to_string()
}

fn compare(c: &mut Criterion) {
    let n = doc_count().max(200);
    let dir = tempfile::tempdir().unwrap();
    // The same documents in both, loaded in batches.
    let (players, conn) = peers(dir.path(), n);

    let mut group = c.benchmark_group("aviladb-vs-sqlite/durable-insert");
    group.sample_size(20);
    let mut next = n;
    group.bench_function("sqlite", |b| {
        let mut insert = conn.prepare_cached(SQLITE_INSERT).unwrap();
        b.iter(|| {
            next += 1;
            sqlite_insert(&mut insert, next);
        })
    });
    group.bench_function("aviladb", |b| {
        b.iter(|| {
            next += 1;
            players.insert(document(next)).unwrap();
        })
    });
    group.finish();

    let keys: Vec<(Value, String)> = (0..4096).map(|k| key_of((k * 2_654_435_761) % n)).collect();
    let mut group = c.benchmark_group(format!("aviladb-vs-sqlite/point-get-{n}-docs"));
    let mut at = 0usize;
    group.bench_function("sqlite", |b| {
        let mut get = conn
            .prepare_cached("SELECT body FROM docs WHERE pk = ?1 AND id = ?2")
            .unwrap();
        b.iter(|| {
            let (pk, id) = &keys[at % keys.len()];
            at += 1;
            let body: String = get
                .query_row(params![pk_text(pk), id], |row| row.get(0))
                .unwrap();
            black_box(serde_json::from_str::<Value>(&body).unwrap())
        })
    });
    group.bench_function("aviladb", |b| {
        b.iter(|| {
            let (pk, id) = &keys[at % keys.len()];
            at += 1;
            black_box(players.get::<Value>(pk.clone(), id).unwrap().unwrap())
        })
    });
    group.finish();

    let teams = (n / 100).max(1);
    let mut group = c.benchmark_group("aviladb-vs-sqlite/indexed-query-100-docs");
    let mut team = 0usize;
    group.bench_function("sqlite", |b| {
        let mut query = conn.prepare_cached(SQLITE_TEAM).unwrap();
        b.iter(|| {
            team = (team + 7) % teams;
            black_box(sqlite_team(&mut query, team))
        })
    });
    group.bench_function("aviladb", |b| {
        b.iter(|| {
            team = (team + 7) % teams;
            let rows: Vec<Value> = players
                .query_all(
                    QuerySpec::new("SELECT * FROM c WHERE c.team = @team").param("team", team),
                )
                .unwrap();
            assert_eq!(rows.len(), 100);
            black_box(rows)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = compare
}
criterion_main!(benches);
