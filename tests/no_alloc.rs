//! Proves the hot path allocates nothing after warm-up: a counting global allocator counts
//! allocations per thread, and a probe wrapped around each pass-through stage reads the count
//! (1) around `process` itself and (2) between consecutive frames, which covers the runtime's
//! whole per-frame loop on that thread: receive, stamps, metrics, trace, push to the next queue.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::CountingSource;
use sonoflow::frame::Frame;
use sonoflow::pipeline::passthrough::PassThroughStage;
use sonoflow::pipeline::{Clock, ErrorPolicy, PipelineSpec, QueuePolicy, Stage, StageError, StageSpec, run};

struct CountingAllocator;

thread_local! {
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations on every thread (the segmentation engine's workers included).
static ALL_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        THREAD_ALLOCATIONS.with(|c| c.set(c.get() + 1));
        ALL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        THREAD_ALLOCATIONS.with(|c| c.set(c.get() + 1));
        ALL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_here() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

const WARM_UP_FRAMES: u64 = 50;

/// The tests here run one at a time: a CPU-heavy one beside the drop-oldest chain would starve
/// its threads and leave too few frames to measure.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct Counts {
    inside_process: AtomicU64,
    per_frame_loop: AtomicU64,
    frames_measured: AtomicU64,
}

/// Wraps a stage; counts this thread's allocations inside `process` and between frames.
struct Probe {
    inner: PassThroughStage,
    counts: Arc<Counts>,
    last_exit: Option<u64>,
}

impl Stage for Probe {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        let measuring = input.seq >= WARM_UP_FRAMES;
        let entry = allocations_here();
        if measuring && let Some(last_exit) = self.last_exit {
            self.counts.per_frame_loop.fetch_add(entry - last_exit, Ordering::Relaxed);
        }
        let result = self.inner.process(input);
        let exit = allocations_here();
        if measuring {
            self.counts.inside_process.fetch_add(exit - entry, Ordering::Relaxed);
            self.counts.frames_measured.fetch_add(1, Ordering::Relaxed);
        }
        self.last_exit = Some(exit);
        result
    }
}

fn probed(name: &str, policy: QueuePolicy, counts: &Arc<Counts>) -> StageSpec {
    let counts = counts.clone();
    StageSpec {
        name: name.into(),
        factory: Box::new(move || {
            Ok(Box::new(Probe { inner: PassThroughStage, counts: counts.clone(), last_exit: None }) as Box<dyn Stage>)
        }),
        on_error: ErrorPolicy::DropFrame,
        queue_capacity: 4,
        queue_policy: policy,
    }
}

fn run_chain(policy: QueuePolicy, clock: Clock) -> Arc<Counts> {
    let counts = Arc::new(Counts::default());
    let stages =
        ["preprocess", "segment", "threshold", "reconstruct", "haptics"].map(|n| probed(n, policy, &counts)).into();
    let spec =
        PipelineSpec { max_restarts: 0, ..common::pipeline_spec(CountingSource::paced(1000, 20_000), stages, clock) };
    let report = run(spec).unwrap().report;
    assert_eq!(report.frames_out + report.total_drops(), 1000);
    counts
}

#[test]
fn pass_through_chain_allocates_nothing_after_warm_up() {
    let _serial = one_at_a_time();
    for (policy, clock) in [(QueuePolicy::Block, Clock::mock()), (QueuePolicy::DropOldest, Clock::monotonic())] {
        let counts = run_chain(policy, clock);
        let measured = counts.frames_measured.load(Ordering::Relaxed);
        // Drop-oldest on a loaded machine may skip frames; enough remain to measure.
        assert!(measured >= 250, "{policy:?}: too few frames measured ({measured})");
        assert_eq!(counts.inside_process.load(Ordering::Relaxed), 0, "{policy:?}: allocations inside process");
        assert_eq!(counts.per_frame_loop.load(Ordering::Relaxed), 0, "{policy:?}: allocations in the runtime loop");
    }
}

#[test]
fn the_probe_would_see_an_allocation() {
    // Guards the guard: an allocation on this thread moves the counter.
    let before = allocations_here();
    let v: Vec<u8> = Vec::with_capacity(64);
    std::hint::black_box(&v);
    assert!(allocations_here() > before);
}

