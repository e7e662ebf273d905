//! `Mat3` and `Mat4`: column-major matrices acting on column vectors (`m * v`), with the
//! transforms, projections and inverses a renderer or physics step needs.

use std::ops::{Add, Mul, MulAssign, Sub};

use crate::quat::{EulerRot, Quat};
use crate::vec::{Vec3, Vec4};

/// A 3×3 matrix stored as three columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mat3 {
    /// First column.
    pub x_axis: Vec3,
    /// Second column.
    pub y_axis: Vec3,
    /// Third column.
    pub z_axis: Vec3,
}

impl Default for Mat3 {
    fn default() -> Self {
        Mat3::IDENTITY
    }
}

impl Mat3 {
    /// The identity.
    pub const IDENTITY: Self = Self::from_cols(Vec3::X, Vec3::Y, Vec3::Z);
    /// All zeros.
    pub const ZERO: Self = Self::from_cols(Vec3::ZERO, Vec3::ZERO, Vec3::ZERO);

    /// A matrix from its columns.
    #[inline]
    pub const fn from_cols(x_axis: Vec3, y_axis: Vec3, z_axis: Vec3) -> Self {
        Mat3 {
            x_axis,
            y_axis,
            z_axis,
        }
    }

    /// Column `i` (0..3).
    ///
    /// # Panics
    /// If `i > 2`.
    #[inline]
    pub fn col(&self, i: usize) -> Vec3 {
        [self.x_axis, self.y_axis, self.z_axis][i]
    }

    /// Row `i` (0..3).
    ///
    /// # Panics
    /// If `i > 2`.
    #[inline]
    pub fn row(&self, i: usize) -> Vec3 {
        Vec3::new(self.x_axis[i], self.y_axis[i], self.z_axis[i])
    }

    /// The rotation matrix of a unit quaternion.
    #[inline]
    pub fn from_quat(q: Quat) -> Self {
        let (x2, y2, z2) = (q.x + q.x, q.y + q.y, q.z + q.z);
        let (xx, xy, xz) = (q.x * x2, q.x * y2, q.x * z2);
        let (yy, yz, zz) = (q.y * y2, q.y * z2, q.z * z2);
        let (wx, wy, wz) = (q.w * x2, q.w * y2, q.w * z2);
        Mat3::from_cols(
            Vec3::new(1.0 - (yy + zz), xy + wz, xz - wy),
            Vec3::new(xy - wz, 1.0 - (xx + zz), yz + wx),
            Vec3::new(xz + wy, yz - wx, 1.0 - (xx + yy)),
        )
    }

    /// The rotation by `angle` radians about the unit vector `axis`.
    #[inline]
    pub fn from_axis_angle(axis: Vec3, angle: f32) -> Self {
        Mat3::from_quat(Quat::from_axis_angle(axis, angle))
    }

    /// A scaling matrix.
    #[inline]
    pub fn from_scale(s: Vec3) -> Self {
        Mat3::from_cols(
            Vec3::new(s.x, 0.0, 0.0),
            Vec3::new(0.0, s.y, 0.0),
            Vec3::new(0.0, 0.0, s.z),
        )
    }

    /// The rotation `R_first(a) * R_second(b) * R_third(c)` for `order`.
    #[inline]
    pub fn from_euler(order: EulerRot, a: f32, b: f32, c: f32) -> Self {
        Mat3::from_quat(Quat::from_euler(order, a, b, c))
    }

    /// Element at `row`, `col`.
    #[inline]
    fn at(&self, row: usize, col: usize) -> f32 {
        self.col(col)[row]
    }

    /// The Euler angles of this rotation matrix for `order` (see [`Quat::to_euler`]).
    pub fn to_euler(&self, order: EulerRot) -> (f32, f32, f32) {
        let (i, j, k, parity) = order.axes();
        let sin_b = (parity * self.at(i, k)).clamp(-1.0, 1.0);
        let b = sin_b.asin();
        if sin_b.abs() < 1.0 - 1e-6 {
            let a = (-parity * self.at(j, k)).atan2(self.at(k, k));
            let c = (-parity * self.at(i, j)).atan2(self.at(i, i));
            (a, b, c)
        } else {
            // Gimbal lock: a and c turn about the same axis; put it all in a.
            let a = (parity * self.at(k, j)).atan2(self.at(j, j));
            (a, b, 0.0)
        }
    }

