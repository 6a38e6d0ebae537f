//! Reconstruction settings, with their defaults and range checks. They come from the
//! `[reconstruct]` TOML section or from a PLUS configuration XML ([`super::plus_config`]); the
//! names follow PLUS's `VolumeReconstruction` attributes so one can be read as the other.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default cap on the memory the output grid may take (volume, accumulation buffer and label
/// votes together). PLUS allocates whatever a bounding box asks for and dies on a stray pose;
/// sonoflow refuses with an error instead.
pub const DEFAULT_MAX_MEMORY_MB: f64 = 2048.0;
/// PLUS's default outer fan radius (pixels) when a fan is given without one.
pub const DEFAULT_FAN_RADIUS_STOP_PX: f64 = 500.0;
/// Live stage: label volumes published to haptics every this many masks (a third of a second
/// at 30 fps; the distance transform of a 0.5 mm grid takes tens of ms).
pub const DEFAULT_PUBLISH_EVERY_FRAMES: u32 = 10;
/// Live stage without an explicit grid: margin around the first frame (a freehand sweep of
/// centimetre or two either way, kept small: the distance field is recomputed over all of it).
pub const DEFAULT_LIVE_MARGIN_MM: f64 = 15.0;
/// Largest label value the vote keeps a count for.
pub const MAX_LABEL: u8 = 7;

/// How a pixel is distributed into the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    /// Into the voxel nearest to the pixel centre (PLUS `NEAREST_NEIGHBOR`).
    #[default]
    Nearest,
    /// Into the eight surrounding voxels with trilinear weights (PLUS `LINEAR`).
    Linear,
}

/// How a voxel hit by several pixels is valued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compounding {
    /// Running mean, with PLUS's integer accumulation buffer and rounding.
    #[default]
    Mean,
    Maximum,
    /// The last pixel wins.
    Latest,
}

/// How per-frame label masks are compounded into the label volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelCompounding {
    /// Majority vote of the pixels that hit the voxel (background counts): unbiased at the
    /// structure's boundary, so measured volumes are not inflated.
    #[default]
    Vote,
    /// The highest label any pixel brought (conservative: the structure grows by up to a voxel).
    Maximum,
}

/// One hole-filling step, tried in order on each empty voxel until one succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HoleFilling {
    /// PLUS's STICK: along 13 directions look for the nearest filled voxel on both sides within
    /// `stick_length_limit` voxels in all; the shortest stick(s) interpolate the value.
    Stick { stick_length_limit: usize, number_of_sticks_to_use: usize },
    /// PLUS's NEAREST_NEIGHBOR: the mean of the filled voxels on the nearest cube shell (up to
    /// `size` wide) that has any, if they are more than `minimum_known_voxels_ratio` of the cube.
    NearestNeighbor { size: usize, minimum_known_voxels_ratio: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconSettings {
    /// A PLUS configuration XML to read calibration and reconstruction settings from; its
    /// values replace the keys below (TOML only; see `configs/README.md`).
    pub plus_config: Option<PathBuf>,
    /// The frame whose pixels are inserted (`<image_frame>To<reference_frame>` is resolved per
    /// frame through the frame's transforms and the calibration).
    pub image_frame: String,
    /// The frame the volume is built in.
    pub reference_frame: String,
    /// Voxel size.
    pub output_spacing_mm: [f64; 3],
    /// Explicit grid: the first voxel's centre; needs `output_extent`.
    pub output_origin_mm: Option<[f64; 3]>,
    /// Explicit grid: voxel index ranges `[x0, x1, y0, y1, z0, z1]` (inclusive, as PLUS).
    pub output_extent: Option<[i64; 6]>,
    /// Only pixels inside this rectangle are inserted (pixels; PLUS includes the far edge).
    pub clip_rectangle_origin_px: Option<[i64; 2]>,
    pub clip_rectangle_size_px: Option<[i64; 2]>,
    /// Curvilinear/endocavity fan: left and right edge angles (both 0: no fan mask).
    pub fan_angles_deg: [f64; 2],
    pub fan_origin_px: [f64; 2],
    pub fan_radius_start_px: f64,
    pub fan_radius_stop_px: f64,
    pub interpolation: Interpolation,
    pub compounding: Compounding,
    /// Insertion threads (1..=64); results are the same for any count.
    pub threads: usize,
    /// Fill empty voxels after insertion with these steps, in order.
    pub hole_filling: Vec<HoleFilling>,
    pub label_compounding: LabelCompounding,
    /// Seconds to add to an image's timestamp to get the time of the pose that belongs to it
    /// (tracker and image clocks differ); poses are interpolated between tracked frames.
    pub pose_time_offset_s: f64,
    /// Refuse grids whose buffers would take more than this.
    pub max_memory_mb: f64,
    /// Live stage: publish the label volume's distance field to haptics after this many masks.
    pub publish_every_frames: u32,
    /// Live stage without an explicit grid: room left around the first frame on every side.
    pub live_margin_mm: f64,
}

impl Default for ReconSettings {
    fn default() -> Self {
        ReconSettings {
            plus_config: None,
            image_frame: "Image".into(),
            reference_frame: "Reference".into(),
            output_spacing_mm: [0.5; 3],
            output_origin_mm: None,
            output_extent: None,
            clip_rectangle_origin_px: None,
            clip_rectangle_size_px: None,
            fan_angles_deg: [0.0; 2],
            fan_origin_px: [0.0; 2],
            fan_radius_start_px: 0.0,
            fan_radius_stop_px: DEFAULT_FAN_RADIUS_STOP_PX,
            interpolation: Interpolation::Nearest,
            compounding: Compounding::Mean,
            threads: 1,
            hole_filling: Vec::new(),
            label_compounding: LabelCompounding::Vote,
            pose_time_offset_s: 0.0,
            max_memory_mb: DEFAULT_MAX_MEMORY_MB,
            publish_every_frames: DEFAULT_PUBLISH_EVERY_FRAMES,
            live_margin_mm: DEFAULT_LIVE_MARGIN_MM,
        }
    }
}

/// A setting out of range: its key and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    pub key: &'static str,
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), SettingError> {
    Err(SettingError { key, message: message.into() })
}

