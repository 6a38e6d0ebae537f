//! The `[segment]` settings beyond those every stage has, with their defaults and range checks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const DEFAULT_THREADS: usize = 2;
pub const DEFAULT_TRACK_MARGIN_PX: f32 = 10.0;
/// Floors under which a mask is flagged and not tracked; set from the simulator's sweep (lesion
/// masks ≥ 0.87 / 0.84, masks of nothing once it left the plane ≈ 0.7 / 0.65) and BUSI images
/// (lesion masks 0.89–0.91 predicted IoU). To be revisited on clinical recordings.
pub const DEFAULT_IOU_FLOOR: f32 = 0.75;
pub const DEFAULT_STABILITY_FLOOR: f32 = 0.75;

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// CUDA when it works here, else the CPU (the choice is logged).
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// Which image encoder segments: the teacher for quality, the student for real time. Both run
/// with LiteMedSAM's prompt encoder and mask decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelChoice {
    /// LiteMedSAM's TinyViT encoder (about 75 GFLOPs per frame).
    #[default]
    Litemedsam,
    /// sonoflow's distilled ultrasound encoder (`engines/student/`, about 2.5 GFLOPs per frame).
    Student,
}

impl ModelChoice {
    pub fn name(self) -> &'static str {
        match self {
            ModelChoice::Litemedsam => "litemedsam",
            ModelChoice::Student => "student",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentSettings {
    pub model: ModelChoice,
    pub engine: EngineChoice,
    /// Threads of the CPU engine.
    pub threads: usize,
    /// Folder holding the model's manifest and converted weights; unset: the first
    /// `engines/litemedsam` found upwards from the working folder or the executable.
    pub model_dir: Option<PathBuf>,
    /// Folder of the student encoder (`model = "student"`); unset: the first `engines/student`
    /// found like `model_dir`.
    pub student_dir: Option<PathBuf>,
    /// The initial box prompt `[x0, y0, x1, y1]` in frame pixels. Without a prompt the stage
    /// passes frames on unsegmented (and the model is not even loaded).
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
    /// Initial clicks `[x, y, 1 (target) or 0 (not target)]` in frame pixels, at most two.
    pub points: Vec<[f32; 3]>,
    /// Frame (sequence number) from which the initial prompt applies, as when the user marks the
    /// target once it comes into view; earlier frames pass on unsegmented.
    pub prompt_from_frame: u64,
    /// Follow the target: each frame's box is the previous mask's bounding box grown by
    /// `track_margin_px`; off: every frame uses the given prompt.
    pub track: bool,
    pub track_margin_px: f32,
    /// Predicted IoU under which a mask is flagged and the tracker holds its last good prompt.
    pub iou_floor: f32,
    /// Stability score (IoU of the masks at logit ±1) under which a mask is flagged likewise.
    pub stability_floor: f32,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        SegmentSettings {
            model: ModelChoice::Litemedsam,
            engine: EngineChoice::Auto,
            threads: DEFAULT_THREADS,
            model_dir: None,
            student_dir: None,
            bbox: None,
            points: Vec::new(),
            prompt_from_frame: 0,
            track: true,
            track_margin_px: DEFAULT_TRACK_MARGIN_PX,
            iou_floor: DEFAULT_IOU_FLOOR,
            stability_floor: DEFAULT_STABILITY_FLOOR,
        }
    }
}

/// A setting out of range: the key (within `[segment]`) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    pub key: &'static str,
    pub message: String,
}

impl SegmentSettings {
    pub fn has_prompt(&self) -> bool {
        self.bbox.is_some() || !self.points.is_empty()
    }

    pub fn validate(&self) -> Result<(), SettingError> {
        let bad = |key, message: String| Err(SettingError { key, message });
        if !(1..=64).contains(&self.threads) {
            return bad("threads", format!("{} is outside 1..=64", self.threads));
        }
        if let Some([x0, y0, x1, y1]) = self.bbox
            && ([x0, y0, x1, y1].iter().any(|v| !v.is_finite() || *v < 0.0) || x1 <= x0 || y1 <= y0)
        {
            return bad(
                "box",
                format!("[{x0}, {y0}, {x1}, {y1}] must be [x0, y0, x1, y1] with x0 < x1, y0 < y1, all >= 0"),
            );
        }
        if self.points.len() > 2 {
            return bad("points", format!("{} points; at most 2", self.points.len()));
        }
        if self.points.iter().any(|[x, y, l]| !x.is_finite() || !y.is_finite() || (*l != 0.0 && *l != 1.0)) {
            return bad("points", "each point is [x, y, 1] (target) or [x, y, 0] (not target)".into());
        }
        if !(self.track_margin_px.is_finite() && self.track_margin_px >= 0.0) {
            return bad("track_margin_px", format!("{} must be >= 0", self.track_margin_px));
        }
        if !(0.0..=1.0).contains(&self.iou_floor) {
            return bad("iou_floor", format!("{} is outside 0..=1", self.iou_floor));
        }
        if !(0.0..=1.0).contains(&self.stability_floor) {
            return bad("stability_floor", format!("{} is outside 0..=1", self.stability_floor));
        }
        Ok(())
    }
}
