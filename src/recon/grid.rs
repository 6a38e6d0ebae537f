//! The output grid: axis-aligned in the Reference frame, either given explicitly or the bounding
//! box of every inserted frame's (clipped) image rectangle, computed as PLUS does: the corners of
//! pixel centres `[clip x0 .. min(width-1, clip x0 + clip width)]` (likewise in y) mapped to
//! Reference, origin at the minimum corner, `round(span / spacing) + 1` voxels per axis.
//!
//! The voxel count follows PLUS's regression baseline for the spine phantom (147×106×105 for
//! spans of 146.3, 105.3 and 103.85 voxels: rounded, not truncated as older PLUS did nor raised
//! as its current source reads). Nearest-neighbour insertion reaches half a voxel past the last
//! centre, so rounding still takes every pixel of the box.

use crate::frame::Matrix4;
use crate::geometry::{Vec3, apply};

use super::settings::ReconSettings;
use super::volume::VolumeGeometry;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    #[error("no frame has a valid {0} pose, so there is no extent to reconstruct")]
    NoValidFrames(String),
    #[error(
        "a grid of {dims:?} voxels would take {needed_mb:.0} MB, over max_memory_mb = {cap_mb:.0}; \
         coarsen output_spacing_mm, give an explicit grid, or check the poses (a stray pose stretches the box)"
    )]
    TooLarge { dims: [u64; 3], needed_mb: f64, cap_mb: f64 },
    #[error("the grid extent is not finite (a pose holds NaN or infinity)")]
    NotFinite,
}

/// Voxel centres at `origin_mm + index * spacing_mm`, x fastest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputGrid {
    pub dims: [usize; 3],
    pub origin_mm: [f64; 3],
    pub spacing_mm: [f64; 3],
}

/// Bytes a voxel may take during reconstruction: grey value, accumulation buffer, and the label
/// votes (a u16 count for each label 0..=MAX_LABEL).
pub const BYTES_PER_VOXEL: usize = 1 + 2 + 2 * (super::settings::MAX_LABEL as usize + 1);

