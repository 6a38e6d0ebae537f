//! Haptics stage: turns each frame's tool pose and segmentation into a force target for the
//! 1 kHz force thread, and passes the frame on.
//!
//! Input: a frame with the tool's tracked transform (`tool_transform`, e.g. `StylusToReference`,
//! resolved through whatever chain the frame carries) and either a label volume published to the
//! [`VolumeSlot`] or the frame's mask placed by `ImageTo<Frame>`. Output: the frame, unchanged;
//! the force goes to the [`TargetSlot`]. Config: `[haptics]` (see [`HapticsSettings`]).
//! Latency budget: 1 ms (one pass over the mask when there is no volume; a few µs otherwise).
//!
//! Missing data is not an error here: an occluded tool or a lost segmentation becomes a target
//! that holds the device in its safe state, and the pipeline goes on. Only a device that cannot
//! be opened at start-up is an error (and haptics errors always safe-stop the pipeline).

use std::sync::Arc;

use serde::Serialize;

use super::driver::{Driver, DriverReport, DriverSettings, TargetSlot};
use super::force::{FixtureGains, fixture_force};
use super::link::{Link, SerialConnector};
use super::rate_loop::{ForceTarget, SafeReason};
use super::settings::HapticsSettings;
use crate::anatomy::{FieldSample, PlaneGeometry, VolumeField, VolumeSlot, nearest_in_plane};
use crate::frame::Frame;
use crate::geometry::{Vec3, apply, resolve};
use crate::pipeline::registry::{BuildContext, StageKind};
use crate::pipeline::stage::{BoxError, ErrorPolicy, Stage, StageError, StageFactory};
use crate::pipeline::supervisor::Supervisor;

/// Velocities from frames further apart than this are not trusted (a gap in tracking).
const MAX_VELOCITY_GAP_S: f64 = 0.2;
/// How long a serial write may wait: a quarter of the 1 ms period.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_micros(250);

/// What the stage saw, for the run report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HapticsReport {
    /// The serial port, or None for a dry run (forces computed, nothing sent).
    pub port: Option<String>,
    pub frames: u64,
    /// Frames whose target pushed (non-zero force).
    pub frames_with_force: u64,
    /// Frames whose target held the device safe, by reason.
    pub holds: Vec<(SafeReason, u64)>,
    /// Closest approach of the tip to the structure, mm.
    pub min_distance_mm: Option<f64>,
    /// Frames whose distance came from a label volume rather than the frame's mask.
    pub frames_from_volume: u64,
    pub driver: Option<DriverReport>,
}

/// The stage kind in the registry: `[haptics]`. It drives a device next to the patient, so any
/// error of it stops everything safely (the config refuses any other policy).
pub const KIND: StageKind =
    StageKind { name: "haptics", default_policy: ErrorPolicy::SafeStop, default_queue_capacity: 4, build };

fn build(ctx: &mut BuildContext) -> Result<StageFactory, BoxError> {
    let (settings, supervisor) = (ctx.config.haptics.settings.clone(), ctx.supervisor.clone());
    let volumes = ctx.outputs.shared::<VolumeSlot>();
    Ok(Box::new(move || {
        HapticsStage::new(&settings, supervisor.clone(), volumes.clone()).map(|s| Box::new(s) as Box<dyn Stage>)
    }))
}

pub struct HapticsStage {
    gains: FixtureGains,
    tool_frame: String,
    reference_frame: String,
    tip_offset_mm: Vec3,
    structure: [bool; 256],
    targets: TargetSlot,
    volumes: VolumeSlot,
    volume: Option<Arc<VolumeField>>,
    supervisor: Supervisor,
    previous_tip: Option<(Vec3, f64)>,
    driver: Option<Driver>,
    report: HapticsReport,
    hold_counts: [u64; SafeReason::ALL.len()],
    /// The force thread's own figures, kept when it stops.
    driver_report: Option<DriverReport>,
}

