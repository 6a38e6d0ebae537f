//! Hardware-in-the-loop scenarios: the real runtime, real threads and real time, driven by a paced
//! stream with faults injected. Assertions are on counts and ordering, never on wall-clock speed.

#[path = "../tests/common/mod.rs"]
mod common;
mod haptics;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{CountingSource, FailingStage, RecordingStage, Seen, pipeline_spec, run_interrupted_after, spec_of};
use sonoflow::frame::Frame;
use sonoflow::pipeline::passthrough::PassThroughStage;
use sonoflow::pipeline::report::Report;
use sonoflow::pipeline::{
    Clock, ErrorPolicy, PipelineSpec, QueuePolicy, Stage, StageError, StageSpec, StopReason, run,
};

/// Stalls once, for `stall`, on frame `at` (a GC pause, a driver hiccup, a slow model warm-up).
struct StallingStage {
    at: u64,
    stall: Duration,
}

impl Stage for StallingStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        if input.seq == self.at {
            std::thread::sleep(self.stall);
        }
        Ok(Some(input))
    }
}

fn live_spec(source: CountingSource, stages: Vec<StageSpec>) -> PipelineSpec {
    PipelineSpec { max_restarts: 3, trace_capacity: 0, ..pipeline_spec(source, stages, Clock::monotonic()) }
}

fn assert_conserved(r: &Report) {
    for (k, q) in r.queues.iter().enumerate() {
        let (producer, consumer) = (&r.stages[k], &r.stages[k + 1]);
        assert_eq!(producer.frames_out, consumer.frames_in + q.dropped + q.drained, "edge {}", q.name);
        assert_eq!(
            consumer.frames_in,
            consumer.frames_out + consumer.errors + consumer.skipped,
            "stage {}",
            consumer.name
        );
    }
}

#[test]
fn a_stalled_stage_drops_the_oldest_frames_and_the_stream_recovers() {
    let seen: Seen = Arc::default();
    let probe = seen.clone();
    let stages = vec![
        spec_of("preprocess", QueuePolicy::DropOldest, 4, ErrorPolicy::DropFrame, || PassThroughStage),
        spec_of("segment", QueuePolicy::DropOldest, 4, ErrorPolicy::DropFrame, || StallingStage {
            at: 100,
            stall: Duration::from_millis(150),
        }),
        spec_of("haptics", QueuePolicy::DropOldest, 4, ErrorPolicy::SafeStop, move || RecordingStage {
            seen: probe.clone(),
        }),
    ];
    // 400 frames at 500 Hz: the 150 ms stall spans ~75 frames, far more than the 4-frame queue.
    let r = run(live_spec(CountingSource::paced(400, 2_000_000), stages)).unwrap().report;
    assert_eq!(r.stop_reason, StopReason::EndOfInput);
    assert_conserved(&r);
    let segment_queue = &r.queues[1];
    assert!(segment_queue.dropped >= 50, "the stall must cost dropped frames: {segment_queue:?}");
    // The output went silent for the length of the stall...
    assert!(r.end_to_end.output_interval.max_ms >= 140.0, "{:?}", r.end_to_end.output_interval);
    // ...but newest-wins kept stale frames from piling up: at most the stalled frame itself can
    // miss the deadline (and it is often displaced downstream by fresher frames).
    assert!(r.end_to_end.deadline_misses <= 1, "{:?}", r.end_to_end);
    // After the stall the newest frames flow again: order kept and the last frame delivered.
    let seen = seen.lock().unwrap();
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(seen.last().unwrap().0, 399);
    assert!(seen.iter().filter(|(seq, _)| *seq > 200).count() >= 150, "the stream recovered after the stall");
}

#[test]
fn a_haptics_fault_safe_stops_the_whole_pipeline() {
    let stops = Arc::new(AtomicUsize::new(0));
    let s = stops.clone();
    let stages = vec![
        spec_of("segment", QueuePolicy::DropOldest, 4, ErrorPolicy::DropFrame, || PassThroughStage),
        spec_of("haptics", QueuePolicy::DropOldest, 4, ErrorPolicy::SafeStop, move || FailingStage {
            fail_on: vec![50],
            stops: s.clone(),
        }),
    ];
    let r = run(live_spec(CountingSource::paced(100_000, 1_000_000), stages)).unwrap().report;
    assert_eq!(r.stop_reason, StopReason::SafeStop);
    assert_eq!(r.faults.last().unwrap().action.as_str(), "safe-stop");
    assert!(r.frames_out <= 50, "nothing passes haptics after its fault");
    assert!(r.frames_in < 1_000, "the source stopped promptly");
    assert_eq!(stops.load(Ordering::SeqCst), 1, "haptics was stopped (safe state) exactly once");
    assert_conserved(&r);
}

#[test]
fn an_interrupt_mid_stream_shuts_down_cleanly() {
    let stages = ["preprocess", "segment", "threshold", "reconstruct", "haptics"]
        .map(|n| spec_of(n, QueuePolicy::DropOldest, 4, ErrorPolicy::DropFrame, || PassThroughStage))
        .into();
    let spec = live_spec(CountingSource::paced(1_000_000, 500_000), stages);
    let r = run_interrupted_after(spec, Duration::from_millis(200));
    assert_eq!(r.stop_reason, StopReason::Interrupted);
    assert!(r.frames_in > 10);
    assert_conserved(&r);
    assert_eq!(r.queues.iter().map(|q| q.drained).sum::<u64>(), 0, "a graceful stop processes what is queued");
}

#[test]
fn a_restarted_stage_keeps_the_stream_going() {
    let built = Arc::new(AtomicUsize::new(0));
    let stops = Arc::new(AtomicUsize::new(0));
    let (b, s) = (built.clone(), stops.clone());
    let stages = vec![spec_of("segment", QueuePolicy::DropOldest, 4, ErrorPolicy::RestartStage, move || {
        b.fetch_add(1, Ordering::SeqCst);
        FailingStage { fail_on: vec![30, 60], stops: s.clone() }
    })];
    let r = run(live_spec(CountingSource::paced(200, 1_000_000), stages)).unwrap().report;
    assert_eq!(r.stop_reason, StopReason::EndOfInput);
    assert_eq!(r.stages[1].restarts, 2);
    assert_eq!(built.load(Ordering::SeqCst), 3);
    // Stopped before each restart and once at the end.
    assert_eq!(stops.load(Ordering::SeqCst), 3);
    assert_conserved(&r);
}
