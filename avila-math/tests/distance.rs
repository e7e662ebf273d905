//! Distance kernels: every SIMD backend this CPU has agrees with the scalar one within the
//! documented tolerance, on every length (0, 1, lane-width boundaries, odd sizes); batch
//! forms and top-k agree with brute force.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use avila_math::distance::{
    self, Backend, Kernels, Metric, Neighbor, ShapeError, VectorSlice, tolerance, top_k,
};
use proptest::prelude::*;

fn backends() -> Vec<Kernels> {
    [Backend::Avx2, Backend::Avx512, Backend::Neon]
        .into_iter()
        .filter_map(Kernels::for_backend)
        .collect()
}

fn scalar() -> Kernels {
    Kernels::for_backend(Backend::Scalar).unwrap()
}

/// Checks every available SIMD backend against the scalar one on `a`, `b`.
fn check(a: &[f32], b: &[f32]) {
    let s = scalar();
    let n = a.len();
    let dot_scale: f32 = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
    let l2_scale = s.l2_squared(a, b);
    let norms_scale: f32 = a.iter().chain(b).map(|x| x * x).sum();
    for k in backends() {
        let name = k.backend();
        let (d, sd) = (k.dot(a, b), s.dot(a, b));
        assert!(
            (d - sd).abs() <= tolerance(n, dot_scale),
            "{name:?} dot n={n}: {d} vs {sd}"
        );
        let (l, sl) = (k.l2_squared(a, b), s.l2_squared(a, b));
        assert!(
            (l - sl).abs() <= tolerance(n, l2_scale),
            "{name:?} l2 n={n}: {l} vs {sl}"
        );
        let (ab, aa, bb) = k.dot_norms(a, b);
        let (sab, saa, sbb) = s.dot_norms(a, b);
        assert!(
            (ab - sab).abs() <= tolerance(n, dot_scale),
            "{name:?} dot_norms.ab n={n}"
        );
        assert!(
            (aa - saa).abs() <= tolerance(n, norms_scale),
            "{name:?} dot_norms.aa n={n}"
        );
        assert!(
            (bb - sbb).abs() <= tolerance(n, norms_scale),
            "{name:?} dot_norms.bb n={n}"
        );
    }
}

fn vec_pair(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let a = (0..n).map(|_| next()).collect();
    let b = (0..n).map(|_| next()).collect();
    (a, b)
}

#[test]
fn simd_matches_scalar_at_every_length_boundary() {
    println!(
        "backends on this CPU: {:?}",
        backends().iter().map(|k| k.backend()).collect::<Vec<_>>()
    );
    let mut lengths: Vec<usize> = (0..=70).collect();
    lengths.extend([127, 128, 129, 255, 256, 257, 1535, 1536, 1537, 4096, 10_007]);
    for n in lengths {
        let (a, b) = vec_pair(n, n as u64);
        check(&a, &b);
    }
}

#[test]
fn known_values() {
    for k in backends().into_iter().chain([scalar()]) {
        assert_eq!(k.dot(&[], &[]), 0.0);
        assert_eq!(k.l2_squared(&[], &[]), 0.0);
        assert_eq!(k.dot(&[3.0], &[4.0]), 12.0);
        let a: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(k.dot(&a, &a), 338_350.0, "{:?}", k.backend());
        assert_eq!(k.l2_squared(&a, &vec![0.0; 100]), 338_350.0);
        assert_eq!(k.cosine_similarity(&a, &a), 1.0);
        let neg: Vec<f32> = a.iter().map(|x| -x).collect();
        assert_eq!(k.cosine_similarity(&a, &neg), -1.0);
        // Magnitudes whose product of squares overflows or underflows f32.
        assert_eq!(k.cosine_similarity(&[1e10], &[1e10]), 1.0);
        assert_eq!(k.cosine_similarity(&[1e-20], &[1e-20]), 1.0);
        // A zero vector has no direction: similarity 0, not NaN.
        assert_eq!(k.cosine_similarity(&a, &vec![0.0; 100]), 0.0);
        assert_eq!(k.distance(Metric::Cosine, &a, &a), 0.0);
        assert_eq!(
            k.distance(Metric::InnerProduct, &[1.0, 0.0], &[1.0, 0.0]),
            0.0
        );
    }
}

#[test]
#[should_panic(expected = "different lengths")]
fn mismatched_lengths_panic_with_a_message() {
    distance::dot(&[1.0, 2.0], &[1.0]);
}

