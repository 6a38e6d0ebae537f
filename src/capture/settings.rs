//! The `[capture]` section: the kind of source and its settings, those of the GStreamer sources
//! (`[capture.gstreamer]`) and the crop every camera-like source shares (`capture.roi_px`). The
//! capture module owns them; `config` only places them in the file. Compiled with or without the `gstreamer` feature, so a config
//! written for a live rig still parses (and says what is missing) on a machine built without it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Pace;
use super::simulator::SimulationSpec;
use crate::frame::PixelFormat;

pub const DEFAULT_DEVICE: &str = "/dev/video0";
pub const DEFAULT_TEST_WIDTH_PX: usize = 640;
pub const DEFAULT_TEST_HEIGHT_PX: usize = 480;
pub const DEFAULT_TEST_RATE_HZ: f64 = 30.0;
pub const DEFAULT_TEST_PATTERN: &str = "ball";
/// Two buffers: one being copied, one waiting. More would only add latency on a live source.
pub const DEFAULT_MAX_BUFFERS: u32 = 2;
pub const DEFAULT_FIRST_FRAME_TIMEOUT_MS: f64 = 5000.0;
pub const DEFAULT_RECONNECT_ATTEMPTS: u32 = 5;
pub const DEFAULT_RECONNECT_MIN_MS: f64 = 100.0;
pub const DEFAULT_RECONNECT_MAX_MS: f64 = 2000.0;

/// `[capture.gstreamer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GstSettings {
    /// `kind = "v4l2"`: the video device of the frame grabber.
    pub device: String,
    /// `kind = "custom"`: a gst-launch description of the source part; sonoflow appends the
    /// conversion to grey and its appsink (unless the string ends in `appsink name=sonoflow`).
    pub pipeline: Option<String>,
    /// Caps forced right after the device or custom source, e.g. a grabber's mode
    /// (`video/x-raw,width=1920,height=1080,framerate=60/1`).
    pub caps: Option<String>,
    /// Grey format the pipeline converts to.
    pub pixel_format: PixelFormat,
    /// `kind = "test"`: size, rate, pattern and length of the videotestsrc stream.
    pub width_px: usize,
    pub height_px: usize,
    pub frame_rate_hz: f64,
    pub pattern: String,
    /// `kind = "test"`: stop after this many frames; 0 runs until stopped.
    pub frames: u64,
    /// Frames the appsink may hold. Live sources drop the oldest beyond this (counted as the
    /// capture stage's `skipped`); file replays make the decoder wait instead.
    pub max_buffers: u32,
    /// How long opening waits for the first frame (which fixes the frame size).
    pub first_frame_timeout_ms: f64,
    /// Live sources: reopen after an error or end of stream this many times in a row (0: fail at
    /// the first error), waiting `reconnect_min_ms`, doubling up to `reconnect_max_ms`.
    pub reconnect_attempts: u32,
    pub reconnect_min_ms: f64,
    pub reconnect_max_ms: f64,
}

impl Default for GstSettings {
    fn default() -> Self {
        GstSettings {
            device: DEFAULT_DEVICE.to_string(),
            pipeline: None,
            caps: None,
            pixel_format: PixelFormat::Gray8,
            width_px: DEFAULT_TEST_WIDTH_PX,
            height_px: DEFAULT_TEST_HEIGHT_PX,
            frame_rate_hz: DEFAULT_TEST_RATE_HZ,
            pattern: DEFAULT_TEST_PATTERN.to_string(),
            frames: 0,
            max_buffers: DEFAULT_MAX_BUFFERS,
            first_frame_timeout_ms: DEFAULT_FIRST_FRAME_TIMEOUT_MS,
            reconnect_attempts: DEFAULT_RECONNECT_ATTEMPTS,
            reconnect_min_ms: DEFAULT_RECONNECT_MIN_MS,
            reconnect_max_ms: DEFAULT_RECONNECT_MAX_MS,
        }
    }
}

/// A setting out of range: the key (within `[capture.gstreamer]`) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingError {
    pub key: &'static str,
    pub message: String,
}

