//! The stage runtime on a counting source: ordering, drop-oldest, error policies, determinism.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use sonoflow::pipeline::passthrough::PassThroughStage;
use sonoflow::pipeline::{Clock, ErrorPolicy, QueuePolicy, RunResult, StageSpec, StopReason, run};

fn passthrough(name: &str, policy: QueuePolicy) -> StageSpec {
    spec_of(name, policy, 4, ErrorPolicy::DropFrame, || PassThroughStage)
}

#[test]
fn every_frame_arrives_in_order_with_its_transform() {
    let seen: Seen = Arc::default();
    let probe = seen.clone();
    let stages = vec![
        passthrough("a", QueuePolicy::Block),
        passthrough("b", QueuePolicy::Block),
        spec_of("check", QueuePolicy::Block, 4, ErrorPolicy::DropFrame, move || RecordingStage { seen: probe.clone() }),
    ];
    let result = run(pipeline_spec(CountingSource::new(500), stages, Clock::monotonic())).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 500);
    for (i, (seq, x)) in seen.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(*x, i as f64);
    }
    let r = &result.report;
    assert_eq!(r.stop_reason, StopReason::EndOfInput);
    assert_eq!((r.frames_in, r.frames_out), (500, 500));
    assert_eq!(r.end_to_end.latency.count, 500);
    assert_eq!(r.end_to_end.after_capture.count, 500);
    assert!(r.end_to_end.after_capture.max_ms <= r.end_to_end.latency.max_ms);
    assert_eq!(r.total_drops(), 0);
    assert_eq!(r.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["capture", "a", "b", "check"]);
    assert!(r.stages.iter().all(|s| s.latency.count == 500));
}

#[test]
fn drop_oldest_under_a_slow_stage_counts_every_drop() {
    let seen: Seen = Arc::default();
    let probe = seen.clone();
    let stages = vec![
        spec_of("slow", QueuePolicy::DropOldest, 2, ErrorPolicy::DropFrame, || SlowStage {
            delay: Duration::from_millis(3),
        }),
        spec_of("check", QueuePolicy::Block, 4, ErrorPolicy::DropFrame, move || RecordingStage { seen: probe.clone() }),
    ];
    let result = run(pipeline_spec(CountingSource::new(200), stages, Clock::monotonic())).unwrap();
    let r = &result.report;
    let slow_queue = &r.queues[0];
    assert_eq!(slow_queue.name, "capture->slow");
    assert_eq!(slow_queue.pushed, 200);
    assert!(slow_queue.dropped > 50, "a 3 ms stage behind an unpaced source must drop: {slow_queue:?}");
    assert!(slow_queue.max_depth <= 2);
    // Conservation: every captured frame was either processed by the slow stage or dropped.
    assert_eq!(r.stages[1].frames_in + slow_queue.dropped, 200);
    assert_eq!(r.frames_out, 200 - slow_queue.dropped);
    // The newest frame wins: the last frame always gets through, and order is kept.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.last().unwrap().0, 199);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn drop_frame_policy_skips_the_bad_frame_only() {
    let stops = Arc::new(AtomicUsize::new(0));
    let s = stops.clone();
    let stages = vec![spec_of("flaky", QueuePolicy::Block, 4, ErrorPolicy::DropFrame, move || FailingStage {
        fail_on: vec![3, 7],
        stops: s.clone(),
    })];
    let r = run(pipeline_spec(CountingSource::new(20), stages, Clock::monotonic())).unwrap().report;
    assert_eq!(r.frames_out, 18);
    assert_eq!(r.fault_count, 2);
    assert_eq!((r.faults[0].seq, r.faults[0].action.as_str()), (3, "drop-frame"));
    assert_eq!(r.stop_reason, StopReason::EndOfInput);
    assert_eq!(stops.load(Ordering::SeqCst), 1, "stop is called once at the end");
}