#[test]
fn shapes_are_checked() {
    assert_eq!(
        VectorSlice::new(&[1.0; 5], 2).unwrap_err(),
        ShapeError::Ragged { len: 5, dim: 2 }
    );
    assert_eq!(
        VectorSlice::new(&[], 0).unwrap_err(),
        ShapeError::ZeroDimension
    );
    let base = VectorSlice::new(&[0.0; 6], 3).unwrap();
    let queries = VectorSlice::new(&[0.0; 4], 2).unwrap();
    assert!(matches!(
        distance::try_search(Metric::L2Squared, queries, base, 1),
        Err(ShapeError::DimensionMismatch { left: 2, right: 3 })
    ));
    assert!(distance::many_to_many(Metric::Cosine, queries, base).is_err());
    let mut out = [0.0; 2];
    assert!(distance::one_to_many(Metric::InnerProduct, &[0.0; 2], base, &mut out).is_err());
}

/// Brute force: every distance, sorted, ties by index.
fn brute(metric: Metric, q: &[f32], base: &VectorSlice<'_>, k: usize) -> Vec<Neighbor> {
    let s = scalar();
    let mut all: Vec<Neighbor> = base
        .iter()
        .enumerate()
        .map(|(index, v)| Neighbor {
            index,
            distance: s.distance(metric, q, v),
        })
        .collect();
    all.sort_by(|a, b| {
        a.distance
            .total_cmp(&b.distance)
            .then(a.index.cmp(&b.index))
    });
    all.truncate(k);
    all
}

#[test]
fn batch_forms_and_search_agree_with_brute_force() {
    let dim = 37;
    let (flat, queries) = vec_pair(3000 * dim, 99);
    let base = VectorSlice::new(&flat, dim).unwrap();
    let queries = VectorSlice::new(&queries[..20 * dim], dim).unwrap();
    for metric in [Metric::L2Squared, Metric::InnerProduct, Metric::Cosine] {
        let matrix = distance::many_to_many(metric, queries, base).unwrap();
        let hits = distance::search(metric, queries, base, 10);
        for (qi, q) in queries.iter().enumerate() {
            let mut row = vec![0.0; base.len()];
            distance::one_to_many(metric, q, base, &mut row).unwrap();
            let scale = 4.0 * dim as f32;
            for (i, (a, b)) in row.iter().zip(&matrix[qi * base.len()..]).enumerate() {
                assert!(
                    (a - b).abs() <= tolerance(dim, scale),
                    "{metric:?} q{qi} v{i}"
                );
            }
            let expected = brute(metric, q, &base, 10);
            let got: Vec<usize> = hits[qi].iter().map(|n| n.index).collect();
            let want: Vec<usize> = expected.iter().map(|n| n.index).collect();
            assert_eq!(got, want, "{metric:?} query {qi}");
            assert_eq!(
                top_k(&row, 10).iter().map(|n| n.index).collect::<Vec<_>>(),
                want
            );
        }
    }
}

#[test]
fn top_k_edges() {
    assert!(top_k(&[], 5).is_empty());
    assert!(top_k(&[1.0, 2.0], 0).is_empty());
    let got = top_k(&[3.0, f32::NAN, 1.0, 1.0, f32::INFINITY, -2.0], 10);
    let order: Vec<usize> = got.iter().map(|n| n.index).collect();
    // NaN goes last, after infinity; equal distances keep index order.
    assert_eq!(order, vec![5, 2, 3, 0, 4, 1]);
    assert_eq!(
        top_k(&[5.0, 4.0, 3.0, 2.0, 1.0], 2)
            .iter()
            .map(|n| n.index)
            .collect::<Vec<_>>(),
        vec![4, 3]
    );
}

/// A uniform f32 in `lo..hi` drawn from a fine integer grid. proptest 1.12's own float
/// range sampler trips a debug assertion on rare draws (about one in ten million for
/// `0.2..5.0`), which fails a run that found nothing wrong.
fn uniform(lo: f32, hi: f32) -> impl Strategy<Value = f32> + Clone {
    const STEPS: u32 = 1 << 24;
    (0..STEPS).prop_map(move |i| lo + (hi - lo) * (i as f32 / STEPS as f32))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn simd_matches_scalar_on_random_vectors(
        pairs in (0usize..300).prop_flat_map(|n| (
            prop::collection::vec(uniform(-1000.0, 1000.0), n),
            prop::collection::vec(uniform(-1000.0, 1000.0), n),
        ))
    ) {
        check(&pairs.0, &pairs.1);
    }

    #[test]
    fn top_k_is_the_sorted_prefix(values in prop::collection::vec(uniform(-10.0, 10.0), 0..200), k in 0usize..50) {
        let got = top_k(&values, k);
        let mut all: Vec<(f32, usize)> = values.iter().copied().zip(0..).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<usize> = all.iter().take(k).map(|p| p.1).collect();
        prop_assert_eq!(got.iter().map(|n| n.index).collect::<Vec<_>>(), want);
    }
}
