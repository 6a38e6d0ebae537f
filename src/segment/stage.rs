//! Segment stage: LiteMedSAM on every frame, from a box or point prompt, tracking the target.
//!
//! Input: a Gray8 frame. Output: the frame with its `mask` (label 1 = target) and
//! `mask_confidence` (the model's predicted IoU, 0 when flagged), and a [`Segmentation`]
//! attachment: the logits at frame size (> 0 is target), the prompt used and where it came from,
//! the engine, whether the mask was flagged. Config:
//! `[segment]` ([`SegmentSettings`]). Without a prompt the stage passes frames on untouched and
//! never loads the model. Latency budget: 40 ms on the CPU engine, which the student encoder
//! meets on two cores (LiteMedSAM's own encoder takes about 0.4 s; `sonoflow bench --model`);
//! the CUDA engine is not built yet.
//!
//! New prompts can arrive at any time through the [`PromptInbox`] (the newest wins).

use std::path::PathBuf;

use super::attachment::{Engine, Segmentation, SegmentationInfo, segmentation_pool};
use super::cpu::ops::CpuOps;
use super::graph::prompt::{Point, Prompt};
use super::letterbox::Letterbox;
use super::model::LiteMedSam;
use super::postprocess::{logits_to_frame, mask_bounding_box};
use super::preprocess::Preprocessor;
use super::settings::{EngineChoice, ModelChoice, SegmentSettings};
use super::tracker::{FramePrompt, MaskQuality, Tracker, TrackerSettings};
use crate::frame::{AttachmentPool, Frame, PixelData, PixelFormat, PixelPool};
use crate::model::{LITEMEDSAM, Manifest, STUDENT, StudentManifest, Weights, locate_model_dir};
use crate::pipeline::latest::Latest;
use crate::pipeline::registry::{BuildContext, StageKind};
use crate::pipeline::stage::{BoxError, ErrorPolicy, Stage, StageError, StageFactory};

/// Where new prompts (frame pixels) reach the stage; the newest wins.
pub type PromptInbox = Latest<FramePrompt>;

/// The model and every buffer it needs, for frames up to the source's size.
struct Segmenter {
    model: LiteMedSam<CpuOps>,
    pre: Preprocessor,
    plane: Vec<f32>,
    low_res: Vec<f32>,
    tracker: Tracker,
    track: bool,
    tracker_settings: TrackerSettings,
    masks: PixelPool,
    segmentations: AttachmentPool<Segmentation>,
}

/// What the stage did, for the run report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SegmentReport {
    /// The image encoder: "litemedsam" or "student".
    pub model: &'static str,
    pub engine: Engine,
    /// Frames the model ran on.
    pub frames_segmented: u64,
    /// Of those, frames whose mask was not trusted (IoU or stability under its floor).
    pub frames_flagged: u64,
    /// Prompts that arrived while running (the configured one included).
    pub prompts_given: u64,
    pub predicted_iou_mean: f64,
    pub predicted_iou_min: Option<f32>,
}

/// The stage kind in the registry: `[segment]`, frames dropped on error. The queue in front of it
/// holds one frame: segmentation is the slowest stage, and a live pipeline must segment the
/// newest frame, never work through a backlog.
pub const KIND: StageKind =
    StageKind { name: "segment", default_policy: ErrorPolicy::DropFrame, default_queue_capacity: 1, build };

fn build(ctx: &mut BuildContext) -> Result<StageFactory, BoxError> {
    let settings = ctx.config.segment.settings.clone();
    let (format, buffers) = (ctx.format, ctx.config.pipeline.pool_frames);
    let inbox = ctx.outputs.shared::<PromptInbox>();
    Ok(Box::new(move || {
        SegmentStage::new(&settings, format.width, format.height, buffers, inbox.clone())
            .map(|s| Box::new(s) as Box<dyn Stage>)
    }))
}

pub struct SegmentStage {
    segmenter: Option<Box<Segmenter>>,
    report: SegmentReport,
    inbox: PromptInbox,
    /// The configured prompt and the frame from which it applies, until that frame arrives.
    scheduled: Option<(FramePrompt, u64)>,
}

