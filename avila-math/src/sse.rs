//! SSE2 forms of the hot geometry operations on x86-64 (where SSE2 is part of the base
//! architecture, so no detection is needed). Same results as the portable code up to
//! rounding; tests compare both against glam.
//!
//! The types convert to `__m128` through `bytemuck::cast` of their `[f32; 4]` arrays. The
//! one `unsafe` is calling the `#[target_feature(enable = "sse2")]` functions from the
//! public wrappers: this module is compiled only when SSE2 is enabled for the whole build
//! (`cfg(target_feature = "sse2")`, always true on x86-64), so the feature is present.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::mat::Mat4;
use crate::quat::Quat;
use crate::vec::Vec4;

#[inline]
#[target_feature(enable = "sse2")]
fn load(v: Vec4) -> __m128 {
    bytemuck::cast(v.to_array())
}

#[inline]
#[target_feature(enable = "sse2")]
fn store(m: __m128) -> Vec4 {
    Vec4::from_array(bytemuck::cast(m))
}

/// `_mm_shuffle_ps` with lanes named in order: lanes 0, 1 from `a`, lanes 2, 3 from `b`.
macro_rules! shuffle {
    ($a:expr, $b:expr, $l0:literal, $l1:literal, $l2:literal, $l3:literal) => {
        _mm_shuffle_ps::<{ $l0 | ($l1 << 2) | ($l2 << 4) | ($l3 << 6) }>($a, $b)
    };
}

#[inline]
#[target_feature(enable = "sse2")]
fn splat<const L: i32>(v: __m128) -> __m128 {
    _mm_shuffle_ps::<L>(v, v)
}

/// Lanes with the sign bit set where the mask says so, for flipping signs by XOR.
#[inline]
#[target_feature(enable = "sse2")]
fn signs(x: bool, y: bool, z: bool, w: bool) -> __m128 {
    let s = |neg: bool| if neg { -0.0 } else { 0.0 };
    _mm_set_ps(s(w), s(z), s(y), s(x))
}

/// The Hamilton product, grouped by the left operand's components:
/// `aw·b + ax·(bw,-bz,by,-bx) + ay·(bz,bw,-bx,-by) + az·(-by,bx,bw,-bz)`.
#[inline]
#[target_feature(enable = "sse2")]
fn quat_mul_sse2(a: Quat, b: Quat) -> Quat {
    let a = load(a.to_vec4());
    let b = load(b.to_vec4());
    let ax = splat::<0b00_00_00_00>(a);
    let ay = splat::<0b01_01_01_01>(a);
    let az = splat::<0b10_10_10_10>(a);
    let aw = splat::<0b11_11_11_11>(a);
    let b_wzyx = _mm_xor_ps(shuffle!(b, b, 3, 2, 1, 0), signs(false, true, false, true));
    let b_zwxy = _mm_xor_ps(shuffle!(b, b, 2, 3, 0, 1), signs(false, false, true, true));
    let b_yxwz = _mm_xor_ps(shuffle!(b, b, 1, 0, 3, 2), signs(true, false, false, true));
    let r = _mm_add_ps(
        _mm_add_ps(_mm_mul_ps(aw, b), _mm_mul_ps(ax, b_wzyx)),
        _mm_add_ps(_mm_mul_ps(ay, b_zwxy), _mm_mul_ps(az, b_yxwz)),
    );
    let v = store(r);
    Quat::from_xyzw(v.x, v.y, v.z, v.w)
}

/// `cols * v` for columns already in registers.
#[inline]
#[target_feature(enable = "sse2")]
fn mul_vec4_cols(c: &[__m128; 4], v: __m128) -> __m128 {
    let x = _mm_mul_ps(c[0], splat::<0b00_00_00_00>(v));
    let y = _mm_mul_ps(c[1], splat::<0b01_01_01_01>(v));
    let z = _mm_mul_ps(c[2], splat::<0b10_10_10_10>(v));
    let w = _mm_mul_ps(c[3], splat::<0b11_11_11_11>(v));
    _mm_add_ps(_mm_add_ps(x, y), _mm_add_ps(z, w))
}

#[inline]
#[target_feature(enable = "sse2")]
fn cols(m: &Mat4) -> [__m128; 4] {
    [
        load(m.x_axis),
        load(m.y_axis),
        load(m.z_axis),
        load(m.w_axis),
    ]
}

/// `m * v`.
#[inline]
#[target_feature(enable = "sse2")]
fn mat4_mul_vec4_sse2(m: &Mat4, v: Vec4) -> Vec4 {
    store(mul_vec4_cols(&cols(m), load(v)))
}

/// `a * b`.
#[inline]
#[target_feature(enable = "sse2")]
fn mat4_mul_sse2(a: &Mat4, b: &Mat4) -> Mat4 {
    let c = cols(a);
    Mat4::from_cols(
        store(mul_vec4_cols(&c, load(b.x_axis))),
        store(mul_vec4_cols(&c, load(b.y_axis))),
        store(mul_vec4_cols(&c, load(b.z_axis))),
        store(mul_vec4_cols(&c, load(b.w_axis))),
    )
}