impl HapticsStage {
    /// Builds the stage; with a port configured, opens it and starts the force thread (a port
    /// that cannot be opened is an error naming it).
    pub fn new(settings: &HapticsSettings, supervisor: Supervisor, volumes: VolumeSlot) -> Result<Self, StageError> {
        let (tool, reference) = settings
            .split_tool_transform()
            .ok_or_else(|| StageError::Failed(format!("haptics.tool_transform \"{}\"", settings.tool_transform)))?;
        let targets = TargetSlot::default();
        let driver = match &settings.port {
            None => None,
            Some(path) => Some(start_driver(settings, path, targets.clone(), supervisor.clone())?),
        };
        Ok(HapticsStage {
            gains: settings.gains(),
            tool_frame: tool.to_string(),
            reference_frame: reference.to_string(),
            tip_offset_mm: settings.tip_offset_mm.into(),
            structure: settings.structure_table(),
            targets,
            volumes,
            volume: None,
            supervisor,
            previous_tip: None,
            driver,
            report: HapticsReport { port: settings.port.clone(), ..Default::default() },
            hold_counts: [0; SafeReason::ALL.len()],
            driver_report: None,
        })
    }

    /// The distance to the structure at `tip`, or why there is none. With both a label volume
    /// and the frame's mask, the nearer of the two: a partly swept structure must never look
    /// farther away than the live image shows it.
    fn sample(&mut self, frame: &Frame, tip: Vec3) -> Result<FieldSample, SafeReason> {
        let from_volume = self.volume.as_ref().map(|v| v.sample(tip));
        let from_mask = self.sample_mask(frame, tip);
        let sample = match (from_volume, from_mask) {
            (Some(v), Some(m)) if m.distance_mm < v.distance_mm => m,
            (Some(v), _) => {
                self.report.frames_from_volume += 1;
                v
            }
            (None, Some(m)) => m,
            (None, None) => return Err(SafeReason::SegmentationLost),
        };
        Ok(sample)
    }

    /// The distance to the structure in the frame's own mask, where the frame has one and is placed.
    fn sample_mask(&self, frame: &Frame, tip: Vec3) -> Option<FieldSample> {
        let mask = frame.mask.as_ref()?;
        let crate::frame::PixelData::Gray8(labels) = mask.data() else { return None };
        let image_to_reference = resolve(&frame.transforms, "Image", &self.reference_frame).ok()?;
        let plane = PlaneGeometry::from_image_to_reference(&image_to_reference);
        let (w, h) = (frame.image.width, frame.image.height);
        let structure = &self.structure;
        nearest_in_plane(&plane, &labels[..w * h], w, h, |l| structure[l as usize], tip)
    }

    /// The target for this frame.
    fn target(&mut self, frame: &Frame) -> ForceTarget {
        let mut target =
            ForceTarget { image_seq: frame.seq, faults_seen: self.supervisor.fault_count(), ..Default::default() };
        let tip = match resolve(&frame.transforms, &self.tool_frame, &self.reference_frame) {
            Ok(tool_to_reference) => apply(&tool_to_reference, self.tip_offset_mm),
            Err(_) => {
                self.previous_tip = None;
                target.hold = Some(SafeReason::ToolNotTracked);
                return target;
            }
        };
        let velocity = match self.previous_tip {
            Some((p, t)) if (frame.capture_time_s - t) > 0.0 && (frame.capture_time_s - t) < MAX_VELOCITY_GAP_S => {
                (tip - p) * (1.0 / (frame.capture_time_s - t))
            }
            _ => Vec3::zeros(),
        };
        self.previous_tip = Some((tip, frame.capture_time_s));
        let sample = match self.sample(frame, tip) {
            Ok(s) => s,
            Err(reason) => {
                target.hold = Some(reason);
                return target;
            }
        };
        let d = self.report.min_distance_mm.get_or_insert(sample.distance_mm);
        *d = d.min(sample.distance_mm);
        let confidence = frame.mask_confidence.map_or(1.0, f64::from);
        let force = fixture_force(&self.gains, &sample, velocity, confidence);
        target.force_n = force.force_n.into();
        target.low_confidence = force.low_confidence;
        target
    }
}

