//! Frame sources: sequence-file replay, DICOM cine replay, the phantom simulator, and (with the
//! `gstreamer` feature) frame grabbers, video files and any GStreamer pipeline.
//!
//! A source works in two steps per frame so the runtime can time them apart: `wait_next` blocks
//! until the next frame is due or available (pacing, device wait), then `fill` copies it into a
//! pooled frame (decode, conversion), which is the capture stage's measured latency.

pub mod dicom;
#[cfg(feature = "gstreamer")]
pub mod gst;
pub mod input;
pub mod replay;
pub mod settings;
pub mod simulated;
pub mod simulator;

use crate::frame::{Frame, PixelFormat};
use crate::io::SequenceError;
use crate::pipeline::clock::Clock;

pub use dicom::{DicomCineSource, DicomOptions};
pub use replay::{Pace, ReplaySource};
pub use simulated::SimulatedSource;

/// The grey level of an RGB colour (ITU-R BT.601 luma, rounded), as most viewers convert colour
/// to grey: colour input (DICOM RGB and palette frames, PNG images) becomes grey this way.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * r as u32 + 587 * g as u32 + 114 * b as u32 + 500) / 1000) as u8
}

/// Size and format of the frames a source will deliver, known before the run so that the pixel
/// pool can be sized once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFormat {
    pub width: usize,
    pub height: usize,
    pub pixel_format: PixelFormat,
}

/// What `wait_next` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A frame is ready for `fill`.
    Ready,
    /// The source has no more frames.
    End,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error("{source_name}: frame {frame}: {message}")]
    BadFrame { source_name: String, frame: usize, message: String },
    #[error("{source_name}: {message}")]
    Failed { source_name: String, message: String },
}

pub trait Source: Send {
    /// Names the source in logs and the report (e.g. the file path).
    fn describe(&self) -> String;

    fn format(&self) -> SourceFormat;

    /// Image-level facts worth keeping in a recording's header (e.g. PLUS's
    /// `UltrasoundImageOrientation`). Called once, before the run.
    fn image_fields(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Blocks until the next frame is due (recorded pace) or available (device). Gives up with
    /// `Next::End` as soon as `keep_waiting` turns false (the pipeline is stopping).
    fn wait_next(&mut self, clock: &mut Clock, keep_waiting: &dyn Fn() -> bool) -> Result<Next, CaptureError>;

    /// Fills `frame` (pixels, size, spacing, capture time, transforms, status) with the frame that
    /// `wait_next` announced. Must not allocate after the first frame.
    fn fill(&mut self, frame: &mut Frame) -> Result<(), CaptureError>;

    /// Frames the source discarded because the pipeline took them too slowly (a live source's
    /// bounded queue dropping its oldest); read once, when capture ends.
    fn dropped_frames(&mut self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn luma_weights() {
        use super::luma;
        assert_eq!((luma(255, 0, 0), luma(0, 255, 0), luma(0, 0, 255), luma(255, 255, 255)), (76, 150, 29, 255));
    }
}
