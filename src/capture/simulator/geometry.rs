//! The phantom's shapes, in millimetres.

use serde::{Deserialize, Serialize};

pub use crate::geometry::{Vec3, apply, dot, mat_mul, normalize, rigid, rigid_inverse, sub};

/// An ellipsoid: centre, semi-axes, and a rotation about the elevation (y) axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ellipsoid {
    pub center_mm: Vec3,
    pub semi_axes_mm: Vec3,
    pub rotation_about_y_deg: f64,
}

impl Ellipsoid {
    /// The point in the ellipsoid's own axes.
    fn local(&self, p: Vec3) -> Vec3 {
        let d = sub(p, self.center_mm);
        let (s, c) = (-self.rotation_about_y_deg.to_radians()).sin_cos();
        [c * d[0] + s * d[2], d[1], -s * d[0] + c * d[2]]
    }

    /// ≤ 1 inside, > 1 outside.
    pub fn level(&self, p: Vec3) -> f64 {
        let l = self.local(p);
        (0..3).map(|k| (l[k] / self.semi_axes_mm[k]).powi(2)).sum()
    }

    pub fn contains(&self, p: Vec3) -> bool {
        self.level(p) <= 1.0
    }

    /// Distance from the centre to the surface along unit direction `u`.
    pub fn radius_along(&self, u: Vec3) -> f64 {
        let tip = [self.center_mm[0] + u[0], self.center_mm[1] + u[1], self.center_mm[2] + u[2]];
        1.0 / self.level(tip).sqrt()
    }

    pub fn volume_ml(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.semi_axes_mm.iter().product::<f64>() / 1000.0
    }
}

/// A finite cylinder (flat caps): a vessel segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cylinder {
    /// Centre of the axis.
    pub center_mm: Vec3,
    /// Unit direction of the axis.
    pub direction: Vec3,
    pub radius_mm: f64,
    pub length_mm: f64,
}

impl Cylinder {
    /// Distance from the axis, and position along it (0 at the centre).
    pub fn axial(&self, p: Vec3) -> (f64, f64) {
        let d = sub(p, self.center_mm);
        let along = dot(d, self.direction);
        let radial = (dot(d, d) - along * along).max(0.0).sqrt();
        (radial, along)
    }

    pub fn contains(&self, p: Vec3) -> bool {
        let (radial, along) = self.axial(p);
        radial <= self.radius_mm && along.abs() <= self.length_mm / 2.0
    }

    pub fn volume_ml(&self) -> f64 {
        std::f64::consts::PI * self.radius_mm.powi(2) * self.length_mm / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipsoid_inside_on_exact_points() {
        let e = Ellipsoid { center_mm: [1.0, 2.0, 3.0], semi_axes_mm: [4.0, 2.0, 1.0], rotation_about_y_deg: 0.0 };
        assert!(e.contains([1.0, 2.0, 3.0]));
        assert!(e.contains([4.99, 2.0, 3.0]));
        assert!(!e.contains([5.01, 2.0, 3.0]));
        assert!(e.contains([1.0, 3.99, 3.0]) && !e.contains([1.0, 4.01, 3.0]));
        let rotated = Ellipsoid { rotation_about_y_deg: 90.0, ..e.clone() };
        // Rotated a quarter turn about y, the long axis lies along z.
        assert!(rotated.contains([1.0, 2.0, 6.9]) && !rotated.contains([4.0, 2.0, 3.0]));
        assert!((e.radius_along([1.0, 0.0, 0.0]) - 4.0).abs() < 1e-12);
        assert!((e.volume_ml() - 4.0 / 3.0 * std::f64::consts::PI * 8.0 / 1000.0).abs() < 1e-15);
    }

    #[test]
    fn cylinder_inside_on_exact_points() {
        let c = Cylinder { center_mm: [0.0; 3], direction: [0.0, 1.0, 0.0], radius_mm: 2.0, length_mm: 10.0 };
        assert!(c.contains([1.9, 4.9, 0.0]));
        assert!(!c.contains([2.1, 0.0, 0.0]));
        assert!(!c.contains([0.0, 5.1, 0.0]));
        assert!((c.volume_ml() - std::f64::consts::PI * 4.0 * 10.0 / 1000.0).abs() < 1e-15);
    }

    #[test]
    fn rigid_inverse_undoes_the_transform() {
        let m = mat_mul(&rigid(2, 0.5, [10.0, -3.0, 2.0]), &rigid(0, -0.2, [1.0, 2.0, 3.0]));
        let p = [3.0, -7.0, 11.0];
        let back = apply(&rigid_inverse(&m), apply(&m, p));
        assert!((0..3).all(|k| (back[k] - p[k]).abs() < 1e-12));
    }
}
