//! Shared fixtures for the runtime tests: a counting source and small test stages.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sonoflow::capture::{CaptureError, Next, Source, SourceFormat};
use sonoflow::frame::{Frame, IDENTITY, PixelData, PixelFormat, TransformStatus};
use sonoflow::pipeline::report::Report;
use sonoflow::pipeline::{
    Clock, ErrorPolicy, PipelineSpec, QueuePolicy, Stage, StageError, StageSpec, StopReason, Supervisor, run,
};

pub const WIDTH: usize = 32;
pub const HEIGHT: usize = 24;

/// Frames whose pixels, timestamp and probe translation all encode their index.
pub struct CountingSource {
    pub frames: u64,
    pub next: u64,
    pub period_ns: u64,
    pub fail_at: Option<u64>,
    name: Arc<str>,
    start_ns: Option<u64>,
}

impl CountingSource {
    pub fn new(frames: u64) -> Self {
        CountingSource {
            frames,
            next: 0,
            period_ns: 0,
            fail_at: None,
            name: Arc::from("ProbeToTracker"),
            start_ns: None,
        }
    }

    pub fn paced(frames: u64, period_ns: u64) -> Self {
        CountingSource { period_ns, ..Self::new(frames) }
    }
}

impl Source for CountingSource {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn format(&self) -> SourceFormat {
        SourceFormat { width: WIDTH, height: HEIGHT, pixel_format: PixelFormat::Gray8 }
    }
    fn wait_next(&mut self, clock: &mut Clock, keep_waiting: &dyn Fn() -> bool) -> Result<Next, CaptureError> {
        if self.next >= self.frames {
            return Ok(Next::End);
        }
        if self.period_ns > 0 {
            let start = *self.start_ns.get_or_insert_with(|| clock.now_ns());
            if !clock.sleep_until_ns(start + self.next * self.period_ns, keep_waiting) {
                return Ok(Next::End);
            }
        }
        Ok(Next::Ready)
    }
    fn fill(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        if self.fail_at == Some(self.next) {
            return Err(CaptureError::BadFrame {
                source_name: "counting".into(),
                frame: self.next as usize,
                message: "injected".into(),
            });
        }
        let PixelData::Gray8(px) = frame.image.pixels.data_mut() else { unreachable!() };
        px[..WIDTH * HEIGHT].fill((self.next % 251) as u8);
        frame.image.width = WIDTH;
        frame.image.height = HEIGHT;
        frame.capture_time_s = self.next as f64 / 30.0;
        let mut m = IDENTITY;
        m[3] = self.next as f64;
        frame.transforms.clear();
        frame.transforms.set(&self.name, m, TransformStatus::Ok).unwrap();
        self.next += 1;
        Ok(())
    }
}

/// What a stage saw: frame seq and the probe x translation.
pub type Seen = Arc<Mutex<Vec<(u64, f64)>>>;

/// Records what passes (test-only: it locks and allocates).
pub struct RecordingStage {
    pub seen: Seen,
}

impl Stage for RecordingStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        let x = input.transforms.get("ProbeToTracker").map_or(f64::NAN, |t| t.matrix[3]);
        self.seen.lock().unwrap().push((input.seq, x));
        Ok(Some(input))
    }
}

/// Sleeps per frame, to fall behind its producer.
pub struct SlowStage {
    pub delay: Duration,
}

impl Stage for SlowStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        std::thread::sleep(self.delay);
        Ok(Some(input))
    }
}

/// Fails on the listed frames.
pub struct FailingStage {
    pub fail_on: Vec<u64>,
    pub stops: Arc<AtomicUsize>,
}

impl Stage for FailingStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        if self.fail_on.contains(&input.seq) {
            return Err(StageError::Failed(format!("injected failure at {}", input.seq)));
        }
        Ok(Some(input))
    }
    fn stop(&mut self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn spec_of<S: Stage + 'static>(
    name: &str,
    policy: QueuePolicy,
    capacity: usize,
    on_error: ErrorPolicy,
    mut make: impl FnMut() -> S + Send + 'static,
) -> StageSpec {
    StageSpec {
        name: name.into(),
        factory: Box::new(move || Ok(Box::new(make()) as Box<dyn Stage>)),
        on_error,
        queue_capacity: capacity,
        queue_policy: policy,
    }
}

/// The shared PLUS recordings, or None (with the reason printed) where they are not installed.
pub fn plus_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/plus");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: ../shared/data/plus not found (the shared test data is not on this machine)");
        None
    }
}

/// A pipeline over `source` and `stages` with the test defaults: 32 buffers, an 80 ms deadline,
/// two restarts, a trace of up to 10,000 events per stage, no recording.
pub fn pipeline_spec(source: impl Source + 'static, stages: Vec<StageSpec>, clock: Clock) -> PipelineSpec {
    PipelineSpec {
        source: Box::new(source),
        stages,
        clock,
        pool_frames: 32,
        max_frames: None,
        deadline_ms: 80.0,
        max_restarts: 2,
        trace_capacity: 10_000,
        input_tap: None,
        mask_tap: None,
        supervisor: Supervisor::new(),
        outputs: Default::default(),
    }
}

/// Runs `spec`, asking it to stop (as Ctrl-C does) after `delay`.
pub fn run_interrupted_after(spec: PipelineSpec, delay: Duration) -> Report {
    let supervisor = spec.supervisor.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(delay);
        supervisor.request_stop(StopReason::Interrupted);
    });
    let report = run(spec).unwrap().report;
    stopper.join().unwrap();
    report
}

/// The converted LiteMedSAM weights, or None (the reason printed) where `sonoflow model fetch`
/// has not run: CI runs tools/setup, which fetches them; a bare checkout may not have them yet.
pub fn model_weights() -> Option<sonoflow::model::Weights> {
    use sonoflow::model::{LITEMEDSAM, Manifest, Weights, locate_model_dir};
    let Some(dir) = locate_model_dir(LITEMEDSAM) else {
        eprintln!("skipped: no engines/litemedsam folder");
        return None;
    };
    let manifest = Manifest::load(&dir).unwrap();
    Weights::load(manifest.weights_path(&dir)).map_err(|e| eprintln!("skipped: {e}")).ok()
}
