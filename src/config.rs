//! Typed configuration: one TOML section per stage, every default in one place, units in names.
//!
//! Validation runs before any thread starts, in passes (ranges, then cross-stage consistency,
//! then the environment), and every error names the section and key to fix. `configs/README.md`
//! documents every key; keep the two in step.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::capture::settings::{CaptureConfig, SourceKind};
use crate::capture::simulator::SimulationError;
use crate::haptics::HapticsSettings;
use crate::pipeline::{ErrorPolicy, QueuePolicy};
use crate::recon::ReconSettings;
use crate::segment::settings::SegmentSettings;

pub const DEFAULT_POOL_FRAMES: usize = 32;
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
pub const DEFAULT_QUEUE_CAPACITY: usize = 4;
pub const DEFAULT_DEADLINE_MS: f64 = 80.0;
pub const DEFAULT_RECORD_QUEUE_FRAMES: usize = 64;
pub const DEFAULT_TRACE_CAPACITY_EVENTS: usize = 200_000;

/// Largest values accepted, to catch typos that would exhaust memory.
const MAX_POOL_FRAMES: usize = 4096;
const MAX_QUEUE_CAPACITY: usize = 1024;
const MAX_TRACE_CAPACITY_EVENTS: usize = 50_000_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub pipeline: PipelineConfig,
    pub capture: CaptureConfig,
    pub preprocess: StageConfig,
    pub segment: StageSection<SegmentSettings>,
    pub threshold: StageConfig,
    pub reconstruct: StageSection<ReconSettings>,
    pub haptics: StageSection<HapticsSettings>,
    pub record: RecordConfig,
    pub metrics: MetricsConfig,
}

/// Which clock stamps the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockKind {
    /// Real monotonic time.
    #[default]
    Monotonic,
    /// Deterministic virtual time (replays and tests); needs `block` queues.
    Mock,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub clock: ClockKind,
    /// Pixel buffers for frames in flight; must cover every queue and stage.
    pub pool_frames: usize,
    /// Stop after this many frames; 0 runs until the source ends.
    pub max_frames: u64,
    /// Restarts allowed per stage with `on_error = "restart-stage"` before a safe-stop.
    pub max_restarts: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            clock: ClockKind::Monotonic,
            pool_frames: DEFAULT_POOL_FRAMES,
            max_frames: 0,
            max_restarts: DEFAULT_MAX_RESTARTS,
        }
    }
}

/// Settings every processing stage has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    pub enabled: bool,
    /// Unset: the stage's own default (safe-stop for haptics, drop-frame for the others).
    pub on_error: Option<ErrorPolicy>,
    /// Frames the queue in front of this stage holds; unset: the stage's own default (1 in front
    /// of segmentation, so a live pipeline segments only the newest frame; 4 elsewhere).
    pub queue_capacity: Option<usize>,
    pub queue_policy: QueuePolicy,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig { enabled: true, on_error: None, queue_capacity: None, queue_policy: QueuePolicy::DropOldest }
    }
}

/// The keys of [`StageConfig`]; in a stage section with its own settings, these go to the
/// common part and every other key to the stage's settings.
const STAGE_KEYS: [&str; 4] = ["enabled", "on_error", "queue_capacity", "queue_policy"];

/// A stage section with settings of its own (e.g. `[haptics]`): the keys every stage has plus
/// the stage's, side by side in one TOML table, unknown keys still refused. (serde's `flatten`
/// cannot be combined with `deny_unknown_fields`, hence the split by hand.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSection<S> {
    pub stage: StageConfig,
    pub settings: S,
}

impl<S> std::ops::Deref for StageSection<S> {
    type Target = StageConfig;
    fn deref(&self) -> &StageConfig {
        &self.stage
    }
}

impl<S> std::ops::DerefMut for StageSection<S> {
    fn deref_mut(&mut self) -> &mut StageConfig {
        &mut self.stage
    }
}

impl<'de, S: DeserializeOwned> Deserialize<'de> for StageSection<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut own = toml::Table::deserialize(deserializer)?;
        let mut common = toml::Table::new();
        for key in STAGE_KEYS {
            if let Some(value) = own.remove(key) {
                common.insert(key.to_string(), value);
            }
        }
        let stage = toml::Value::Table(common).try_into().map_err(D::Error::custom)?;
        let settings = toml::Value::Table(own).try_into().map_err(D::Error::custom)?;
        Ok(StageSection { stage, settings })
    }
}

