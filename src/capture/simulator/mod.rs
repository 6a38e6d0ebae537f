//! The phantom simulator: a deterministic tracked freehand sweep over a synthetic phantom, with
//! exact ground truth. It is the demo input and the fixture generator for tests: images and
//! label masks, probe/reference/stylus poses, and the phantom's geometry and true volumes.
//!
//! Every frame is a pure function of (spec, frame index), so frames render independently, in any
//! order, identically on every run and machine.

mod bmode;
mod files;
pub mod geometry;
mod phantom;
mod poses;
mod rng;

use serde::{Deserialize, Serialize};

use crate::frame::{Matrix4, TransformStatus};

pub use files::{SimulationOutputs, labels_path, truth_path, write_simulation};
pub use phantom::{LABEL_BACKGROUND, LABEL_LESION, LABEL_VESSEL, Phantom};

/// Version of the ground-truth JSON layout.
pub const TRUTH_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulationSpec {
    pub frames: usize,
    pub seed: u64,
    pub width_px: usize,
    pub height_px: usize,
    /// Square pixel size.
    pub spacing_mm: f64,
    pub frame_rate_hz: f64,
    /// Timestamp of the first frame.
    pub start_time_s: f64,
    /// Probe travel along elevation over the whole sweep.
    pub sweep_length_mm: f64,
    /// Peak hand tilt about the probe's lateral axis.
    pub tilt_amplitude_deg: f64,
    /// Displayed dynamic range of the log compression.
    pub dynamic_range_db: f64,
    /// Attenuation left after time-gain compensation (round trip).
    pub attenuation_db_per_cm: f64,
}

impl Default for SimulationSpec {
    fn default() -> Self {
        SimulationSpec {
            frames: 200,
            seed: 1,
            width_px: 256,
            height_px: 256,
            spacing_mm: 0.2,
            frame_rate_hz: 30.0,
            start_time_s: 100.0,
            sweep_length_mm: 40.0,
            tilt_amplitude_deg: 3.0,
            dynamic_range_db: 50.0,
            attenuation_db_per_cm: 1.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulationError {
    #[error("simulator setting `{field}` = {value}: {message}")]
    Setting { field: &'static str, value: String, message: &'static str },
    #[error("frame {index}: {message}")]
    Frame { index: usize, message: String },
    #[error(transparent)]
    Sequence(#[from] crate::io::SequenceError),
    #[error("{path}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

impl SimulationSpec {
    pub fn validate(&self) -> Result<(), SimulationError> {
        let bad = |field, value: String, message| Err(SimulationError::Setting { field, value, message });
        if !(1..=1_000_000).contains(&self.frames) {
            return bad("frames", self.frames.to_string(), "must be 1..=1000000");
        }
        for (field, v) in [("width_px", self.width_px), ("height_px", self.height_px)] {
            if !(8..=4096).contains(&v) {
                return bad(field, v.to_string(), "must be 8..=4096");
            }
        }
        let positive = [
            ("spacing_mm", self.spacing_mm),
            ("frame_rate_hz", self.frame_rate_hz),
            ("sweep_length_mm", self.sweep_length_mm),
            ("dynamic_range_db", self.dynamic_range_db),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, v.to_string(), "must be a positive number");
            }
        }
        for (field, v) in [("start_time_s", self.start_time_s), ("attenuation_db_per_cm", self.attenuation_db_per_cm)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, v.to_string(), "must be zero or more");
            }
        }
        if !(self.tilt_amplitude_deg.is_finite() && (0.0..=30.0).contains(&self.tilt_amplitude_deg)) {
            return bad("tilt_amplitude_deg", self.tilt_amplitude_deg.to_string(), "must be 0..=30");
        }
        Ok(())
    }
}

/// The box around every pixel of `label` in a `width`-wide label image, grown by `margin_px` on
/// each side and clipped to the image: `[x0, y0, x1, y1]` in pixels, or None when the label is
/// absent. A prompt as a user would draw it around a structure of the ground truth.
pub fn label_box(labels: &[u8], width: usize, label: u8, margin_px: f32) -> Option<[f32; 4]> {
    let height = labels.len() / width;
    let mut b: Option<[usize; 4]> = None;
    for (i, _) in labels.iter().enumerate().filter(|(_, l)| **l == label) {
        let (x, y) = (i % width, i / width);
        b = Some(b.map_or([x, y, x, y], |[x0, y0, x1, y1]| [x0.min(x), y0.min(y), x1.max(x), y1.max(y)]));
    }
    let clip = |v: f32, side: usize| v.clamp(0.0, (side - 1) as f32);
    b.map(|[x0, y0, x1, y1]| {
        [
            clip(x0 as f32 - margin_px, width),
            clip(y0 as f32 - margin_px, height),
            clip(x1 as f32 + margin_px, width),
            clip(y1 as f32 + margin_px, height),
        ]
    })
}

/// Names of the transforms each frame carries, in the order [`SimulatedPose::transforms`] gives.
/// `ImageToProbe` is the (fixed) calibration, carried on every frame as PLUS does when a
/// recording includes it, so consumers can place pixels with the frame alone.
pub const TRANSFORM_NAMES: [&str; 4] = ["ProbeToTracker", "ReferenceToTracker", "StylusToTracker", "ImageToProbe"];

/// Header fields of simulated sequences: columns run across the probe face (M), rows down in
/// depth (F), as PLUS names a B-mode image's orientation.
pub fn image_fields() -> Vec<(String, String)> {
    vec![("UltrasoundImageOrientation".into(), "MF".into())]
}

/// Tracker poses and time of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedPose {
    pub index: usize,
    pub timestamp_s: f64,
    pub probe_to_tracker: Matrix4,
    pub reference_to_tracker: Matrix4,
    pub stylus_to_tracker: Matrix4,
    pub stylus_ok: bool,
    pub image_to_probe: Matrix4,
}

