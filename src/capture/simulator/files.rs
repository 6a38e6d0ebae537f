//! Writes a simulated sweep to disk: images and label masks as PLUS sequences with identical
//! transforms and timestamps, and the ground truth as JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{SimulationError, SimulationSpec, Simulator, TRANSFORM_NAMES};
use crate::frame::{NamedTransform, PixelData, PixelFormat};
pub use crate::io::plus::labels_path;
use crate::io::plus::split_name;
use crate::io::{SequenceSpec, SequenceWriter};

pub struct SimulationOutputs {
    pub images: PathBuf,
    pub labels: PathBuf,
    pub truth: PathBuf,
    pub frames: usize,
}

/// `sweep.mha` → `sweep.truth.json`.
pub fn truth_path(out: &Path) -> PathBuf {
    let (stem, _) = split_name(out);
    out.with_file_name(format!("{stem}.truth.json"))
}

/// Simulates `spec` into `out` (`.mha`, `.mhd` or `.seq.nrrd`) and its two siblings, calling
/// `progress(done, total)` after each frame.
pub fn write_simulation(
    spec: &SimulationSpec,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SimulationOutputs, SimulationError> {
    let mut sim = Simulator::new(spec.clone())?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SimulationError::Io { path: dir.to_path_buf(), source })?;
    }
    let sequence = SequenceSpec {
        width: spec.width_px,
        height: spec.height_px,
        pixel_format: PixelFormat::Gray8,
        spacing_mm: [spec.spacing_mm, spec.spacing_mm],
        compress: true,
        fields: super::image_fields(),
    };
    let labels_out = labels_path(out);
    let mut images = SequenceWriter::create(out, sequence.clone())?;
    let mut labels = SequenceWriter::create(&labels_out, sequence)?;
    let pixels = spec.width_px * spec.height_px;
    let (mut image, mut label) = (PixelData::Gray8(vec![0; pixels]), PixelData::Gray8(vec![0; pixels]));
    let names = TRANSFORM_NAMES.map(Arc::<str>::from);
    for i in 0..spec.frames {
        let (PixelData::Gray8(img), PixelData::Gray8(lab)) = (&mut image, &mut label) else {
            unreachable!("made as Gray8 above")
        };
        let pose = sim.render(i, img, lab)?;
        let transforms: Vec<NamedTransform> = names
            .iter()
            .zip(pose.transforms())
            .map(|(name, (matrix, status))| NamedTransform { name: name.clone(), matrix, status })
            .collect();
        images.write_frame(pose.timestamp_s, true, &transforms, &image)?;
        labels.write_frame(pose.timestamp_s, true, &transforms, &label)?;
        progress(i + 1, spec.frames);
    }
    images.finish()?;
    labels.finish()?;
    let truth = truth_path(out);
    let json = serde_json::to_string_pretty(&sim.truth()).expect("ground truth serialises");
    std::fs::write(&truth, json + "\n").map_err(|source| SimulationError::Io { path: truth.clone(), source })?;
    Ok(SimulationOutputs { images: out.to_path_buf(), labels: labels_out, truth, frames: spec.frames })
}