/// Feeds `frames` simulated frames through `stage` (calling `before_frame` with each frame's
/// number first) and counts the allocations inside `process` after warm-up.
fn allocations_in_process(
    stage: &mut dyn sonoflow::pipeline::stage::Stage,
    frames: usize,
    before_frame: &mut dyn FnMut(u64),
) -> u64 {
    use sonoflow::capture::simulator::SimulationSpec;
    use sonoflow::capture::{Pace, SimulatedSource, Source};
    use sonoflow::frame::{PixelFormat, PixelPool};

    let spec = SimulationSpec { frames, ..SimulationSpec::default() };
    let mut source = SimulatedSource::new(spec.clone(), Pace::Fast, 4).unwrap();
    let pool = PixelPool::new(PixelFormat::Gray8, spec.width_px * spec.height_px, 4);
    let mut inside = 0;
    for seq in 0..frames as u64 {
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        frame.seq = seq;
        source.fill(&mut frame).unwrap();
        before_frame(seq);
        let before = allocations_here();
        let out = stage.process(frame).unwrap();
        if seq >= WARM_UP_FRAMES {
            inside += allocations_here() - before;
        }
        drop(out);
    }
    stage.stop();
    inside
}

#[test]
fn haptics_stage_allocates_nothing_after_warm_up() {
    use sonoflow::anatomy::VolumeSlot;
    use sonoflow::haptics::{HapticsSettings, HapticsStage};
    use sonoflow::pipeline::Supervisor;

    let _serial = one_at_a_time();
    // The simulated sweep has every case: tool occluded for a stretch, frames with and without
    // structure in the mask, the tip inside and outside the margin.
    let settings = HapticsSettings::default();
    let mut stage = HapticsStage::new(&settings, Supervisor::new(), VolumeSlot::default()).unwrap();
    let inside = allocations_in_process(&mut stage, 200, &mut |_| {});
    assert_eq!(inside, 0, "allocations inside the haptics stage's process");
}

#[test]
fn reconstruct_stage_allocates_nothing_after_warm_up() {
    use sonoflow::anatomy::VolumeSlot;
    use sonoflow::capture::simulator::SimulationSpec;
    use sonoflow::recon::{ReconSettings, ReconstructStage, SnapshotSlot};

    let _serial = one_at_a_time();
    // Publishing every 5 masks and snapshot requests exercise the hand-offs too; the grid is made
    // at the first frame (warm-up).
    let settings = ReconSettings { publish_every_frames: 5, live_margin_mm: 5.0, ..Default::default() };
    let snapshots = SnapshotSlot::default();
    let mut structure = [true; 256];
    structure[0] = false;
    let spec = SimulationSpec::default();
    let (w, h) = (spec.width_px, spec.height_px);
    let mut stage =
        ReconstructStage::new(&settings, Vec::new(), w, h, Some(VolumeSlot::default()), structure, snapshots.clone())
            .unwrap();
    let frames = 120;
    let inside = allocations_in_process(&mut stage, frames, &mut |seq| {
        if seq % 40 == 0 {
            snapshots.request();
        }
    });
    assert!(snapshots.latest().is_some_and(|s| s.frames_inserted == frames as u64));
    assert_eq!(inside, 0, "allocations inside the reconstruct stage's process");
}

/// A port that swallows writes and never has anything to read.
struct NullPort;