/// The adjugate and the determinant, by the same 2×2 sub-determinant scheme as the
/// portable code, four cofactor terms per instruction.
#[inline]
#[target_feature(enable = "sse2")]
fn mat4_adjugate_and_determinant_sse2(m: &Mat4) -> (Mat4, f32) {
    let [c0, c1, c2, c3] = cols(m);
    // mCR = column C, row R. Operands of the 2×2 sub-determinants `a·b - c·d`:
    let a0 = shuffle!(c2, c1, 2, 2, 2, 2); // m22 m22 m12 m12
    let a1 = shuffle!(c2, c1, 1, 1, 1, 1); // m21 m21 m11 m11
    let a3 = shuffle!(c2, c1, 0, 0, 0, 0); // m20 m20 m10 m10
    let d0 = shuffle!(c2, c1, 3, 3, 3, 3); // m23 m23 m13 m13
    let t = shuffle!(c3, c2, 3, 3, 3, 3);
    let b0 = shuffle!(t, t, 0, 0, 0, 2); // m33 m33 m33 m23
    let t = shuffle!(c3, c2, 2, 2, 2, 2);
    let e0 = shuffle!(t, t, 0, 0, 0, 2); // m32 m32 m32 m22
    let t = shuffle!(c3, c2, 1, 1, 1, 1);
    let e1 = shuffle!(t, t, 0, 0, 0, 2); // m31 m31 m31 m21
    let t = shuffle!(c3, c2, 0, 0, 0, 0);
    let e3 = shuffle!(t, t, 0, 0, 0, 2); // m30 m30 m30 m20

    let det2 =
        |a: __m128, b: __m128, c: __m128, d: __m128| _mm_sub_ps(_mm_mul_ps(a, b), _mm_mul_ps(c, d));
    let fac0 = det2(a0, b0, e0, d0);
    let fac1 = det2(a1, b0, e1, d0);
    let fac2 = det2(a1, e0, e1, a0);
    let fac3 = det2(a3, b0, e3, d0);
    let fac4 = det2(a3, e0, e3, a0);
    let fac5 = det2(a3, e1, e3, a1);

    let row = |r0: __m128, r1: __m128| {
        // (m1R, m0R, m0R, m0R) from r0 = column 1, r1 = column 0 splatted to row R.
        let t = _mm_shuffle_ps::<0>(r0, r1);
        shuffle!(t, t, 0, 2, 2, 2)
    };
    let vec0 = row(splat::<0b00_00_00_00>(c1), splat::<0b00_00_00_00>(c0));
    let vec1 = row(splat::<0b01_01_01_01>(c1), splat::<0b01_01_01_01>(c0));
    let vec2 = row(splat::<0b10_10_10_10>(c1), splat::<0b10_10_10_10>(c0));
    let vec3 = row(splat::<0b11_11_11_11>(c1), splat::<0b11_11_11_11>(c0));

    let combine = |v0: __m128, f0: __m128, v1: __m128, f1: __m128, v2: __m128, f2: __m128| {
        _mm_add_ps(
            _mm_sub_ps(_mm_mul_ps(v0, f0), _mm_mul_ps(v1, f1)),
            _mm_mul_ps(v2, f2),
        )
    };
    let sign_a = signs(false, true, false, true);
    let sign_b = signs(true, false, true, false);
    let inv0 = _mm_xor_ps(combine(vec1, fac0, vec2, fac1, vec3, fac2), sign_a);
    let inv1 = _mm_xor_ps(combine(vec0, fac0, vec2, fac3, vec3, fac4), sign_b);
    let inv2 = _mm_xor_ps(combine(vec0, fac1, vec1, fac3, vec3, fac5), sign_a);
    let inv3 = _mm_xor_ps(combine(vec0, fac2, vec1, fac4, vec2, fac5), sign_b);

    let t0 = shuffle!(inv0, inv1, 0, 0, 0, 0);
    let t1 = shuffle!(inv2, inv3, 0, 0, 0, 0);
    let row0 = shuffle!(t0, t1, 0, 2, 0, 2);
    let products = store(_mm_mul_ps(c0, row0));
    let det = (products.x + products.y) + (products.z + products.w);
    (
        Mat4::from_cols(store(inv0), store(inv1), store(inv2), store(inv3)),
        det,
    )
}

/// `a * b` for quaternions.
#[inline]
pub(crate) fn quat_mul(a: Quat, b: Quat) -> Quat {
    // SAFETY: SSE2 is enabled for the whole build (see the module docs).
    unsafe { quat_mul_sse2(a, b) }
}

/// `m * v`.
#[inline]
pub(crate) fn mat4_mul_vec4(m: &Mat4, v: Vec4) -> Vec4 {
    // SAFETY: as above.
    unsafe { mat4_mul_vec4_sse2(m, v) }
}

/// `a * b` for 4×4 matrices.
#[inline]
pub(crate) fn mat4_mul(a: &Mat4, b: &Mat4) -> Mat4 {
    // SAFETY: as above.
    unsafe { mat4_mul_sse2(a, b) }
}

/// The adjugate and determinant of a 4×4 matrix.
#[inline]
pub(crate) fn mat4_adjugate_and_determinant(m: &Mat4) -> (Mat4, f32) {
    // SAFETY: as above.
    unsafe { mat4_adjugate_and_determinant_sse2(m) }
}
