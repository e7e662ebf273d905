//! The GPU path against the CPU path on random inputs, odd sizes and sizes past one
//! chunk; bad input; and the fallback. Runs the real wgpu path wherever an adapter exists
//! (CI installs Mesa's lavapipe, a CPU Vulkan driver); without one it says
//! `skipped: no GPU adapter` and tests the fallback alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;

use avila_math::distance::{Metric, Neighbor, VectorSlice};
use avx_gpu::{Gpu, GpuBase, GpuError, MAX_K, Options, Placement, VectorSearch};

const METRICS: [Metric; 3] = [Metric::L2Squared, Metric::InnerProduct, Metric::Cosine];

fn gpu_or_skip(test: &str) -> Option<Arc<Gpu>> {
    match Gpu::shared() {
        Some(gpu) => {
            println!("{test}: on {}", gpu.describe());
            Some(gpu)
        }
        None => {
            println!(
                "skipped: no GPU adapter ({test}: {:?})",
                Gpu::shared_error()
            );
            None
        }
    }
}

/// Clustered data: `n` vectors around a few centres, as embeddings are.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..8)
        .map(|_| (0..dim).map(|_| next() * 4.0).collect())
        .collect();
    (0..n)
        .flat_map(|i| {
            let c = &centres[i % centres.len()];
            c.iter().map(|v| v + next() * 0.5).collect::<Vec<f32>>()
        })
        .collect()
}

/// GPU and CPU answers agree: the same ids in the same order, except where two
/// candidates' distances are within rounding of each other (a tie), in which case the
/// distances at that rank still agree.
fn assert_same(gpu: &[Vec<Neighbor>], cpu: &[Vec<Neighbor>], what: &str) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: query count");
    for (q, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert_eq!(g.len(), c.len(), "{what}: query {q} result count");
        for (rank, (a, b)) in g.iter().zip(c).enumerate() {
            let tol = 1e-4 * (1.0 + b.distance.abs());
            assert!(
                (a.distance - b.distance).abs() <= tol,
                "{what}: query {q} rank {rank}: distance {} vs {}",
                a.distance,
                b.distance
            );
            if a.index != b.index {
                // Allowed only for a tie: the CPU's distance for the GPU's id is as close.
                let other = c
                    .iter()
                    .chain(g)
                    .find(|n| n.index == a.index)
                    .map(|n| n.distance);
                assert!(
                    other.is_some_and(|d| (d - b.distance).abs() <= tol),
                    "{what}: query {q} rank {rank}: id {} vs {} is not a tie",
                    a.index,
                    b.index
                );
            }
        }
    }
}

#[test]
fn gpu_matches_cpu_on_random_inputs_and_odd_sizes() {
    let Some(gpu) = gpu_or_skip("gpu_matches_cpu") else {
        return;
    };
    let options = Options {
        max_chunk_vectors: Some(64),
        max_batch_queries: Some(5),
    };
    for metric in METRICS {
        for dim in [1usize, 3, 17, 128, 129] {
            for n in [1usize, 15, 17, 300] {
                let base = clustered(n, dim, (dim * 1000 + n) as u64);
                let base = VectorSlice::new(&base, dim).unwrap();
                let queries = clustered(12, dim, 7 + dim as u64);
                let queries = VectorSlice::new(&queries, dim).unwrap();
                // The GPU path itself, not the fallback that would hide its failures.
                let uploaded = GpuBase::upload(Arc::clone(&gpu), metric, base, options).unwrap();
                let cpu = VectorSearch::on_cpu(metric, base);
                for k in [1usize, 10, MAX_K] {
                    let what = format!("{metric:?} dim {dim} n {n} k {k}");
                    let on_gpu = uploaded.search(queries, k).unwrap();
                    let on_cpu = cpu.search(queries, k).unwrap();
                    assert_eq!(on_gpu[0].len(), k.min(n), "{what}");
                    assert_same(&on_gpu, &on_cpu, &what);
                }
            }
        }
    }
}