impl<S: Serialize> Serialize for StageSection<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        #[derive(Serialize)]
        struct Flat<'a, S> {
            #[serde(flatten)]
            stage: &'a StageConfig,
            #[serde(flatten)]
            settings: &'a S,
        }
        Flat { stage: &self.stage, settings: &self.settings }.serialize(serializer)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Record every captured frame to this sequence file; unset records nothing.
    pub path: Option<PathBuf>,
    /// Also record the label masks that reach the end of the chain, to `<stem>.labels.mha`.
    pub include_masks: bool,
    /// Frames the recorder may fall behind by before it drops (and counts) frames.
    pub queue_frames: usize,
    /// zlib-compress the pixel data.
    pub compress: bool,
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig { path: None, include_masks: false, queue_frames: DEFAULT_RECORD_QUEUE_FRAMES, compress: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// End-to-end budget; frames over it are counted as deadline misses.
    pub deadline_ms: f64,
    /// Write the JSON report here.
    pub report_path: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace here.
    pub trace_path: Option<PathBuf>,
    /// Trace events kept per stage; later ones are counted, not stored.
    pub trace_capacity_events: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            deadline_ms: DEFAULT_DEADLINE_MS,
            report_path: None,
            trace_path: None,
            trace_capacity_events: DEFAULT_TRACE_CAPACITY_EVENTS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// A GStreamer source asked of a build without the `gstreamer` feature.
pub(crate) fn gstreamer_missing(kind: SourceKind) -> ConfigError {
    invalid(
        "capture.kind",
        format!("\"{}\" needs GStreamer, but this sonoflow was built without the `gstreamer` feature", kind.name()),
    )
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

/// Checks that `key`'s `value` lies in `range`.
fn in_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, format!("{value} is outside {}..={}", range.start(), range.end())))
    }
}

impl Config {
    /// Reads and parses a TOML file (unknown keys are errors); does not validate.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// The processing stages in pipeline order, with their section names.
    pub fn stages(&self) -> [(&'static str, &StageConfig); 5] {
        [
            ("preprocess", &self.preprocess),
            ("segment", &self.segment.stage),
            ("threshold", &self.threshold),
            ("reconstruct", &self.reconstruct.stage),
            ("haptics", &self.haptics.stage),
        ]
    }

    /// All checks, in order: ranges, cross-stage consistency, environment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_ranges()?;
        self.check_consistency()?;
        self.check_environment()
    }

    fn check_ranges(&self) -> Result<(), ConfigError> {
        let p = &self.pipeline;
        in_range("pipeline.pool_frames", p.pool_frames, 2..=MAX_POOL_FRAMES)?;
        in_range("pipeline.max_restarts", p.max_restarts, 0..=100)?;
        for (name, stage) in self.stages() {
            if let Some(capacity) = stage.queue_capacity {
                in_range(&format!("{name}.queue_capacity"), capacity, 1..=MAX_QUEUE_CAPACITY)?;
            }
        }
        let m = &self.metrics;
        if !(m.deadline_ms.is_finite() && m.deadline_ms > 0.0) {
            return Err(invalid("metrics.deadline_ms", format!("{} must be a positive number of ms", m.deadline_ms)));
        }
        in_range("metrics.trace_capacity_events", m.trace_capacity_events, 0..=MAX_TRACE_CAPACITY_EVENTS)?;
        if let Err(SimulationError::Setting { field, value, message }) = self.capture.simulator.validate() {
            return Err(invalid(&format!("capture.simulator.{field}"), format!("{value}: {message}")));
        }
        if let Err(e) = self.capture.gstreamer.validate() {
            return Err(invalid(&format!("capture.gstreamer.{}", e.key), e.message));
        }
        if let Some(spacing) = self.capture.spacing_mm
            && !spacing.iter().all(|s| s.is_finite() && *s > 0.0)
        {
            return Err(invalid("capture.spacing_mm", format!("{spacing:?}: both must be positive mm")));
        }
        if let Some([_, _, w, h]) = self.capture.roi_px
            && (w == 0 || h == 0)
        {
            return Err(invalid("capture.roi_px", "width and height must be positive"));
        }
        if let Err(e) = self.segment.settings.validate() {
            return Err(invalid(&format!("segment.{}", e.key), e.message));
        }
        if let Err(e) = self.reconstruct.settings.validate() {
            return Err(invalid(&format!("reconstruct.{}", e.key), e.message));
        }
        if let Err(e) = self.haptics.settings.validate() {
            return Err(invalid(&format!("haptics.{}", e.key), e.message));
        }
        in_range("record.queue_frames", self.record.queue_frames, 1..=MAX_POOL_FRAMES)
    }

