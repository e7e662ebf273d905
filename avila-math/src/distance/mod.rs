//! Distance kernels on `&[f32]` of any length, with runtime dispatch to SIMD (AVX-512F,
//! AVX2+FMA, NEON) and a portable fallback; batch forms over rayon; top-k selection.
//!
//! # Agreement between kernels
//!
//! SIMD kernels add in another order than the scalar one (and fuse multiply-adds), so
//! results differ in the last bits. For vectors of length `n`, any two kernels agree
//! within [`tolerance`]`(n, scale)`, where `scale` is `Σ|aᵢ·bᵢ|` for a dot product and
//! `Σ(aᵢ-bᵢ)²` for a squared distance: the classic bound `2·n·ε·scale` for two summation
//! orders (ε = `f32::EPSILON`). In practice the difference is far smaller.
//!
//! ```
//! use avila_math::distance::{self, Metric, VectorSlice};
//! let a = [1.0, 2.0, 3.0];
//! let b = [4.0, 5.0, 6.0];
//! assert_eq!(distance::dot(&a, &b), 32.0);
//! assert_eq!(distance::l2_squared(&a, &b), 27.0);
//!
//! let base = VectorSlice::new(&[0.0, 0.0, 1.0, 0.0, 0.0, 3.0], 2)?; // three 2-d vectors
//! let hits = distance::search(Metric::L2Squared, VectorSlice::new(&[0.9, 0.1], 2)?, base, 2);
//! assert_eq!(hits[0].iter().map(|n| n.index).collect::<Vec<_>>(), vec![1, 0]);
//! # Ok::<(), distance::ShapeError>(())
//! ```

mod scalar;
mod topk;

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(target_arch = "aarch64")]
mod aarch64;

use std::sync::OnceLock;

use rayon::prelude::*;

pub use topk::{Neighbor, TopK, top_k};

/// The instruction set a kernel table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Portable Rust, on every target.
    Scalar,
    /// x86-64 AVX2 with FMA: 8 lanes.
    Avx2,
    /// x86-64 AVX-512F: 16 lanes.
    Avx512,
    /// aarch64 NEON: 4 lanes.
    Neon,
}

/// A kernel returning `(a·b, |a|², |b|²)`.
type DotNormsFn = fn(&[f32], &[f32]) -> (f32, f32, f32);

/// A table of kernels for one [`Backend`].
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    backend: Backend,
    dot: fn(&[f32], &[f32]) -> f32,
    l2_squared: fn(&[f32], &[f32]) -> f32,
    dot_norms: DotNormsFn,
}

const SCALAR: Kernels = Kernels {
    backend: Backend::Scalar,
    dot: scalar::dot,
    l2_squared: scalar::l2_squared,
    dot_norms: scalar::dot_norms,
};

impl Kernels {
    /// The kernels of `backend`, if this CPU can run them.
    pub fn for_backend(backend: Backend) -> Option<Kernels> {
        match backend {
            Backend::Scalar => Some(SCALAR),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => x86::avx2(),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => x86::avx512(),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => aarch64::neon(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The kernels to use on this CPU (chosen once per process): AVX2+FMA where present,
    /// then NEON, then scalar. AVX-512 is not preferred: on the Xeon this was measured on it
    /// was 5-15% slower than AVX2 for 128-d and 1536-d vectors (the loads, not the
    /// arithmetic, bound these kernels, and 512-bit work can lower the clock). Setting the
    /// environment variable `AVILA_MATH_BACKEND` to `scalar`, `avx2`, `avx512` or `neon`
    /// before the first call picks one (if the CPU has it), for debugging and benches.
    pub fn best() -> &'static Kernels {
        static BEST: OnceLock<Kernels> = OnceLock::new();
        BEST.get_or_init(|| {
            let forced = std::env::var("AVILA_MATH_BACKEND").ok().and_then(|v| {
                let backend = match v.to_ascii_lowercase().as_str() {
                    "scalar" => Backend::Scalar,
                    "avx2" => Backend::Avx2,
                    "avx512" => Backend::Avx512,
                    "neon" => Backend::Neon,
                    _ => return None,
                };
                Kernels::for_backend(backend)
            });
            forced.unwrap_or_else(|| {
                [Backend::Avx2, Backend::Neon, Backend::Avx512]
                    .into_iter()
                    .find_map(Kernels::for_backend)
                    .unwrap_or(SCALAR)
            })
        })
    }

    /// Which backend this table uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Dot product.
    ///
    /// # Panics
    /// If the slices differ in length.
    #[inline]
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
        (self.dot)(a, b)
    }

    /// Squared Euclidean distance.
    ///
    /// # Panics
    /// If the slices differ in length.
    #[inline]
    pub fn l2_squared(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "distance of vectors of different lengths");
        (self.l2_squared)(a, b)
    }

