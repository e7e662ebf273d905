//! GPU against CPU throughput for a batched top-k search:
//! `cargo run --release -p avx-gpu --example throughput -- [N DIM QUERIES K]`
//! (defaults 100000 128 1000 10). Prints the time of each path (the base upload apart),
//! the speed-up, and the effective GFLOP/s (2·N·QUERIES·DIM floating-point operations).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::sync::Arc;
use std::time::Instant;

use avila_math::distance::{Metric, VectorSlice};
use avx_gpu::{Gpu, GpuBase, Options, VectorSearch};

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

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are N DIM QUERIES K"))
        .collect();
    let [n, dim, nq, k] =
        [0, 1, 2, 3].map(|i| args.get(i).copied().unwrap_or([100_000, 128, 1000, 10][i]));
    let flops = 2.0 * n as f64 * nq as f64 * dim as f64;
    println!("base {n} x {dim}-d, {nq} queries, k = {k}, metric L2");
    let base = data(n * dim, 1);
    let base = VectorSlice::new(&base, dim).unwrap();
    let queries = data(nq * dim, 2);
    let queries = VectorSlice::new(&queries, dim).unwrap();

    let cpu = VectorSearch::on_cpu(Metric::L2Squared, base);
    let t = Instant::now();
    let cpu_hits = cpu.search(queries, k).unwrap();
    let cpu_s = t.elapsed().as_secs_f64();
    println!(
        "cpu ({} threads): {:.3} s, {:.1} GFLOP/s",
        std::thread::available_parallelism().map_or(1, |p| p.get()),
        cpu_s,
        flops / cpu_s / 1e9
    );

    let gpu = match Gpu::new() {
        Ok(gpu) => Arc::new(gpu),
        Err(e) => {
            println!("gpu: {e}");
            return;
        }
    };
    println!("gpu: {}", gpu.describe());
    let t = Instant::now();
    let uploaded = GpuBase::upload(gpu, Metric::L2Squared, base, Options::default()).unwrap();
    println!(
        "upload: {:.3} s ({} chunks)",
        t.elapsed().as_secs_f64(),
        uploaded.chunk_count()
    );
    // One warm-up batch compiles and caches everything the first call would.
    let _ = uploaded.search(queries.slice(0..1), k).unwrap();
    let t = Instant::now();
    let gpu_hits = uploaded.search(queries, k).unwrap();
    let gpu_s = t.elapsed().as_secs_f64();
    println!(
        "gpu search: {:.3} s, {:.1} GFLOP/s",
        gpu_s,
        flops / gpu_s / 1e9
    );
    println!("speed-up over cpu: {:.2}x", cpu_s / gpu_s);
    let same = gpu_hits
        .iter()
        .zip(&cpu_hits)
        .filter(|(g, c)| g.iter().map(|n| n.index).eq(c.iter().map(|n| n.index)))
        .count();
    println!("queries with identical top-{k} ids: {same} of {nq}");
}
