//! Math for AVL: f32 vectors, quaternions and matrices for games and physics, and SIMD
//! distance kernels (with batch and top-k forms) for vector search.
//!
//! ```
//! use avila_math::{Mat4, Quat, Vec3};
//! use std::f32::consts::FRAC_PI_2;
//!
//! let turn = Quat::from_rotation_y(FRAC_PI_2);
//! let v = turn * Vec3::X;
//! assert!(v.abs_diff_eq(-Vec3::Z, 1e-6));
//!
//! let model = Mat4::from_rotation_translation(turn, Vec3::new(1.0, 2.0, 3.0));
//! let back = model.inverse().transform_point3(model.transform_point3(Vec3::ONE));
//! assert!(back.abs_diff_eq(Vec3::ONE, 1e-5));
//!
//! let a = [0.5f32; 128];
//! assert_eq!(avila_math::distance::dot(&a, &a), 32.0);
//! ```
//!
//! Conventions: right-handed, column vectors (`m * v`), column-major storage, angles in
//! radians, `[0, 1]` depth for projections unless the name ends in `_gl`. Types are f32
//! only (no f64 variants yet). On x86-64 the hot operations (quaternion and 4×4 products,
//! 4×4 inverse) use SSE2, which the architecture guarantees. `unsafe` code lives in the SIMD kernels alone (`distance::x86`,
//! `distance::aarch64`), where intrinsics need it; see their module docs.

pub mod distance;
mod mat;
mod quat;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse;
mod vec;

pub use mat::{Mat3, Mat4};
pub use quat::{EulerRot, Quat, SLERP_NLERP_THRESHOLD};
pub use vec::{NORMALIZE_EPSILON, Vec2, Vec3, Vec4};