    /// Frames that can be in flight at once: one per queue slot and stage, plus the one being
    /// captured and the one leaving the sink.
    pub fn frames_in_flight(&self) -> usize {
        // An unset capacity counts at the largest default: an upper bound is enough to size the pool.
        let capacity = |s: &StageConfig| s.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
        self.stages().iter().filter(|(_, s)| s.enabled).map(|(_, s)| capacity(s) + 1).sum::<usize>() + 2
    }

    fn check_consistency(&self) -> Result<(), ConfigError> {
        // Haptics drives a device next to the patient: any error of it stops everything safely.
        if self.haptics.on_error.is_some_and(|p| p != ErrorPolicy::SafeStop) {
            return Err(invalid(
                "haptics.on_error",
                "must be \"safe-stop\": a haptics fault must always put the device in its safe state",
            ));
        }
        let needed = self.frames_in_flight();
        if self.pipeline.pool_frames < needed {
            return Err(invalid(
                "pipeline.pool_frames",
                format!(
                    "{} buffers cannot cover the {needed} frames the enabled stages and their queues can hold; \
                     raise it to at least {needed} or shrink the queues",
                    self.pipeline.pool_frames
                ),
            ));
        }
        if self.pipeline.clock == ClockKind::Mock
            && let Some((name, _)) =
                self.stages().into_iter().find(|(_, s)| s.enabled && s.queue_policy != QueuePolicy::Block)
        {
            return Err(invalid(
                &format!("{name}.queue_policy"),
                "the mock clock is for deterministic runs and needs \"block\" queues (which frames a \
                     drop-oldest queue drops depends on thread timing)",
            ));
        }
        let kind = self.capture.kind;
        match (kind.reads_file(), &self.capture.path) {
            (true, None) => {
                return Err(invalid(
                    "capture.path",
                    format!("kind = \"{}\" needs the file to play (or pass --input)", kind.name()),
                ));
            }
            (false, Some(_)) => {
                return Err(invalid("capture.path", "is only used with kind = \"replay\", \"dicom\" or \"file\""));
            }
            _ => {}
        }
        if self.capture.labels_path.is_some() && kind != SourceKind::Replay {
            return Err(invalid("capture.labels_path", "is only used with kind = \"replay\""));
        }
        if self.capture.looping && !kind.reads_file() {
            return Err(invalid("capture.loop", "is only used with kind = \"replay\", \"dicom\" or \"file\""));
        }
        for (key, set) in [
            ("capture.roi_px", self.capture.roi_px.is_some()),
            ("capture.spacing_mm", self.capture.spacing_mm.is_some()),
        ] {
            if set && !kind.takes_roi() {
                return Err(invalid(key, "is only used with the GStreamer and DICOM sources"));
            }
        }
        if kind == SourceKind::Custom && self.capture.gstreamer.pipeline.is_none() {
            return Err(invalid("capture.gstreamer.pipeline", "kind = \"custom\" needs the pipeline to run"));
        }
        if self.record.include_masks && self.record.path.is_none() {
            return Err(invalid("record.include_masks", "needs record.path"));
        }
        Ok(())
    }