impl GstSettings {
    pub fn validate(&self) -> Result<(), SettingError> {
        let err = |key, message: String| Err(SettingError { key, message });
        if !(1..=16384).contains(&self.width_px) {
            return err("width_px", format!("{} is outside 1..=16384", self.width_px));
        }
        if !(1..=16384).contains(&self.height_px) {
            return err("height_px", format!("{} is outside 1..=16384", self.height_px));
        }
        if !(self.frame_rate_hz.is_finite() && self.frame_rate_hz > 0.0 && self.frame_rate_hz <= 10_000.0) {
            return err("frame_rate_hz", format!("{} must be in (0, 10000]", self.frame_rate_hz));
        }
        if !(1..=64).contains(&self.max_buffers) {
            return err("max_buffers", format!("{} is outside 1..=64 (the queue must stay bounded)", self.max_buffers));
        }
        if !(self.first_frame_timeout_ms.is_finite() && self.first_frame_timeout_ms > 0.0) {
            return err(
                "first_frame_timeout_ms",
                format!("{} must be a positive number of ms", self.first_frame_timeout_ms),
            );
        }
        if !(self.reconnect_min_ms.is_finite() && self.reconnect_min_ms >= 0.0) {
            return err("reconnect_min_ms", format!("{} must be ≥ 0", self.reconnect_min_ms));
        }
        if !(self.reconnect_max_ms.is_finite() && self.reconnect_max_ms >= self.reconnect_min_ms) {
            return err("reconnect_max_ms", format!("{} must be ≥ reconnect_min_ms", self.reconnect_max_ms));
        }
        if self.reconnect_attempts > 1000 {
            return err("reconnect_attempts", format!("{} is outside 0..=1000", self.reconnect_attempts));
        }
        for (key, text) in [("pipeline", &self.pipeline), ("caps", &self.caps)] {
            if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return err(key, "is empty".into());
            }
        }
        Ok(())
    }

    /// Wait before reconnect attempt `attempt` (0-based): doubling from the minimum, capped.
    pub fn backoff_ms(&self, attempt: u32) -> f64 {
        (self.reconnect_min_ms * 2f64.powi(attempt.min(30) as i32)).min(self.reconnect_max_ms)
    }
}

/// The rectangle of the scanner's screen (or of a DICOM frame) that holds the ultrasound image:
/// `[x, y, width, height]` in source pixels. Only these pixels are copied into the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Roi {
    pub fn full(width: usize, height: usize) -> Self {
        Roi { x: 0, y: 0, width, height }
    }

    /// The configured crop, checked against the source's size; `None` keeps the whole frame.
    pub fn within(crop: Option<[usize; 4]>, width: usize, height: usize) -> Result<Roi, String> {
        let Some([x, y, w, h]) = crop else { return Ok(Roi::full(width, height)) };
        if w == 0 || h == 0 || x + w > width || y + h > height {
            return Err(format!("[{x}, {y}, {w}, {h}] does not fit in the {width}x{height} source frame"));
        }
        Ok(Roi { x, y, width: w, height: h })
    }

    /// Copies the crop out of a source frame whose rows are `stride` samples apart into `dst`
    /// (tightly packed). Works on u8 or u16 samples alike; allocates nothing.
    pub fn copy<T: Copy>(&self, src: &[T], stride: usize, dst: &mut [T]) -> Result<(), String> {
        let need_src = (self.y + self.height - 1) * stride + self.x + self.width;
        if src.len() < need_src || dst.len() < self.width * self.height {
            return Err(format!(
                "buffer of {} samples is too small for a {}x{} crop at ({}, {}) with stride {}",
                src.len(),
                self.width,
                self.height,
                self.x,
                self.y,
                stride
            ));
        }
        for (row, out) in dst.chunks_exact_mut(self.width).take(self.height).enumerate() {
            let start = (self.y + row) * stride + self.x;
            out.copy_from_slice(&src[start..start + self.width]);
        }
        Ok(())
    }
}

/// Where frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A recorded PLUS sequence file (`capture.path`).
    Replay,
    /// The built-in phantom simulator (`[capture.simulator]`).
    #[default]
    Simulator,
    /// A multi-frame ultrasound DICOM file (cine loop, `capture.path`).
    Dicom,
    /// A video file decoded by GStreamer (`capture.path`; any container and codec installed).
    File,
    /// A V4L2 frame grabber through GStreamer (`capture.gstreamer.device`).
    V4l2,
    /// GStreamer's test pattern (videotestsrc): a live-like source for tests and rigs.
    Test,
    /// Any GStreamer pipeline (`capture.gstreamer.pipeline`).
    Custom,
}

