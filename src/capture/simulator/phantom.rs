//! The phantom: a hypoechoic ellipsoid lesion and an anechoic vessel segment in soft tissue, in
//! the Reference frame (x lateral, y elevation = sweep direction, z depth below the skin, mm).
//! Sizes and positions jitter slightly with the seed but always stay inside the swept region.

use serde::Serialize;

use super::SimulationSpec;
use super::geometry::{Cylinder, Ellipsoid, Vec3};
use super::rng::uniform;

/// Label values in the ground-truth masks.
pub const LABEL_BACKGROUND: u8 = 0;
pub const LABEL_LESION: u8 = 1;
pub const LABEL_VESSEL: u8 = 2;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phantom {
    pub lesion: Ellipsoid,
    pub vessel: Cylinder,
}

impl Phantom {
    /// The phantom for a spec: placed relative to the field of view so any image size works.
    pub fn for_spec(spec: &SimulationSpec) -> Self {
        let width_mm = spec.width_px as f64 * spec.spacing_mm;
        let depth_mm = spec.height_px as f64 * spec.spacing_mm;
        let j = |salt, lo, hi| uniform(spec.seed, salt, lo, hi);
        // Lesion: left of centre, mid-depth, about a sixth of the field wide.
        let a = width_mm * 0.16 * j(1, 0.9, 1.1);
        let lesion = Ellipsoid {
            center_mm: [-width_mm * 0.1 * j(2, 0.8, 1.2), 0.0, depth_mm * 0.43 * j(3, 0.95, 1.05)],
            semi_axes_mm: [a, (spec.sweep_length_mm * 0.15).min(a * 0.8), depth_mm * 0.1 * j(4, 0.9, 1.1)],
            rotation_about_y_deg: 20.0 * j(5, 0.5, 1.5),
        };
        // Vessel: right of centre, deeper, running roughly along the sweep, capped within it.
        let direction = Vec3::new(0.1 * j(6, -1.0, 1.0), 1.0, 0.05 * j(7, -1.0, 1.0)).normalize().into();
        let vessel = Cylinder {
            center_mm: [width_mm * 0.23, 0.0, depth_mm * 0.6],
            direction,
            radius_mm: depth_mm * 0.06 * j(8, 0.9, 1.1),
            length_mm: spec.sweep_length_mm * 0.6,
        };
        Phantom { lesion, vessel }
    }

    /// Label at a point: the lesion wins where the shapes overlap.
    pub fn label(&self, p: Vec3) -> u8 {
        if self.lesion.contains(p) {
            LABEL_LESION
        } else if self.vessel.contains(p) {
            LABEL_VESSEL
        } else {
            LABEL_BACKGROUND
        }
    }
}