    /// `(a·b, |a|², |b|²)` in one pass.
    ///
    /// # Panics
    /// If the slices differ in length.
    #[inline]
    pub fn dot_norms(&self, a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
        (self.dot_norms)(a, b)
    }

    /// Cosine similarity in `[-1, 1]`; 0 when either vector is zero.
    ///
    /// # Panics
    /// If the slices differ in length.
    #[inline]
    pub fn cosine_similarity(&self, a: &[f32], b: &[f32]) -> f32 {
        let (ab, aa, bb) = self.dot_norms(a, b);
        cosine_from(ab, aa, bb)
    }

    /// The distance of `metric` (smaller is closer).
    ///
    /// # Panics
    /// If the slices differ in length.
    #[inline]
    pub fn distance(&self, metric: Metric, a: &[f32], b: &[f32]) -> f32 {
        match metric {
            Metric::L2Squared => self.l2_squared(a, b),
            Metric::InnerProduct => 1.0 - self.dot(a, b),
            Metric::Cosine => 1.0 - self.cosine_similarity(a, b),
        }
    }
}

#[inline]
fn cosine_from(ab: f32, aa: f32, bb: f32) -> f32 {
    // Two square roots, not one of the product: aa·bb overflows (or underflows) for
    // magnitudes whose own squares are fine.
    let denom = aa.sqrt() * bb.sqrt();
    if denom > 0.0 {
        (ab / denom).clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// The bound within which two kernels agree for length `n` and magnitude `scale` (see the
/// module docs).
pub fn tolerance(n: usize, scale: f32) -> f32 {
    2.0 * n.max(1) as f32 * f32::EPSILON * scale
}

/// Asks the CPU to start loading `data` into its caches, so that a kernel run on it a
/// little later finds it there (a graph walk prefetches the vectors of a node's neighbors
/// before comparing them). Only a hint: it reads nothing, and does nothing where the
/// architecture has no prefetch instruction.
#[inline]
pub fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Dot product with the best kernels. Panics if the lengths differ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    Kernels::best().dot(a, b)
}

/// Squared Euclidean distance with the best kernels. Panics if the lengths differ.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    Kernels::best().l2_squared(a, b)
}

/// Cosine similarity with the best kernels (0 for a zero vector). Panics if the lengths
/// differ.
#[inline]
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    Kernels::best().cosine_similarity(a, b)
}

/// How distances are measured; every variant is "smaller is closer".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `Σ(aᵢ-bᵢ)²`.
    L2Squared,
    /// `1 - a·b` (for vectors normalized ahead of time, this is the cosine distance).
    InnerProduct,
    /// `1 - cos(a, b)`.
    Cosine,
}

impl Metric {
    /// The distance between `a` and `b` with the best kernels. Panics if the lengths
    /// differ.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        Kernels::best().distance(self, a, b)
    }
}

/// Why a flat slice cannot be read as vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeError {
    /// The dimension is zero.
    ZeroDimension,
    /// The slice length is not a multiple of the dimension.
    Ragged {
        /// The slice length.
        len: usize,
        /// The dimension.
        dim: usize,
    },
    /// Two sets of vectors have different dimensions.
    DimensionMismatch {
        /// The first set's dimension.
        left: usize,
        /// The second set's dimension.
        right: usize,
    },
}

impl std::fmt::Display for ShapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShapeError::ZeroDimension => f.write_str("vectors must have at least one dimension"),
            ShapeError::Ragged { len, dim } => {
                write!(f, "{len} floats are not a whole number of {dim}-d vectors")
            }
            ShapeError::DimensionMismatch { left, right } => {
                write!(f, "{left}-d vectors compared with {right}-d vectors")
            }
        }
    }
}

impl std::error::Error for ShapeError {}

