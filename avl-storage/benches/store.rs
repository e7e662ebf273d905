//! The store against plain files on the same disk: a durable PUT of 64 MiB of
//! incompressible bytes against writing them to a file and syncing it, and a GET against
//! reading the file back (bar: both at least 0.8x).
//!
//! `cargo bench -p avl-storage --bench store`; `python3 benches/criterion_ratios.py
//! storage-` prints the ratios. Set `AVL_BENCH_DIR` to measure another disk (default: the
//! system temporary directory).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::Duration;

use avila_compress::corpus::{Kind, generate};
use avl_storage::{PutOptions, Store};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SIZE: usize = 64 << 20;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("AVL_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn put_and_get(c: &mut Criterion) {
    let data = generate(Kind::Random, SIZE, 11);
    let dir = bench_dir();
    let store = Store::open(dir.path().join("store")).unwrap();
    store.create_bucket("bench").unwrap();
    let file = dir.path().join("plain.bin");

    let mut group = c.benchmark_group("storage-put-64MiB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(SIZE as u64));
    group.bench_function("file", |b| {
        b.iter(|| {
            let mut f = std::fs::File::create(&file).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            std::fs::File::open(dir.path()).unwrap().sync_all().unwrap();
        });
    });
    group.bench_function("store", |b| {
        b.iter(|| {
            store
                .put_object(
                    "bench",
                    "object",
                    &mut data.as_slice(),
                    PutOptions::default(),
                )
                .unwrap();
        });
    });
    group.finish();

    // Both read what the PUTs left (the object and the file, in the page cache).
    store
        .put_object(
            "bench",
            "object",
            &mut data.as_slice(),
            PutOptions::default(),
        )
        .unwrap();
    std::fs::write(&file, &data).unwrap();
    let mut group = c.benchmark_group("storage-get-64MiB");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Bytes(SIZE as u64));
    let mut buf = vec![0u8; 256 << 10];
    let mut drain = |r: &mut dyn Read| {
        let mut total = 0;
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, SIZE);
    };
    group.bench_function("file", |b| {
        b.iter(|| drain(&mut std::fs::File::open(&file).unwrap()));
    });
    group.bench_function("store", |b| {
        b.iter(|| drain(&mut store.get_object("bench", "object", None).unwrap().1));
    });
    group.finish();
}

criterion_group!(benches, put_and_get);
criterion_main!(benches);