    fn check_environment(&self) -> Result<(), ConfigError> {
        if self.capture.kind.uses_gstreamer() && !cfg!(feature = "gstreamer") {
            return Err(gstreamer_missing(self.capture.kind));
        }
        let inputs = [
            ("capture.path", &self.capture.path),
            ("capture.labels_path", &self.capture.labels_path),
            ("reconstruct.plus_config", &self.reconstruct.settings.plus_config),
        ];
        for (key, path) in inputs {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(invalid(key, format!("{} does not exist or is not a file", path.display())));
            }
        }
        let outputs = [
            ("record.path", &self.record.path),
            ("metrics.report_path", &self.metrics.report_path),
            ("metrics.trace_path", &self.metrics.trace_path),
        ];
        for (key, path) in outputs {
            if let Some(path) = path {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if !parent.is_dir() {
                    return Err(invalid(key, format!("folder {} does not exist", parent.display())));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("expected an invalid key, got {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::parse("[segment]\nqueue_capacityy = 3\n").unwrap_err();
        assert!(err.contains("queue_capacityy"), "{err}");
        let err = Config::parse("[segmnt]\n").unwrap_err();
        assert!(err.contains("segmnt"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Config::parse("[pipeline]\npool_frames = \"many\"\n").unwrap_err();
        assert!(err.contains("pool_frames"), "{err}");
    }

    #[test]
    fn ranges_name_section_and_key() {
        let c = Config::parse("[threshold]\nqueue_capacity = 0\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "threshold.queue_capacity");
        let c = Config::parse("[metrics]\ndeadline_ms = -1.0\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "metrics.deadline_ms");
    }

    #[test]
    fn simulator_settings_are_checked_with_the_rest() {
        let c = Config::parse("[capture.simulator]\nframe_rate_hz = 0.0\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.simulator.frame_rate_hz");
    }

    #[test]
    fn haptics_section_mixes_stage_keys_and_its_own() {
        let c = Config::parse("[haptics]\nqueue_capacity = 2\nmargin_mm = 3.5\nport = \"/dev/ttyACM0\"\n").unwrap();
        assert_eq!(c.haptics.queue_capacity, Some(2));
        assert_eq!(c.haptics.settings.margin_mm, 3.5);
        assert_eq!(c.haptics.settings.port.as_deref(), Some("/dev/ttyACM0"));
        let err = Config::parse("[haptics]\nmargin = 3.5\n").unwrap_err();
        assert!(err.contains("margin"), "{err}");
        let c = Config::parse("[haptics]\nport = \"/dev/ttyUSB0\"\nbaud_rate = 115200\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "haptics.baud_rate");
    }

    #[test]
    fn stage_keys_list_every_stage_config_field() {
        let value = toml::Value::try_from(StageConfig {
            on_error: Some(ErrorPolicy::DropFrame),
            queue_capacity: Some(1),
            ..Default::default()
        })
        .unwrap();
        let mut keys: Vec<_> = value.as_table().unwrap().keys().cloned().collect();
        keys.sort();
        let mut expected = STAGE_KEYS.map(String::from).to_vec();
        expected.sort();
        assert_eq!(keys, expected);
    }

    #[test]
    fn haptics_must_safe_stop() {
        let c = Config::parse("[haptics]\non_error = \"drop-frame\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "haptics.on_error");
        Config::parse("[haptics]\non_error = \"safe-stop\"\n").unwrap().validate().unwrap();
    }

    #[test]
    fn pool_must_cover_frames_in_flight() {
        let c = Config::parse("[pipeline]\npool_frames = 8\n").unwrap();
        assert_eq!(c.frames_in_flight(), 5 * 5 + 2);
        assert_eq!(key_of(c.validate().unwrap_err()), "pipeline.pool_frames");
    }

    #[test]
    fn mock_clock_needs_blocking_queues() {
        let c = Config::parse("[pipeline]\nclock = \"mock\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "preprocess.queue_policy");
    }

    #[test]
    fn replay_needs_an_existing_file() {
        let c = Config::parse("[capture]\nkind = \"replay\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.path");
        let c = Config::parse("[capture]\nkind = \"replay\"\npath = \"/no/such/file.mha\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.path");
    }

    #[test]
    fn capture_keys_must_fit_the_kind() {
        let c = Config::parse("[capture]\nkind = \"dicom\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.path");
        let c = Config::parse("[capture]\nkind = \"custom\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.gstreamer.pipeline");
        let c = Config::parse("[capture]\nroi_px = [0, 0, 10, 10]\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.roi_px");
        let c = Config::parse("[capture]\nkind = \"test\"\nspacing_mm = [0.1, 0.0]\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.spacing_mm");
        let c = Config::parse("[capture]\nkind = \"test\"\n[capture.gstreamer]\nmax_buffers = 0\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.gstreamer.max_buffers");
        let c = Config::parse("[capture]\nkind = \"test\"\nloop = true\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "capture.loop");
    }

    #[test]
    fn output_folders_must_exist() {
        let c = Config::parse("[metrics]\nreport_path = \"/no/such/folder/r.json\"\n").unwrap();
        assert_eq!(key_of(c.validate().unwrap_err()), "metrics.report_path");
    }
}