/// The initial prompt of the settings, in frame pixels.
fn initial_prompt(s: &SegmentSettings) -> Option<FramePrompt> {
    if !s.has_prompt() {
        return None;
    }
    let mut p = FramePrompt { bbox: s.bbox, points: [None; 2] };
    for (slot, [x, y, label]) in p.points.iter_mut().zip(&s.points) {
        *slot = Some((*x, *y, *label > 0.5));
    }
    Some(p)
}

/// Loads the weights and plans the engine; errors name the file and say how to fix it.
pub fn load_model(settings: &SegmentSettings) -> Result<LiteMedSam<CpuOps>, StageError> {
    if settings.engine == EngineChoice::Cuda {
        return Err(StageError::Failed(
            "segment.engine = \"cuda\": the CUDA engine is not built yet; use \"cpu\" or \"auto\"".into(),
        ));
    }
    let dir: PathBuf = match &settings.model_dir {
        Some(d) => d.clone(),
        None => locate_model_dir(LITEMEDSAM).ok_or_else(|| {
            StageError::Failed(
                "no engines/litemedsam folder found; run `sonoflow model fetch` or set segment.model_dir".into(),
            )
        })?,
    };
    let manifest = Manifest::load(&dir).map_err(|e| StageError::caused("cannot load the segmentation model", e))?;
    let weights = Weights::load(manifest.weights_path(&dir))
        .map_err(|e| StageError::caused("cannot load the segmentation model", e))?;
    let ops =
        CpuOps::new(settings.threads).map_err(|e| StageError::caused("cannot start the CPU engine's threads", e))?;
    if settings.engine == EngineChoice::Auto {
        tracing::info!("segment: CPU engine ({} threads); the CUDA engine is not built yet", settings.threads);
    }
    let planned = match settings.model {
        ModelChoice::Litemedsam => LiteMedSam::plan(ops, &weights),
        ModelChoice::Student => {
            let dir = match &settings.student_dir {
                Some(d) => d.clone(),
                None => locate_model_dir(STUDENT).ok_or_else(|| {
                    StageError::Failed(
                        "no engines/student folder found (it is part of the repository); set segment.student_dir"
                            .into(),
                    )
                })?,
            };
            let what = || format!("cannot load the student encoder from {}", dir.display());
            let manifest = StudentManifest::load(&dir).map_err(|e| StageError::caused(what(), e))?;
            let student = manifest.load_weights(&dir).map_err(|e| StageError::caused(what(), e))?;
            LiteMedSam::plan_student(ops, &weights, &student)
        }
    };
    planned.map_err(|e| StageError::caused("cannot plan the segmentation model", e))
}

impl SegmentStage {
    /// `max_width` × `max_height` bounds the frames; `buffers` is how many masks and logits can be
    /// in flight (the pipeline's pool size).
    pub fn new(
        settings: &SegmentSettings,
        max_width: usize,
        max_height: usize,
        buffers: usize,
        inbox: PromptInbox,
    ) -> Result<Self, StageError> {
        let report = SegmentReport { model: settings.model.name(), engine: Engine::Cpu, ..Default::default() };
        let Some(initial) = initial_prompt(settings) else {
            return Ok(SegmentStage { segmenter: None, report, inbox, scheduled: None });
        };
        let pixels = max_width * max_height;
        let tracker_settings = TrackerSettings {
            margin_px: settings.track_margin_px,
            iou_floor: settings.iou_floor,
            stability_floor: settings.stability_floor,
        };
        let mut model = load_model(settings)?;
        let plane = vec![0.0; Letterbox::SIDE * Letterbox::SIDE];
        let mut low_res = vec![0.0; Letterbox::SIDE * Letterbox::SIDE];
        // One inference before the first frame: the engine's buffers are touched (paged in) here,
        // not on the clock of the frame the user just prompted.
        model.encode(&plane);
        model.decode(&Prompt::from_box([64.0, 64.0, 192.0, 192.0]), &mut low_res);
        let segmenter = Segmenter {
            model,
            pre: Preprocessor::new(max_width, max_height),
            plane,
            low_res,
            tracker: Tracker::new(tracker_settings, None),
            track: settings.track,
            tracker_settings,
            masks: PixelPool::new(PixelFormat::Gray8, pixels, buffers),
            segmentations: segmentation_pool(pixels, buffers),
        };
        Ok(SegmentStage {
            segmenter: Some(Box::new(segmenter)),
            report,
            inbox,
            scheduled: Some((initial, settings.prompt_from_frame)),
        })
    }
}

