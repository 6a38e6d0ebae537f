//! Reconstructs a whole recording: reads the sequence (and its label masks) frame by frame in
//! constant memory, places each frame, and compounds it into the grey and label volumes. What
//! `sonoflow reconstruct` and the PLUS comparison run.

use std::path::{Path, PathBuf};

use crate::frame::{Matrix4, NamedTransform, PixelData, PixelFormat};
use crate::io::plus::{SequenceError, SequenceReader};

use super::grid::{GridError, OutputGrid};
use super::holes::fill_holes;
use super::labels::LabelVolume;
use super::paste::GreyVolume;
use super::poses::{PoseError, recording_poses};
use super::settings::ReconSettings;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconError {
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("settings: {0}")]
    Settings(String),
}

/// Counts of what happened to the frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub frames: usize,
    pub inserted: usize,
    /// Frames whose ImageToReference could not be resolved (an INVALID or missing transform,
    /// no tracked frames around the pose time).
    pub skipped_untracked: usize,
    /// Frames whose image is flagged INVALID.
    pub skipped_image: usize,
    /// Voxels whose accumulation buffer saturated.
    pub saturated_voxels: u64,
}

pub struct Reconstruction {
    pub grid: OutputGrid,
    /// Grey levels after hole filling.
    pub grey: Vec<u8>,
    /// Accumulation buffer (256 per whole pixel; 0: no pixel reached the voxel).
    pub accumulation: Vec<u16>,
    pub labels: Option<Vec<u8>>,
    pub counts: FrameCounts,
}

/// Reconstructs `images` (and `labels`, a mask sequence frame for frame) with `settings` and the
/// fixed `calibration` transforms; `grid` overrides the settings' grid. `progress(done, total)`
/// is called after each frame.
pub fn reconstruct_sequence(
    images: &Path,
    labels: Option<&Path>,
    settings: &ReconSettings,
    calibration: &[NamedTransform],
    grid: Option<OutputGrid>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Reconstruction, ReconError> {
    settings.validate().map_err(|e| ReconError::Settings(e.to_string()))?;
    let mut reader = SequenceReader::open(images)?;
    let header = reader.header().clone();
    if header.pixel_format != PixelFormat::Gray8 {
        return Err(ReconError::Input {
            path: images.to_path_buf(),
            message: format!("{} pixels: reconstruction takes 8-bit grey frames", header.pixel_format),
        });
    }
    let mut label_reader = labels.map(SequenceReader::open).transpose()?;
    if let (Some(r), Some(path)) = (&label_reader, labels) {
        let h = r.header();
        if (h.width, h.height, h.frame_count, h.pixel_format)
            != (header.width, header.height, header.frame_count, PixelFormat::Gray8)
        {
            return Err(ReconError::Input {
                path: path.to_path_buf(),
                message: format!(
                    "masks of {}x{}x{} {} do not match the {}x{}x{} images",
                    h.width, h.height, h.frame_count, h.pixel_format, header.width, header.height, header.frame_count
                ),
            });
        }
    }
    let poses = poses_of(&reader, settings, calibration);
    let mut counts = FrameCounts { frames: poses.len(), ..Default::default() };
    for p in &poses {
        match p {
            Ok(_) => {}
            Err(PoseError::ImageInvalid) => counts.skipped_image += 1,
            Err(_) => counts.skipped_untracked += 1,
        }
    }
    let grid = match grid {
        Some(g) => g,
        None => OutputGrid::for_frames(poses.iter().flatten().copied(), header.width, header.height, settings)?,
    };
    let (w, h) = (header.width, header.height);
    let mut grey = GreyVolume::new(grid, settings, w, h);
    let mut label_volume = label_reader.as_ref().map(|_| LabelVolume::new(grid, settings, w, h));
    let mut pixels = PixelData::zeroed(PixelFormat::Gray8, w * h);
    let mut mask = PixelData::zeroed(PixelFormat::Gray8, w * h);
    let total = poses.len();
    while let Some(index) = reader.read_next(&mut pixels)? {
        if let Some(r) = label_reader.as_mut() {
            r.read_next(&mut mask)?;
        }
        if let Ok(pose) = &poses[index] {
            let (PixelData::Gray8(px), PixelData::Gray8(m)) = (&pixels, &mask) else {
                unreachable!("both buffers are made Gray8 above")
            };
            if grey.insert(px, w, h, pose) {
                counts.inserted += 1;
            }
            if let Some(lv) = label_volume.as_mut() {
                lv.insert(m, w, h, pose);
            }
        }
        progress(index + 1, total);
    }
    counts.saturated_voxels = grey.saturated;
    let filled = fill_holes(&grey.values, &grey.acc, grid.dims, &settings.hole_filling, settings.threads);
    Ok(Reconstruction { grid, grey: filled, accumulation: grey.acc, labels: label_volume.map(|l| l.labels()), counts })
}

/// The grid [`reconstruct_sequence`] would make for `images` (explicit, else PLUS's bounding box
/// of its tracked frames), without reading any pixels: the live stage takes it when a recording
/// is replayed, so the whole sweep fits.
pub fn recording_grid(
    images: &Path,
    settings: &ReconSettings,
    calibration: &[NamedTransform],
) -> Result<OutputGrid, ReconError> {
    let reader = SequenceReader::open(images)?;
    let header = reader.header();
    let poses = poses_of(&reader, settings, calibration);
    Ok(OutputGrid::for_frames(poses.into_iter().flatten(), header.width, header.height, settings)?)
}

/// Each frame's ImageToReference (or why it has none), as the settings name and time them.
fn poses_of(
    reader: &SequenceReader,
    settings: &ReconSettings,
    calibration: &[NamedTransform],
) -> Vec<Result<Matrix4, PoseError>> {
    recording_poses(
        reader.frames(),
        calibration,
        &settings.image_frame,
        &settings.reference_frame,
        settings.pose_time_offset_s,
    )
}

/// The poses that [`reconstruct_sequence`] would use (tools and tests).
pub fn sequence_poses(
    images: &Path,
    settings: &ReconSettings,
    calibration: &[NamedTransform],
) -> Result<Vec<Option<Matrix4>>, ReconError> {
    let reader = SequenceReader::open(images)?;
    Ok(poses_of(&reader, settings, calibration).into_iter().map(Result::ok).collect())
}
