//! AvilaDB against raw redb on the same bytes, in the same groups: point get, single
//! durable insert, and durable inserts from 32 concurrent writers (group commit).
//!
//! `AVILADB_BENCH_DOCS=1000000 cargo bench -p aviladb --bench documents` (default 200000
//! documents of about 1 KiB), then `python3 benches/criterion_ratios.py aviladb/ --baseline raw-redb`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aviladb::{Engine, EngineOptions, WriteDurability};
use criterion::{Criterion, criterion_group, criterion_main};
use redb::{ReadableDatabase, TableDefinition};
use serde_json::Value;

mod common;
use common::{config, doc_count, document, key_of, load};

const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw");

fn raw_key(pk: &Value, id: &str) -> Vec<u8> {
    let mut k = serde_json::to_vec(pk).unwrap();
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn point_get(c: &mut Criterion) {
    let n = doc_count();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open_with(
        dir.path().join("avl"),
        EngineOptions {
            durability: WriteDurability::Never,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let db = engine.database("bench");
    db.create().unwrap();
    let players = db.create_collection("players", "/region").unwrap();
    load(&players, n);
    let raw = redb::Database::create(dir.path().join("raw.redb")).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut txn = raw.begin_write().unwrap();
        txn.set_durability(redb::Durability::None).unwrap();
        {
            let mut t = txn.open_table(RAW).unwrap();
            for &i in chunk {
                let (pk, id) = key_of(i);
                let bytes = serde_json::to_vec(&document(i)).unwrap();
                t.insert(raw_key(&pk, &id).as_slice(), bytes.as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let keys: Vec<(Value, String)> = (0..4096).map(|k| key_of((k * 2_654_435_761) % n)).collect();
    let mut group = c.benchmark_group(format!("aviladb/point-get-{n}-docs"));
    let mut next = 0usize;
    group.bench_function("raw-redb", |b| {
        b.iter(|| {
            let (pk, id) = &keys[next % keys.len()];
            next += 1;
            let txn = raw.begin_read().unwrap();
            let t = txn.open_table(RAW).unwrap();
            let v = t.get(raw_key(pk, id).as_slice()).unwrap().unwrap();
            black_box(serde_json::from_slice::<Value>(v.value()).unwrap())
        })
    });
    group.bench_function("aviladb", |b| {
        b.iter(|| {
            let (pk, id) = &keys[next % keys.len()];
            next += 1;
            black_box(players.get::<Value>(pk.clone(), id).unwrap().unwrap())
        })
    });
    group.finish();
}

fn durable_inserts(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path().join("avl")).unwrap();
    let db = engine.database("bench");
    db.create().unwrap();
    let players = db.create_collection("players", "/region").unwrap();
    let raw = redb::Database::create(dir.path().join("raw.redb")).unwrap();
    let mut group = c.benchmark_group("aviladb/durable-insert-1-writer");
    group.sample_size(20);
    let mut i = 0usize;
    group.bench_function("raw-redb", |b| {
        b.iter(|| {
            i += 1;
            let (pk, id) = key_of(i);
            let bytes = serde_json::to_vec(&document(i)).unwrap();
            let txn = raw.begin_write().unwrap();
            {
                let mut t = txn.open_table(RAW).unwrap();
                t.insert(raw_key(&pk, &id).as_slice(), bytes.as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        })
    });
    group.bench_function("aviladb", |b| {
        b.iter(|| {
            i += 1;
            players.insert(document(i)).unwrap();
        })
    });
    group.finish();

    // Group commit: W writers, each inserting durably in a loop; time per document.
    let mut group = c.benchmark_group("aviladb/durable-inserts-by-writers");
    group.sample_size(10);
    let players = Arc::new(players);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(10_000_000));
    for writers in [1usize, 32] {
        group.bench_function(format!("{writers}-writers"), |b| {
            b.iter_custom(|iters| {
                // `iters` documents in all, shared by the writers, built before the clock
                // starts: this measures the database, not the building of JSON values.
                let per = (iters as usize).div_ceil(writers);
                let batches: Vec<Vec<Value>> = (0..writers)
                    .map(|_| {
                        (0..per)
                            .map(|_| {
                                document(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                let handles: Vec<_> = batches
                    .into_iter()
                    .map(|docs| {
                        let players = Arc::clone(&players);
                        std::thread::spawn(move || {
                            for doc in docs {
                                players.insert(doc).unwrap();
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * writers) as f64)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = point_get, durable_inserts
}
criterion_main!(benches);