#[test]
fn sizes_past_one_chunk_and_one_batch() {
    let Some(gpu) = gpu_or_skip("sizes_past_one_chunk") else {
        return;
    };
    let dim = 48;
    let base = clustered(5000, dim, 42);
    let base = VectorSlice::new(&base, dim).unwrap();
    let queries = clustered(40, dim, 43);
    let queries = VectorSlice::new(&queries, dim).unwrap();
    for (options, chunks) in [
        (
            Options {
                max_chunk_vectors: Some(1000),
                max_batch_queries: Some(16),
            },
            5,
        ),
        (
            Options {
                max_chunk_vectors: Some(999),
                max_batch_queries: Some(7),
            },
            6,
        ),
        (Options::default(), 1),
    ] {
        let uploaded = GpuBase::upload(Arc::clone(&gpu), Metric::L2Squared, base, options).unwrap();
        assert_eq!(uploaded.chunk_count(), chunks);
        let on_gpu = uploaded.search(queries, 10).unwrap();
        let on_cpu = VectorSearch::on_cpu(Metric::L2Squared, base)
            .search(queries, 10)
            .unwrap();
        assert_same(&on_gpu, &on_cpu, &format!("{chunks} chunks"));
        // The base set stays on the GPU: a second batch reuses it.
        let again = uploaded.search(queries.slice(0..3), 10).unwrap();
        assert_eq!(again, on_gpu[..3].to_vec());
    }
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let base = clustered(20, 4, 1);
    let base = VectorSlice::new(&base, 4).unwrap();
    let wrong_dim = VectorSlice::new(&[0.0; 6], 3).unwrap();
    let mut nan = clustered(2, 4, 2);
    nan[5] = f32::NAN;
    let nan = VectorSlice::new(&nan, 4).unwrap();
    let cpu = VectorSearch::on_cpu(Metric::Cosine, base);
    assert!(matches!(
        cpu.search(wrong_dim, 3),
        Err(GpuError::InvalidInput(_))
    ));
    assert!(
        matches!(cpu.search(nan, 3), Err(GpuError::InvalidInput(m)) if m.contains("position 5"))
    );
    let Some(gpu) = gpu_or_skip("bad_input") else {
        return;
    };
    let uploaded =
        GpuBase::upload(Arc::clone(&gpu), Metric::Cosine, base, Options::default()).unwrap();
    assert!(matches!(
        uploaded.search(wrong_dim, 3),
        Err(GpuError::InvalidInput(_))
    ));
    assert!(matches!(
        uploaded.search(nan, 3),
        Err(GpuError::InvalidInput(_))
    ));
    let e = uploaded.search(base, MAX_K + 1).unwrap_err();
    assert!(e.to_string().contains("above the GPU's limit"), "{e}");
    assert!(matches!(
        GpuBase::upload(gpu, Metric::Cosine, nan, Options::default()),
        Err(GpuError::InvalidInput(_))
    ));
}

#[test]
fn edges_of_k_and_the_cpu_fallback_for_large_k() {
    let base = clustered(50, 8, 5);
    let base = VectorSlice::new(&base, 8).unwrap();
    let queries = clustered(3, 8, 6);
    let queries = VectorSlice::new(&queries, 8).unwrap();
    // Whatever the machine has: the shared GPU or the CPU.
    let search = VectorSearch::new(Metric::L2Squared, base);
    println!("placement: {:?}", search.placement());
    if Gpu::shared().is_some() {
        assert!(matches!(search.placement(), Placement::Gpu(_)));
    } else {
        assert_eq!(search.placement(), Placement::Cpu);
    }
    assert!(search.search(queries, 0).unwrap().iter().all(Vec::is_empty));
    let all = search.search(queries, 500).unwrap();
    assert!(
        all.iter().all(|hits| hits.len() == 50),
        "k above n gives every vector"
    );
    // k above the GPU's limit runs on the CPU, with the same answer as the CPU path.
    assert_eq!(
        search.search(queries, MAX_K + 5).unwrap(),
        search.search_cpu(queries, MAX_K + 5).unwrap()
    );
    let nearest = search.search(base.slice(7..8), 1).unwrap();
    assert_eq!(nearest[0][0].index, 7);
}

#[test]
fn overflowing_and_nan_distances_are_kept_and_ordered_as_on_the_cpu() {
    let Some(gpu) = gpu_or_skip("overflowing_distances") else {
        return;
    };
    // (3e19)² overflows f32: the CPU ranks it last at +inf, the GPU must too.
    let base = [3e19f32, 0.0, 1.0];
    let base = VectorSlice::new(&base, 1).unwrap();
    let query = VectorSlice::new(&[0.0f32], 1).unwrap();
    let uploaded = GpuBase::upload(
        Arc::clone(&gpu),
        Metric::L2Squared,
        base,
        Options::default(),
    )
    .unwrap();
    let on_gpu = uploaded.search(query, 3).unwrap();
    let on_cpu = VectorSearch::on_cpu(Metric::L2Squared, base)
        .search(query, 3)
        .unwrap();
    assert_eq!(
        on_gpu[0].iter().map(|n| n.index).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );
    assert_eq!(
        on_gpu[0].iter().map(|n| n.index).collect::<Vec<_>>(),
        on_cpu[0].iter().map(|n| n.index).collect::<Vec<_>>()
    );
    assert!(on_gpu[0][2].distance.is_infinite());
    // inf - inf inside a dot product is NaN: kept, after everything else.
    let base = [1e30f32, -1e30, 0.5, 0.5, 1.0, 0.0];
    let base = VectorSlice::new(&base, 2).unwrap();
    let query = VectorSlice::new(&[1e30f32, 1e30], 2).unwrap();
    let uploaded = GpuBase::upload(gpu, Metric::InnerProduct, base, Options::default()).unwrap();
    let on_gpu = uploaded.search(query, 3).unwrap();
    let on_cpu = VectorSearch::on_cpu(Metric::InnerProduct, base)
        .search(query, 3)
        .unwrap();
    let ids = |hits: &[Neighbor]| hits.iter().map(|n| n.index).collect::<Vec<_>>();
    assert_eq!(ids(&on_gpu[0]), ids(&on_cpu[0]));
    assert_eq!(on_gpu[0].len(), 3);
    assert!(on_cpu[0][2].distance.is_nan() && on_gpu[0][2].distance.is_nan());
}
