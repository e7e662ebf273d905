//! NEON kernels for aarch64 (where NEON is part of the base architecture).
//!
//! `unsafe` here, and only here: the intrinsics load through raw pointers. Every load
//! stays inside the slices (`i + LANES <= n`), and the slices have equal length (checked
//! by the public functions). NEON is mandatory on aarch64, but it is still detected at run
//! time so a target without it keeps the scalar kernels.
#![allow(unsafe_code)]

use std::arch::aarch64::*;

use super::{Backend, Kernels};

#[target_feature(enable = "neon")]
unsafe fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    // SAFETY: i + 16 (or 4) <= n keeps every lane in bounds.
    unsafe {
        while i + 16 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                *acc = vfmaq_f32(
                    *acc,
                    vld1q_f32(pa.add(i + 4 * k)),
                    vld1q_f32(pb.add(i + 4 * k)),
                );
            }
            i += 16;
        }
        while i + 4 <= n {
            acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            i += 4;
        }
    }
    let mut s = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ));
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[target_feature(enable = "neon")]
unsafe fn l2_squared_neon(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    // SAFETY: as in dot_neon.
    unsafe {
        while i + 16 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let d = vsubq_f32(vld1q_f32(pa.add(i + 4 * k)), vld1q_f32(pb.add(i + 4 * k)));
                *acc = vfmaq_f32(*acc, d, d);
            }
            i += 16;
        }
        while i + 4 <= n {
            let d = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            acc[0] = vfmaq_f32(acc[0], d, d);
            i += 4;
        }
    }
    let mut s = vaddvq_f32(vaddq_f32(
        vaddq_f32(acc[0], acc[1]),
        vaddq_f32(acc[2], acc[3]),
    ));
    while i < n {
        let d = a[i] - b[i];
        s += d * d;
        i += 1;
    }
    s
}

#[target_feature(enable = "neon")]
unsafe fn dot_norms_neon(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut ab, mut aa, mut bb) = (
        [vdupq_n_f32(0.0); 2],
        [vdupq_n_f32(0.0); 2],
        [vdupq_n_f32(0.0); 2],
    );
    let mut i = 0;
    // SAFETY: as in dot_neon.
    unsafe {
        while i + 8 <= n {
            for k in 0..2 {
                let x = vld1q_f32(pa.add(i + 4 * k));
                let y = vld1q_f32(pb.add(i + 4 * k));
                ab[k] = vfmaq_f32(ab[k], x, y);
                aa[k] = vfmaq_f32(aa[k], x, x);
                bb[k] = vfmaq_f32(bb[k], y, y);
            }
            i += 8;
        }
    }
    let (mut sab, mut saa, mut sbb) = (
        vaddvq_f32(vaddq_f32(ab[0], ab[1])),
        vaddvq_f32(vaddq_f32(aa[0], aa[1])),
        vaddvq_f32(vaddq_f32(bb[0], bb[1])),
    );
    while i < n {
        sab += a[i] * b[i];
        saa += a[i] * a[i];
        sbb += b[i] * b[i];
        i += 1;
    }
    (sab, saa, sbb)
}

fn dot_neon_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only reachable through the table `neon()` returns after detection.
    unsafe { dot_neon(a, b) }
}
fn l2_squared_neon_entry(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { l2_squared_neon(a, b) }
}
fn dot_norms_neon_entry(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    // SAFETY: as above.
    unsafe { dot_norms_neon(a, b) }
}

/// The NEON kernels, if this CPU has NEON.
pub(super) fn neon() -> Option<Kernels> {
    std::arch::is_aarch64_feature_detected!("neon").then_some(Kernels {
        backend: Backend::Neon,
        dot: dot_neon_entry,
        l2_squared: l2_squared_neon_entry,
        dot_norms: dot_norms_neon_entry,
    })
}
