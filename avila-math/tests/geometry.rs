//! Vectors, quaternions and matrices: property tests of the identities, the edge cases
//! (antipodal, tiny angles, 180° arcs, gimbal lock), and agreement with glam.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::f32::consts::{FRAC_PI_2, PI};

use avila_math::{EulerRot, Mat3, Mat4, Quat, Vec3, Vec4};
use proptest::prelude::*;

/// A uniform f32 in `lo..hi` drawn from a fine integer grid. proptest 1.12's own float
/// range sampler trips a debug assertion on rare draws (about one in ten million for
/// `0.2..5.0`), which fails a run that found nothing wrong.
fn uniform(lo: f32, hi: f32) -> impl Strategy<Value = f32> + Clone {
    const STEPS: u32 = 1 << 24;
    (0..STEPS).prop_map(move |i| lo + (hi - lo) * (i as f32 / STEPS as f32))
}

fn v3() -> impl Strategy<Value = Vec3> {
    (
        uniform(-100.0, 100.0),
        uniform(-100.0, 100.0),
        uniform(-100.0, 100.0),
    )
        .prop_map(|(x, y, z)| Vec3::new(x, y, z))
}

fn unit() -> impl Strategy<Value = Vec3> {
    v3().prop_filter_map("nonzero", |v| v.try_normalize())
}

fn angle() -> impl Strategy<Value = f32> {
    uniform(-PI, PI)
}

fn rotation() -> impl Strategy<Value = Quat> {
    (unit(), angle()).prop_map(|(axis, a)| Quat::from_axis_angle(axis, a))
}

fn affine() -> impl Strategy<Value = Mat4> {
    (
        (uniform(0.2, 5.0), uniform(0.2, 5.0), uniform(0.2, 5.0)),
        rotation(),
        v3(),
    )
        .prop_map(|((sx, sy, sz), r, t)| {
            Mat4::from_scale_rotation_translation(Vec3::new(sx, sy, sz), r, t)
        })
}

fn close(a: Vec3, b: Vec3, tol: f32) -> bool {
    a.abs_diff_eq(b, tol * (1.0 + a.length().max(b.length())))
}

fn g3(v: Vec3) -> glam::Vec3 {
    glam::Vec3::new(v.x, v.y, v.z)
}

fn gq(q: Quat) -> glam::Quat {
    glam::Quat::from_xyzw(q.x, q.y, q.z, q.w)
}

fn gm4(m: &Mat4) -> glam::Mat4 {
    glam::Mat4::from_cols_array(&m.to_cols_array())
}

