//! Points, vectors and 4x4 homogeneous transforms in millimetres, as tracked frames carry them
//! (row-major, PLUS's layout), and finding a transform between two named frames.

mod chain;

pub use chain::{ChainError, resolve, split_transform_name};

use crate::frame::Matrix4;

pub type Vec3 = [f64; 3];

pub fn mat_mul(a: &Matrix4, b: &Matrix4) -> Matrix4 {
    let mut m = [0.0; 16];
    for r in 0..4 {
        for c in 0..4 {
            m[r * 4 + c] = (0..4).map(|k| a[r * 4 + k] * b[k * 4 + c]).sum();
        }
    }
    m
}

/// Applies a homogeneous matrix to a point.
pub fn apply(m: &Matrix4, p: Vec3) -> Vec3 {
    [0, 1, 2].map(|r| m[r * 4] * p[0] + m[r * 4 + 1] * p[1] + m[r * 4 + 2] * p[2] + m[r * 4 + 3])
}

/// Inverse of a rigid transform (rotation + translation).
pub fn rigid_inverse(m: &Matrix4) -> Matrix4 {
    let mut inv = [0.0; 16];
    for r in 0..3 {
        for c in 0..3 {
            inv[r * 4 + c] = m[c * 4 + r];
        }
        inv[r * 4 + 3] = -(0..3).map(|k| m[k * 4 + r] * m[k * 4 + 3]).sum::<f64>();
    }
    inv[15] = 1.0;
    inv
}

/// Inverse of an affine transform (a calibration may scale pixels to mm), or None when the
/// linear part is singular.
pub fn affine_inverse(m: &Matrix4) -> Option<Matrix4> {
    let a = |r: usize, c: usize| m[r * 4 + c];
    // Cofactors of the 3x3 linear part.
    let cof = [
        a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1),
        a(1, 2) * a(2, 0) - a(1, 0) * a(2, 2),
        a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0),
        a(0, 2) * a(2, 1) - a(0, 1) * a(2, 2),
        a(0, 0) * a(2, 2) - a(0, 2) * a(2, 0),
        a(0, 1) * a(2, 0) - a(0, 0) * a(2, 1),
        a(0, 1) * a(1, 2) - a(0, 2) * a(1, 1),
        a(0, 2) * a(1, 0) - a(0, 0) * a(1, 2),
        a(0, 0) * a(1, 1) - a(0, 1) * a(1, 0),
    ];
    let det = a(0, 0) * cof[0] + a(0, 1) * cof[1] + a(0, 2) * cof[2];
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let mut inv = [0.0; 16];
    for r in 0..3 {
        for c in 0..3 {
            // The inverse is the transposed cofactor matrix over the determinant.
            inv[r * 4 + c] = cof[c * 3 + r] / det;
        }
    }
    for r in 0..3 {
        inv[r * 4 + 3] = -(0..3).map(|k| inv[r * 4 + k] * m[k * 4 + 3]).sum::<f64>();
    }
    inv[15] = 1.0;
    Some(inv)
}

/// Rotation about x, y or z (angle in radians) followed by a translation.
pub fn rigid(axis: usize, angle: f64, t: Vec3) -> Matrix4 {
    let (s, c) = angle.sin_cos();
    let mut m = crate::frame::IDENTITY;
    let (i, j) = match axis {
        0 => (1, 2),
        1 => (2, 0),
        _ => (0, 1),
    };
    m[i * 4 + i] = c;
    m[i * 4 + j] = -s;
    m[j * 4 + i] = s;
    m[j * 4 + j] = c;
    m[3] = t[0];
    m[7] = t[1];
    m[11] = t[2];
    m
}

pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn add(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

pub fn scale(a: Vec3, s: f64) -> Vec3 {
    [a[0] * s, a[1] * s, a[2] * s]
}

pub fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

pub fn normalize(a: Vec3) -> Vec3 {
    let n = dot(a, a).sqrt();
    [a[0] / n, a[1] / n, a[2] / n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_inverse_undoes_scale_rotation_and_shift() {
        let mut m = mat_mul(&rigid(2, 0.4, [3.0, -2.0, 7.0]), &rigid(0, 1.1, [0.5, 0.0, 0.0]));
        for r in 0..3 {
            m[r * 4] *= 0.2; // pixel spacing on the first axis
        }
        let inv = affine_inverse(&m).unwrap();
        let p = [10.0, -4.0, 2.5];
        let back = apply(&inv, apply(&m, p));
        assert!(norm(sub(back, p)) < 1e-12, "{back:?}");
        assert!(affine_inverse(&[0.0; 16]).is_none());
    }

    #[test]
    fn cross_follows_the_right_hand_rule() {
        assert_eq!(cross([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]), [0.0, 0.0, 1.0]);
    }
}
