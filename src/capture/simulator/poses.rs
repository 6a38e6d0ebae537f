//! Where the probe and the stylus are on each frame.
//!
//! The probe translates along elevation (y) over the sweep length with a slow sinusoidal tilt,
//! roll and lateral drift, as a hand does. The tracker sees the Reference at a fixed, non-trivial
//! pose, so consumers must apply the full chain
//! `ImageToReference = inverse(ReferenceToTracker) · ProbeToTracker · ImageToProbe`.
//! The stylus tip comes within about 1 mm of the lesion surface mid-sweep and backs off again,
//! and the tracker loses it for a short stretch (status INVALID).

use std::f64::consts::{PI, TAU};

use super::SimulationSpec;
use super::geometry::{Ellipsoid, Vec3, mat_mul, rigid};
use crate::frame::Matrix4;

/// Pixel (column, row) → probe mm: columns across the probe face (centred), rows down in depth.
/// The third column scales the slice axis like the pixels so the matrix is invertible.
pub fn image_to_probe(spec: &SimulationSpec) -> Matrix4 {
    let s = spec.spacing_mm;
    let half = (spec.width_px as f64 - 1.0) / 2.0 * s;
    [s, 0.0, 0.0, -half, 0.0, 0.0, s, 0.0, 0.0, s, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
}

/// A fixed pose of the Reference (the phantom) in the tracker's frame.
pub fn reference_to_tracker() -> Matrix4 {
    mat_mul(&rigid(2, 30f64.to_radians(), Vec3::new(120.0, -45.0, 260.0)), &rigid(0, 10f64.to_radians(), Vec3::zeros()))
}

/// Fraction of the sweep done at frame `i` (0 to 1).
fn progress(spec: &SimulationSpec, i: usize) -> f64 {
    if spec.frames > 1 { i as f64 / (spec.frames - 1) as f64 } else { 0.5 }
}

/// The probe in the Reference frame.
pub fn probe_to_reference(spec: &SimulationSpec, i: usize) -> Matrix4 {
    let t = progress(spec, i);
    let y = (t - 0.5) * spec.sweep_length_mm;
    let amp = spec.tilt_amplitude_deg.to_radians();
    let tilt = amp * (TAU * 1.5 * t).sin();
    let roll = 0.5 * amp * (TAU * t).cos();
    let drift = 1.0 * (PI * t).sin();
    mat_mul(&rigid(1, roll, Vec3::new(drift, y, 0.0)), &rigid(0, tilt, Vec3::zeros()))
}

/// The stylus in the Reference frame: its origin is the tip.
pub fn stylus_to_reference(spec: &SimulationSpec, lesion: &Ellipsoid, i: usize) -> Matrix4 {
    let t = progress(spec, i);
    // Approach from above and to the side; closest (1 mm) at mid-sweep.
    let u = Vec3::new(0.3, 0.2, -1.0).normalize();
    let gap = 1.0 + 14.0 * (1.0 - (PI * t).sin());
    let r = lesion.radius_along(u) + gap;
    let tip = Vec3::from(lesion.center_mm) + u * r;
    mat_mul(&rigid(1, 0.3, tip), &rigid(0, 2.8, Vec3::zeros()))
}

/// The tracker cannot see the stylus for a short stretch (occlusion).
pub fn stylus_visible(spec: &SimulationSpec, i: usize) -> bool {
    let t = progress(spec, i);
    !(0.30..0.35).contains(&t)
}

pub fn timestamp_s(spec: &SimulationSpec, i: usize) -> f64 {
    spec.start_time_s + i as f64 / spec.frame_rate_hz
}