    /// The transpose.
    #[inline]
    pub fn transpose(&self) -> Self {
        Mat3::from_cols(self.row(0), self.row(1), self.row(2))
    }

    /// The determinant.
    #[inline]
    pub fn determinant(&self) -> f32 {
        self.z_axis.dot(self.x_axis.cross(self.y_axis))
    }

    /// The inverse, or `None` for a singular (or non-finite) matrix.
    pub fn try_inverse(&self) -> Option<Self> {
        let c0 = self.y_axis.cross(self.z_axis);
        let c1 = self.z_axis.cross(self.x_axis);
        let c2 = self.x_axis.cross(self.y_axis);
        let det = self.z_axis.dot(c2);
        if det == 0.0 || !det.is_finite() {
            return None;
        }
        let inv_det = det.recip();
        Some(Mat3::from_cols(c0 * inv_det, c1 * inv_det, c2 * inv_det).transpose())
    }

    /// The inverse; non-finite for a singular matrix (see [`Mat3::try_inverse`]).
    #[inline]
    pub fn inverse(&self) -> Self {
        self.try_inverse().unwrap_or(Mat3::from_cols(
            Vec3::splat(f32::NAN),
            Vec3::splat(f32::NAN),
            Vec3::splat(f32::NAN),
        ))
    }

    /// `self * v`.
    #[inline]
    pub fn mul_vec3(&self, v: Vec3) -> Vec3 {
        self.x_axis * v.x + self.y_axis * v.y + self.z_axis * v.z
    }

    /// Whether every element is within `max_abs_diff` of `rhs`'s.
    pub fn abs_diff_eq(&self, rhs: &Self, max_abs_diff: f32) -> bool {
        self.x_axis.abs_diff_eq(rhs.x_axis, max_abs_diff)
            && self.y_axis.abs_diff_eq(rhs.y_axis, max_abs_diff)
            && self.z_axis.abs_diff_eq(rhs.z_axis, max_abs_diff)
    }
}

impl Mul for Mat3 {
    type Output = Self;
    #[inline]
    fn mul(self, rhs: Self) -> Self {
        Mat3::from_cols(
            self.mul_vec3(rhs.x_axis),
            self.mul_vec3(rhs.y_axis),
            self.mul_vec3(rhs.z_axis),
        )
    }
}

impl Mul<Vec3> for Mat3 {
    type Output = Vec3;
    #[inline]
    fn mul(self, v: Vec3) -> Vec3 {
        self.mul_vec3(v)
    }
}

/// A 4×4 matrix stored as four columns: affine transforms and projections.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(16))]
pub struct Mat4 {
    /// First column.
    pub x_axis: Vec4,
    /// Second column.
    pub y_axis: Vec4,
    /// Third column.
    pub z_axis: Vec4,
    /// Fourth column (the translation of an affine transform).
    pub w_axis: Vec4,
}

impl Default for Mat4 {
    fn default() -> Self {
        Mat4::IDENTITY
    }
}

impl Mat4 {
    /// The identity.
    pub const IDENTITY: Self = Self::from_cols(
        Vec4::new(1.0, 0.0, 0.0, 0.0),
        Vec4::new(0.0, 1.0, 0.0, 0.0),
        Vec4::new(0.0, 0.0, 1.0, 0.0),
        Vec4::new(0.0, 0.0, 0.0, 1.0),
    );

    /// A matrix from its columns.
    #[inline]
    pub const fn from_cols(x_axis: Vec4, y_axis: Vec4, z_axis: Vec4, w_axis: Vec4) -> Self {
        Mat4 {
            x_axis,
            y_axis,
            z_axis,
            w_axis,
        }
    }

    /// Column `i` (0..4).
    ///
    /// # Panics
    /// If `i > 3`.
    #[inline]
    pub fn col(&self, i: usize) -> Vec4 {
        [self.x_axis, self.y_axis, self.z_axis, self.w_axis][i]
    }

    /// Row `i` (0..4).
    ///
    /// # Panics
    /// If `i > 3`.
    #[inline]
    pub fn row(&self, i: usize) -> Vec4 {
        Vec4::new(
            self.x_axis[i],
            self.y_axis[i],
            self.z_axis[i],
            self.w_axis[i],
        )
    }

    /// A translation.
    #[inline]
    pub fn from_translation(t: Vec3) -> Self {
        let mut m = Mat4::IDENTITY;
        m.w_axis = t.extend(1.0);
        m
    }

