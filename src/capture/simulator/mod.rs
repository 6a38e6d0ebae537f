//! Synthetic tracked freehand sweep over a phantom. PLACEHOLDER: stub of the agreed API so the
//! crate builds; the real simulator replaces this whole file.

use crate::frame::Matrix4;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SimulationSpec {
    pub frames: usize,
    pub seed: u64,
    pub width_px: usize,
    pub height_px: usize,
    pub spacing_mm: f64,
    pub frame_rate_hz: f64,
}

impl Default for SimulationSpec {
    fn default() -> Self {
        SimulationSpec { frames: 200, seed: 1, width_px: 256, height_px: 256, spacing_mm: 0.2, frame_rate_hz: 30.0 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SimulationError(String);

pub struct SimulatedPose {
    pub index: usize,
    pub timestamp_s: f64,
    pub probe_to_tracker: Matrix4,
    pub reference_to_tracker: Matrix4,
    pub stylus_to_tracker: Matrix4,
    pub stylus_ok: bool,
}

pub struct Simulator {
    spec: SimulationSpec,
}

impl Simulator {
    pub fn new(spec: SimulationSpec) -> Result<Self, SimulationError> {
        Ok(Simulator { spec })
    }
    pub fn spec(&self) -> &SimulationSpec {
        &self.spec
    }
    pub fn render(&mut self, index: usize, image: &mut [u8], labels: &mut [u8]) -> Result<SimulatedPose, SimulationError> {
        let _ = (image, labels);
        Err(SimulationError(format!("placeholder cannot render frame {index}")))
    }
}

pub struct SimulationOutputs {
    pub images: std::path::PathBuf,
    pub labels: std::path::PathBuf,
    pub truth: std::path::PathBuf,
    pub frames: usize,
}

pub fn labels_path(out: &std::path::Path) -> std::path::PathBuf {
    out.with_extension("labels.mha")
}

pub fn truth_path(out: &std::path::Path) -> std::path::PathBuf {
    out.with_extension("truth.json")
}

pub fn write_simulation(
    spec: &SimulationSpec,
    out: &std::path::Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SimulationOutputs, SimulationError> {
    let _ = (spec, out, progress);
    Err(SimulationError("placeholder".into()))
}