#[test]
fn restart_policy_rebuilds_the_stage_then_safe_stops_past_the_limit() {
    let built = Arc::new(AtomicUsize::new(0));
    let stops = Arc::new(AtomicUsize::new(0));
    let (b, s) = (built.clone(), stops.clone());
    let stages = vec![
        spec_of("flaky", QueuePolicy::Block, 4, ErrorPolicy::RestartStage, move || {
            b.fetch_add(1, Ordering::SeqCst);
            FailingStage { fail_on: vec![2, 4, 6], stops: s.clone() }
        }),
        passthrough("after", QueuePolicy::Block),
    ];
    let r = run(pipeline_spec(CountingSource::new(30), stages, Clock::monotonic())).unwrap().report;
    // Built once up front, then restarted twice (max_restarts = 2); the third failure safe-stops.
    assert_eq!(built.load(Ordering::SeqCst), 3);
    assert_eq!(r.stages[1].restarts, 2);
    assert_eq!(r.stop_reason, StopReason::SafeStop);
    assert_eq!(r.faults.last().unwrap().action.as_str(), "safe-stop");
    assert_eq!(r.faults.last().unwrap().seq, 6);
    // Frames after the safe-stop are drained and counted, never silently lost.
    for (k, queue) in r.queues.iter().enumerate() {
        let (producer, consumer) = (&r.stages[k], &r.stages[k + 1]);
        assert_eq!(producer.frames_out, consumer.frames_in + queue.dropped + queue.drained, "{queue:?}");
        assert_eq!(consumer.frames_in, consumer.frames_out + consumer.errors + consumer.skipped);
    }
    assert!(r.frames_out <= 4);
}

#[test]
fn safe_stop_policy_stops_everything() {
    let stops = Arc::new(AtomicUsize::new(0));
    let s = stops.clone();
    let stages = vec![
        passthrough("first", QueuePolicy::Block),
        spec_of("haptics", QueuePolicy::Block, 4, ErrorPolicy::SafeStop, move || FailingStage {
            fail_on: vec![10],
            stops: s.clone(),
        }),
    ];
    let r = run(pipeline_spec(CountingSource::paced(1000, 200_000), stages, Clock::monotonic())).unwrap().report;
    assert_eq!(r.stop_reason, StopReason::SafeStop);
    assert_eq!(r.frames_out, 10);
    assert!(r.frames_in < 1000, "the source stops after a safe-stop");
    assert_eq!(stops.load(Ordering::SeqCst), 1);
}

#[test]
fn source_error_ends_the_run_cleanly_after_processing_what_was_captured() {
    let mut source = CountingSource::new(50);
    source.fail_at = Some(20);
    let stages = vec![passthrough("a", QueuePolicy::Block)];
    let r = run(pipeline_spec(source, stages, Clock::monotonic())).unwrap().report;
    assert_eq!(r.stop_reason, StopReason::SourceError);
    assert_eq!(r.frames_out, 20);
    assert_eq!(r.faults[0].stage, "capture");
    assert!(r.faults[0].error.contains("injected"), "{:?}", r.faults[0]);
}

#[test]
fn frame_limit_and_interrupt_stop_the_source() {
    let mut spec =
        pipeline_spec(CountingSource::new(1000), vec![passthrough("a", QueuePolicy::Block)], Clock::monotonic());
    spec.max_frames = Some(64);
    let r = run(spec).unwrap().report;
    assert_eq!((r.stop_reason, r.frames_out), (StopReason::FrameLimit, 64));

    let spec = pipeline_spec(
        CountingSource::paced(100_000, 1_000_000),
        vec![passthrough("a", QueuePolicy::Block)],
        Clock::monotonic(),
    );
    let r = run_interrupted_after(spec, Duration::from_millis(50));
    assert_eq!(r.stop_reason, StopReason::Interrupted);
    assert!(r.frames_out > 0 && r.frames_out < 1000);
    assert_eq!(r.frames_out, r.frames_in, "queued frames are processed on a graceful stop");
}

fn mock_run() -> RunResult {
    let stages = vec![
        passthrough("a", QueuePolicy::Block),
        spec_of("slow", QueuePolicy::Block, 2, ErrorPolicy::DropFrame, || SlowStage {
            delay: Duration::from_micros(200),
        }),
        passthrough("c", QueuePolicy::Block),
    ];
    run(pipeline_spec(CountingSource::paced(300, 33_333_333), stages, Clock::mock())).unwrap()
}