impl ReconSettings {
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.output_spacing_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("output_spacing_mm", format!("{:?}: spacings must be positive", self.output_spacing_mm));
        }
        match (self.output_origin_mm, self.output_extent) {
            (Some(_), None) => return bad("output_origin_mm", "needs output_extent (an explicit grid needs both)"),
            (None, Some(_)) => return bad("output_extent", "needs output_origin_mm (an explicit grid needs both)"),
            (Some(o), Some(e)) => {
                if o.iter().any(|v| !v.is_finite()) {
                    return bad("output_origin_mm", format!("{o:?} is not finite"));
                }
                if (0..3).any(|k| e[2 * k + 1] < e[2 * k]) {
                    return bad("output_extent", format!("{e:?}: each upper index must be at least its lower one"));
                }
            }
            (None, None) => {}
        }
        if self.clip_rectangle_origin_px.is_some() != self.clip_rectangle_size_px.is_some() {
            return bad("clip_rectangle_size_px", "clip_rectangle_origin_px and clip_rectangle_size_px go together");
        }
        if self.fan_angles_deg.iter().any(|a| !(a.is_finite() && a.abs() < 90.0)) {
            return bad("fan_angles_deg", format!("{:?}: angles must lie within ±90°", self.fan_angles_deg));
        }
        let radii = [self.fan_radius_start_px, self.fan_radius_stop_px];
        if radii.iter().any(|r| !(r.is_finite() && *r >= 0.0)) || radii[0] > radii[1] {
            return bad("fan_radius_stop_px", format!("{radii:?}: need 0 ≤ start ≤ stop"));
        }
        if !(1..=64).contains(&self.threads) {
            return bad("threads", format!("{} is outside 1..=64", self.threads));
        }
        for step in &self.hole_filling {
            match step {
                HoleFilling::Stick { stick_length_limit, number_of_sticks_to_use } => {
                    if !(2..=1000).contains(stick_length_limit) || !(1..=13).contains(number_of_sticks_to_use) {
                        return bad(
                            "hole_filling",
                            "stick: stick_length_limit must be 2..=1000 and number_of_sticks_to_use 1..=13",
                        );
                    }
                }
                HoleFilling::NearestNeighbor { size, minimum_known_voxels_ratio } => {
                    if !(3..=99).contains(size) || size % 2 == 0 || !(0.0..1.0).contains(minimum_known_voxels_ratio) {
                        return bad(
                            "hole_filling",
                            "nearest-neighbor: size must be odd in 3..=99 and minimum_known_voxels_ratio in 0..1",
                        );
                    }
                }
            }
        }
        if !self.pose_time_offset_s.is_finite() || self.pose_time_offset_s.abs() > 10.0 {
            return bad("pose_time_offset_s", format!("{} must be within ±10 s", self.pose_time_offset_s));
        }
        if !(self.live_margin_mm.is_finite() && (0.0..=500.0).contains(&self.live_margin_mm)) {
            return bad("live_margin_mm", format!("{} is outside 0..=500", self.live_margin_mm));
        }
        if !(1..=100_000).contains(&self.publish_every_frames) {
            return bad("publish_every_frames", format!("{} is outside 1..=100000", self.publish_every_frames));
        }
        if !(self.max_memory_mb.is_finite() && self.max_memory_mb > 0.0) {
            return bad("max_memory_mb", format!("{} must be positive", self.max_memory_mb));
        }
        Ok(())
    }

    /// The clip rectangle, if one is set with a positive size (PLUS ignores an empty one).
    pub fn clip_rectangle(&self) -> Option<([i64; 2], [i64; 2])> {
        match (self.clip_rectangle_origin_px, self.clip_rectangle_size_px) {
            (Some(o), Some(s)) if s[0] > 0 && s[1] > 0 => Some((o, s)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        assert_eq!(ReconSettings::default().validate(), Ok(()));
        let key = |s: ReconSettings| s.validate().unwrap_err().key;
        assert_eq!(
            key(ReconSettings { output_spacing_mm: [0.5, 0.0, 0.5], ..Default::default() }),
            "output_spacing_mm"
        );
        assert_eq!(key(ReconSettings { output_origin_mm: Some([0.0; 3]), ..Default::default() }), "output_origin_mm");
        assert_eq!(key(ReconSettings { threads: 0, ..Default::default() }), "threads");
        let stick = HoleFilling::Stick { stick_length_limit: 1, number_of_sticks_to_use: 1 };
        assert_eq!(key(ReconSettings { hole_filling: vec![stick], ..Default::default() }), "hole_filling");
        assert_eq!(key(ReconSettings { max_memory_mb: 0.0, ..Default::default() }), "max_memory_mb");
    }

    #[test]
    fn toml_hole_filling_reads_tagged_steps() {
        let s: ReconSettings = toml::from_str(
            "hole_filling = [{ type = \"stick\", stick_length_limit = 9, number_of_sticks_to_use = 1 }]\n",
        )
        .unwrap();
        assert_eq!(s.hole_filling, vec![HoleFilling::Stick { stick_length_limit: 9, number_of_sticks_to_use: 1 }]);
    }
}
