//! End to end on a simulated sweep: replay through the whole placeholder chain, check every frame
//! arrives in order with its transforms, record it, and check replays are deterministic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::spec_of;
use sonoflow::capture::simulator::{SimulationSpec, write_simulation};
use sonoflow::config::{ClockKind, Config, SourceKind};
use sonoflow::io::plus::labels_path;
use sonoflow::io::sequence::read_all;
use sonoflow::pipeline::build::pipeline_from_config;
use sonoflow::pipeline::report::write_chrome_trace;
use sonoflow::pipeline::{ErrorPolicy, QueuePolicy, StopReason, Supervisor, run};

/// Frame seq, capture time and transforms, as a probe stage saw them.
type SeenFrames = Arc<std::sync::Mutex<Vec<(u64, f64, Vec<(String, [f64; 16])>)>>>;

fn simulate(dir: &Path, frames: usize) -> PathBuf {
    let out = dir.join("sweep.mha");
    let spec = SimulationSpec { frames, seed: 7, ..SimulationSpec::default() };
    write_simulation(&spec, &out, &mut |_, _| {}).unwrap();
    out
}

fn replay_config(input: &Path, clock: ClockKind) -> Config {
    let mut c = Config::default();
    c.capture.kind = SourceKind::Replay;
    c.capture.path = Some(input.to_path_buf());
    c.capture.pace = sonoflow::capture::Pace::Fast;
    c.pipeline.clock = clock;
    for stage in [&mut c.preprocess, &mut c.segment.stage, &mut c.threshold, &mut c.reconstruct, &mut c.haptics.stage] {
        stage.queue_policy = QueuePolicy::Block;
    }
    c
}

#[test]
fn every_simulated_frame_arrives_in_order_with_its_transforms() {
    let dir = tempfile::tempdir().unwrap();
    let input = simulate(dir.path(), 60);
    let (_, recorded) = read_all(&input).unwrap();

    let config = replay_config(&input, ClockKind::Monotonic);
    let mut spec = pipeline_from_config(&config, Supervisor::new(), sonoflow::stages::REGISTRY).unwrap();
    let seen_frames: SeenFrames = Arc::default();
    let probe = seen_frames.clone();
    struct TransformProbe(SeenFrames);
    impl sonoflow::pipeline::Stage for TransformProbe {
        fn process(
            &mut self,
            input: sonoflow::frame::Frame,
        ) -> Result<Option<sonoflow::frame::Frame>, sonoflow::pipeline::StageError> {
            let t = input.transforms.iter().map(|t| (t.name.to_string(), t.matrix)).collect();
            self.0.lock().unwrap().push((input.seq, input.capture_time_s, t));
            Ok(Some(input))
        }
    }
    spec.stages
        .push(spec_of("probe", QueuePolicy::Block, 4, ErrorPolicy::DropFrame, move || TransformProbe(probe.clone())));
    let report = run(spec).unwrap().report;
    assert_eq!(report.stop_reason, StopReason::EndOfInput);
    assert_eq!((report.frames_in, report.frames_out), (60, 60));
    let seen = seen_frames.lock().unwrap();
    assert_eq!(seen.len(), 60);
    for (i, ((seq, time, transforms), (meta, _))) in seen.iter().zip(&recorded).enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(*time, meta.timestamp_s);
        let expected: Vec<_> = meta.transforms.iter().map(|t| (t.name.to_string(), t.matrix)).collect();
        assert_eq!(transforms, &expected, "frame {i}");
    }
}

/// Replays `input` with the mock clock, recording images and masks and writing the trace.
fn mock_replay(input: &Path, out_dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    std::fs::create_dir_all(out_dir).unwrap();
    let mut config = replay_config(input, ClockKind::Mock);
    config.capture.pace = sonoflow::capture::Pace::Recorded;
    config.capture.labels_path = Some(labels_path(input));
    let recording = out_dir.join("replayed.mha");
    config.record.path = Some(recording.clone());
    config.record.include_masks = true;
    // A writer that falls behind would drop frames; make room for all of them.
    config.record.queue_frames = 64;
    let trace = out_dir.join("trace.json");
    config.metrics.trace_path = Some(trace.clone());
    let spec = pipeline_from_config(&config, Supervisor::new(), sonoflow::stages::REGISTRY).unwrap();
    let result = run(spec).unwrap();
    let names: Vec<String> = result.report.stages.iter().map(|s| s.name.clone()).collect();
    write_chrome_trace(&trace, &names, &result.trace).unwrap();
    assert_eq!(result.report.frames_out, 40);
    for rec in &result.report.recordings {
        assert_eq!((rec.written, rec.dropped, rec.error.as_deref()), (40, 0, None), "{rec:?}");
    }
    (
        std::fs::read(&recording).unwrap(),
        std::fs::read(labels_path(&recording)).unwrap(),
        std::fs::read(&trace).unwrap(),
    )
}