    /// A scaling.
    #[inline]
    pub fn from_scale(s: Vec3) -> Self {
        Mat4::from_cols(
            Vec4::new(s.x, 0.0, 0.0, 0.0),
            Vec4::new(0.0, s.y, 0.0, 0.0),
            Vec4::new(0.0, 0.0, s.z, 0.0),
            Vec4::new(0.0, 0.0, 0.0, 1.0),
        )
    }

    /// The rotation of a unit quaternion.
    #[inline]
    pub fn from_quat(q: Quat) -> Self {
        Mat4::from_mat3(&Mat3::from_quat(q))
    }

    /// The upper-left 3×3 block from `m`, the rest from the identity.
    #[inline]
    pub fn from_mat3(m: &Mat3) -> Self {
        Mat4::from_cols(
            m.x_axis.extend(0.0),
            m.y_axis.extend(0.0),
            m.z_axis.extend(0.0),
            Vec4::new(0.0, 0.0, 0.0, 1.0),
        )
    }

    /// Scale, then rotate, then translate.
    #[inline]
    pub fn from_scale_rotation_translation(scale: Vec3, rotation: Quat, translation: Vec3) -> Self {
        let r = Mat3::from_quat(rotation);
        Mat4::from_cols(
            (r.x_axis * scale.x).extend(0.0),
            (r.y_axis * scale.y).extend(0.0),
            (r.z_axis * scale.z).extend(0.0),
            translation.extend(1.0),
        )
    }

    /// Rotate, then translate.
    #[inline]
    pub fn from_rotation_translation(rotation: Quat, translation: Vec3) -> Self {
        Mat4::from_scale_rotation_translation(Vec3::ONE, rotation, translation)
    }

    /// The upper-left 3×3 block.
    #[inline]
    pub fn to_mat3(&self) -> Mat3 {
        Mat3::from_cols(
            self.x_axis.truncate(),
            self.y_axis.truncate(),
            self.z_axis.truncate(),
        )
    }

    /// The scale, rotation and translation of an affine transform without shear
    /// (a negative determinant puts the reflection in the x scale).
    pub fn to_scale_rotation_translation(&self) -> (Vec3, Quat, Vec3) {
        let det = self.to_mat3().determinant();
        let sign = if det < 0.0 { -1.0 } else { 1.0 };
        let scale = Vec3::new(
            self.x_axis.truncate().length() * sign,
            self.y_axis.truncate().length(),
            self.z_axis.truncate().length(),
        );
        let rotation = Quat::from_mat3(&Mat3::from_cols(
            self.x_axis.truncate() / scale.x,
            self.y_axis.truncate() / scale.y,
            self.z_axis.truncate() / scale.z,
        ));
        (scale, rotation, self.w_axis.truncate())
    }

    /// A right-handed view matrix: camera at `eye` looking in direction `dir` (unit), with
    /// `up` (unit) pointing up.
    pub fn look_to_rh(eye: Vec3, dir: Vec3, up: Vec3) -> Self {
        let f = dir;
        let s = f.cross(up).normalize();
        let u = s.cross(f);
        Mat4::from_cols(
            Vec4::new(s.x, u.x, -f.x, 0.0),
            Vec4::new(s.y, u.y, -f.y, 0.0),
            Vec4::new(s.z, u.z, -f.z, 0.0),
            Vec4::new(-eye.dot(s), -eye.dot(u), eye.dot(f), 1.0),
        )
    }

    /// A right-handed view matrix: camera at `eye` looking at `center`, `up` (unit) up.
    #[inline]
    pub fn look_at_rh(eye: Vec3, center: Vec3, up: Vec3) -> Self {
        Mat4::look_to_rh(eye, (center - eye).normalize(), up)
    }

    /// A left-handed view matrix: camera at `eye` looking in direction `dir` (unit).
    pub fn look_to_lh(eye: Vec3, dir: Vec3, up: Vec3) -> Self {
        let f = dir;
        let s = up.cross(f).normalize();
        let u = f.cross(s);
        Mat4::from_cols(
            Vec4::new(s.x, u.x, f.x, 0.0),
            Vec4::new(s.y, u.y, f.y, 0.0),
            Vec4::new(s.z, u.z, f.z, 0.0),
            Vec4::new(-eye.dot(s), -eye.dot(u), -eye.dot(f), 1.0),
        )
    }