#[test]
fn mock_clock_runs_are_identical() {
    let (a, b) = (mock_run(), mock_run());
    let sorted = |r: &RunResult| {
        let mut t = r.trace.clone();
        t.sort_by_key(|e| (e.stage, e.seq));
        t
    };
    assert_eq!(a.trace.len(), 4 * 300);
    assert_eq!(sorted(&a), sorted(&b));
    let json = |r: &RunResult| {
        let mut v = serde_json::to_value(&r.report).unwrap();
        // Wall time and queue high-water marks observe real thread timing, not the pipeline's output.
        v["wall_time_s"] = serde_json::Value::Null;
        for q in v["queues"].as_array_mut().unwrap() {
            q["max_depth"] = serde_json::Value::Null;
        }
        v.to_string()
    };
    assert_eq!(json(&a), json(&b));
    // Recorded pace under the mock clock takes virtual time: 300 frames at 30 fps span ~10 s.
    let last = a.trace.iter().map(|e| e.end_ns).max().unwrap();
    assert!(last >= 299 * 33_333_333, "{last}");
    // Each frame passes the stages in pipeline order.
    let mut by_frame: Vec<_> = a.trace.clone();
    by_frame.sort_by_key(|e| (e.seq, e.start_ns));
    for chunk in by_frame.chunks(4) {
        assert_eq!(chunk.iter().map(|e| e.stage).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}

struct PanickingStage;

impl sonoflow::pipeline::Stage for PanickingStage {
    fn process(
        &mut self,
        input: sonoflow::frame::Frame,
    ) -> Result<Option<sonoflow::frame::Frame>, sonoflow::pipeline::StageError> {
        if input.seq == 4 {
            panic!("bug in frame {}", input.seq);
        }
        Ok(Some(input))
    }
}

#[test]
fn a_panicking_stage_is_rebuilt_not_fatal() {
    let stages = vec![spec_of("buggy", QueuePolicy::Block, 4, ErrorPolicy::DropFrame, || PanickingStage)];
    let r = run(pipeline_spec(CountingSource::new(10), stages, Clock::monotonic())).unwrap().report;
    assert_eq!(r.stop_reason, StopReason::EndOfInput);
    assert_eq!(r.frames_out, 9);
    assert_eq!(r.stages[1].restarts, 1);
    assert_eq!(r.faults[0].action.as_str(), "restart-stage");
    assert!(r.faults[0].error.contains("panicked: bug in frame 4"), "{:?}", r.faults[0]);
}

#[test]
fn a_pipeline_without_stages_still_captures_and_ends() {
    let r = run(pipeline_spec(CountingSource::new(5), vec![], Clock::monotonic())).unwrap().report;
    assert_eq!((r.stop_reason, r.frames_in), (StopReason::EndOfInput, 5));
    assert!(r.queues.is_empty());
}

#[test]
fn an_interrupt_cuts_a_long_pacing_wait_short() {
    // The second frame is due an hour after the first: only the interrupt can end this run soon.
    let spec = pipeline_spec(
        CountingSource::paced(2, 3_600_000_000_000),
        vec![passthrough("a", QueuePolicy::Block)],
        Clock::monotonic(),
    );
    let r = run_interrupted_after(spec, Duration::from_millis(100));
    assert_eq!((r.stop_reason, r.frames_in, r.frames_out), (StopReason::Interrupted, 1, 1));
}

#[test]
fn a_live_edge_drops_frames_older_than_the_deadline_as_stale() {
    // Capture delivers 20 frames at once; the stage takes 40 ms a frame against a 30 ms deadline,
    // so every frame that waited behind another is stale by the time the stage is free.
    let stages = vec![spec_of("slow", QueuePolicy::DropOldest, 4, ErrorPolicy::DropFrame, || SlowStage {
        delay: Duration::from_millis(40),
    })];
    let mut spec = pipeline_spec(CountingSource::new(20), stages, Clock::monotonic());
    spec.deadline_ms = 30.0;
    let r = run(spec).unwrap().report;
    let q = &r.queues[0];
    assert!(q.stale >= 1, "{q:?}");
    // Every frame is accounted for: processed, displaced by a newer one, or discarded as stale.
    assert_eq!(r.stages[1].frames_in + q.dropped + q.stale, 20, "{q:?}");
    assert_eq!(r.total_drops(), q.dropped + q.stale);
}

#[test]
fn a_blocking_edge_processes_every_frame_however_late() {
    let stages = vec![spec_of("slow", QueuePolicy::Block, 4, ErrorPolicy::DropFrame, || SlowStage {
        delay: Duration::from_millis(10),
    })];
    let mut spec = pipeline_spec(CountingSource::new(10), stages, Clock::monotonic());
    spec.deadline_ms = 1.0;
    let r = run(spec).unwrap().report;
    assert_eq!((r.frames_out, r.queues[0].stale), (10, 0));
}
