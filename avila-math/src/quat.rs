//! `Quat`: unit quaternions for 3-D rotations, done carefully at the edges (antipodal
//! inputs, tiny angles, 180° arcs, long multiplication chains).

use std::ops::{Add, Mul, MulAssign, Neg, Sub};

use crate::mat::Mat3;
use crate::vec::{Vec3, Vec4};

/// Above this |dot| two rotations are close enough that `slerp` falls back to a
/// normalized lerp (sin θ would be below 0.03 and its division lose precision).
pub const SLERP_NLERP_THRESHOLD: f32 = 0.9995;

/// The order of three intrinsic rotations: `XYZ` is a rotation about X, then about the
/// rotated Y, then about the twice-rotated Z, i.e. `Rx(a) * Ry(b) * Rz(c)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EulerRot {
    /// `Rx(a) * Ry(b) * Rz(c)`.
    XYZ,
    /// `Rx(a) * Rz(b) * Ry(c)`.
    XZY,
    /// `Ry(a) * Rx(b) * Rz(c)`: yaw, pitch, roll for a Y-up world.
    YXZ,
    /// `Ry(a) * Rz(b) * Rx(c)`.
    YZX,
    /// `Rz(a) * Rx(b) * Ry(c)`.
    ZXY,
    /// `Rz(a) * Ry(b) * Rx(c)`: yaw, pitch, roll for a Z-up world.
    ZYX,
}

impl EulerRot {
    /// Every order.
    pub const ALL: [EulerRot; 6] = [
        EulerRot::XYZ,
        EulerRot::XZY,
        EulerRot::YXZ,
        EulerRot::YZX,
        EulerRot::ZXY,
        EulerRot::ZYX,
    ];

    /// The axes (0 = X, 1 = Y, 2 = Z) in order, and +1 for an even permutation.
    pub(crate) fn axes(self) -> (usize, usize, usize, f32) {
        match self {
            EulerRot::XYZ => (0, 1, 2, 1.0),
            EulerRot::YZX => (1, 2, 0, 1.0),
            EulerRot::ZXY => (2, 0, 1, 1.0),
            EulerRot::XZY => (0, 2, 1, -1.0),
            EulerRot::YXZ => (1, 0, 2, -1.0),
            EulerRot::ZYX => (2, 1, 0, -1.0),
        }
    }
}

/// A quaternion `xi + yj + zk + w`; rotations are the unit ones.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(16))]
pub struct Quat {
    #[allow(missing_docs)]
    pub x: f32,
    #[allow(missing_docs)]
    pub y: f32,
    #[allow(missing_docs)]
    pub z: f32,
    #[allow(missing_docs)]
    pub w: f32,
}

impl Default for Quat {
    fn default() -> Self {
        Quat::IDENTITY
    }
}

impl Quat {
    /// No rotation.
    pub const IDENTITY: Self = Self::from_xyzw(0.0, 0.0, 0.0, 1.0);

    /// A quaternion from its components (not normalized).
    #[inline]
    pub const fn from_xyzw(x: f32, y: f32, z: f32, w: f32) -> Self {
        Quat { x, y, z, w }
    }

    /// The vector part.
    #[inline]
    pub fn xyz(self) -> Vec3 {
        Vec3::new(self.x, self.y, self.z)
    }

    /// The components as a `Vec4`.
    #[inline]
    pub fn to_vec4(self) -> Vec4 {
        Vec4::new(self.x, self.y, self.z, self.w)
    }

    #[inline]
    fn from_vec4(v: Vec4) -> Self {
        Quat::from_xyzw(v.x, v.y, v.z, v.w)
    }

    /// The rotation by `angle` radians about the unit vector `axis`.
    #[inline]
    pub fn from_axis_angle(axis: Vec3, angle: f32) -> Self {
        let (s, c) = (angle * 0.5).sin_cos();
        let v = axis * s;
        Quat::from_xyzw(v.x, v.y, v.z, c)
    }

