//! The reconstruct stage: compounds each tracked frame (and its label mask, when segmentation
//! left one) into the grey and label volumes as it arrives, keeping no frame. Every
//! `publish_every_frames` frames with masks it hands a copy of the label volume to a publisher
//! thread, which computes the signed distance field and leaves it in the shared [`VolumeSlot`]
//! (the distance transform takes milliseconds and allocates, so it stays off this thread). A
//! snapshot of both volumes is taken on request and when the stage stops.
//!
//! Input: frames with `ImageTo<Reference>` resolvable through their transforms plus the
//! calibration. Output: the frame, unchanged. Config: `[reconstruct]` (see configs/README.md).
//! The grid is the explicit one of the settings or, since the frames to come are unknown, the
//! first placed frame's bounding box grown by `live_margin_mm` on every side (allocated then:
//! the stage's warm-up). Latency budget: ~2 ms for a 256×256 frame (one thread; insertion is
//! allocation-free after the first frame).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::anatomy::{VolumeField, VolumeSlot};
use crate::config::SourceKind;
use crate::frame::{Frame, Matrix4, NamedTransform, TransformSet};
use crate::geometry::resolve;
use crate::pipeline::registry::{BuildContext, StageKind};
use crate::pipeline::stage::{BoxError, ErrorPolicy, Stage, StageError, StageFactory};

use super::ReconError;
use super::batch::recording_grid;
use super::grid::{GridError, OutputGrid};
use super::labels::LabelVolume;
use super::paste::GreyVolume;
use super::plus_config::effective_settings;
use super::settings::ReconSettings;

/// Both volumes at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconSnapshot {
    pub grid: OutputGrid,
    pub grey: Vec<u8>,
    pub accumulation: Vec<u16>,
    pub labels: Vec<u8>,
    pub frames_inserted: u64,
    pub frames_skipped: u64,
}

/// Where snapshots appear; `request()` asks the stage for a fresh one at its next frame.
#[derive(Clone, Default)]
pub struct SnapshotSlot {
    requested: Arc<AtomicBool>,
    latest: Arc<Mutex<Option<ReconSnapshot>>>,
}

impl SnapshotSlot {
    pub fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// The latest snapshot taken, if any (it stays for later readers).
    pub fn latest(&self) -> Option<ReconSnapshot> {
        self.latest.lock().ok()?.clone()
    }
}

/// The stage kind in the registry: `[reconstruct]`, frames dropped on error.
pub const KIND: StageKind =
    StageKind { name: "reconstruct", default_policy: ErrorPolicy::DropFrame, default_queue_capacity: 4, build };