    /// A left-handed view matrix: camera at `eye` looking at `center`.
    #[inline]
    pub fn look_at_lh(eye: Vec3, center: Vec3, up: Vec3) -> Self {
        Mat4::look_to_lh(eye, (center - eye).normalize(), up)
    }

    /// Right-handed perspective projection to depth `[0, 1]` (Vulkan, Metal, wgpu,
    /// Direct3D): vertical field of view in radians, width/height, near and far planes.
    pub fn perspective_rh(fov_y: f32, aspect: f32, z_near: f32, z_far: f32) -> Self {
        let (s, c) = (0.5 * fov_y).sin_cos();
        let h = c / s;
        let w = h / aspect;
        let r = z_far / (z_near - z_far);
        Mat4::from_cols(
            Vec4::new(w, 0.0, 0.0, 0.0),
            Vec4::new(0.0, h, 0.0, 0.0),
            Vec4::new(0.0, 0.0, r, -1.0),
            Vec4::new(0.0, 0.0, r * z_near, 0.0),
        )
    }

    /// Left-handed perspective projection to depth `[0, 1]`.
    pub fn perspective_lh(fov_y: f32, aspect: f32, z_near: f32, z_far: f32) -> Self {
        let (s, c) = (0.5 * fov_y).sin_cos();
        let h = c / s;
        let w = h / aspect;
        let r = z_far / (z_far - z_near);
        Mat4::from_cols(
            Vec4::new(w, 0.0, 0.0, 0.0),
            Vec4::new(0.0, h, 0.0, 0.0),
            Vec4::new(0.0, 0.0, r, 1.0),
            Vec4::new(0.0, 0.0, -r * z_near, 0.0),
        )
    }

    /// Right-handed perspective projection to depth `[-1, 1]` (OpenGL).
    pub fn perspective_rh_gl(fov_y: f32, aspect: f32, z_near: f32, z_far: f32) -> Self {
        let inv_length = 1.0 / (z_near - z_far);
        let f = 1.0 / (0.5 * fov_y).tan();
        let a = f / aspect;
        let b = (z_near + z_far) * inv_length;
        let c = (2.0 * z_near * z_far) * inv_length;
        Mat4::from_cols(
            Vec4::new(a, 0.0, 0.0, 0.0),
            Vec4::new(0.0, f, 0.0, 0.0),
            Vec4::new(0.0, 0.0, b, -1.0),
            Vec4::new(0.0, 0.0, c, 0.0),
        )
    }

    /// Right-handed orthographic projection to depth `[0, 1]`.
    pub fn orthographic_rh(
        left: f32,
        right: f32,
        bottom: f32,
        top: f32,
        near: f32,
        far: f32,
    ) -> Self {
        let rcp_width = 1.0 / (right - left);
        let rcp_height = 1.0 / (top - bottom);
        let r = 1.0 / (near - far);
        Mat4::from_cols(
            Vec4::new(rcp_width + rcp_width, 0.0, 0.0, 0.0),
            Vec4::new(0.0, rcp_height + rcp_height, 0.0, 0.0),
            Vec4::new(0.0, 0.0, r, 0.0),
            Vec4::new(
                -(left + right) * rcp_width,
                -(top + bottom) * rcp_height,
                r * near,
                1.0,
            ),
        )
    }

    /// Left-handed orthographic projection to depth `[0, 1]`.
    pub fn orthographic_lh(
        left: f32,
        right: f32,
        bottom: f32,
        top: f32,
        near: f32,
        far: f32,
    ) -> Self {
        let mut m = Mat4::orthographic_rh(left, right, bottom, top, near, far);
        m.z_axis.z = -m.z_axis.z;
        m
    }

    /// Right-handed orthographic projection to depth `[-1, 1]` (OpenGL).
    pub fn orthographic_rh_gl(
        left: f32,
        right: f32,
        bottom: f32,
        top: f32,
        near: f32,
        far: f32,
    ) -> Self {
        let a = 2.0 / (right - left);
        let b = 2.0 / (top - bottom);
        let c = -2.0 / (far - near);
        Mat4::from_cols(
            Vec4::new(a, 0.0, 0.0, 0.0),
            Vec4::new(0.0, b, 0.0, 0.0),
            Vec4::new(0.0, 0.0, c, 0.0),
            Vec4::new(
                -(right + left) / (right - left),
                -(top + bottom) / (top - bottom),
                -(far + near) / (far - near),
                1.0,
            ),
        )
    }