    /// The rotation by the angle `|v|` about `v` (a rotation vector); no division by ~0
    /// for tiny vectors.
    #[inline]
    pub fn from_scaled_axis(v: Vec3) -> Self {
        let angle = v.length();
        let half = angle * 0.5;
        // sin(half)/angle, by its Taylor series below 1e-4 rad.
        let k = if angle < 1e-4 {
            0.5 - half * half / 12.0
        } else {
            half.sin() / angle
        };
        let xyz = v * k;
        Quat::from_xyzw(xyz.x, xyz.y, xyz.z, half.cos())
    }

    /// The rotation about X by `angle` radians.
    #[inline]
    pub fn from_rotation_x(angle: f32) -> Self {
        let (s, c) = (angle * 0.5).sin_cos();
        Quat::from_xyzw(s, 0.0, 0.0, c)
    }

    /// The rotation about Y by `angle` radians.
    #[inline]
    pub fn from_rotation_y(angle: f32) -> Self {
        let (s, c) = (angle * 0.5).sin_cos();
        Quat::from_xyzw(0.0, s, 0.0, c)
    }

    /// The rotation about Z by `angle` radians.
    #[inline]
    pub fn from_rotation_z(angle: f32) -> Self {
        let (s, c) = (angle * 0.5).sin_cos();
        Quat::from_xyzw(0.0, 0.0, s, c)
    }

    fn from_rotation_axis(axis: usize, angle: f32) -> Self {
        match axis {
            0 => Self::from_rotation_x(angle),
            1 => Self::from_rotation_y(angle),
            _ => Self::from_rotation_z(angle),
        }
    }

    /// The rotation `R_first(a) * R_second(b) * R_third(c)` for `order`.
    pub fn from_euler(order: EulerRot, a: f32, b: f32, c: f32) -> Self {
        let (i, j, k, _) = order.axes();
        Self::from_rotation_axis(i, a)
            * Self::from_rotation_axis(j, b)
            * Self::from_rotation_axis(k, c)
    }

    /// The angles `(a, b, c)` with `from_euler(order, a, b, c)` equal to this rotation;
    /// `b` is in `[-π/2, π/2]`. At gimbal lock (`|b| = π/2`) `c` is 0.
    pub fn to_euler(self, order: EulerRot) -> (f32, f32, f32) {
        Mat3::from_quat(self).to_euler(order)
    }

    /// The shortest rotation taking unit vector `from` to unit vector `to`. Parallel
    /// inputs give the identity; opposite ones a half turn about an axis orthogonal to
    /// `from`.
    pub fn from_rotation_arc(from: Vec3, to: Vec3) -> Self {
        let d = from.dot(to);
        let c = from.cross(to);
        if d > -0.999 {
            // (from × to, 1 + from·to) is the half-angle quaternion, up to scale: exact,
            // and well conditioned everywhere but near a half turn.
            return Quat::from_xyzw(c.x, c.y, c.z, 1.0 + d).normalize();
        }
        // Near a half turn 1 + d cancels: take the axis from the cross product while it
        // still has a direction, and the angle from atan2.
        let axis = c.try_normalize().unwrap_or_else(|| from.any_orthonormal());
        Quat::from_axis_angle(axis, c.length().atan2(d))
    }

    /// The rotation of a rotation matrix (orthonormal, determinant 1), by Shepperd's
    /// method: stable for every angle.
    pub fn from_mat3(m: &Mat3) -> Self {
        let (m00, m01, m02) = (m.x_axis.x, m.x_axis.y, m.x_axis.z);
        let (m10, m11, m12) = (m.y_axis.x, m.y_axis.y, m.y_axis.z);
        let (m20, m21, m22) = (m.z_axis.x, m.z_axis.y, m.z_axis.z);
        // mCR: column C, row R.
        let trace = m00 + m11 + m22;
        let q = if trace > 0.0 {
            let s = (1.0 + trace).sqrt() * 2.0;
            Quat::from_xyzw((m12 - m21) / s, (m20 - m02) / s, (m01 - m10) / s, 0.25 * s)
        } else if m00 > m11 && m00 > m22 {
            let s = (1.0 + m00 - m11 - m22).sqrt() * 2.0;
            Quat::from_xyzw(0.25 * s, (m10 + m01) / s, (m20 + m02) / s, (m12 - m21) / s)
        } else if m11 > m22 {
            let s = (1.0 + m11 - m00 - m22).sqrt() * 2.0;
            Quat::from_xyzw((m10 + m01) / s, 0.25 * s, (m21 + m12) / s, (m20 - m02) / s)
        } else {
            let s = (1.0 + m22 - m00 - m11).sqrt() * 2.0;
            Quat::from_xyzw((m20 + m02) / s, (m21 + m12) / s, 0.25 * s, (m01 - m10) / s)
        };
        q.normalize()
    }