impl OutputGrid {
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }

    /// Voxel index (x, y, z) → Reference mm.
    pub fn voxel_to_reference(&self) -> Matrix4 {
        let [sx, sy, sz] = self.spacing_mm;
        let [ox, oy, oz] = self.origin_mm;
        [sx, 0., 0., ox, 0., sy, 0., oy, 0., 0., sz, oz, 0., 0., 0., 1.]
    }

    pub fn geometry(&self) -> VolumeGeometry {
        VolumeGeometry {
            dims: self.dims,
            origin_mm: self.origin_mm,
            spacing_mm: self.spacing_mm,
            direction: crate::recon::volume::IDENTITY,
        }
    }

    /// The grid of an existing volume (`--grid-like`).
    pub fn from_geometry(g: &VolumeGeometry) -> Self {
        OutputGrid { dims: g.dims, origin_mm: g.origin_mm, spacing_mm: g.spacing_mm }
    }

    /// The explicit grid of the settings, if they give one.
    pub fn explicit(settings: &ReconSettings) -> Option<Result<Self, GridError>> {
        let (origin, e) = (settings.output_origin_mm?, settings.output_extent?);
        let s = settings.output_spacing_mm;
        // PLUS indexes voxels from the extent's lower bound; move the origin onto that voxel.
        let origin_mm = std::array::from_fn(|k| origin[k] + e[2 * k] as f64 * s[k]);
        let dims = std::array::from_fn(|k| (e[2 * k + 1] - e[2 * k] + 1) as u64);
        Some(Self::checked(dims, origin_mm, s, settings.max_memory_mb))
    }

    /// The settings' explicit grid if they give one, else PLUS's bounding box of the frames.
    pub fn for_frames(
        poses: impl IntoIterator<Item = Matrix4>,
        width: usize,
        height: usize,
        settings: &ReconSettings,
    ) -> Result<Self, GridError> {
        match Self::explicit(settings) {
            Some(grid) => grid,
            None => Self::bounding(poses, width, height, settings),
        }
    }

    /// PLUS's bounding box of the frames (`width`×`height` pixels) placed by `poses`.
    pub fn bounding(
        poses: impl IntoIterator<Item = Matrix4>,
        width: usize,
        height: usize,
        settings: &ReconSettings,
    ) -> Result<Self, GridError> {
        let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        let (mut x0, mut x1, mut y0, mut y1) = (0.0, (width - 1) as f64, 0.0, (height - 1) as f64);
        if let Some((o, s)) = settings.clip_rectangle() {
            x0 = f64::max(x0, o[0] as f64);
            x1 = f64::min(x1, (o[0] + s[0]) as f64);
            y0 = f64::max(y0, o[1] as f64);
            y1 = f64::min(y1, (o[1] + s[1]) as f64);
        }
        let mut any = false;
        for m in poses {
            any = true;
            for corner in [[x0, y0, 0.0], [x0, y1, 0.0], [x1, y0, 0.0], [x1, y1, 0.0]] {
                let p = apply(&m, Vec3::from(corner));
                for k in 0..3 {
                    lo[k] = lo[k].min(p[k]);
                    hi[k] = hi[k].max(p[k]);
                }
            }
        }
        if !any {
            return Err(GridError::NoValidFrames(format!("{}To{}", settings.image_frame, settings.reference_frame)));
        }
        let s = settings.output_spacing_mm;
        let spans: [f64; 3] = std::array::from_fn(|k| ((hi[k] - lo[k]) / s[k]).round());
        if spans.iter().chain(&lo).any(|v| !v.is_finite()) {
            return Err(GridError::NotFinite);
        }
        let dims = spans.map(|v| v as u64 + 1);
        Self::checked(dims, lo, s, settings.max_memory_mb)
    }

    fn checked(dims: [u64; 3], origin_mm: [f64; 3], spacing_mm: [f64; 3], cap_mb: f64) -> Result<Self, GridError> {
        let voxels = dims.iter().map(|&d| d as f64).product::<f64>();
        let needed_mb = voxels * BYTES_PER_VOXEL as f64 / (1u64 << 20) as f64;
        if needed_mb > cap_mb || dims.contains(&0) {
            return Err(GridError::TooLarge { dims, needed_mb, cap_mb });
        }
        Ok(OutputGrid { dims: dims.map(|d| d as usize), origin_mm, spacing_mm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::IDENTITY;

    #[test]
    fn bounding_box_spans_the_clipped_frames_like_plus() {
        let settings = ReconSettings {
            output_spacing_mm: [0.5, 0.5, 1.0],
            clip_rectangle_origin_px: Some([2, 0]),
            clip_rectangle_size_px: Some([100, 3]),
            ..Default::default()
        };
        let mut shifted = IDENTITY;
        shifted[11] = 2.5;
        let g = OutputGrid::bounding([IDENTITY, shifted], 10, 8, &settings).unwrap();
        // x: pixels 2..=9 (the clip reaches past the image), y: 0..=3 (the clip's far edge is included).
        assert_eq!(g.origin_mm, [2.0, 0.0, 0.0]);
        assert_eq!(g.dims, [15, 7, 4]);
    }

    #[test]
    fn a_stray_pose_is_refused_not_allocated() {
        let settings = ReconSettings { max_memory_mb: 100.0, ..Default::default() };
        let mut far = IDENTITY;
        far[3] = 1e6;
        far[11] = 1e5;
        let err = OutputGrid::bounding([IDENTITY, far], 100, 100, &settings).unwrap_err();
        assert!(matches!(err, GridError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("max_memory_mb"));
        let err = OutputGrid::bounding(std::iter::empty(), 10, 10, &settings).unwrap_err();
        assert!(matches!(err, GridError::NoValidFrames(_)));
    }

    #[test]
    fn explicit_extent_moves_the_origin_to_its_first_voxel() {
        let settings = ReconSettings {
            output_origin_mm: Some([1.0, 2.0, 3.0]),
            output_extent: Some([2, 11, 0, 4, -1, 1]),
            ..Default::default()
        };
        let g = OutputGrid::explicit(&settings).unwrap().unwrap();
        assert_eq!(g.dims, [10, 5, 3]);
        assert_eq!(g.origin_mm, [2.0, 2.0, 2.5]);
    }
}
