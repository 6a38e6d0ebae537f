//! What the segment stage attaches to each frame it segments, for the stages and outputs after
//! it: the logits at frame size and how the mask came about (prompt, its source, the model's
//! ratings). The mask itself and its confidence travel on the frame, which every stage reads.

use crate::frame::AttachmentPool;

/// Where a frame's segmentation prompt came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptSource {
    /// Set by the user (config, command line, or a navigation console).
    Given,
    /// The previous frame's mask, grown by the tracking margin.
    Tracked,
    /// The last good prompt, held because the previous frame's predicted IoU was under the floor.
    Held,
}

/// The engine that ran the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    #[default]
    Cpu,
    Cuda,
}

/// What the segment stage did on a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentationInfo {
    /// The model's own estimate of its mask's IoU.
    pub predicted_iou: f32,
    /// SAM's stability score: IoU of the masks at logit thresholds +1 and −1.
    pub stability: f32,
    /// The box prompt used, in frame pixels `[x0, y0, x1, y1]` (None: points only).
    pub prompt_box: Option<[f32; 4]>,
    pub prompt_source: PromptSource,
    /// True when the predicted IoU fell under the floor: the mask is not trusted and the tracker
    /// holds its last good prompt.
    pub flagged: bool,
    pub engine: Engine,
}

/// The segment stage's attachment to a frame.
#[derive(Debug)]
pub struct Segmentation {
    pub info: SegmentationInfo,
    /// Sized for the largest frame; the first `pixels` values are this frame's logits.
    logits: Vec<f32>,
    pixels: usize,
}

impl Segmentation {
    /// Logits at frame size, row-major (> 0: target).
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.pixels]
    }

    /// The first `pixels` values, for the stage to fill (at most the size the pool was made for).
    pub(super) fn logits_mut(&mut self, pixels: usize) -> &mut [f32] {
        self.pixels = pixels;
        &mut self.logits[..pixels]
    }
}

/// `buffers` attachments for frames of up to `max_pixels` pixels.
pub(super) fn segmentation_pool(max_pixels: usize, buffers: usize) -> AttachmentPool<Segmentation> {
    AttachmentPool::new(buffers, || Segmentation {
        info: SegmentationInfo {
            predicted_iou: 0.0,
            stability: 0.0,
            prompt_box: None,
            prompt_source: PromptSource::Given,
            flagged: false,
            engine: Engine::Cpu,
        },
        logits: vec![0.0; max_pixels],
        pixels: 0,
    })
}