fn build(ctx: &mut BuildContext) -> Result<StageFactory, BoxError> {
    let config = ctx.config;
    let (mut settings, calibration) = effective_settings(&config.reconstruct.settings)?;
    // A recording's extent is known before it plays: grid it as PLUS would (the bounding box of
    // all its frames) rather than around the first frame as live capture must.
    if let (SourceKind::Replay, Some(path), None) =
        (config.capture.kind, &config.capture.path, settings.output_origin_mm)
    {
        match recording_grid(path, &settings, &calibration) {
            Ok(grid) => {
                let [x, y, z] = grid.dims.map(|d| d as i64 - 1);
                (settings.output_origin_mm, settings.output_extent) = (Some(grid.origin_mm), Some([0, x, 0, y, 0, z]));
            }
            // No tracked frame: the stage counts every frame as untracked, as it would live.
            Err(ReconError::Grid(GridError::NoValidFrames(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Distance fields are published only for a stage that reads them (the haptic fixture).
    let volumes = config.haptics.enabled.then(|| ctx.outputs.shared::<VolumeSlot>());
    let structure = config.haptics.settings.structure_table();
    let snapshots = ctx.outputs.shared::<SnapshotSlot>();
    let format = ctx.format;
    Ok(Box::new(move || {
        let stage = ReconstructStage::new(
            &settings,
            calibration.clone(),
            format.width,
            format.height,
            volumes.clone(),
            structure,
            snapshots.clone(),
        )?;
        Ok(Box::new(stage) as Box<dyn Stage>)
    }))
}

/// Label volumes on their way to the distance-field publisher, and their buffers coming back.
struct Publisher {
    to_worker: Sender<(Vec<u8>, u64)>,
    spare: Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

pub struct ReconstructStage {
    settings: ReconSettings,
    calibration: Vec<NamedTransform>,
    width: usize,
    height: usize,
    scratch: TransformSet,
    publish_every: u64,
    masks_since_publish: u64,
    version: u64,
    /// Where the publisher leaves distance fields (None: haptics is off).
    slot: Option<VolumeSlot>,
    structure: [bool; 256],
    snapshots: SnapshotSlot,
    /// Made when the grid is known: at build time for an explicit grid, else at the first frame.
    volumes: Option<Volumes>,
    inserted: u64,
    skipped: u64,
    masks: MaskCounts,
}

/// The stage's report section: which masks went into the label volume.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MaskCounts {
    pub masks_inserted: u64,
    /// Masks their segmenter flagged (confidence 0), left out of the label volume.
    pub masks_untrusted: u64,
}

struct Volumes {
    grey: GreyVolume,
    labels: LabelVolume,
    publisher: Option<Publisher>,
    /// A label buffer the publisher could not take yet.
    held: Option<Vec<u8>>,
    /// Preallocated snapshot, filled in place on request.
    snapshot: ReconSnapshot,
}

impl ReconstructStage {
    /// Builds the stage for `width`×`height` frames. `volumes`: the haptics slot to publish
    /// distance fields to; `structure`: which labels the distance field protects.
    pub fn new(
        settings: &ReconSettings,
        calibration: Vec<NamedTransform>,
        width: usize,
        height: usize,
        volumes: Option<VolumeSlot>,
        structure: [bool; 256],
        snapshots: SnapshotSlot,
    ) -> Result<Self, StageError> {
        settings.validate().map_err(|e| StageError::Failed(format!("reconstruct.{e}")))?;
        // One thread: the pipeline already runs this stage on its own, and spawning per frame
        // would allocate on the hot path.
        let settings = ReconSettings { threads: 1, ..settings.clone() };
        let mut stage = ReconstructStage {
            publish_every: settings.publish_every_frames.max(1) as u64,
            settings,
            calibration,
            width,
            height,
            scratch: TransformSet::default(),
            masks_since_publish: 0,
            version: 0,
            slot: volumes,
            structure,
            snapshots,
            volumes: None,
            inserted: 0,
            skipped: 0,
            masks: MaskCounts::default(),
        };
        if let Some(grid) = OutputGrid::explicit(&stage.settings) {
            let grid = grid.map_err(|e| StageError::Failed(format!("reconstruct: {e}")))?;
            stage.volumes = Some(stage.make_volumes(grid));
        }
        Ok(stage)
    }

    fn make_volumes(&self, grid: OutputGrid) -> Volumes {
        let n = grid.voxels();
        let publisher = self.slot.clone().map(|slot| {
            let (to_worker, from_stage) = bounded::<(Vec<u8>, u64)>(1);
            let (back, spare) = bounded::<Vec<u8>>(2);
            for _ in 0..2 {
                let _ = back.send(vec![0; n]);
            }
            let (to_reference, structure) = (grid.voxel_to_reference(), self.structure);
            let worker = std::thread::Builder::new()
                .name("recon-publish".into())
                .spawn(move || publish_fields(from_stage, back, slot, grid.dims, to_reference, structure))
                .ok();
            Publisher { to_worker, spare, worker }
        });
        Volumes {
            grey: GreyVolume::new(grid, &self.settings, self.width, self.height),
            labels: LabelVolume::new(grid, &self.settings, self.width, self.height),
            publisher,
            held: None,
            snapshot: ReconSnapshot {
                grid,
                grey: vec![0; n],
                accumulation: vec![0; n],
                labels: vec![0; n],
                frames_inserted: 0,
                frames_skipped: 0,
            },
        }
    }

    /// The grid around the first frame: its bounding box grown by the live margin.
    fn grid_around(&self, pose: &Matrix4) -> Result<OutputGrid, StageError> {
        let mut g = OutputGrid::bounding([*pose], self.width, self.height, &self.settings)
            .map_err(|e| StageError::Failed(format!("reconstruct: {e}")))?;
        let margin = self.settings.live_margin_mm;
        let settings = ReconSettings {
            output_origin_mm: Some(std::array::from_fn(|k| g.origin_mm[k] - margin)),
            output_extent: Some(std::array::from_fn(|i| {
                let k = i / 2;
                if i % 2 == 0 { 0 } else { g.dims[k] as i64 - 1 + 2 * (margin / g.spacing_mm[k]).ceil() as i64 }
            })),
            ..self.settings.clone()
        };
        g = OutputGrid::explicit(&settings)
            .unwrap_or(Ok(g))
            .map_err(|e| StageError::Failed(format!("reconstruct: {e}")))?;
        Ok(g)
    }

    /// The frame's ImageToReference with the calibration filling in what the frame lacks.
    fn pose(&mut self, frame: &Frame) -> Option<Matrix4> {
        self.scratch.clear();
        for t in self.calibration.iter().filter(|c| frame.transforms.get(&c.name).is_none()) {
            self.scratch.set(&t.name, t.matrix, t.status).ok()?;
        }
        for t in frame.transforms.iter() {
            self.scratch.set(&t.name, t.matrix, t.status).ok()?;
        }
        resolve(&self.scratch, &self.settings.image_frame, &self.settings.reference_frame).ok()
    }

    /// Both volumes as they are now (tests and tools; the pipeline uses [`SnapshotSlot`]).
    pub fn snapshot(&mut self) -> Option<ReconSnapshot> {
        self.take_snapshot();
        Some(self.volumes.as_ref()?.snapshot.clone())
    }
}

impl Volumes {
    fn publish(&mut self, version: u64) -> bool {
        let Some(p) = &self.publisher else { return false };
        // No spare buffer: the publisher is still busy with the last volume; try next time.
        let Some(mut buffer) = self.held.take().or_else(|| p.spare.try_recv().ok()) else { return false };
        self.labels.labels_into(&mut buffer);
        match p.to_worker.try_send((buffer, version)) {
            Ok(()) => true,
            // Keep the buffer for the next attempt (dropping it would shrink the pool).
            Err(TrySendError::Full((b, _)) | TrySendError::Disconnected((b, _))) => {
                self.held = Some(b);
                false
            }
        }
    }
}

impl ReconstructStage {
    fn take_snapshot(&mut self) {
        let Some(v) = self.volumes.as_mut() else { return };
        let s = &mut v.snapshot;
        s.grey.copy_from_slice(&v.grey.values);
        s.accumulation.copy_from_slice(&v.grey.acc);
        v.labels.labels_into(&mut s.labels);
        (s.frames_inserted, s.frames_skipped) = (self.inserted, self.skipped);
        if let Ok(mut slot) = self.snapshots.latest.try_lock() {
            match slot.as_mut() {
                // Copy into the snapshot the reader already holds the memory of.
                Some(old) if old.grey.len() == s.grey.len() => {
                    old.grid = s.grid;
                    old.grey.copy_from_slice(&s.grey);
                    old.accumulation.copy_from_slice(&s.accumulation);
                    old.labels.copy_from_slice(&s.labels);
                    (old.frames_inserted, old.frames_skipped) = (s.frames_inserted, s.frames_skipped);
                }
                _ => *slot = Some(s.clone()),
            }
            self.snapshots.requested.store(false, Ordering::Release);
        }
    }
}

fn publish_fields(
    from_stage: Receiver<(Vec<u8>, u64)>,
    back: Sender<Vec<u8>>,
    slot: VolumeSlot,
    dims: [usize; 3],
    to_reference: Matrix4,
    structure: [bool; 256],
) {
    lower_this_threads_priority();
    while let Ok((labels, version)) = from_stage.recv() {
        if let Ok(field) = VolumeField::from_labels(&labels, dims, to_reference, |l| structure[l as usize], version) {
            slot.put(Arc::new(field));
        }
        if back.send(labels).is_err() {
            return;
        }
    }
}

impl Stage for ReconstructStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        let (w, h) = (input.image.width, input.image.height);
        let pose = self.pose(&input);
        match (pose, input.image.as_u8()) {
            (Some(pose), Some(pixels)) if input.image_ok && pixels.len() >= w * h => {
                if self.volumes.is_none() {
                    let grid = self.grid_around(&pose)?;
                    self.volumes = Some(self.make_volumes(grid));
                }
                let v = self.volumes.as_mut().expect("made above");
                v.grey.insert(&pixels[..w * h], w, h, &pose);
                // A mask its segmenter does not trust (confidence 0) stays out of the label
                // volume: what a model outlines once the structure has left the plane is a guess,
                // and compounding it grows the structure.
                let trusted = input.mask_confidence.is_none_or(|c| c > 0.0);
                if input.mask.is_some() && !trusted {
                    self.masks.masks_untrusted += 1;
                }
                let mask = input.mask.as_ref().filter(|_| trusted).and_then(|m| match m.data() {
                    crate::frame::PixelData::Gray8(px) if px.len() >= w * h => Some(&px[..w * h]),
                    _ => None,
                });
                if let Some(mask) = mask {
                    self.masks.masks_inserted += 1;
                    v.labels.insert(mask, w, h, &pose);
                    self.masks_since_publish += 1;
                    if self.masks_since_publish >= self.publish_every && v.publish(self.version + 1) {
                        self.version += 1;
                        self.masks_since_publish = 0;
                    }
                }
                self.inserted += 1;
            }
            _ => self.skipped += 1,
        }
        if self.snapshots.requested.load(Ordering::Acquire) {
            self.take_snapshot();
        }
        Ok(Some(input))
    }

    fn report(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.masks).ok()
    }

    fn stop(&mut self) {
        if self.masks_since_publish > 0
            && let Some(v) = self.volumes.as_mut()
            && v.publish(self.version + 1)
        {
            self.version += 1;
            self.masks_since_publish = 0;
        }
        self.take_snapshot();
        if let Some(mut p) = self.volumes.as_mut().and_then(|v| v.publisher.take()) {
            drop(p.to_worker);
            if let Some(w) = p.worker.take() {
                let _ = w.join();
            }
        }
    }
}

/// Background work yields to the frame path: a distance field published a frame later costs
/// nothing, a segmentation delayed on the same cores misses its deadline. (Linux gives each
/// thread its own nice value; elsewhere this does nothing.)
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority only reads its arguments; `who = 0` is the calling thread on Linux.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if rc != 0 {
            tracing::debug!("recon-publish: could not lower its priority: {}", std::io::Error::last_os_error());
        }
    }
}
