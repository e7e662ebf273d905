//! `Vec2`, `Vec3`, `Vec4`: f32 vectors with the operations a game or physics engine uses.

use std::ops::{Add, AddAssign, Div, DivAssign, Index, Mul, MulAssign, Neg, Sub, SubAssign};

/// Lengths below this are treated as zero by `try_normalize` and friends.
pub const NORMALIZE_EPSILON: f32 = 1e-12;

macro_rules! vector {
    ($(#[$meta:meta])* $name:ident, $n:literal, $($field:ident),+) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Default)]
        pub struct $name {
            $(
                #[allow(missing_docs)]
                pub $field: f32,
            )+
        }

        impl $name {
            /// All components zero.
            pub const ZERO: Self = Self { $($field: 0.0),+ };
            /// All components one.
            pub const ONE: Self = Self { $($field: 1.0),+ };

            /// A vector from its components.
            #[inline]
            pub const fn new($($field: f32),+) -> Self {
                Self { $($field),+ }
            }

            /// Every component set to `v`.
            #[inline]
            pub const fn splat(v: f32) -> Self {
                Self { $($field: v),+ }
            }

            /// The components as an array.
            #[inline]
            pub const fn to_array(self) -> [f32; $n] {
                [$(self.$field),+]
            }

            /// A vector from an array of components.
            #[inline]
            pub const fn from_array(a: [f32; $n]) -> Self {
                let [$($field),+] = a;
                Self { $($field),+ }
            }

            /// Dot product.
            #[inline]
            pub fn dot(self, rhs: Self) -> f32 {
                0.0 $(+ self.$field * rhs.$field)+
            }

            /// Squared length (no square root).
            #[inline]
            pub fn length_squared(self) -> f32 {
                self.dot(self)
            }

            /// Length.
            #[inline]
            pub fn length(self) -> f32 {
                self.length_squared().sqrt()
            }

            /// `1 / length`; infinite for the zero vector.
            #[inline]
            pub fn length_recip(self) -> f32 {
                self.length().recip()
            }

            /// Distance to `rhs`.
            #[inline]
            pub fn distance(self, rhs: Self) -> f32 {
                (self - rhs).length()
            }

            /// Squared distance to `rhs`.
            #[inline]
            pub fn distance_squared(self, rhs: Self) -> f32 {
                (self - rhs).length_squared()
            }

            /// This vector scaled to length 1. The zero (or a non-finite) vector gives
            /// non-finite components: use [`Self::try_normalize`] when that can happen.
            #[inline]
            pub fn normalize(self) -> Self {
                self * self.length_recip()
            }

            /// This vector scaled to length 1, or `None` when its length is zero, tiny or
            /// not finite.
            #[inline]
            pub fn try_normalize(self) -> Option<Self> {
                let len = self.length();
                (len.is_finite() && len > NORMALIZE_EPSILON).then(|| self * len.recip())
            }

            /// [`Self::try_normalize`], or `fallback` when it fails.
            #[inline]
            pub fn normalize_or(self, fallback: Self) -> Self {
                self.try_normalize().unwrap_or(fallback)
            }

            /// Whether the length is 1 within `1e-4`.
            #[inline]
            pub fn is_normalized(self) -> bool {
                (self.length_squared() - 1.0).abs() <= 2e-4
            }

            /// Linear interpolation: `self` at `t = 0`, `rhs` at `t = 1`.
            #[inline]
            pub fn lerp(self, rhs: Self, t: f32) -> Self {
                self + (rhs - self) * t
            }

            /// Component-wise minimum.
            #[inline]
            pub fn min(self, rhs: Self) -> Self {
                Self { $($field: self.$field.min(rhs.$field)),+ }
            }

            /// Component-wise maximum.
            #[inline]
            pub fn max(self, rhs: Self) -> Self {
                Self { $($field: self.$field.max(rhs.$field)),+ }
            }

            /// Component-wise clamp.
            #[inline]
            pub fn clamp(self, lo: Self, hi: Self) -> Self {
                self.max(lo).min(hi)
            }

            /// Component-wise absolute value.
            #[inline]
            pub fn abs(self) -> Self {
                Self { $($field: self.$field.abs()),+ }
            }

            /// Component-wise product.
            #[inline]
            pub fn mul_elementwise(self, rhs: Self) -> Self {
                Self { $($field: self.$field * rhs.$field),+ }
            }

            /// Whether every component is finite.
            #[inline]
            pub fn is_finite(self) -> bool {
                true $(&& self.$field.is_finite())+
            }

            /// Whether every component is within `max_abs_diff` of `rhs`'s.
            #[inline]
            pub fn abs_diff_eq(self, rhs: Self, max_abs_diff: f32) -> bool {
                true $(&& (self.$field - rhs.$field).abs() <= max_abs_diff)+
            }
        }

        impl Add for $name {
            type Output = Self;
            #[inline]
            fn add(self, rhs: Self) -> Self {
                Self { $($field: self.$field + rhs.$field),+ }
            }
        }

        impl Sub for $name {
            type Output = Self;
            #[inline]
            fn sub(self, rhs: Self) -> Self {
                Self { $($field: self.$field - rhs.$field),+ }
            }
        }

        impl Mul<f32> for $name {
            type Output = Self;
            #[inline]
            fn mul(self, rhs: f32) -> Self {
                Self { $($field: self.$field * rhs),+ }
            }
        }

        impl Mul<$name> for f32 {
            type Output = $name;
            #[inline]
            fn mul(self, rhs: $name) -> $name {
                rhs * self
            }
        }

        impl Div<f32> for $name {
            type Output = Self;
            #[inline]
            fn div(self, rhs: f32) -> Self {
                Self { $($field: self.$field / rhs),+ }
            }
        }

        impl Neg for $name {
            type Output = Self;
            #[inline]
            fn neg(self) -> Self {
                Self { $($field: -self.$field),+ }
            }
        }

        impl AddAssign for $name {
            #[inline]
            fn add_assign(&mut self, rhs: Self) {
                *self = *self + rhs;
            }
        }

        impl SubAssign for $name {
            #[inline]
            fn sub_assign(&mut self, rhs: Self) {
                *self = *self - rhs;
            }
        }

        impl MulAssign<f32> for $name {
            #[inline]
            fn mul_assign(&mut self, rhs: f32) {
                *self = *self * rhs;
            }
        }

        impl DivAssign<f32> for $name {
            #[inline]
            fn div_assign(&mut self, rhs: f32) {
                *self = *self / rhs;
            }
        }

        impl Index<usize> for $name {
            type Output = f32;
            /// # Panics
            /// If `i` is not a component index.
            #[inline]
            fn index(&self, i: usize) -> &f32 {
                [$(&self.$field),+][i]
            }
        }

        impl From<[f32; $n]> for $name {
            #[inline]
            fn from(a: [f32; $n]) -> Self {
                Self::from_array(a)
            }
        }

        impl From<$name> for [f32; $n] {
            #[inline]
            fn from(v: $name) -> Self {
                v.to_array()
            }
        }
    };
}

vector!(
    /// A 2-D vector.
    Vec2, 2, x, y
);
vector!(
    /// A 3-D vector.
    Vec3, 3, x, y, z
);
vector!(
    /// A 4-D vector (also a homogeneous point or direction).
    #[repr(C, align(16))]
    Vec4, 4, x, y, z, w
);

impl Vec2 {
    /// The x axis.
    pub const X: Self = Self::new(1.0, 0.0);
    /// The y axis.
    pub const Y: Self = Self::new(0.0, 1.0);

    /// The z component of the 3-D cross product: positive when `rhs` is counter-clockwise.
    #[inline]
    pub fn perp_dot(self, rhs: Self) -> f32 {
        self.x * rhs.y - self.y * rhs.x
    }

    /// This vector rotated by 90° counter-clockwise.
    #[inline]
    pub fn perp(self) -> Self {
        Self::new(-self.y, self.x)
    }

    /// Extends with `z`.
    #[inline]
    pub fn extend(self, z: f32) -> Vec3 {
        Vec3::new(self.x, self.y, z)
    }
}

impl Vec3 {
    /// The x axis.
    pub const X: Self = Self::new(1.0, 0.0, 0.0);
    /// The y axis.
    pub const Y: Self = Self::new(0.0, 1.0, 0.0);
    /// The z axis.
    pub const Z: Self = Self::new(0.0, 0.0, 1.0);

    /// Cross product (right-handed).
    #[inline]
    pub fn cross(self, rhs: Self) -> Self {
        Self::new(
            self.y * rhs.z - self.z * rhs.y,
            self.z * rhs.x - self.x * rhs.z,
            self.x * rhs.y - self.y * rhs.x,
        )
    }

    /// Extends with `w`.
    #[inline]
    pub fn extend(self, w: f32) -> Vec4 {
        Vec4::new(self.x, self.y, self.z, w)
    }

    /// Drops `z`.
    #[inline]
    pub fn truncate(self) -> Vec2 {
        Vec2::new(self.x, self.y)
    }

    /// A unit vector orthogonal to this unit vector (any of them).
    #[inline]
    pub fn any_orthonormal(self) -> Self {
        // Frisvad / Duff et al.: branch on the sign of z, no division by ~0.
        let sign = 1.0f32.copysign(self.z);
        let a = -1.0 / (sign + self.z);
        let b = self.x * self.y * a;
        Self::new(1.0 + sign * self.x * self.x * a, sign * b, -sign * self.x)
    }

    /// The angle to `rhs` in radians, in `[0, π]`.
    #[inline]
    pub fn angle_between(self, rhs: Self) -> f32 {
        // atan2 of |a×b| and a·b is accurate near 0 and π, where acos is not.
        self.cross(rhs).length().atan2(self.dot(rhs))
    }
}

impl Vec4 {
    /// Drops `w`.
    #[inline]
    pub fn truncate(self) -> Vec3 {
        Vec3::new(self.x, self.y, self.z)
    }

    /// `xyz / w`: the 3-D point of a homogeneous one.
    #[inline]
    pub fn project(self) -> Vec3 {
        self.truncate() / self.w
    }
}