fn start_driver(
    settings: &HapticsSettings,
    path: &str,
    targets: TargetSlot,
    supervisor: Supervisor,
) -> Result<Driver, StageError> {
    let ms = |v: f64| (v * 1e6) as u64;
    let connector =
        SerialConnector { path: path.to_string(), baud_rate: settings.baud_rate, write_timeout: WRITE_TIMEOUT };
    let mut link = Link::new(
        Box::new(connector),
        ms(settings.heartbeat_timeout_ms),
        (ms(settings.reconnect_min_ms), ms(settings.reconnect_max_ms)),
    );
    link.connect_now(0).map_err(|e| StageError::Device(format!("cannot open haptics port {path}: {e}")))?;
    let driver_settings = DriverSettings {
        period_ns: settings.period_ns(),
        watchdog_ns: ms(settings.watchdog_ms),
        max_slew_n_per_s: settings.max_slew_n_per_s,
        shutdown_frames: settings.shutdown_frames,
        realtime_priority: settings.realtime_priority,
    };
    Driver::start(driver_settings, link, targets, supervisor)
        .map_err(|e| StageError::Device(format!("cannot start the haptics force thread: {e}")))
}

impl Stage for HapticsStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        if let Some(newer) = self.volumes.take() {
            self.volume = Some(newer);
        }
        let target = self.target(&input);
        self.report.frames += 1;
        match target.hold {
            Some(r) => self.hold_counts[SafeReason::ALL.iter().position(|&x| x == r).unwrap_or(0)] += 1,
            None => self.report.frames_with_force += u64::from(Vec3::from(target.force_n).norm() > 0.0),
        }
        self.targets.put(target);
        Ok(Some(input))
    }

    fn stop(&mut self) {
        // A second stop must not erase the first one's measurements of the force thread.
        if let Some(driver) = self.driver.as_mut().and_then(Driver::stop) {
            self.driver_report = Some(driver);
        }
    }

    fn report(&self) -> Option<serde_json::Value> {
        let mut report = self.report.clone();
        report.holds = SafeReason::ALL.iter().copied().zip(self.hold_counts).filter(|(_, n)| *n > 0).collect();
        report.driver = self.driver_report.clone();
        serde_json::to_value(report).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{IDENTITY, PixelFormat, PixelPool, TransformStatus};

    const SIDE: usize = 20;

    /// A frame whose image plane is z = 0 in the Reference frame (0.5 mm pixels), with one
    /// structure pixel at column 10, row 10 (→ (5, 5, 0) mm), and the stylus tip at `tip`.
    fn frame(pool: &PixelPool, masks: &PixelPool, tip: [f64; 3], stylus: TransformStatus, structure: bool) -> Frame {
        let mut f = Frame::new(pool.try_acquire().unwrap());
        f.image.width = SIDE;
        f.image.height = SIDE;
        let mut mask = masks.try_acquire().unwrap();
        if let crate::frame::PixelData::Gray8(m) = mask.data_mut() {
            m.fill(0);
            m[10 * SIDE + 10] = u8::from(structure);
        }
        f.mask = Some(mask);
        let mut stylus_to_tracker = IDENTITY;
        (stylus_to_tracker[3], stylus_to_tracker[7], stylus_to_tracker[11]) = (tip[0], tip[1], tip[2]);
        let image_to_probe = [0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0];
        for (name, m, status) in [
            ("StylusToTracker", stylus_to_tracker, stylus),
            ("ReferenceToTracker", IDENTITY, TransformStatus::Ok),
            ("ProbeToTracker", IDENTITY, TransformStatus::Ok),
            ("ImageToProbe", image_to_probe, TransformStatus::Ok),
        ] {
            f.transforms.set(&Arc::from(name), m, status).unwrap();
        }
        f
    }

    /// Image and mask pools for the test frames.
    fn pools() -> (PixelPool, PixelPool) {
        (PixelPool::new(PixelFormat::Gray8, SIDE * SIDE, 2), PixelPool::new(PixelFormat::Gray8, SIDE * SIDE, 2))
    }

    fn stage() -> HapticsStage {
        let settings = HapticsSettings { margin_mm: 5.0, stiffness_n_per_mm: 0.5, ..Default::default() };
        HapticsStage::new(&settings, Supervisor::new(), VolumeSlot::default()).unwrap()
    }

    fn run(stage: &mut HapticsStage, f: Frame) -> ForceTarget {
        assert!(stage.process(f).unwrap().is_some(), "the frame is passed on");
        stage.targets.take().expect("one target per frame")
    }

    #[test]
    fn pushes_the_tip_out_of_the_margin_along_the_mask_distance() {
        let (pool, masks) = pools();
        let mut s = stage();
        let t = run(&mut s, frame(&pool, &masks, [5.0, 5.0, 3.0], TransformStatus::Ok, true));
        assert_eq!(t.hold, None);
        // 3 mm from the structure pixel, margin 5 mm, 0.5 N/mm: 1 N straight up.
        for (got, want) in t.force_n.iter().zip([0.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{:?}", t.force_n);
        }
    }

    #[test]
    fn an_occluded_tool_or_an_empty_mask_holds_the_device_safe() {
        let (pool, masks) = pools();
        let mut s = stage();
        let t = run(&mut s, frame(&pool, &masks, [5.0, 5.0, 3.0], TransformStatus::Invalid, true));
        assert_eq!(t.hold, Some(SafeReason::ToolNotTracked));
        let t = run(&mut s, frame(&pool, &masks, [5.0, 5.0, 3.0], TransformStatus::Ok, false));
        assert_eq!(t.hold, Some(SafeReason::SegmentationLost));
        s.stop();
        let report = s.report().unwrap();
        assert_eq!(report["frames"], 2);
        assert_eq!(report["holds"], serde_json::json!([["tool-not-tracked", 1], ["segmentation-lost", 1]]));
    }

    #[test]
    fn a_published_volume_takes_over_from_the_mask() {
        let (pool, masks) = pools();
        let mut s = stage();
        // Structure: the half-space z >= 10 mm, 1 mm voxels.
        let labels: Vec<u8> = (0..20 * 20 * 20).map(|i| u8::from(i / 400 >= 10)).collect();
        let field = VolumeField::from_labels(&labels, [20, 20, 20], IDENTITY, |l| l == 1, 1).unwrap();
        s.volumes.put(Arc::new(field));
        let t = run(&mut s, frame(&pool, &masks, [5.0, 5.0, 7.0], TransformStatus::Ok, false));
        // 3 mm below the structure: 1 N pointing down (away from it), mask ignored.
        for (got, want) in t.force_n.iter().zip([0.0, 0.0, -1.0]) {
            assert!((got - want).abs() < 1e-6, "{:?}", t.force_n);
        }
        assert_eq!(s.report.frames_from_volume, 1);
    }

    #[test]
    fn the_mask_wins_where_it_shows_the_structure_nearer_than_the_volume() {
        let (pool, masks) = pools();
        let mut s = stage();
        // The volume knows only the half-space z >= 10 mm; the live mask shows a structure pixel
        // at (5, 5, 0). The tip at z = 3 mm is 7 mm from the volume but 3 mm from the mask.
        let labels: Vec<u8> = (0..20 * 20 * 20).map(|i| u8::from(i / 400 >= 10)).collect();
        let field = VolumeField::from_labels(&labels, [20, 20, 20], IDENTITY, |l| l == 1, 1).unwrap();
        s.volumes.put(Arc::new(field));
        let t = run(&mut s, frame(&pool, &masks, [5.0, 5.0, 3.0], TransformStatus::Ok, true));
        // The nearer distance (3 mm, margin 5 mm, 0.5 N/mm): 1 N up, away from the mask's pixel.
        for (got, want) in t.force_n.iter().zip([0.0, 0.0, 1.0]) {
            assert!((got - want).abs() < 1e-6, "{:?}", t.force_n);
        }
        assert_eq!(s.report.frames_from_volume, 0);
        // Tip at z = 7 mm: the volume (3 mm) is nearer than the mask (7 mm) and takes over.
        let t = run(&mut s, frame(&pool, &masks, [5.0, 5.0, 7.0], TransformStatus::Ok, true));
        for (got, want) in t.force_n.iter().zip([0.0, 0.0, -1.0]) {
            assert!((got - want).abs() < 1e-6, "{:?}", t.force_n);
        }
        assert_eq!(s.report.frames_from_volume, 1);
    }

    #[test]
    fn a_port_that_cannot_be_opened_is_a_device_error_naming_it() {
        let settings = HapticsSettings { port: Some("/nonexistent/ttyHAPTIC".into()), ..Default::default() };
        let e = HapticsStage::new(&settings, Supervisor::new(), VolumeSlot::default()).err().unwrap();
        assert!(matches!(&e, StageError::Device(m) if m.contains("/nonexistent/ttyHAPTIC")), "{e}");
    }
}