    /// The unit axis and the angle in `[0, π]`; the identity gives the X axis and 0.
    pub fn to_axis_angle(self) -> (Vec3, f32) {
        // q and -q are the same rotation: pick w >= 0 for the angle in [0, π].
        let q = if self.w < 0.0 { -self } else { self };
        let v = q.xyz();
        let s = v.length();
        let angle = 2.0 * s.atan2(q.w);
        match v.try_normalize() {
            Some(axis) if s > 1e-7 => (axis, angle),
            _ => (Vec3::X, 0.0),
        }
    }

    /// The rotation vector (axis times angle), the inverse of [`Quat::from_scaled_axis`].
    pub fn to_scaled_axis(self) -> Vec3 {
        let (axis, angle) = self.to_axis_angle();
        axis * angle
    }

    /// Dot product of the components.
    #[inline]
    pub fn dot(self, rhs: Self) -> f32 {
        self.to_vec4().dot(rhs.to_vec4())
    }

    /// Length.
    #[inline]
    pub fn length(self) -> f32 {
        self.to_vec4().length()
    }

    /// Squared length.
    #[inline]
    pub fn length_squared(self) -> f32 {
        self.to_vec4().length_squared()
    }

    /// Scaled to length 1 (non-finite for the zero quaternion: see [`Quat::try_normalize`]).
    #[inline]
    pub fn normalize(self) -> Self {
        Self::from_vec4(self.to_vec4().normalize())
    }

    /// Scaled to length 1, or `None` for a (near) zero or non-finite quaternion.
    #[inline]
    pub fn try_normalize(self) -> Option<Self> {
        self.to_vec4().try_normalize().map(Self::from_vec4)
    }

    /// One Newton step towards length 1, without a square root: for renormalizing after
    /// each step of a long chain of multiplications, where drift stays tiny.
    #[inline]
    pub fn renormalize_fast(self) -> Self {
        let k = 0.5 * (3.0 - self.length_squared());
        Self::from_vec4(self.to_vec4() * k)
    }

    /// Whether the length is 1 within `1e-4`.
    #[inline]
    pub fn is_normalized(self) -> bool {
        self.to_vec4().is_normalized()
    }

    /// The conjugate: the inverse rotation of a unit quaternion.
    #[inline]
    pub fn conjugate(self) -> Self {
        Quat::from_xyzw(-self.x, -self.y, -self.z, self.w)
    }

    /// The inverse of any nonzero quaternion (for unit ones, prefer [`Quat::conjugate`]).
    #[inline]
    pub fn inverse(self) -> Self {
        let c = self.conjugate().to_vec4() / self.length_squared();
        Self::from_vec4(c)
    }

    /// Rotates `v` by this unit quaternion.
    #[inline]
    pub fn mul_vec3(self, v: Vec3) -> Vec3 {
        // v' = v + w t + q × t with t = 2 q × v: 15 multiplies instead of 30.
        let q = self.xyz();
        let t = q.cross(v) * 2.0;
        v + t * self.w + q.cross(t)
    }

    /// Normalized linear interpolation along the shortest path: cheaper than `slerp`,
    /// with a non-uniform angular speed.
    pub fn nlerp(self, end: Self, t: f32) -> Self {
        let end = if self.dot(end) < 0.0 { -end } else { end };
        Self::from_vec4(self.to_vec4().lerp(end.to_vec4(), t)).normalize()
    }