/// Vectors of one dimension stored one after another in a flat slice (row-major).
#[derive(Debug, Clone, Copy)]
pub struct VectorSlice<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> VectorSlice<'a> {
    /// `data` read as vectors of `dim` floats.
    pub fn new(data: &'a [f32], dim: usize) -> Result<Self, ShapeError> {
        if dim == 0 {
            return Err(ShapeError::ZeroDimension);
        }
        if !data.len().is_multiple_of(dim) {
            return Err(ShapeError::Ragged {
                len: data.len(),
                dim,
            });
        }
        Ok(VectorSlice { data, dim })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How many vectors.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Vector `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn get(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The vectors in order.
    pub fn iter(&self) -> std::slice::ChunksExact<'a, f32> {
        self.data.chunks_exact(self.dim)
    }

    /// The flat data.
    pub fn as_flat(&self) -> &'a [f32] {
        self.data
    }

    /// The vectors `range` (by index).
    ///
    /// # Panics
    /// If the range is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> VectorSlice<'a> {
        VectorSlice {
            data: &self.data[range.start * self.dim..range.end * self.dim],
            dim: self.dim,
        }
    }
}

fn check_dims(a: &VectorSlice<'_>, b: &VectorSlice<'_>) -> Result<(), ShapeError> {
    if a.dim != b.dim {
        return Err(ShapeError::DimensionMismatch {
            left: a.dim,
            right: b.dim,
        });
    }
    Ok(())
}

/// Below this many base vectors per query, batch work stays on the calling thread.
const PARALLEL_MIN: usize = 2048;

/// The distance from `query` to every base vector, into `out` (`out.len() == base.len()`),
/// spread over rayon's threads for large bases.
pub fn one_to_many(
    metric: Metric,
    query: &[f32],
    base: VectorSlice<'_>,
    out: &mut [f32],
) -> Result<(), ShapeError> {
    if query.len() != base.dim() {
        return Err(ShapeError::DimensionMismatch {
            left: query.len(),
            right: base.dim(),
        });
    }
    if out.len() != base.len() {
        return Err(ShapeError::Ragged {
            len: out.len(),
            dim: base.len(),
        });
    }
    let k = Kernels::best();
    let one = |(d, v): (&mut f32, &[f32])| *d = k.distance(metric, query, v);
    if base.len() >= PARALLEL_MIN {
        out.par_iter_mut()
            .zip(base.as_flat().par_chunks_exact(base.dim()))
            .for_each(one);
    } else {
        out.iter_mut().zip(base.iter()).for_each(one);
    }
    Ok(())
}

/// The `queries.len() × base.len()` matrix of distances (row per query), over rayon.
pub fn many_to_many(
    metric: Metric,
    queries: VectorSlice<'_>,
    base: VectorSlice<'_>,
) -> Result<Vec<f32>, ShapeError> {
    check_dims(&queries, &base)?;
    let mut out = vec![0.0f32; queries.len() * base.len()];
    if base.is_empty() {
        return Ok(out);
    }
    let k = Kernels::best();
    out.par_chunks_mut(base.len())
        .zip(queries.as_flat().par_chunks_exact(queries.dim()))
        .for_each(|(row, q)| {
            for (d, v) in row.iter_mut().zip(base.iter()) {
                *d = k.distance(metric, q, v);
            }
        });
    Ok(out)
}

/// The `k` nearest base vectors of each query, nearest first (ties by index), without
/// materializing the distance matrix; queries in parallel over rayon.
///
/// # Panics
/// If the dimensions differ (`queries.dim() != base.dim()`); use [`try_search`] for a
/// `Result`.
pub fn search(
    metric: Metric,
    queries: VectorSlice<'_>,
    base: VectorSlice<'_>,
    k: usize,
) -> Vec<Vec<Neighbor>> {
    match try_search(metric, queries, base, k) {
        Ok(hits) => hits,
        Err(e) => panic!("{e}"),
    }
}

/// [`search`], with a dimension mismatch as an error.
pub fn try_search(
    metric: Metric,
    queries: VectorSlice<'_>,
    base: VectorSlice<'_>,
    k: usize,
) -> Result<Vec<Vec<Neighbor>>, ShapeError> {
    check_dims(&queries, &base)?;
    let kernels = Kernels::best();
    let one = |q: &[f32]| {
        let mut top = TopK::new(k);
        for (i, v) in base.iter().enumerate() {
            top.push(i, kernels.distance(metric, q, v));
        }
        top.into_sorted()
    };
    Ok(if queries.len() > 1 || base.len() >= PARALLEL_MIN {
        queries
            .as_flat()
            .par_chunks_exact(queries.dim())
            .map(one)
            .collect()
    } else {
        queries.iter().map(one).collect()
    })
}