    /// The transpose.
    #[inline]
    pub fn transpose(&self) -> Self {
        Mat4::from_cols(self.row(0), self.row(1), self.row(2), self.row(3))
    }

    /// `self * v`.
    #[inline]
    pub fn mul_vec4(&self, v: Vec4) -> Vec4 {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            crate::sse::mat4_mul_vec4(self, v)
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            self.x_axis * v.x + self.y_axis * v.y + self.z_axis * v.z + self.w_axis * v.w
        }
    }

    /// Transforms a point (`w = 1`), dividing by the resulting `w` (for projections).
    #[inline]
    pub fn project_point3(&self, p: Vec3) -> Vec3 {
        self.mul_vec4(p.extend(1.0)).project()
    }

    /// Transforms a point of an affine transform (`w = 1`, no division).
    #[inline]
    pub fn transform_point3(&self, p: Vec3) -> Vec3 {
        (self.x_axis * p.x + self.y_axis * p.y + self.z_axis * p.z + self.w_axis).truncate()
    }

    /// Transforms a direction (`w = 0`: translation does not apply).
    #[inline]
    pub fn transform_vector3(&self, v: Vec3) -> Vec3 {
        (self.x_axis * v.x + self.y_axis * v.y + self.z_axis * v.z).truncate()
    }

    /// The determinant.
    pub fn determinant(&self) -> f32 {
        self.adjugate_and_determinant().1
    }

    #[inline]
    fn adjugate_and_determinant(&self) -> (Mat4, f32) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            crate::sse::mat4_adjugate_and_determinant(self)
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            self.adjugate_and_determinant_portable()
        }
    }

    /// The inverse in plain arithmetic (the reference for the SIMD form), or `None`.
    pub fn try_inverse_portable(&self) -> Option<Self> {
        let (adjugate, det) = self.adjugate_and_determinant_portable();
        (det != 0.0 && det.is_finite()).then(|| adjugate * det.recip())
    }

    /// The adjugate (transpose of the cofactor matrix) and the determinant, by 2×2
    /// sub-determinants shared between cofactors.
    #[inline]
    fn adjugate_and_determinant_portable(&self) -> (Mat4, f32) {
        // mCR: column C, row R.
        let [m00, m01, m02, m03] = self.x_axis.to_array();
        let [m10, m11, m12, m13] = self.y_axis.to_array();
        let [m20, m21, m22, m23] = self.z_axis.to_array();
        let [m30, m31, m32, m33] = self.w_axis.to_array();

        let coef00 = m22 * m33 - m32 * m23;
        let coef02 = m12 * m33 - m32 * m13;
        let coef03 = m12 * m23 - m22 * m13;
        let coef04 = m21 * m33 - m31 * m23;
        let coef06 = m11 * m33 - m31 * m13;
        let coef07 = m11 * m23 - m21 * m13;
        let coef08 = m21 * m32 - m31 * m22;
        let coef10 = m11 * m32 - m31 * m12;
        let coef11 = m11 * m22 - m21 * m12;
        let coef12 = m20 * m33 - m30 * m23;
        let coef14 = m10 * m33 - m30 * m13;
        let coef15 = m10 * m23 - m20 * m13;
        let coef16 = m20 * m32 - m30 * m22;
        let coef18 = m10 * m32 - m30 * m12;
        let coef19 = m10 * m22 - m20 * m12;
        let coef20 = m20 * m31 - m30 * m21;
        let coef22 = m10 * m31 - m30 * m11;
        let coef23 = m10 * m21 - m20 * m11;

        let fac0 = Vec4::new(coef00, coef00, coef02, coef03);
        let fac1 = Vec4::new(coef04, coef04, coef06, coef07);
        let fac2 = Vec4::new(coef08, coef08, coef10, coef11);
        let fac3 = Vec4::new(coef12, coef12, coef14, coef15);
        let fac4 = Vec4::new(coef16, coef16, coef18, coef19);
        let fac5 = Vec4::new(coef20, coef20, coef22, coef23);

        let vec0 = Vec4::new(m10, m00, m00, m00);
        let vec1 = Vec4::new(m11, m01, m01, m01);
        let vec2 = Vec4::new(m12, m02, m02, m02);
        let vec3 = Vec4::new(m13, m03, m03, m03);

        let inv0 =
            vec1.mul_elementwise(fac0) - vec2.mul_elementwise(fac1) + vec3.mul_elementwise(fac2);
        let inv1 =
            vec0.mul_elementwise(fac0) - vec2.mul_elementwise(fac3) + vec3.mul_elementwise(fac4);
        let inv2 =
            vec0.mul_elementwise(fac1) - vec1.mul_elementwise(fac3) + vec3.mul_elementwise(fac5);
        let inv3 =
            vec0.mul_elementwise(fac2) - vec1.mul_elementwise(fac4) + vec2.mul_elementwise(fac5);

        let sign_a = Vec4::new(1.0, -1.0, 1.0, -1.0);
        let sign_b = Vec4::new(-1.0, 1.0, -1.0, 1.0);
        let adjugate = Mat4::from_cols(
            inv0.mul_elementwise(sign_a),
            inv1.mul_elementwise(sign_b),
            inv2.mul_elementwise(sign_a),
            inv3.mul_elementwise(sign_b),
        );
        let row0 = Vec4::new(
            adjugate.x_axis.x,
            adjugate.y_axis.x,
            adjugate.z_axis.x,
            adjugate.w_axis.x,
        );
        let det = self.x_axis.dot(row0);
        (adjugate, det)
    }

    /// The inverse, or `None` for a singular (or non-finite) matrix.
    #[inline]
    pub fn try_inverse(&self) -> Option<Self> {
        let (adjugate, det) = self.adjugate_and_determinant();
        if det == 0.0 || !det.is_finite() {
            return None;
        }
        Some(adjugate * det.recip())
    }

    /// The inverse; non-finite for a singular matrix (see [`Mat4::try_inverse`]).
    #[inline]
    pub fn inverse(&self) -> Self {
        let (adjugate, det) = self.adjugate_and_determinant();
        adjugate * det.recip()
    }

    /// Whether every element is within `max_abs_diff` of `rhs`'s.
    pub fn abs_diff_eq(&self, rhs: &Self, max_abs_diff: f32) -> bool {
        (0..4).all(|i| self.col(i).abs_diff_eq(rhs.col(i), max_abs_diff))
    }

    /// The columns as one array, column after column.
    pub fn to_cols_array(&self) -> [f32; 16] {
        let mut out = [0.0; 16];
        for i in 0..4 {
            out[i * 4..i * 4 + 4].copy_from_slice(&self.col(i).to_array());
        }
        out
    }
}

