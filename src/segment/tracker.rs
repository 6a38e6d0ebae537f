//! Prompt tracking from frame to frame: the next frame's box is the last mask's bounding box
//! grown by a margin; when the stage finds a mask untrustworthy ([`MaskQuality::trusted`]: the
//! model's predicted IoU or the mask's stability under a floor), the tracker holds the last good
//! prompt and flags the frame. A prompt given by the user (config,
//! command line, navigation console) replaces whatever is tracked.
//!
//! Coordinates are frame pixels. Pure and allocation-free: the stage calls it once per frame.

use super::attachment::PromptSource;

/// A prompt in frame pixels: a box and up to two clicks (positive/negative).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FramePrompt {
    pub bbox: Option<[f32; 4]>,
    /// (x, y, positive).
    pub points: [Option<(f32, f32, bool)>; 2],
}

impl FramePrompt {
    pub fn from_box(b: [f32; 4]) -> Self {
        FramePrompt { bbox: Some(b), points: [None; 2] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerSettings {
    /// Pixels added on every side of the last mask's bounding box.
    pub margin_px: f32,
    /// Predicted IoU under which a mask is not trusted.
    pub iou_floor: f32,
    /// Stability score under which a mask is not trusted.
    pub stability_floor: f32,
}

/// How far a mask can be trusted: the model's predicted IoU, and SAM's stability score — the
/// IoU between the masks at logit thresholds +1 and −1 (a mask whose outline moves when the
/// threshold moves is a guess). On the simulator's sweep, masks of the lesion score IoU ≥ 0.87
/// and stability ≥ 0.84; once the lesion has left the plane the model still outlines something
/// with IoU ≈ 0.7 and stability ≈ 0.65, which the floors must reject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskQuality {
    pub predicted_iou: f32,
    pub stability: f32,
}

impl MaskQuality {
    /// Stability score from logits: |logit > +1| / |logit > −1| (1 for an empty mask).
    pub fn stability_of(logits: &[f32]) -> f32 {
        let (mut high, mut low) = (0usize, 0usize);
        for &l in logits {
            high += usize::from(l > 1.0);
            low += usize::from(l > -1.0);
        }
        if low == 0 { 1.0 } else { high as f32 / low as f32 }
    }

    pub fn trusted(&self, s: &TrackerSettings) -> bool {
        self.predicted_iou >= s.iou_floor && self.stability >= s.stability_floor
    }
}

pub struct Tracker {
    settings: TrackerSettings,
    /// The prompt for the next frame and where it came from.
    next: Option<(FramePrompt, PromptSource)>,
    /// The last prompt whose mask was trusted (or the given one).
    last_good: Option<FramePrompt>,
}

/// What the tracker concluded from one frame's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackStep {
    /// The frame's mask is not trusted (predicted IoU under the floor, or empty).
    pub flagged: bool,
}

impl Tracker {
    pub fn new(settings: TrackerSettings, initial: Option<FramePrompt>) -> Self {
        Tracker { settings, next: initial.map(|p| (p, PromptSource::Given)), last_good: initial }
    }

    /// A new prompt from the user; used from the next frame on.
    pub fn give(&mut self, prompt: FramePrompt) {
        self.next = Some((prompt, PromptSource::Given));
        self.last_good = Some(prompt);
    }

    /// The prompt to use on the next frame (None until one is given).
    pub fn prompt(&self) -> Option<(FramePrompt, PromptSource)> {
        self.next
    }

    /// Takes the frame's outcome: the mask's bounding box `[x0, y0, x1, y1]` (inclusive pixel
    /// indices; None for an empty mask), its quality, and the frame size.
    pub fn update(
        &mut self,
        mask_box: Option<[usize; 4]>,
        quality: MaskQuality,
        width: usize,
        height: usize,
    ) -> TrackStep {
        let trusted = quality.trusted(&self.settings);
        match (mask_box, trusted) {
            (Some([x0, y0, x1, y1]), true) => {
                let m = self.settings.margin_px;
                let grown = [
                    (x0 as f32 - m).max(0.0),
                    (y0 as f32 - m).max(0.0),
                    (x1 as f32 + m).min(width.saturating_sub(1) as f32),
                    (y1 as f32 + m).min(height.saturating_sub(1) as f32),
                ];
                let prompt = FramePrompt::from_box(grown);
                self.next = Some((prompt, PromptSource::Tracked));
                self.last_good = Some(prompt);
                TrackStep { flagged: false }
            }
            _ => {
                self.next = self.last_good.map(|p| (p, PromptSource::Held));
                TrackStep { flagged: true }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: TrackerSettings = TrackerSettings { margin_px: 5.0, iou_floor: 0.6, stability_floor: 0.7 };

    fn q(predicted_iou: f32) -> MaskQuality {
        MaskQuality { predicted_iou, stability: 0.9 }
    }

    #[test]
    fn the_next_box_is_the_last_mask_grown_and_clipped() {
        let mut t = Tracker::new(SETTINGS, Some(FramePrompt::from_box([10.0, 10.0, 50.0, 50.0])));
        assert_eq!(t.prompt().unwrap().1, PromptSource::Given);
        let step = t.update(Some([2, 20, 97, 40]), q(0.9), 100, 80);
        assert!(!step.flagged);
        let (p, source) = t.prompt().unwrap();
        assert_eq!(source, PromptSource::Tracked);
        assert_eq!(p.bbox, Some([0.0, 15.0, 99.0, 45.0]));
    }

    #[test]
    fn a_low_iou_holds_the_last_good_prompt_and_flags_the_frame() {
        let mut t = Tracker::new(SETTINGS, None);
        assert!(t.prompt().is_none());
        t.give(FramePrompt::from_box([10.0, 10.0, 50.0, 50.0]));
        t.update(Some([20, 20, 30, 30]), q(0.95), 100, 100);
        let good = t.prompt().unwrap().0;
        let step = t.update(Some([0, 0, 99, 99]), q(0.3), 100, 100);
        assert!(step.flagged);
        assert_eq!(t.prompt().unwrap(), (good, PromptSource::Held));
        assert_eq!(MaskQuality::stability_of(&[2.0, 0.5, -0.5, -3.0]), 1.0 / 3.0);
        assert!(t.update(None, q(0.99), 100, 100).flagged, "an empty mask is not trusted either");
        let unstable = MaskQuality { predicted_iou: 0.95, stability: 0.5 };
        assert!(t.update(Some([20, 20, 30, 30]), unstable, 100, 100).flagged, "an unstable mask is not trusted");
    }
}