fn same_as_glam(m: &Mat4, g: glam::Mat4, tol: f32) -> bool {
    m.to_cols_array()
        .iter()
        .zip(g.to_cols_array())
        .all(|(a, b)| (a - b).abs() <= tol * (1.0 + b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rotation_preserves_length_and_angles(q in rotation(), a in v3(), b in v3()) {
        let (ra, rb) = (q * a, q * b);
        prop_assert!((ra.length() - a.length()).abs() <= 1e-4 * (1.0 + a.length()));
        prop_assert!((ra.dot(rb) - a.dot(b)).abs() <= 1e-3 * (1.0 + a.length() * b.length()));
    }

    #[test]
    fn q_times_inverse_is_identity(q in rotation(), s in uniform(0.1, 10.0)) {
        prop_assert!((q * q.conjugate()).rotation_eq(Quat::IDENTITY, 1e-3));
        let scaled = q * s;
        let product = scaled * scaled.inverse();
        prop_assert!(product.rotation_eq(Quat::IDENTITY, 1e-3));
        prop_assert!((product.length() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn matrix_and_quaternion_agree(q in rotation(), v in v3()) {
        let m = Mat3::from_quat(q);
        prop_assert!(close(m * v, q * v, 1e-4));
        prop_assert!((m.determinant() - 1.0).abs() < 1e-4);
        prop_assert!(Quat::from_mat3(&m).rotation_eq(q, 1e-3));
        let m4 = Mat4::from_quat(q);
        prop_assert!(close(m4.transform_vector3(v), q * v, 1e-4));
    }

    #[test]
    fn composition_matches_applying_in_turn(a in rotation(), b in rotation(), v in v3()) {
        prop_assert!(close((a * b) * v, a * (b * v), 1e-4));
        let (ma, mb) = (Mat3::from_quat(a), Mat3::from_quat(b));
        prop_assert!((ma * mb).abs_diff_eq(&Mat3::from_quat(a * b), 1e-4));
    }

    #[test]
    fn axis_angle_round_trips(axis in unit(), a in uniform(0.001, 3.1)) {
        let q = Quat::from_axis_angle(axis, a);
        let (back_axis, back_angle) = q.to_axis_angle();
        prop_assert!((back_angle - a).abs() < 1e-3, "{} vs {}", back_angle, a);
        prop_assert!(close(back_axis, axis, 1e-3));
        prop_assert!(Quat::from_scaled_axis(q.to_scaled_axis()).rotation_eq(q, 1e-3));
        // -q is the same rotation and reports the same axis and angle.
        let (neg_axis, neg_angle) = (-q).to_axis_angle();
        prop_assert!((neg_angle - a).abs() < 1e-3 && close(neg_axis, axis, 1e-3));
    }

    #[test]
    fn euler_round_trips_for_every_order(a in angle(), b in uniform(-1.5, 1.5), c in angle()) {
        for order in EulerRot::ALL {
            let q = Quat::from_euler(order, a, b, c);
            let (a2, b2, c2) = q.to_euler(order);
            let back = Quat::from_euler(order, a2, b2, c2);
            prop_assert!(back.rotation_eq(q, 1e-3), "{:?}: {:?} vs {:?}", order, (a, b, c), (a2, b2, c2));
            prop_assert!((b2 - b).abs() < 1e-2, "{:?}: b {} vs {}", order, b2, b);
        }
    }

    #[test]
    fn slerp_hits_its_endpoints_and_moves_monotonically(a in rotation(), b in rotation()) {
        prop_assert!(a.slerp(b, 0.0).rotation_eq(a, 1e-3));
        prop_assert!(a.slerp(b, 1.0).rotation_eq(b, 1e-3));
        let total = a.angle_between(b);
        let mut last = 0.0;
        for i in 1..=10 {
            let t = i as f32 / 10.0;
            let q = a.slerp(b, t);
            prop_assert!(q.is_normalized());
            let travelled = a.angle_between(q);
            prop_assert!(travelled + 1e-3 >= last, "angle went back at t={}", t);
            // Constant angular speed along the shortest arc.
            prop_assert!((travelled - t * total).abs() < 2e-3 + 1e-2 * total, "t={} {} vs {}", t, travelled, t * total);
            last = travelled;
        }
    }

    #[test]
    fn slerp_takes_the_short_way_round(a in rotation(), b in rotation(), t in uniform(0.0, 1.0)) {
        // b and -b are the same rotation: slerp must not care which one it is given.
        prop_assert!(a.slerp(b, t).rotation_eq(a.slerp(-b, t), 1e-3));
        prop_assert!(a.angle_between(a.slerp(b, t)) <= a.angle_between(b) + 1e-3);
    }

    #[test]
    fn rotation_arc_takes_from_to_to(from in unit(), to in unit()) {
        let q = Quat::from_rotation_arc(from, to);
        prop_assert!(q.is_normalized());
        prop_assert!(close(q * from, to, 1e-3));
    }

    #[test]
    fn inverse_undoes_affine_transforms(m in affine(), p in v3()) {
        let inv = m.inverse();
        prop_assert!(close(inv.transform_point3(m.transform_point3(p)), p, 1e-3));
        prop_assert!((m * inv).abs_diff_eq(&Mat4::IDENTITY, 1e-3));
        prop_assert!(same_as_glam(&inv, gm4(&m).inverse(), 1e-3));
        prop_assert!((m.determinant() - gm4(&m).determinant()).abs() <= 1e-3 * (1.0 + m.determinant().abs()));
    }

    #[test]
    fn products_match_glam(a in affine(), b in affine(), q in rotation(), r in rotation(), v in v3()) {
        prop_assert!(same_as_glam(&(a * b), gm4(&a) * gm4(&b), 1e-5));
        let ours = q * r;
        let theirs = gq(q) * gq(r);
        prop_assert!((ours.x - theirs.x).abs() < 1e-5 && (ours.w - theirs.w).abs() < 1e-5);
        let rotated = q * v;
        let g = gq(q) * g3(v);
        prop_assert!(close(rotated, Vec3::new(g.x, g.y, g.z), 1e-5));
        let n = v.normalize();
        let gn = g3(v).normalize();
        prop_assert!(close(n, Vec3::new(gn.x, gn.y, gn.z), 1e-6));
    }

    #[test]
    fn decomposition_round_trips(m in affine()) {
        let (s, r, t) = m.to_scale_rotation_translation();
        prop_assert!(Mat4::from_scale_rotation_translation(s, r, t).abs_diff_eq(&m, 1e-3));
    }

    #[test]
    fn renormalization_keeps_long_chains_on_the_sphere(steps in prop::collection::vec(rotation(), 1000..1001)) {
        let mut q = Quat::IDENTITY;
        for step in &steps {
            q = (q * *step).renormalize_fast();
        }
        prop_assert!((q.length() - 1.0).abs() < 1e-5, "drifted to {}", q.length());
    }

    #[test]
    fn integration_follows_constant_angular_velocity(axis in unit(), speed in uniform(0.0, 10.0)) {
        // 100 steps of 10 ms at `speed` rad/s about `axis` is one turn of `speed` rad.
        let mut q = Quat::IDENTITY;
        for _ in 0..100 {
            q = q.integrate(axis * speed, 0.01);
        }
        prop_assert!(q.rotation_eq(Quat::from_axis_angle(axis, speed), 1e-3));
    }

    #[test]
    fn projections_match_glam(fov in uniform(0.3, 2.5), aspect in uniform(0.5, 3.0), near in uniform(0.01, 1.0), depth in uniform(1.0, 1000.0)) {
        let far = near + depth;
        prop_assert!(same_as_glam(&Mat4::perspective_rh(fov, aspect, near, far), glam::camera::rh::proj::directx::perspective(fov, aspect, near, far), 1e-5));
        prop_assert!(same_as_glam(&Mat4::perspective_lh(fov, aspect, near, far), glam::camera::lh::proj::directx::perspective(fov, aspect, near, far), 1e-5));
        prop_assert!(same_as_glam(&Mat4::perspective_rh_gl(fov, aspect, near, far), glam::camera::rh::proj::opengl::perspective(fov, aspect, near, far), 1e-5));
        let (l, r, b, t) = (-aspect, aspect, -1.0, 1.0);
        prop_assert!(same_as_glam(&Mat4::orthographic_rh(l, r, b, t, near, far), glam::camera::rh::proj::directx::orthographic(l, r, b, t, near, far), 1e-5));
        prop_assert!(same_as_glam(&Mat4::orthographic_lh(l, r, b, t, near, far), glam::camera::lh::proj::directx::orthographic(l, r, b, t, near, far), 1e-5));
        prop_assert!(same_as_glam(&Mat4::orthographic_rh_gl(l, r, b, t, near, far), glam::camera::rh::proj::opengl::orthographic(l, r, b, t, near, far), 1e-5));
    }

    #[test]
    fn look_at_matches_glam(eye in v3(), target in v3()) {
        prop_assume!((target - eye).length() > 1e-2);
        let dir = (target - eye).normalize();
        prop_assume!(dir.cross(Vec3::Y).length() > 1e-2);
        prop_assert!(same_as_glam(&Mat4::look_at_rh(eye, target, Vec3::Y), glam::camera::rh::view::look_at_mat4(g3(eye), g3(target), glam::Vec3::Y), 1e-4));
        prop_assert!(same_as_glam(&Mat4::look_at_lh(eye, target, Vec3::Y), glam::camera::lh::view::look_at_mat4(g3(eye), g3(target), glam::Vec3::Y), 1e-4));
        // The camera looks down -Z (right-handed): the target lands on the negative z axis.
        let seen = Mat4::look_at_rh(eye, target, Vec3::Y).transform_point3(target);
        prop_assert!(seen.x.abs() < 1e-2 * (1.0 + seen.length()) && seen.z < 0.0);
    }
}

/// One line per edge case: input, expectation.
#[test]
fn quaternion_edge_cases() {
    // slerp between identical and nearly identical rotations: no NaN, no division by ~0.
    let q = Quat::from_rotation_z(0.3);
    let tiny = q * Quat::from_rotation_x(1e-7);
    for (a, b) in [(q, q), (q, tiny), (q, -q), (q, -tiny)] {
        for t in [0.0, 0.25, 0.5, 1.0] {
            let s = a.slerp(b, t);
            assert!(s.is_finite() && s.is_normalized(), "{a:?} {b:?} {t}: {s:?}");
            assert!(s.rotation_eq(q, 1e-3));
        }
    }
    // Near-antipodal quaternions are nearly the same rotation, not opposite ones.
    let near_antipodal = Quat::from_xyzw(-q.x + 1e-4, -q.y, -q.z, -q.w).normalize();
    assert!(q.slerp(near_antipodal, 0.5).rotation_eq(q, 1e-3));

    // Rotation arcs of 0° and 180°, for every axis.
    for v in [
        Vec3::X,
        Vec3::Y,
        Vec3::Z,
        -Vec3::X,
        Vec3::new(1.0, 2.0, 3.0).normalize(),
    ] {
        assert_eq!(Quat::from_rotation_arc(v, v), Quat::IDENTITY);
        let half = Quat::from_rotation_arc(v, -v);
        assert!(half.is_normalized());
        assert!((half * v).abs_diff_eq(-v, 1e-5), "{v:?} -> {:?}", half * v);
        assert!((half.angle_between(Quat::IDENTITY) - PI).abs() < 1e-3);
    }

    // Small arcs are not rounded to the identity.
    let tiny = Vec3::new(1e-3f32.cos(), 1e-3f32.sin(), 0.0);
    let q = Quat::from_rotation_arc(Vec3::X, tiny);
    assert!(
        (q.angle_between(Quat::IDENTITY) - 1e-3).abs() < 1e-5,
        "{q:?}"
    );
    assert!((q * Vec3::X).abs_diff_eq(tiny, 1e-7));
    // Nearly opposite: the rotation still lands on `to`.
    let almost = Vec3::new(-(1e-3f32.cos()), 1e-3f32.sin(), 0.0);
    assert!((Quat::from_rotation_arc(Vec3::X, almost) * Vec3::X).abs_diff_eq(almost, 1e-5));

    // Equality up to sign.
    let q = Quat::from_rotation_z(0.3);
    assert!(q.rotation_eq(-q, 1e-6));
    assert!(!q.rotation_eq(Quat::from_rotation_z(0.4), 1e-3));

    // Tiny rotation vectors do not divide by zero.
    assert_eq!(Quat::from_scaled_axis(Vec3::ZERO), Quat::IDENTITY);
    assert!(Quat::from_scaled_axis(Vec3::new(1e-9, 0.0, 0.0)).is_normalized());
    assert_eq!(Quat::IDENTITY.to_axis_angle(), (Vec3::X, 0.0));

    // Gimbal lock still gives angles that rebuild the rotation.
    for order in EulerRot::ALL {
        for b in [FRAC_PI_2, -FRAC_PI_2] {
            let q = Quat::from_euler(order, 0.7, b, 0.2);
            let (a2, b2, c2) = q.to_euler(order);
            assert!(
                Quat::from_euler(order, a2, b2, c2).rotation_eq(q, 2e-3),
                "{order:?} {b}"
            );
        }
    }

    // Zero quaternions and vectors: None, not NaN.
    assert!(
        Quat::from_xyzw(0.0, 0.0, 0.0, 0.0)
            .try_normalize()
            .is_none()
    );
    assert!(Vec3::ZERO.try_normalize().is_none());
    assert!(Vec3::splat(f32::NAN).try_normalize().is_none());
    assert_eq!(Vec3::ZERO.normalize_or(Vec3::Y), Vec3::Y);
}

#[test]
fn euler_orders_compose_in_the_documented_order() {
    let (a, b, c) = (0.3, -0.4, 1.1);
    let x = Quat::from_rotation_x;
    let y = Quat::from_rotation_y;
    let z = Quat::from_rotation_z;
    let cases = [
        (EulerRot::XYZ, x(a) * y(b) * z(c)),
        (EulerRot::XZY, x(a) * z(b) * y(c)),
        (EulerRot::YXZ, y(a) * x(b) * z(c)),
        (EulerRot::YZX, y(a) * z(b) * x(c)),
        (EulerRot::ZXY, z(a) * x(b) * y(c)),
        (EulerRot::ZYX, z(a) * y(b) * x(c)),
    ];
    for (order, expected) in cases {
        assert!(
            Quat::from_euler(order, a, b, c).rotation_eq(expected, 1e-6),
            "{order:?}"
        );
    }
    // glam's YXZ (yaw, pitch, roll) is the same convention.
    let g = glam::Quat::from_euler(glam::EulerRot::YXZ, a, b, c);
    assert!(
        Quat::from_euler(EulerRot::YXZ, a, b, c)
            .rotation_eq(Quat::from_xyzw(g.x, g.y, g.z, g.w), 1e-6)
    );
}

#[test]
fn singular_matrices_have_no_inverse() {
    let flat = Mat4::from_scale(Vec3::new(1.0, 0.0, 1.0));
    assert!(flat.try_inverse().is_none());
    assert!(
        Mat3::from_scale(Vec3::new(1.0, 1.0, 0.0))
            .try_inverse()
            .is_none()
    );
    let nan = Mat4::from_cols(Vec4::splat(f32::NAN), Vec4::ZERO, Vec4::ZERO, Vec4::ZERO);
    assert!(nan.try_inverse().is_none());
    assert_eq!(Mat4::IDENTITY.try_inverse(), Some(Mat4::IDENTITY));
}

#[test]
fn vectors_do_what_they_say() {
    let a = Vec3::new(1.0, 2.0, 3.0);
    let b = Vec3::new(-2.0, 0.5, 4.0);
    assert_eq!(a.cross(b), Vec3::new(6.5, -10.0, 4.5));
    assert_eq!(a.cross(b).dot(a), 0.0);
    assert_eq!(a.lerp(b, 0.5), Vec3::new(-0.5, 1.25, 3.5));
    assert!((Vec3::X.angle_between(-Vec3::X) - PI).abs() < 1e-6);
    assert!(Vec3::X.angle_between(Vec3::new(1.0, 1e-4, 0.0)) > 0.0);
    for v in [Vec3::X, Vec3::Y, Vec3::Z, -Vec3::Z, a.normalize()] {
        let o = v.any_orthonormal();
        assert!(o.is_normalized() && o.dot(v).abs() < 1e-6, "{v:?} -> {o:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The SIMD forms (SSE2 on x86-64) against the portable arithmetic they replace.
    #[test]
    fn simd_forms_match_the_portable_ones(a in rotation(), b in rotation(), m in affine()) {
        let (fast, plain) = (a * b, a.mul_portable(b));
        prop_assert!((fast.to_vec4() - plain.to_vec4()).length() < 1e-6);
        let inv = m.try_inverse().unwrap();
        prop_assert!(inv.abs_diff_eq(&m.try_inverse_portable().unwrap(), 1e-4));
    }
}