impl Mul for Mat4 {
    type Output = Self;
    #[inline]
    fn mul(self, rhs: Self) -> Self {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            crate::sse::mat4_mul(&self, &rhs)
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        Mat4::from_cols(
            self.mul_vec4(rhs.x_axis),
            self.mul_vec4(rhs.y_axis),
            self.mul_vec4(rhs.z_axis),
            self.mul_vec4(rhs.w_axis),
        )
    }
}

impl MulAssign for Mat4 {
    #[inline]
    fn mul_assign(&mut self, rhs: Self) {
        *self = *self * rhs;
    }
}

impl Mul<Vec4> for Mat4 {
    type Output = Vec4;
    #[inline]
    fn mul(self, v: Vec4) -> Vec4 {
        self.mul_vec4(v)
    }
}

impl Mul<f32> for Mat4 {
    type Output = Self;
    #[inline]
    fn mul(self, k: f32) -> Self {
        Mat4::from_cols(
            self.x_axis * k,
            self.y_axis * k,
            self.z_axis * k,
            self.w_axis * k,
        )
    }
}

impl Add for Mat4 {
    type Output = Self;
    #[inline]
    fn add(self, rhs: Self) -> Self {
        Mat4::from_cols(
            self.x_axis + rhs.x_axis,
            self.y_axis + rhs.y_axis,
            self.z_axis + rhs.z_axis,
            self.w_axis + rhs.w_axis,
        )
    }
}

impl Sub for Mat4 {
    type Output = Self;
    #[inline]
    fn sub(self, rhs: Self) -> Self {
        Mat4::from_cols(
            self.x_axis - rhs.x_axis,
            self.y_axis - rhs.y_axis,
            self.z_axis - rhs.z_axis,
            self.w_axis - rhs.w_axis,
        )
    }
}