impl sonoflow::haptics::link::Port for NullPort {
    fn write_all_now(&mut self, _bytes: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn read_available(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(0)
    }
}

struct NullConnector;

impl sonoflow::haptics::link::Connector for NullConnector {
    fn connect(&mut self) -> std::io::Result<Box<dyn sonoflow::haptics::link::Port>> {
        Ok(Box::new(NullPort))
    }
    fn name(&self) -> &str {
        "null"
    }
}

#[test]
fn one_force_tick_allocates_nothing() {
    use sonoflow::haptics::link::Link;
    use sonoflow::haptics::protocol::Message;
    use sonoflow::haptics::rate_loop::{ForceTarget, RateLoop, TickInputs};

    let _serial = one_at_a_time();
    const MS: u64 = 1_000_000;
    let mut link = Link::new(Box::new(NullConnector), 100 * MS, (50 * MS, 2000 * MS));
    link.connect_now(0).unwrap();
    let mut rate_loop = RateLoop::new(MS, 20 * MS, 200.0);
    let mut measured = 0;
    for tick in 0..2000u64 {
        let now_ns = tick * MS;
        let before = allocations_here();
        // An image every 33 ms, a stall from 1 s to 1.2 s: active, stale and recovering ticks.
        if tick % 33 == 0 && !(1000..1200).contains(&tick) {
            rate_loop.offer(ForceTarget { force_n: [0.0, 0.0, 1.0], image_seq: tick, ..Default::default() }, now_ns);
        }
        link.poll(now_ns);
        let inputs = TickInputs {
            now_ns,
            pipeline_running: true,
            faults: 0,
            device_silent: false,
            device_fault: link.device_fault(),
        };
        let frame = rate_loop.tick(&inputs);
        link.send(&Message::Force(frame), now_ns);
        if tick >= WARM_UP_FRAMES {
            measured += allocations_here() - before;
        }
    }
    assert_eq!(measured, 0, "allocations in the force loop's tick");
}

#[test]
fn segmentation_model_allocates_nothing_per_frame_after_warm_up() {
    use sonoflow::segment::cpu::ops::CpuOps;
    use sonoflow::segment::graph::prompt::{Point, Prompt};
    use sonoflow::segment::model::LiteMedSam;

    let _serial = one_at_a_time();
    let Some(weights) = common::model_weights() else { return };
    let mut model = LiteMedSam::plan(CpuOps::new(2).unwrap(), &weights).unwrap();
    let plane: Vec<f32> = (0..256 * 256).map(|i| ((i * 31) % 256) as f32 / 255.0).collect();
    let mut logits = vec![0.0; 256 * 256];
    let mut prompt = Prompt::from_box([40.0, 50.0, 150.0, 160.0]);
    // Warm-up: the first frame may touch lazily initialised runtime state.
    model.encode(&plane);
    model.decode(&prompt, &mut logits);
    assert!(prompt.push_point(Point { x: 90.0, y: 100.0, positive: true }));
    let before = ALL_ALLOCATIONS.load(Ordering::Relaxed);
    model.encode(&plane);
    model.decode(&prompt, &mut logits);
    model.decode(&Prompt::from_box([10.0, 10.0, 60.0, 60.0]), &mut logits);
    let during = ALL_ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(during, 0, "allocations while encoding and decoding a frame");
}

/// Counts this thread's allocations over `frames` frames of `source` after `WARM_UP_FRAMES`.
fn source_allocations(source: &mut dyn sonoflow::capture::Source, frames: u64) -> u64 {
    use sonoflow::capture::Next;
    let f = source.format();
    let pool = sonoflow::frame::PixelPool::new(f.pixel_format, f.width * f.height, 2);
    let mut clock = Clock::mock();
    let mut counted = 0;
    for i in 0..WARM_UP_FRAMES + frames {
        let pixels = pool.try_acquire().unwrap();
        let before = allocations_here();
        assert_eq!(source.wait_next(&mut clock, &|| true).unwrap(), Next::Ready);
        let mut frame = Frame::new(pixels);
        source.fill(&mut frame).unwrap();
        if i >= WARM_UP_FRAMES {
            counted += allocations_here() - before;
        }
        // Frame::new and the frame's drop are the runtime's, measured by the chain tests above.
        drop(frame);
    }
    counted
}

#[test]
fn dicom_cine_replay_allocates_nothing_per_frame() {
    let _serial = one_at_a_time();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom/us_cine_jpeg.dcm");
    let options = sonoflow::capture::DicomOptions {
        pace: sonoflow::capture::Pace::Recorded,
        looping: true,
        roi_px: Some([4, 4, 32, 32]),
        spacing_mm: None,
    };
    let mut source = sonoflow::capture::DicomCineSource::open(&path, options).unwrap();
    assert_eq!(source_allocations(&mut source, 100), 0);
}

#[cfg(feature = "gstreamer")]
#[test]
fn gstreamer_capture_allocates_nothing_per_frame() {
    use sonoflow::capture::gst::{GstOptions, GstSource};
    let _serial = one_at_a_time();
    let options = GstOptions {
        kind: sonoflow::config::SourceKind::Test,
        settings: sonoflow::capture::settings::GstSettings { width_px: 640, height_px: 480, ..Default::default() },
        path: None,
        pace: sonoflow::capture::Pace::Fast,
        looping: false,
        roi_px: Some([40, 20, 560, 440]),
        spacing_mm: None,
    };
    let mut source = GstSource::open(options).unwrap();
    assert_eq!(source_allocations(&mut source, 100), 0);
}

#[test]
fn segment_stage_allocates_nothing_after_warm_up() {
    use sonoflow::segment::settings::{ModelChoice, SegmentSettings};
    use sonoflow::segment::stage::{PromptInbox, SegmentStage};

    let _serial = one_at_a_time();
    if common::model_weights().is_none() {
        return;
    }
    // The student keeps this quick; the stage's own work (pre- and post-processing, tracking,
    // the mask and the segmentation attachment) is the same for either encoder.
    let settings =
        SegmentSettings { model: ModelChoice::Student, bbox: Some([40.0, 60.0, 150.0, 160.0]), ..Default::default() };
    let spec = sonoflow::capture::simulator::SimulationSpec::default();
    let mut stage = SegmentStage::new(&settings, spec.width_px, spec.height_px, 4, PromptInbox::default()).unwrap();
    let frames = WARM_UP_FRAMES as usize + 10;
    let inside = allocations_in_process(&mut stage, frames, &mut |_| {});
    assert_eq!(inside, 0, "allocations inside the segment stage's process");
    let report = stage.report().expect("the stage segmented");
    assert_eq!(report["frames_segmented"], frames, "every frame segmented, the measured ones included");
}
