//! Points, vectors and 4x4 homogeneous transforms in millimetres, as tracked frames carry them
//! (row-major, PLUS's layout), and finding a transform between two named frames.
//!
//! The math is nalgebra's. Frames keep their transforms as plain row-major `[f64; 16]`
//! ([`Matrix4`]): that is PLUS's layout, what recordings hold, and a `Copy` array the hot path
//! moves around freely; [`to_na`] and [`from_na`] bridge the two at the edge of each operation.

mod chain;

pub use chain::{ChainError, resolve, split_transform_name};

use nalgebra as na;

use crate::frame::Matrix4;

/// A point or direction in mm. Configs and reports keep `[f64; 3]` on the wire and convert with
/// `Vec3::from(array)` / `v.into()`.
pub type Vec3 = na::Vector3<f64>;

/// A frame's row-major transform as an nalgebra matrix.
pub fn to_na(m: &Matrix4) -> na::Matrix4<f64> {
    na::Matrix4::from_row_slice(m)
}

/// An nalgebra matrix as a frame's row-major transform.
pub fn from_na(m: &na::Matrix4<f64>) -> Matrix4 {
    std::array::from_fn(|i| m[(i / 4, i % 4)])
}

/// `a · b`: apply `b` first, then `a`.
pub fn mat_mul(a: &Matrix4, b: &Matrix4) -> Matrix4 {
    from_na(&(to_na(a) * to_na(b)))
}

/// Applies a transform to a point. The bottom row is taken as (0 0 0 1): tracked and calibration
/// transforms are affine, so there is no perspective divide.
pub fn apply(m: &Matrix4, p: Vec3) -> Vec3 {
    to_na(m).fixed_view::<3, 4>(0, 0) * p.push(1.0)
}

/// Inverse of an affine transform (a calibration may scale pixels to mm), or None when the
/// linear part is singular (|det| < 1e-12) or not finite.
///
/// Inverts the 3×3 linear part and moves the translation through it, rather than inverting the
/// general 4×4: the result stays exactly affine (bottom row 0 0 0 1), and nalgebra's 3×3 inverse
/// is the closed-form cofactor one, so reconstructions keep their figures to the bit.
pub fn affine_inverse(m: &Matrix4) -> Option<Matrix4> {
    let m = to_na(m);
    let linear = m.fixed_view::<3, 3>(0, 0).into_owned();
    let det = linear.determinant();
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let inverse = linear.try_inverse()?;
    let translation = -(inverse * m.fixed_view::<3, 1>(0, 3));
    let mut out = na::Matrix4::identity();
    out.fixed_view_mut::<3, 3>(0, 0).copy_from(&inverse);
    out.fixed_view_mut::<3, 1>(0, 3).copy_from(&translation);
    Some(from_na(&out))
}

/// Rotation about x, y or z (`axis` 0, 1, 2; angle in radians) followed by a translation.
pub fn rigid(axis: usize, angle: f64, t: Vec3) -> Matrix4 {
    let axis = match axis {
        0 => Vec3::x_axis(),
        1 => Vec3::y_axis(),
        _ => Vec3::z_axis(),
    };
    // A rotation matrix, not a quaternion: its entries are exactly cos and ±sin.
    let pose = na::IsometryMatrix3::from_parts(t.into(), na::Rotation3::from_axis_angle(&axis, angle));
    from_na(&pose.to_homogeneous())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_inverse_undoes_scale_rotation_and_shift() {
        let mut m = mat_mul(&rigid(2, 0.4, Vec3::new(3.0, -2.0, 7.0)), &rigid(0, 1.1, Vec3::new(0.5, 0.0, 0.0)));
        for r in 0..3 {
            m[r * 4] *= 0.2; // pixel spacing on the first axis
        }
        let inv = affine_inverse(&m).unwrap();
        let p = Vec3::new(10.0, -4.0, 2.5);
        let back = apply(&inv, apply(&m, p));
        assert!((back - p).norm() < 1e-12, "{back:?}");
        // Both ways round: the product is the identity.
        let id = mat_mul(&m, &inv);
        assert!(id.iter().zip(crate::frame::IDENTITY).all(|(a, b)| (a - b).abs() < 1e-12), "{id:?}");
        assert_eq!(inv[12..], [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn affine_inverse_refuses_singular_and_non_finite_linear_parts() {
        assert!(affine_inverse(&[0.0; 16]).is_none());
        // A plane squashed flat: the z column is zero, the translation is not the problem.
        let mut flat = rigid(1, 0.3, Vec3::new(1.0, 2.0, 3.0));
        for r in 0..3 {
            flat[r * 4 + 2] = 0.0;
        }
        assert!(affine_inverse(&flat).is_none());
        // Tiny but regular scales pass; below the 1e-12 determinant floor they do not.
        let scaled = |s: f64| [s, 0.0, 0.0, 0.0, 0.0, s, 0.0, 0.0, 0.0, 0.0, s, 0.0, 0.0, 0.0, 0.0, 1.0];
        assert!(affine_inverse(&scaled(1e-3)).is_some());
        assert!(affine_inverse(&scaled(1e-5)).is_none());
        let mut nan = crate::frame::IDENTITY;
        nan[5] = f64::NAN;
        assert!(affine_inverse(&nan).is_none());
    }

    #[test]
    fn the_bridge_keeps_plus_row_major_order() {
        let m: Matrix4 = std::array::from_fn(|i| i as f64);
        let n = to_na(&m);
        assert_eq!(n[(0, 3)], 3.0, "row 0, column 3 is the x translation");
        assert_eq!(n[(2, 1)], 9.0);
        assert_eq!(from_na(&n), m);
    }

    #[test]
    fn rigid_rotates_right_handed_then_translates() {
        // A quarter turn about z takes x to y; the translation comes after the rotation.
        let m = rigid(2, std::f64::consts::FRAC_PI_2, Vec3::new(10.0, 0.0, 0.0));
        let p = apply(&m, Vec3::x());
        assert!((p - Vec3::new(10.0, 1.0, 0.0)).norm() < 1e-15, "{p:?}");
        assert_eq!(rigid(0, 0.0, Vec3::zeros()), crate::frame::IDENTITY);
    }

    #[test]
    fn the_cross_product_follows_the_right_hand_rule() {
        assert_eq!(Vec3::x().cross(&Vec3::y()), Vec3::z());
    }
}
