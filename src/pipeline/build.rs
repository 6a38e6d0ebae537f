//! From a validated [`Config`] to a runnable [`PipelineSpec`]: opens the source, sizes the pool,
//! makes the stage factories through the stage registry and starts the recording taps.
//! Everything that can fail on the environment (a missing file, an unwritable folder) fails here,
//! before any frame flows.

use std::path::{Path, PathBuf};

use crate::capture::{CaptureError, DicomCineSource, DicomOptions, ReplaySource, SimulatedSource, Source};
use crate::config::{ClockKind, Config, ConfigError, SourceKind};
use crate::io::plus::labels_path;
use crate::pipeline::clock::Clock;
use crate::pipeline::outputs::Outputs;
use crate::pipeline::recording::{RecordingTap, TapContent, TapSettings};
use crate::pipeline::registry::{BuildContext, StageKind, find};
use crate::pipeline::runtime::{PipelineSpec, StageSpec};
use crate::pipeline::stage::BoxError;
use crate::pipeline::supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A config section names a stage kind the registry does not have.
    #[error("[{section}]: no stage kind of that name is registered (known: {known})")]
    UnknownStage { section: String, known: String },
    #[error("{stage}")]
    Stage {
        stage: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot start recording to {}", path.display())]
    Recording {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// Validates `config` and builds everything a run needs, each enabled stage by its kind in
/// `registry` (`sonoflow::stages::REGISTRY` for the product's chain).
pub fn pipeline_from_config(
    config: &Config,
    supervisor: Supervisor,
    registry: &[StageKind],
) -> Result<PipelineSpec, BuildError> {
    config.validate()?;
    let source = open_source(config)?;
    let format = source.format();
    check_pool_size(config, format)?;
    let mut outputs = Outputs::default();
    let mut stages = Vec::new();
    for (name, stage) in config.stages().into_iter().filter(|(_, stage)| stage.enabled) {
        let kind = find(registry, name).ok_or_else(|| BuildError::UnknownStage {
            section: name.to_string(),
            known: registry.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
        })?;
        let mut context = BuildContext { config, format, supervisor: &supervisor, outputs: &mut outputs };
        let factory =
            (kind.build)(&mut context).map_err(|source| BuildError::Stage { stage: name.to_string(), source })?;
        stages.push(StageSpec {
            name: name.to_string(),
            factory,
            on_error: stage.on_error.unwrap_or(kind.default_policy),
            queue_capacity: stage.queue_capacity.unwrap_or(kind.default_queue_capacity),
            queue_policy: stage.queue_policy,
        });
    }
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
        outputs,
    })
}

/// Refuses a pool that would take more memory than any real need.
fn check_pool_size(config: &Config, format: crate::capture::SourceFormat) -> Result<(), ConfigError> {
    let pool_bytes = config.pipeline.pool_frames * format.width * format.height * format.pixel_format.bytes_per_pixel();
    if pool_bytes <= MAX_POOL_BYTES {
        return Ok(());
    }
    Err(ConfigError::Invalid {
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
    })
}
