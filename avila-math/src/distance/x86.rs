//! AVX2+FMA and AVX-512F kernels for x86-64.
//!
//! `unsafe` here, and only here: the intrinsics load through raw pointers, and calling a
//! `#[target_feature]` function is unsafe until the CPU is known to have the feature. Every
//! load stays inside the slices (`i + LANES <= n`, or a mask for the tail), the slices have
//! equal length (checked by the public functions), and the `*_entry` wrappers are only
//! installed by the dispatcher after `is_x86_feature_detected!` confirmed the features.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::{Backend, Kernels};

/// Prefetches every 64-byte line of `data` into all cache levels.
#[inline]
pub(super) fn prefetch(data: &[f32]) {
    let bytes = std::mem::size_of_val(data);
    let p = data.as_ptr().cast::<i8>();
    let mut at = 0;
    while at < bytes {
        // SAFETY: a prefetch is a hint that never faults and reads nothing into the
        // program; `at < bytes` keeps the address inside the slice anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(at)) };
        at += 64;
    }
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum256(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads below): i + 32 <= n or i + 8 <= n keeps every lane in bounds.
    unsafe {
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let x = _mm256_loadu_ps(pa.add(i));
            let y = _mm256_loadu_ps(pb.add(i));
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum256(sum);
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma")]
unsafe fn l2_squared_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: as in dot_avx2.
    unsafe {
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * k)),
                    _mm256_loadu_ps(pb.add(i + 8 * k)),
                );
                *acc = _mm256_fmadd_ps(d, d, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut s = hsum256(sum);
    while i < n {
        let d = a[i] - b[i];
        s += d * d;
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_norms_avx2(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut ab, mut aa, mut bb) = (
        [_mm256_setzero_ps(); 2],
        [_mm256_setzero_ps(); 2],
        [_mm256_setzero_ps(); 2],
    );
    let mut i = 0;
    // SAFETY: as in dot_avx2.
    unsafe {
        while i + 16 <= n {
            for k in 0..2 {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                ab[k] = _mm256_fmadd_ps(x, y, ab[k]);
                aa[k] = _mm256_fmadd_ps(x, x, aa[k]);
                bb[k] = _mm256_fmadd_ps(y, y, bb[k]);
            }
            i += 16;
        }
        while i + 8 <= n {
            let x = _mm256_loadu_ps(pa.add(i));
            let y = _mm256_loadu_ps(pb.add(i));
            ab[0] = _mm256_fmadd_ps(x, y, ab[0]);
            aa[0] = _mm256_fmadd_ps(x, x, aa[0]);
            bb[0] = _mm256_fmadd_ps(y, y, bb[0]);
            i += 8;
        }
    }
    let (mut sab, mut saa, mut sbb) = (
        hsum256(_mm256_add_ps(ab[0], ab[1])),
        hsum256(_mm256_add_ps(aa[0], aa[1])),
        hsum256(_mm256_add_ps(bb[0], bb[1])),
    );
    while i < n {
        sab += a[i] * b[i];
        saa += a[i] * a[i];
        sbb += b[i] * b[i];
        i += 1;
    }
    (sab, saa, sbb)
}

/// The mask of the first `rem` (< 16) lanes.
#[inline]
fn tail_mask(rem: usize) -> __mmask16 {
    ((1u32 << rem) - 1) as __mmask16
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: full loads only while i + 64 (or 16) <= n; the tail load is masked to the
    // rem < 16 elements that remain, and masked-off lanes are not read.
    unsafe {
        while i + 64 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_loadu_ps(pa.add(i + 16 * k));
                let y = _mm512_loadu_ps(pb.add(i + 16 * k));
                *acc = _mm512_fmadd_ps(x, y, *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            let x = _mm512_loadu_ps(pa.add(i));
            let y = _mm512_loadu_ps(pb.add(i));
            acc[0] = _mm512_fmadd_ps(x, y, acc[0]);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            let x = _mm512_maskz_loadu_ps(m, pa.add(i));
            let y = _mm512_maskz_loadu_ps(m, pb.add(i));
            acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
        }
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(sum)
}

#[target_feature(enable = "avx512f")]
unsafe fn l2_squared_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: as in dot_avx512.
    unsafe {
        while i + 64 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let d = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16 * k)),
                    _mm512_loadu_ps(pb.add(i + 16 * k)),
                );
                *acc = _mm512_fmadd_ps(d, d, *acc);
            }
            i += 64;
        }
        while i + 16 <= n {
            let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            let d = _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
            );
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
    }
    let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(sum)
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_norms_avx512(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut ab, mut aa, mut bb) = (
        [_mm512_setzero_ps(); 2],
        [_mm512_setzero_ps(); 2],
        [_mm512_setzero_ps(); 2],
    );
    let mut i = 0;
    // SAFETY: as in dot_avx512.
    unsafe {
        while i + 32 <= n {
            for k in 0..2 {
                let x = _mm512_loadu_ps(pa.add(i + 16 * k));
                let y = _mm512_loadu_ps(pb.add(i + 16 * k));
                ab[k] = _mm512_fmadd_ps(x, y, ab[k]);
                aa[k] = _mm512_fmadd_ps(x, x, aa[k]);
                bb[k] = _mm512_fmadd_ps(y, y, bb[k]);
            }
            i += 32;
        }
        while i < n {
            let m = if i + 16 <= n {
                0xffff
            } else {
                tail_mask(n - i)
            };
            let x = _mm512_maskz_loadu_ps(m, pa.add(i));
            let y = _mm512_maskz_loadu_ps(m, pb.add(i));
            ab[0] = _mm512_fmadd_ps(x, y, ab[0]);
            aa[0] = _mm512_fmadd_ps(x, x, aa[0]);
            bb[0] = _mm512_fmadd_ps(y, y, bb[0]);
            i += 16;
        }
    }
    (
        _mm512_reduce_add_ps(_mm512_add_ps(ab[0], ab[1])),
        _mm512_reduce_add_ps(_mm512_add_ps(aa[0], aa[1])),
        _mm512_reduce_add_ps(_mm512_add_ps(bb[0], bb[1])),
    )
}

fn dot_avx2_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only reachable through the table `avx2()` returns after detection.
    unsafe { dot_avx2(a, b) }
}
fn l2_squared_avx2_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { l2_squared_avx2(a, b) }
}
fn dot_norms_avx2_entry(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    // SAFETY: as above.
    unsafe { dot_norms_avx2(a, b) }
}
fn dot_avx512_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only reachable through the table `avx512()` returns after detection.
    unsafe { dot_avx512(a, b) }
}
fn l2_squared_avx512_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { l2_squared_avx512(a, b) }
}
fn dot_norms_avx512_entry(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    // SAFETY: as above.
    unsafe { dot_norms_avx512(a, b) }
}

/// The AVX2+FMA kernels, if this CPU has both features.
pub(super) fn avx2() -> Option<Kernels> {
    (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Kernels {
        backend: Backend::Avx2,
        dot: dot_avx2_entry,
        l2_squared: l2_squared_avx2_entry,
        dot_norms: dot_norms_avx2_entry,
    })
}

/// The AVX-512F kernels, if this CPU has the feature.
pub(super) fn avx512() -> Option<Kernels> {
    is_x86_feature_detected!("avx512f").then_some(Kernels {
        backend: Backend::Avx512,
        dot: dot_avx512_entry,
        l2_squared: l2_squared_avx512_entry,
        dot_norms: dot_norms_avx512_entry,
    })
}