    /// Spherical linear interpolation along the shortest path (`-end` when the dot is
    /// negative), at constant angular speed; a normalized lerp when the inputs are nearly
    /// identical, so it never divides by ~0.
    pub fn slerp(self, end: Self, t: f32) -> Self {
        let mut d = self.dot(end);
        let end = if d < 0.0 {
            d = -d;
            -end
        } else {
            end
        };
        if d > SLERP_NLERP_THRESHOLD {
            return Self::from_vec4(self.to_vec4().lerp(end.to_vec4(), t)).normalize();
        }
        let theta = d.min(1.0).acos();
        let sin_theta = (1.0 - d * d).sqrt();
        let a = ((1.0 - t) * theta).sin() / sin_theta;
        let b = (t * theta).sin() / sin_theta;
        Self::from_vec4(self.to_vec4() * a + end.to_vec4() * b)
    }

    /// The angle in `[0, π]` of the rotation taking `self` to `rhs`.
    #[inline]
    pub fn angle_between(self, rhs: Self) -> f32 {
        // atan2 of the relative rotation's parts: accurate near 0 and π, where acos of the
        // dot product loses half its digits (acos(1 - δ) ≈ √(2δ)).
        let d = self.conjugate() * rhs;
        2.0 * d.xyz().length().atan2(d.w.abs())
    }

    /// Whether both are the same rotation within `max_angle` radians, treating `q` and
    /// `-q` as equal (they are).
    #[inline]
    pub fn rotation_eq(self, rhs: Self, max_angle: f32) -> bool {
        self.angle_between(rhs) <= max_angle
    }

    /// The orientation after turning at angular velocity `omega` (radians per second,
    /// world frame) for `dt` seconds: the exact exponential step, renormalized.
    #[inline]
    pub fn integrate(self, omega: Vec3, dt: f32) -> Self {
        (Quat::from_scaled_axis(omega * dt) * self).normalize()
    }

    /// Whether every component is finite.
    #[inline]
    pub fn is_finite(self) -> bool {
        self.to_vec4().is_finite()
    }
}

impl Mul for Quat {
    type Output = Self;
    /// The Hamilton product: `(a * b).mul_vec3(v) == a.mul_vec3(b.mul_vec3(v))`.
    #[inline]
    fn mul(self, rhs: Self) -> Self {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            crate::sse::quat_mul(self, rhs)
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            self.mul_portable(rhs)
        }
    }
}

impl Quat {
    /// The Hamilton product in plain arithmetic (the reference for the SIMD form).
    #[inline]
    pub fn mul_portable(self, rhs: Self) -> Self {
        let (a, b) = (self, rhs);
        Quat::from_xyzw(
            a.w * b.x + a.x * b.w + a.y * b.z - a.z * b.y,
            a.w * b.y - a.x * b.z + a.y * b.w + a.z * b.x,
            a.w * b.z + a.x * b.y - a.y * b.x + a.z * b.w,
            a.w * b.w - a.x * b.x - a.y * b.y - a.z * b.z,
        )
    }
}

impl MulAssign for Quat {
    #[inline]
    fn mul_assign(&mut self, rhs: Self) {
        *self = *self * rhs;
    }
}

impl Mul<Vec3> for Quat {
    type Output = Vec3;
    #[inline]
    fn mul(self, v: Vec3) -> Vec3 {
        self.mul_vec3(v)
    }
}

impl Neg for Quat {
    type Output = Self;
    #[inline]
    fn neg(self) -> Self {
        Quat::from_xyzw(-self.x, -self.y, -self.z, -self.w)
    }
}

impl Add for Quat {
    type Output = Self;
    #[inline]
    fn add(self, rhs: Self) -> Self {
        Self::from_vec4(self.to_vec4() + rhs.to_vec4())
    }
}

impl Sub for Quat {
    type Output = Self;
    #[inline]
    fn sub(self, rhs: Self) -> Self {
        Self::from_vec4(self.to_vec4() - rhs.to_vec4())
    }
}

impl Mul<f32> for Quat {
    type Output = Self;
    #[inline]
    fn mul(self, rhs: f32) -> Self {
        Self::from_vec4(self.to_vec4() * rhs)
    }
}
