//! From a validated [`Config`] to a runnable [`PipelineSpec`]: opens the source, sizes the pool,
//! makes the stage factories and starts the recording taps. Everything that can fail on the
//! environment (a missing file, an unwritable folder) fails here, before any frame flows.

use std::path::{Path, PathBuf};

use crate::capture::{CaptureError, DicomCineSource, DicomOptions, ReplaySource, SimulatedSource, Source};
use crate::config::{ClockKind, Config, ConfigError, SourceKind};
use crate::haptics::{HapticsReportSlot, HapticsStage, VolumeSlot};
use crate::io::plus::labels_path;
use crate::pipeline::clock::Clock;
use crate::pipeline::passthrough::PassThroughStage;
use crate::pipeline::recording::{RecordingTap, TapContent, TapSettings};
use crate::pipeline::runtime::{PipelineSpec, StageSpec};
use crate::pipeline::stage::Stage;
use crate::pipeline::supervisor::Supervisor;
use crate::recon::batch::recording_grid;
use crate::recon::plus_config::{PlusConfigError, effective_settings};
use crate::recon::{GridError, ReconError, ReconstructStage, SnapshotSlot};
use crate::segment::stage::{PromptInbox, SegmentReportSlot, SegmentStage};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("reconstruct.plus_config: {0}")]
    PlusConfig(#[from] PlusConfigError),
    #[error("reconstruct: {0}")]
    Recon(#[from] ReconError),
    #[error("cannot start recording to {path}: {source}")]
    Recording { path: PathBuf, source: std::io::Error },
}

/// Most memory the frame pool may take: beyond this a config typo, not a real need.
const MAX_POOL_BYTES: usize = 8 << 30;

/// Opens the configured source.
pub fn open_source(config: &Config) -> Result<Box<dyn Source>, BuildError> {
    let c = &config.capture;
    Ok(match (c.kind, &c.path) {
        (SourceKind::Replay, Some(path)) => {
            let replay = ReplaySource::open(path, c.pace, c.looping)?;
            match &c.labels_path {
                Some(labels) => Box::new(replay.with_labels(labels, config.pipeline.pool_frames)?),
                None => Box::new(replay),
            }
        }
        (SourceKind::Replay, None) => {
            return Err(
                ConfigError::Invalid { key: "capture.path".into(), message: "replay needs a file".into() }.into()
            );
        }
        (SourceKind::Simulator, _) => {
            Box::new(SimulatedSource::new(c.simulator.clone(), c.pace, config.pipeline.pool_frames)?)
        }
        (SourceKind::Dicom, path) => {
            let Some(path) = path else { return Err(missing_path("dicom").into()) };
            let options = DicomOptions { pace: c.pace, looping: c.looping, roi_px: c.roi_px, spacing_mm: c.spacing_mm };
            Box::new(DicomCineSource::open(path, options)?)
        }
        (kind @ (SourceKind::File | SourceKind::V4l2 | SourceKind::Test | SourceKind::Custom), path) => {
            open_gstreamer(config, kind, path.clone())?
        }
    })
}

fn missing_path(kind: &str) -> ConfigError {
    ConfigError::Invalid { key: "capture.path".into(), message: format!("kind = \"{kind}\" needs a file") }
}

#[cfg(feature = "gstreamer")]
fn open_gstreamer(config: &Config, kind: SourceKind, path: Option<PathBuf>) -> Result<Box<dyn Source>, BuildError> {
    use crate::capture::gst::{GstOptions, GstSource};
    let c = &config.capture;
    if kind == SourceKind::File && path.is_none() {
        return Err(missing_path("file").into());
    }
    let options = GstOptions {
        kind,
        settings: c.gstreamer.clone(),
        path,
        pace: c.pace,
        looping: c.looping,
        roi_px: c.roi_px,
        spacing_mm: c.spacing_mm,
    };
    Ok(Box::new(GstSource::open(options)?))
}

#[cfg(not(feature = "gstreamer"))]
fn open_gstreamer(_: &Config, kind: SourceKind, _: Option<PathBuf>) -> Result<Box<dyn Source>, BuildError> {
    Err(crate::config::gstreamer_missing(kind).into())
}

/// Validates `config` and builds everything a run needs.
pub fn pipeline_from_config(config: &Config, supervisor: Supervisor) -> Result<PipelineSpec, BuildError> {
    config.validate()?;
    let source = open_source(config)?;
    let format = source.format();
    let pool_bytes = config.pipeline.pool_frames * format.width * format.height * format.pixel_format.bytes_per_pixel();
    if pool_bytes > MAX_POOL_BYTES {
        return Err(ConfigError::Invalid {
            key: "pipeline.pool_frames".into(),
            message: format!(
                "{} buffers of {}x{} {} frames need {:.1} GiB, over the {} GiB limit; use fewer buffers",
                config.pipeline.pool_frames,
                format.width,
                format.height,
                format.pixel_format,
                pool_bytes as f64 / (1u64 << 30) as f64,
                MAX_POOL_BYTES >> 30
            ),
        }
        .into());
    }
    let (haptics_report, segment_report) = (HapticsReportSlot::default(), SegmentReportSlot::default());
    let recon_snapshots = SnapshotSlot::default();
    // The reconstruction publishes label-volume distance fields here; haptics takes them.
    let volumes = VolumeSlot::default();
    let mut recon =
        if config.reconstruct.enabled { Some(effective_settings(&config.reconstruct.settings)?) } else { None };
    // A recording's extent is known before it plays: grid it as PLUS would (the bounding box of
    // all its frames) rather than around the first frame as live capture must.
    if let (Some((settings, calibration)), SourceKind::Replay, Some(path)) =
        (recon.as_mut(), config.capture.kind, &config.capture.path)
    {
        if settings.output_origin_mm.is_none() {
            match recording_grid(path, settings, calibration) {
                Ok(grid) => {
                    let [x, y, z] = grid.dims.map(|d| d as i64 - 1);
                    (settings.output_origin_mm, settings.output_extent) =
                        (Some(grid.origin_mm), Some([0, x, 0, y, 0, z]));
                }
                // No tracked frame: the stage counts every frame as untracked, as it would live.
                Err(ReconError::Grid(GridError::NoValidFrames(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let stages = config
        .stages()
        .into_iter()
        .filter(|(_, stage)| stage.enabled)
        .map(|(name, stage)| StageSpec {
            name: name.to_string(),
            factory: match name {
                "haptics" => {
                    let (settings, supervisor) = (config.haptics.settings.clone(), supervisor.clone());
                    let (volumes, slot) = (volumes.clone(), haptics_report.clone());
                    Box::new(move || {
                        HapticsStage::new(&settings, supervisor.clone(), volumes.clone(), slot.clone())
                            .map(|s| Box::new(s) as Box<dyn Stage>)
                    })
                }
                "segment" => {
                    let settings = config.segment.settings.clone();
                    let (inbox, buffers, slot) =
                        (PromptInbox::default(), config.pipeline.pool_frames, segment_report.clone());
                    Box::new(move || {
                        SegmentStage::new(&settings, format.width, format.height, buffers, inbox.clone(), slot.clone())
                            .map(|s| Box::new(s) as Box<dyn Stage>)
                    })
                }
                "reconstruct" => {
                    let (settings, calibration) = recon.clone().unwrap_or_default();
                    let volumes = config.haptics.enabled.then(|| volumes.clone());
                    let structure = config.haptics.settings.structure_table();
                    let snapshots = recon_snapshots.clone();
                    Box::new(move || {
                        ReconstructStage::new(
                            &settings,
                            calibration.clone(),
                            format.width,
                            format.height,
                            volumes.clone(),
                            structure,
                            snapshots.clone(),
                        )
                        .map(|s| Box::new(s) as Box<dyn Stage>)
                    })
                }
                // Placeholders until the real stages land; each later replaces its own line here.
                _ => Box::new(|| Ok(Box::new(PassThroughStage) as Box<dyn Stage>)),
            },
            on_error: stage.error_policy(name),
            queue_capacity: stage.queue_capacity,
            queue_policy: stage.queue_policy,
        })
        .collect();
    let image_fields = source.image_fields();
    let start_tap = |path: &Path, content| {
        let r = &config.record;
        let settings = TapSettings { queue_frames: r.queue_frames, compress: r.compress, fields: image_fields.clone() };
        RecordingTap::start(path, content, format.pixel_format, format.width * format.height, settings)
            .map_err(|source| BuildError::Recording { path: path.to_path_buf(), source })
    };
    let input_tap = config.record.path.as_deref().map(|p| start_tap(p, TapContent::Image)).transpose()?;
    let mask_tap = match &config.record.path {
        Some(p) if config.record.include_masks => Some(start_tap(&labels_path(p), TapContent::Mask)?),
        _ => None,
    };
    Ok(PipelineSpec {
        source,
        stages,
        clock: match config.pipeline.clock {
            ClockKind::Monotonic => Clock::monotonic(),
            ClockKind::Mock => Clock::mock(),
        },
        pool_frames: config.pipeline.pool_frames,
        max_frames: (config.pipeline.max_frames > 0).then_some(config.pipeline.max_frames),
        deadline_ms: config.metrics.deadline_ms,
        max_restarts: config.pipeline.max_restarts,
        trace_capacity: if config.metrics.trace_path.is_some() { config.metrics.trace_capacity_events } else { 0 },
        input_tap,
        mask_tap,
        supervisor,
        haptics_report: config.haptics.enabled.then_some(haptics_report),
        segment_report: config.segment.enabled.then_some(segment_report),
        recon_snapshots: config.reconstruct.stage.enabled.then_some(recon_snapshots),
    })
}