/// Everything a test needs to check results against.
#[derive(Debug, Clone, Serialize)]
pub struct GroundTruth {
    pub format_version: u32,
    pub spec: SimulationSpec,
    /// Geometry in the Reference frame (mm): x lateral, y elevation, z depth.
    pub phantom: Phantom,
    pub lesion_volume_ml: f64,
    /// Volume of the vessel segment (a capped cylinder wholly inside the sweep).
    pub vessel_volume_ml: f64,
    /// Calibration: pixel (column, row, 0, 1) → probe mm; row-major 4x4.
    pub image_to_probe: Matrix4,
    pub reference_to_tracker: Matrix4,
    /// How to get a pixel into the phantom's frame.
    pub chain: &'static str,
    /// Label value → structure.
    pub labels: [(u8, &'static str); 3],
    pub frames: usize,
    pub first_timestamp_s: f64,
    pub last_timestamp_s: f64,
}

impl SimulatedPose {
    /// The frame's transforms with their tracking status, named by [`TRANSFORM_NAMES`].
    pub fn transforms(&self) -> [(Matrix4, TransformStatus); 4] {
        let stylus = if self.stylus_ok { TransformStatus::Ok } else { TransformStatus::Invalid };
        [
            (self.probe_to_tracker, TransformStatus::Ok),
            (self.reference_to_tracker, TransformStatus::Ok),
            (self.stylus_to_tracker, stylus),
            (self.image_to_probe, TransformStatus::Ok),
        ]
    }
}

pub struct Simulator {
    spec: SimulationSpec,
    phantom: Phantom,
    image_to_probe: Matrix4,
    reference_to_tracker: Matrix4,
    scratch: bmode::Scratch,
}

impl Simulator {
    pub fn new(spec: SimulationSpec) -> Result<Self, SimulationError> {
        spec.validate()?;
        Ok(Simulator {
            phantom: Phantom::for_spec(&spec),
            image_to_probe: poses::image_to_probe(&spec),
            reference_to_tracker: poses::reference_to_tracker(),
            scratch: bmode::Scratch::new(spec.width_px * spec.height_px),
            spec,
        })
    }

    pub fn spec(&self) -> &SimulationSpec {
        &self.spec
    }

    pub fn phantom(&self) -> &Phantom {
        &self.phantom
    }

    pub fn image_to_probe(&self) -> Matrix4 {
        self.image_to_probe
    }

    /// Pixel → Reference for frame `index`.
    pub fn image_to_reference(&self, index: usize) -> Matrix4 {
        geometry::mat_mul(&poses::probe_to_reference(&self.spec, index), &self.image_to_probe)
    }

    /// The poses of frame `index` without rendering it.
    pub fn pose(&self, index: usize) -> SimulatedPose {
        let s = &self.spec;
        let to_tracker = |m: Matrix4| geometry::mat_mul(&self.reference_to_tracker, &m);
        SimulatedPose {
            index,
            timestamp_s: poses::timestamp_s(s, index),
            probe_to_tracker: to_tracker(poses::probe_to_reference(s, index)),
            reference_to_tracker: self.reference_to_tracker,
            stylus_to_tracker: to_tracker(poses::stylus_to_reference(s, &self.phantom.lesion, index)),
            stylus_ok: poses::stylus_visible(s, index),
            image_to_probe: self.image_to_probe,
        }
    }

    /// Renders frame `index` into the first width×height pixels of `image` and `labels`.
    /// Allocation-free.
    pub fn render(
        &mut self,
        index: usize,
        image: &mut [u8],
        labels: &mut [u8],
    ) -> Result<SimulatedPose, SimulationError> {
        let pixels = self.spec.width_px * self.spec.height_px;
        if index >= self.spec.frames {
            return Err(SimulationError::Frame {
                index,
                message: format!("the sweep has {} frames", self.spec.frames),
            });
        }
        if image.len() < pixels || labels.len() < pixels {
            return Err(SimulationError::Frame {
                index,
                message: format!("buffers of {} and {} pixels cannot hold {pixels}", image.len(), labels.len()),
            });
        }
        let settings = bmode::BModeSettings {
            width: self.spec.width_px,
            height: self.spec.height_px,
            spacing_mm: self.spec.spacing_mm,
            dynamic_range_db: self.spec.dynamic_range_db,
            attenuation_db_per_cm: self.spec.attenuation_db_per_cm,
        };
        let noise = rng::Stream::new(self.spec.seed, index as u64);
        let to_reference = self.image_to_reference(index);
        bmode::render(&settings, &self.phantom, &to_reference, noise, &mut self.scratch, image, labels);
        Ok(self.pose(index))
    }

    pub fn truth(&self) -> GroundTruth {
        let s = &self.spec;
        GroundTruth {
            format_version: TRUTH_FORMAT_VERSION,
            spec: s.clone(),
            phantom: self.phantom.clone(),
            lesion_volume_ml: self.phantom.lesion.volume_ml(),
            vessel_volume_ml: self.phantom.vessel.volume_ml(),
            image_to_probe: self.image_to_probe,
            reference_to_tracker: self.reference_to_tracker,
            chain: "ImageToReference = inverse(ReferenceToTracker) * ProbeToTracker * ImageToProbe",
            labels: [(LABEL_BACKGROUND, "background"), (LABEL_LESION, "lesion"), (LABEL_VESSEL, "vessel")],
            frames: s.frames,
            first_timestamp_s: poses::timestamp_s(s, 0),
            last_timestamp_s: poses::timestamp_s(s, s.frames - 1),
        }
    }
}

#[cfg(test)]
mod tests;
