//! GPU and CPU top-k search on the same data in one group:
//! `cargo bench -p avx-gpu --bench gpu`. Without an adapter only the CPU runs. On a CPU
//! Vulkan driver (lavapipe) the "GPU" is the CPU again, through a shader compiler: this
//! measures the plumbing, not a GPU; see `examples/throughput.rs` for real hardware.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use avila_math::distance::{Metric, VectorSlice};
use avx_gpu::{Gpu, GpuBase, Options, VectorSearch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

fn bench(c: &mut Criterion) {
    let (n, dim, nq, k) = (20_000, 128, 256, 10);
    let base = data(n * dim, 1);
    let base = VectorSlice::new(&base, dim).unwrap();
    let queries = data(nq * dim, 2);
    let queries = VectorSlice::new(&queries, dim).unwrap();
    let mut group = c.benchmark_group("gpu/search-20k-128d-256q-k10");
    group.throughput(Throughput::Elements((n * nq) as u64));
    let cpu = VectorSearch::on_cpu(Metric::L2Squared, base);
    group.bench_function("cpu", |b| b.iter(|| cpu.search(queries, k).unwrap()));
    // A CPU driver (lavapipe) would only measure a shader compiler on the same cores.
    if let Some(gpu) = Gpu::shared().filter(|g| !g.is_cpu()) {
        let uploaded = GpuBase::upload(gpu, Metric::L2Squared, base, Options::default()).unwrap();
        group.bench_function("gpu", |b| b.iter(|| uploaded.search(queries, k).unwrap()));
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
