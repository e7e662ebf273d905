//! Distance kernels against a plain scalar loop and simsimd, in the same groups.
//!
//! `cargo bench -p avila-math --bench distance`, then
//! `python3 benches/criterion_ratios.py distance/ --baseline scalar-loop`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use avila_math::distance::{Backend, Kernels, Metric, VectorSlice};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use simsimd::SpatialSimilarity;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// What a first implementation would write.
fn dot_loop(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0;
    for i in 0..a.len() {
        s += a[i] * b[i];
    }
    s
}

fn l2_loop(a: &[f32], b: &[f32]) -> f32 {
    let mut s = 0.0;
    for i in 0..a.len() {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

fn kernels(c: &mut Criterion) {
    // "hot": pairs that fit in L2 together (256 KiB at 128-d, 192 KiB at 1536-d), the case
    // of a query scanned against cached candidates; "cold": 24 MiB streamed from memory,
    // where every kernel meets the same memory bandwidth.
    for (temp, dim, pairs) in [
        ("hot", 128usize, 256usize),
        ("hot", 1536, 16),
        ("cold", 1536, 2048),
    ] {
        let a = data(dim * pairs, 1);
        let b = data(dim * pairs, 2);
        let backends: Vec<Kernels> = [
            Backend::Scalar,
            Backend::Avx2,
            Backend::Avx512,
            Backend::Neon,
        ]
        .into_iter()
        .filter_map(Kernels::for_backend)
        .collect();
        type Kernel<'a> = Box<dyn Fn(&[f32], &[f32]) -> f32 + 'a>;
        for (op, plain, simsimd_fn) in [
            (
                "dot",
                dot_loop as fn(&[f32], &[f32]) -> f32,
                (|x: &[f32], y: &[f32]| f32::dot(x, y).unwrap_or_default() as f32)
                    as fn(&[f32], &[f32]) -> f32,
            ),
            ("l2sq", l2_loop, |x: &[f32], y: &[f32]| {
                f32::sqeuclidean(x, y).unwrap_or_default() as f32
            }),
        ] {
            let mut group = c.benchmark_group(format!("distance/{op}-{dim}d-{temp}"));
            group.throughput(Throughput::Bytes((2 * dim * pairs * 4) as u64));
            let mut candidates: Vec<(String, Kernel<'_>)> = vec![
                ("scalar-loop".into(), Box::new(plain)),
                ("simsimd".into(), Box::new(simsimd_fn)),
            ];
            for k in &backends {
                let name = format!("avila-{:?}", k.backend()).to_lowercase();
                let f: Kernel<'_> = match op {
                    "dot" => Box::new(move |x, y| k.dot(x, y)),
                    _ => Box::new(move |x, y| k.l2_squared(x, y)),
                };
                candidates.push((name, f));
            }
            for (name, f) in &candidates {
                group.bench_function(name.as_str(), |bench| {
                    bench.iter(|| {
                        let mut s = 0.0f32;
                        for (x, y) in a.chunks_exact(dim).zip(b.chunks_exact(dim)) {
                            s += f(black_box(x), black_box(y));
                        }
                        s
                    })
                });
            }
            group.finish();
        }
    }
}

fn batch(c: &mut Criterion) {
    // One query against 100k 128-d vectors, and the k = 10 search of 100 queries.
    let dim = 128;
    let base = data(dim * 100_000, 3);
    let base = VectorSlice::new(&base, dim).unwrap();
    let queries = data(dim * 100, 4);
    let queries = VectorSlice::new(&queries, dim).unwrap();
    let mut group = c.benchmark_group("distance/batch-100k-128d");
    group.throughput(Throughput::Elements(base.len() as u64));
    let mut out = vec![0.0f32; base.len()];
    group.bench_function("one-to-many-l2", |b| {
        b.iter(|| {
            avila_math::distance::one_to_many(Metric::L2Squared, queries.get(0), base, &mut out)
        })
    });
    group.finish();
    let mut group = c.benchmark_group("distance/search-100q-100k-128d-k10");
    group.throughput(Throughput::Elements((queries.len() * base.len()) as u64));
    group.sample_size(10);
    group.bench_function("search-l2", |b| {
        b.iter(|| avila_math::distance::search(Metric::L2Squared, queries, base, 10))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = kernels, batch
}
criterion_main!(benches);
