//! The phantom's shapes, in millimetres. Their fields stay `[f64; 3]`: they are written to the
//! ground-truth file as plain arrays.

use serde::{Deserialize, Serialize};

pub use crate::geometry::{Vec3, apply, mat_mul, rigid};

use nalgebra::Rotation3;

/// An ellipsoid: centre, semi-axes, and a rotation about the elevation (y) axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ellipsoid {
    pub center_mm: [f64; 3],
    pub semi_axes_mm: [f64; 3],
    pub rotation_about_y_deg: f64,
}

impl Ellipsoid {
    /// The point in the ellipsoid's own axes.
    fn local(&self, p: Vec3) -> Vec3 {
        Rotation3::from_axis_angle(&Vec3::y_axis(), -self.rotation_about_y_deg.to_radians())
            * (p - Vec3::from(self.center_mm))
    }

    /// ≤ 1 inside, > 1 outside.
    pub fn level(&self, p: Vec3) -> f64 {
        self.local(p).component_div(&Vec3::from(self.semi_axes_mm)).norm_squared()
    }

    pub fn contains(&self, p: Vec3) -> bool {
        self.level(p) <= 1.0
    }

    /// Distance from the centre to the surface along unit direction `u`.
    pub fn radius_along(&self, u: Vec3) -> f64 {
        1.0 / self.level(Vec3::from(self.center_mm) + u).sqrt()
    }

    pub fn volume_ml(&self) -> f64 {
        4.0 / 3.0 * std::f64::consts::PI * self.semi_axes_mm.iter().product::<f64>() / 1000.0
    }
}

/// A finite cylinder (flat caps): a vessel segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cylinder {
    /// Centre of the axis.
    pub center_mm: [f64; 3],
    /// Unit direction of the axis.
    pub direction: [f64; 3],
    pub radius_mm: f64,
    pub length_mm: f64,
}

impl Cylinder {
    /// Distance from the axis, and position along it (0 at the centre).
    pub fn axial(&self, p: Vec3) -> (f64, f64) {
        let d = p - Vec3::from(self.center_mm);
        let along = d.dot(&Vec3::from(self.direction));
        let radial = (d.norm_squared() - along * along).max(0.0).sqrt();
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
        assert!(e.contains(Vec3::new(1.0, 2.0, 3.0)));
        assert!(e.contains(Vec3::new(4.99, 2.0, 3.0)));
        assert!(!e.contains(Vec3::new(5.01, 2.0, 3.0)));
        assert!(e.contains(Vec3::new(1.0, 3.99, 3.0)) && !e.contains(Vec3::new(1.0, 4.01, 3.0)));
        let rotated = Ellipsoid { rotation_about_y_deg: 90.0, ..e.clone() };
        // Rotated a quarter turn about y, the long axis lies along z.
        assert!(rotated.contains(Vec3::new(1.0, 2.0, 6.9)) && !rotated.contains(Vec3::new(4.0, 2.0, 3.0)));
        assert!((e.radius_along(Vec3::x()) - 4.0).abs() < 1e-12);
        assert!((e.volume_ml() - 4.0 / 3.0 * std::f64::consts::PI * 8.0 / 1000.0).abs() < 1e-15);
    }

    #[test]
    fn cylinder_inside_on_exact_points() {
        let c = Cylinder { center_mm: [0.0; 3], direction: [0.0, 1.0, 0.0], radius_mm: 2.0, length_mm: 10.0 };
        assert!(c.contains(Vec3::new(1.9, 4.9, 0.0)));
        assert!(!c.contains(Vec3::new(2.1, 0.0, 0.0)));
        assert!(!c.contains(Vec3::new(0.0, 5.1, 0.0)));
        assert!((c.volume_ml() - std::f64::consts::PI * 4.0 * 10.0 / 1000.0).abs() < 1e-15);
    }

    #[test]
    fn the_inverse_undoes_a_rigid_pose() {
        let m = mat_mul(&rigid(2, 0.5, Vec3::new(10.0, -3.0, 2.0)), &rigid(0, -0.2, Vec3::new(1.0, 2.0, 3.0)));
        let p = Vec3::new(3.0, -7.0, 11.0);
        let back = apply(&crate::geometry::affine_inverse(&m).unwrap(), apply(&m, p));
        assert!((0..3).all(|k| (back[k] - p[k]).abs() < 1e-12));
    }
}