impl SourceKind {
    /// Kinds that read `capture.path`.
    pub fn reads_file(self) -> bool {
        matches!(self, SourceKind::Replay | SourceKind::Dicom | SourceKind::File)
    }

    /// Kinds built on GStreamer (need the `gstreamer` feature).
    pub fn uses_gstreamer(self) -> bool {
        matches!(self, SourceKind::File | SourceKind::V4l2 | SourceKind::Test | SourceKind::Custom)
    }

    /// Kinds whose frames can be cropped and given a pixel spacing from the config.
    pub fn takes_roi(self) -> bool {
        self.uses_gstreamer() || self == SourceKind::Dicom
    }

    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Replay => "replay",
            SourceKind::Simulator => "simulator",
            SourceKind::Dicom => "dicom",
            SourceKind::File => "file",
            SourceKind::V4l2 => "v4l2",
            SourceKind::Test => "test",
            SourceKind::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    pub kind: SourceKind,
    /// Sequence file to replay (`.mha`, `.mhd`, `.seq.nrrd`).
    pub path: Option<PathBuf>,
    /// Replay: a label-mask sequence with one mask per frame of `path` (e.g. the simulator's
    /// `.labels.mha`), attached to each frame as its mask.
    pub labels_path: Option<PathBuf>,
    pub pace: Pace,
    /// Replay, DICOM and video files: start again at the first frame after the last.
    #[serde(rename = "loop")]
    pub looping: bool,
    /// GStreamer and DICOM sources: `[x, y, width, height]` of the source frame that holds the
    /// ultrasound image (a grabber sees the scanner's whole screen); unset keeps the whole frame.
    pub roi_px: Option<[usize; 4]>,
    /// GStreamer and DICOM sources: pixel size in mm (column, row); unset takes the DICOM
    /// file's own (1 mm for video, which carries none).
    pub spacing_mm: Option<[f64; 2]>,
    pub simulator: SimulationSpec,
    pub gstreamer: GstSettings,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            kind: SourceKind::Simulator,
            path: None,
            labels_path: None,
            pace: Pace::Recorded,
            looping: false,
            roi_px: None,
            spacing_mm: None,
            simulator: SimulationSpec::default(),
            gstreamer: GstSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_copies_only_the_rectangle() {
        // 4x3 source with a stride of 5 (padding column = 99).
        let src: Vec<u8> = vec![0, 1, 2, 3, 99, 10, 11, 12, 13, 99, 20, 21, 22, 23, 99];
        let roi = Roi::within(Some([1, 1, 2, 2]), 4, 3).unwrap();
        let mut dst = [0u8; 4];
        roi.copy(&src, 5, &mut dst).unwrap();
        assert_eq!(dst, [11, 12, 21, 22]);
    }

    #[test]
    fn crop_outside_the_frame_is_refused() {
        assert!(Roi::within(Some([3, 0, 2, 1]), 4, 3).is_err());
        assert!(Roi::within(Some([0, 0, 0, 1]), 4, 3).is_err());
        assert_eq!(Roi::within(None, 4, 3).unwrap(), Roi::full(4, 3));
    }

    #[test]
    fn a_short_buffer_is_an_error_not_a_panic() {
        let roi = Roi::full(4, 3);
        assert!(roi.copy(&[0u16; 11], 4, &mut [0u16; 12]).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = GstSettings { reconnect_min_ms: 100.0, reconnect_max_ms: 500.0, ..GstSettings::default() };
        let waits: Vec<f64> = (0..5).map(|a| s.backoff_ms(a)).collect();
        assert_eq!(waits, [100.0, 200.0, 400.0, 500.0, 500.0]);
    }

    #[test]
    fn defaults_are_valid_and_ranges_are_checked() {
        GstSettings::default().validate().unwrap();
        let s = GstSettings { max_buffers: 0, ..GstSettings::default() };
        assert_eq!(s.validate().unwrap_err().key, "max_buffers");
    }
}