#[test]
fn mock_clock_replays_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let input = simulate(dir.path(), 40);
    let a = mock_replay(&input, &dir.path().join("a"));
    let b = mock_replay(&input, &dir.path().join("b"));
    assert!(a.0 == b.0, "recorded images differ");
    assert!(a.1 == b.1, "recorded masks differ");
    assert!(a.2 == b.2, "traces (stage order and stamps) differ");
    // The trace is valid Chrome trace-event JSON: one named track per stage, one slice per frame
    // and stage.
    let trace: serde_json::Value = serde_json::from_slice(&a.2).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let slices: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(slices.len(), 6 * 40);
    assert_eq!(events.iter().filter(|e| e["ph"] == "M").count(), 6);
    assert!(slices.iter().all(|e| e["dur"].as_f64().unwrap() >= 0.0 && e["args"]["seq"].is_u64()));

    // The recording holds exactly what was replayed.
    let (original_header, original) = read_all(&input).unwrap();
    let (replayed_header, replayed) = read_all(&dir.path().join("a/replayed.mha")).unwrap();
    assert_eq!(original_header.fields, replayed_header.fields, "the source's image fields are kept");
    assert_eq!(original_header.spacing_mm, replayed_header.spacing_mm);
    assert_eq!(original.len(), replayed.len());
    for ((m0, p0), (m1, p1)) in original.iter().zip(&replayed) {
        assert_eq!(p0, p1);
        assert_eq!(m0.timestamp_s, m1.timestamp_s);
        assert_eq!(m0.transforms, m1.transforms);
    }
    // The masks recorded at the end of the chain are the simulator's ground truth.
    let (_, truth) = read_all(&labels_path(&input)).unwrap();
    let (_, masks) = read_all(&dir.path().join("a/replayed.labels.mha")).unwrap();
    assert_eq!(truth.len(), masks.len());
    assert!(truth.iter().zip(&masks).all(|((_, t), (_, m))| t == m));
}

#[test]
fn looped_replay_keeps_time_moving_forward() {
    let dir = tempfile::tempdir().unwrap();
    let input = simulate(dir.path(), 5);
    let mut config = replay_config(&input, ClockKind::Mock);
    config.capture.pace = sonoflow::capture::Pace::Recorded;
    config.capture.looping = true;
    config.pipeline.max_frames = 12;
    config.metrics.trace_path = Some(dir.path().join("t.json"));
    let recording = dir.path().join("looped.mha");
    config.record.path = Some(recording.clone());
    let result = run(pipeline_from_config(&config, Supervisor::new(), sonoflow::stages::REGISTRY).unwrap()).unwrap();
    assert_eq!(result.report.stop_reason, StopReason::FrameLimit);
    assert_eq!(result.report.frames_out, 12);
    let (_, frames) = read_all(&recording).unwrap();
    let times: Vec<f64> = frames.iter().map(|(m, _)| m.timestamp_s).collect();
    assert_eq!(times.len(), 12);
    assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    // One loop adds the recording's span plus one frame interval: frame 5 is frame 0 + 5/30 s.
    assert!((times[5] - (times[0] + 5.0 / 30.0)).abs() < 1e-9, "{times:?}");
    // Pixels repeat with the loop.
    assert_eq!(frames[0].1, frames[5].1);
    // Under the mock clock, recorded pace is virtual: capture stamps follow the timestamps.
    let starts: Vec<u64> = {
        let mut t: Vec<_> = result.trace.iter().filter(|e| e.stage == 0).map(|e| (e.seq, e.start_ns)).collect();
        t.sort();
        t.into_iter().map(|(_, s)| s).collect()
    };
    let gap_ns = starts[11] - starts[0];
    assert!((gap_ns as f64 / 1e9 - (times[11] - times[0])).abs() < 1e-3, "{gap_ns}");
}