fn model_prompt(p: &FramePrompt, letterbox: &Letterbox) -> Prompt {
    let mut prompt = Prompt { bbox: p.bbox.map(|b| letterbox.box_to_model(b)), ..Default::default() };
    for &(x, y, positive) in p.points.iter().flatten() {
        let [x, y] = letterbox.point_to_model([x, y]);
        prompt.push_point(Point { x, y, positive });
    }
    prompt
}

impl Stage for SegmentStage {
    fn process(&mut self, mut input: Frame) -> Result<Option<Frame>, StageError> {
        let Some(s) = self.segmenter.as_deref_mut() else {
            return Ok(Some(input));
        };
        if let Some((p, from)) = self.scheduled
            && input.seq >= from
        {
            s.tracker.give(p);
            self.scheduled = None;
            self.report.prompts_given += 1;
        }
        if let Some(p) = self.inbox.take() {
            s.tracker.give(p);
            self.scheduled = None;
            self.report.prompts_given += 1;
        }
        let Some((prompt, source)) = s.tracker.prompt() else {
            return Ok(Some(input));
        };
        let (w, h, seq) = (input.image.width, input.image.height, input.seq);
        let bad = |reason: String| StageError::BadFrame { seq, reason };
        let Some(pixels) = input.image.as_u8() else {
            return Err(bad("segmentation takes 8-bit frames; this one is 16-bit".into()));
        };
        let letterbox = s.pre.run(pixels, w, h, &mut s.plane).map_err(|e| bad(e.to_string()))?;
        s.model.encode(&s.plane);
        let iou = s.model.decode(&model_prompt(&prompt, &letterbox), &mut s.low_res);
        let (Some(mut mask), Some(mut segmentation)) = (s.masks.try_acquire(), s.segmentations.try_acquire()) else {
            return Err(StageError::Failed("every mask buffer is in flight; raise pipeline.pool_frames".into()));
        };
        let PixelData::Gray8(mask_pixels) = mask.data_mut() else { unreachable!("the mask pool is Gray8") };
        let logits = segmentation.logits_mut(w * h);
        logits_to_frame(&s.low_res, &letterbox, logits, &mut mask_pixels[..w * h]).map_err(|e| bad(e.to_string()))?;
        let mask_box = mask_bounding_box(&mask_pixels[..w * h], w, h).map_err(|e| bad(e.to_string()))?;
        let quality = MaskQuality { predicted_iou: iou, stability: MaskQuality::stability_of(logits) };
        let flagged = if s.track {
            s.tracker.update(mask_box, quality, w, h).flagged
        } else {
            !quality.trusted(&s.tracker_settings)
        };
        let r = &mut self.report;
        r.frames_segmented += 1;
        r.frames_flagged += u64::from(flagged);
        r.predicted_iou_mean += (f64::from(iou) - r.predicted_iou_mean) / r.frames_segmented as f64;
        r.predicted_iou_min = Some(r.predicted_iou_min.map_or(iou, |m| m.min(iou)));
        segmentation.info = SegmentationInfo {
            predicted_iou: iou,
            stability: quality.stability,
            prompt_box: prompt.bbox,
            prompt_source: source,
            flagged,
            engine: r.engine,
        };
        input.attachments.insert(segmentation).map_err(|e| StageError::caused("cannot attach the segmentation", e))?;
        input.mask = Some(mask);
        // A flagged mask is not to be acted on: zero confidence (the haptics stage holds its
        // device safe under its confidence floor).
        input.mask_confidence = Some(if flagged { 0.0 } else { iou });
        Ok(Some(input))
    }

    /// Only when the model ran: a stage without a prompt has nothing to report.
    fn report(&self) -> Option<serde_json::Value> {
        self.segmenter.as_ref().and_then(|_| serde_json::to_value(&self.report).ok())
    }
}
