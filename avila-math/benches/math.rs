//! avila-math against glam, operation by operation, in the same groups.
//!
//! `cargo bench -p avila-math --bench math`, then
//! `python3 benches/criterion_ratios.py math/ --baseline glam`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

/// Inputs: 1024 of each, walked in a loop so the work is not one value in registers.
const N: usize = 1024;

fn seeds() -> Vec<[f32; 4]> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..N)
        .map(|_| {
            let mut v = [0.0f32; 4];
            for c in &mut v {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = (x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            }
            v
        })
        .collect()
}

fn quats(s: &[[f32; 4]]) -> (Vec<avila_math::Quat>, Vec<glam::Quat>) {
    let ours: Vec<avila_math::Quat> = s
        .iter()
        .map(|v| avila_math::Quat::from_xyzw(v[0], v[1], v[2], v[3] + 1.5).normalize())
        .collect();
    let theirs = ours
        .iter()
        .map(|q| glam::Quat::from_xyzw(q.x, q.y, q.z, q.w))
        .collect();
    (ours, theirs)
}

fn mats(s: &[[f32; 4]]) -> (Vec<avila_math::Mat4>, Vec<glam::Mat4>) {
    let (q, _) = quats(s);
    let ours: Vec<avila_math::Mat4> = s
        .iter()
        .zip(&q)
        .map(|(v, r)| {
            avila_math::Mat4::from_scale_rotation_translation(
                avila_math::Vec3::new(1.0 + v[0].abs(), 1.0 + v[1].abs(), 1.0 + v[2].abs()),
                *r,
                avila_math::Vec3::new(v[3], v[0], v[1]),
            )
        })
        .collect();
    let theirs = ours
        .iter()
        .map(|m| glam::Mat4::from_cols_array(&m.to_cols_array()))
        .collect();
    (ours, theirs)
}

fn bench(c: &mut Criterion) {
    let s = seeds();
    let (qa, ga) = quats(&s);
    let (mut qb, mut gb) = quats(&s);
    qb.rotate_left(1);
    gb.rotate_left(1);
    let va: Vec<avila_math::Vec3> = s
        .iter()
        .map(|v| avila_math::Vec3::new(v[0], v[1], v[2] + 2.0))
        .collect();
    let gv: Vec<glam::Vec3> = va.iter().map(|v| glam::Vec3::new(v.x, v.y, v.z)).collect();
    let (ma, gma) = mats(&s);
    let (mut mb, mut gmb) = mats(&s);
    mb.rotate_left(1);
    gmb.rotate_left(1);

    let mut g = c.benchmark_group("math/quat*quat");
    g.bench_function("glam", |b| {
        b.iter(|| {
            let mut acc = glam::Quat::IDENTITY;
            for (x, y) in ga.iter().zip(&gb) {
                acc = black_box(*x * *y) * acc;
            }
            acc
        })
    });
    g.bench_function("avila", |b| {
        b.iter(|| {
            let mut acc = avila_math::Quat::IDENTITY;
            for (x, y) in qa.iter().zip(&qb) {
                acc = black_box(*x * *y) * acc;
            }
            acc
        })
    });
    g.finish();

    let mut g = c.benchmark_group("math/quat*vec3");
    g.bench_function("glam", |b| {
        b.iter(|| {
            let mut acc = glam::Vec3::ZERO;
            for (q, v) in ga.iter().zip(&gv) {
                acc += *q * *v;
            }
            acc
        })
    });
    g.bench_function("avila", |b| {
        b.iter(|| {
            let mut acc = avila_math::Vec3::ZERO;
            for (q, v) in qa.iter().zip(&va) {
                acc += *q * *v;
            }
            acc
        })
    });
    g.finish();

    let mut g = c.benchmark_group("math/mat4*mat4");
    g.bench_function("glam", |b| {
        b.iter(|| {
            let mut out = glam::Mat4::ZERO;
            for (x, y) in gma.iter().zip(&gmb) {
                out += black_box(*x * *y);
            }
            out
        })
    });
    g.bench_function("avila", |b| {
        b.iter(|| {
            let mut out = avila_math::Mat4::from_cols(
                avila_math::Vec4::ZERO,
                avila_math::Vec4::ZERO,
                avila_math::Vec4::ZERO,
                avila_math::Vec4::ZERO,
            );
            for (x, y) in ma.iter().zip(&mb) {
                out = out + black_box(*x * *y);
            }
            out
        })
    });
    g.finish();

    let mut g = c.benchmark_group("math/mat4-inverse");
    g.bench_function("glam", |b| {
        b.iter(|| {
            let mut out = glam::Mat4::ZERO;
            for m in &gma {
                out += black_box(m.inverse());
            }
            out
        })
    });
    g.bench_function("avila", |b| {
        b.iter(|| {
            let mut out = avila_math::Mat4::from_cols(
                avila_math::Vec4::ZERO,
                avila_math::Vec4::ZERO,
                avila_math::Vec4::ZERO,
                avila_math::Vec4::ZERO,
            );
            for m in &ma {
                out = out + black_box(m.inverse());
            }
            out
        })
    });
    g.finish();

    let mut g = c.benchmark_group("math/vec3-normalize");
    g.bench_function("glam", |b| {
        b.iter(|| {
            let mut acc = glam::Vec3::ZERO;
            for v in &gv {
                acc += black_box(*v).normalize();
            }
            acc
        })
    });
    g.bench_function("avila", |b| {
        b.iter(|| {
            let mut acc = avila_math::Vec3::ZERO;
            for v in &va {
                acc += black_box(*v).normalize();
            }
            acc
        })
    });
    g.finish();
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
    targets = bench
}
criterion_main!(benches);
