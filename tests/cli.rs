//! The command line as a user runs it: exit codes, messages, reports.

mod common;

use common::plus_data;
use std::process::{Command, Output};

fn sonoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonoflow")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

/// `sonoflow run` with the replay config on `input`, writing the report to `report`.
fn replay(input: &std::path::Path, report: &std::path::Path) -> Output {
    sonoflow(&[
        "run",
        "--config",
        "configs/replay.toml",
        "--input",
        input.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ])
}

fn read_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn replays_the_spine_phantom_and_writes_the_report() {
    let Some(data) = plus_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let input = data.join("SpinePhantomFreehand.igs.mha");
    let o = replay(&input, &report);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("sonoflow: 21 frames in, 21 out, 0 dropped"), "{}", stderr(&o));
    let r = read_report(&report);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["frames_out"], 21);
    assert_eq!(r["stop_reason"], "end-of-input");
    let stages: Vec<&str> = r["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["capture", "preprocess", "segment", "threshold", "reconstruct", "haptics"]);
    for s in r["stages"].as_array().unwrap() {
        assert_eq!(s["latency"]["count"], 21);
        for key in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "jitter_ms"] {
            assert!(s["latency"][key].is_number(), "{key}");
        }
    }
    assert_eq!(r["end_to_end"]["latency"]["count"], 21);
}

#[test]
fn an_unknown_key_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[segment]\nqueue_capacty = 3\n").unwrap();
    let o = sonoflow(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("queue_capacty"), "{}", stderr(&o));
}

#[test]
fn an_out_of_range_value_names_section_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[pipeline]\npool_frames = 4\n").unwrap();
    let o = sonoflow(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("pipeline.pool_frames"), "{}", stderr(&o));
}

#[test]
fn a_missing_input_is_a_usage_error_and_a_corrupt_one_an_input_error() {
    let o = sonoflow(&["run", "--config", "configs/replay.toml", "--input", "/no/such/file.mha"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/no/such/file.mha"), "{}", stderr(&o));

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mha");
    std::fs::write(&corrupt, b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 two\n").unwrap();
    let o = sonoflow(&["run", "--config", "configs/replay.toml", "--input", corrupt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt.mha"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn a_truncated_recording_stops_cleanly_with_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep.mha");
    let o = sonoflow(&["simulate", "--out", sweep.to_str().unwrap(), "--frames", "20"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let bytes = std::fs::read(&sweep).unwrap();
    let truncated = dir.path().join("truncated.mha");
    std::fs::write(&truncated, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let report = dir.path().join("r.json");
    let o = replay(&truncated, &report);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("truncated.mha"), "{}", stderr(&o));
    let r = read_report(&report);
    assert_eq!(r["stop_reason"], "source-error");
    let out = r["frames_out"].as_u64().unwrap();
    assert!(out > 0 && out < 20, "the frames before the damage were processed: {out}");
}

#[test]
fn simulate_then_run_with_recording() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("s.mha");
    let o = sonoflow(&["simulate", "--out", sweep.to_str().unwrap(), "--frames", "12", "--seed", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in ["s.mha", "s.labels.mha", "s.truth.json"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let config = dir.path().join("c.toml");
    let rec = dir.path().join("rec.mha");
    std::fs::write(
        &config,
        format!("[capture]\nkind = \"replay\"\npace = \"fast\"\n[record]\npath = \"{}\"\n[haptics]\nqueue_policy = \"block\"\n", rec.display()),
    )
    .unwrap();
    let o = sonoflow(&["run", "--config", config.to_str().unwrap(), "--input", sweep.to_str().unwrap(), "--table"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("end-to-end"), "the table is printed: {}", stderr(&o));
    let (_, frames) = sonoflow::io::sequence::read_all(&rec).unwrap();
    assert_eq!(frames.len(), 12);
}

#[test]
fn ctrl_c_shuts_down_cleanly_and_still_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("live.toml");
    // The simulator at its 30 fps pace would run for minutes; the interrupt ends it.
    std::fs::write(&config, "[capture]\nkind = \"simulator\"\n[capture.simulator]\nframes = 100000\n").unwrap();
    let report = dir.path().join("r.json");
    let child = Command::new(env!("CARGO_BIN_EXE_sonoflow"))
        .args(["run", "--config", config.to_str().unwrap(), "--report", report.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let r = read_report(&report);
    assert_eq!(r["stop_reason"], "interrupted");
    assert!(r["frames_out"].as_u64().unwrap() > 0);
}

/// A config for the built-in simulator at its recorded pace, driving a haptic device at `port`.
/// A 60-frame simulated run driving the haptic port. Reconstruction is off: these tests are
/// about the device link, and the forces come from each frame's mask (a live label volume covers
/// only the part of the lesion swept so far, which the stylus approaches from beyond).
fn haptics_config(dir: &std::path::Path, port: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("haptics.toml");
    let text = format!(
        "[capture]\nkind = \"simulator\"\n[capture.simulator]\nframes = 60\n[reconstruct]\nenabled = false\n[haptics]\nport = \"{}\"\nwatchdog_ms = 50.0\n",
        port.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_haptics_port_that_cannot_be_opened_stops_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = haptics_config(dir.path(), &dir.path().join("no-such-tty"));
    let o = sonoflow(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot open haptics port") && stderr(&o).contains("no-such-tty"), "{}", stderr(&o));
}

#[test]
fn a_run_drives_the_device_simulator_over_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let (port, log) = (dir.path().join("haptic"), dir.path().join("frames.csv"));
    let mut device = Command::new(env!("CARGO_BIN_EXE_sonoflow"))
        .args(["haptics-sim", "--pty", "--port", port.to_str().unwrap(), "--log", log.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !port.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (config, report) = (haptics_config(dir.path(), &port), dir.path().join("r.json"));
    let o = sonoflow(&["run", "--config", config.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    // Ctrl-C for the device, so it flushes its log.
    // SAFETY: sends a signal to our own child process, which is still running (not yet waited).
    assert_eq!(unsafe { libc::kill(device.id() as i32, libc::SIGINT) }, 0);
    assert!(device.wait().unwrap().success());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let r = read_report(&report);
    let h = &r["haptics"];
    // Every simulated frame entered; on a loaded machine the drop-oldest queues may thin what
    // reaches haptics, but the haptics report agrees with the stage's own count.
    assert_eq!(r["frames_in"], 60);
    let stage = r["stages"].as_array().unwrap().iter().find(|s| s["name"] == "haptics").unwrap();
    assert_eq!(h["frames"], stage["frames_in"], "{h}");
    assert!(h["frames"].as_u64().unwrap() > 0, "{h}");
    // What did not reach haptics was displaced or discarded as stale on the way, and counted.
    let lost: u64 = r["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["dropped"].as_u64().unwrap() + q["stale"].as_u64().unwrap() + q["drained"].as_u64().unwrap())
        .sum();
    assert_eq!(h["frames"].as_u64().unwrap() + lost, 60, "{}", r["queues"]);
    assert!(h["frames_with_force"].as_u64().unwrap() > 0, "{h}");
    assert!(h["driver"]["link"]["frames_sent"].as_u64().unwrap() > 100, "{h}");
    assert!(h["driver"]["period"]["p50_ms"].is_number());
    let text = std::fs::read_to_string(&log).unwrap();
    let frames: Vec<Vec<&str>> =
        text.lines().filter(|l| l.starts_with("frame,")).map(|l| l.split(',').collect()).collect();
    assert!(frames.len() > 100, "{} frames logged", frames.len());
    assert!(!text.lines().any(|l| l.starts_with("rejected,")), "every frame passed its CRC");
    let flags = |f: &Vec<&str>| u8::from_str_radix(f[4].trim_start_matches("0x"), 16).unwrap();
    assert!(frames.iter().any(|f| flags(f) & 1 != 0 && f[7].parse::<f32>().unwrap() != 0.0), "some force rendered");
    // The last frames before the port closed hold zero force with the safe-state flag.
    for f in &frames[frames.len() - 20..] {
        assert!(flags(f) & 2 != 0 && f[5..8].iter().all(|v| v.parse::<f32>().unwrap() == 0.0), "{f:?}");
    }
}

#[test]
fn segment_writes_a_mask_for_a_sequence_frame_and_names_bad_input() {
    if common::model_weights().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("s.mha");
    let o = sonoflow(&["simulate", "--out", seq.to_str().unwrap(), "--frames", "40"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (mask, logits) = (dir.path().join("m.png"), dir.path().join("l.f32"));
    let args = |frame: &str, extra: &[&str]| {
        let mut a =
            vec!["segment", "--input", seq.to_str().unwrap(), "--frame", frame, "--out", mask.to_str().unwrap()];
        a.extend_from_slice(extra);
        sonoflow(&a)
    };
    let o = args("18", &["--box", "45,75,145,155", "--logits", logits.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("predicted IoU"), "{}", stderr(&o));
    let png = std::fs::read(&mask).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let values = std::fs::read(&logits).unwrap();
    assert_eq!(values.len(), 256 * 256 * 4);
    let positive = values.chunks_exact(4).filter(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) > 0.0).count();
    assert!(positive > 500, "the lesion is segmented ({positive} pixels)");
    assert_eq!(args("18", &[]).status.code(), Some(2), "no prompt is a usage error");
    let o = args("99", &["--box", "1,1,9,9"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("no frame 99"), "{}", stderr(&o));
    // A corrupt or absent image is an input error naming the file, not a panic.
    let bad_png = dir.path().join("bad.png");
    std::fs::write(&bad_png, b"\x89PNG\r\n\x1a\n not really").unwrap();
    for image in [bad_png.clone(), dir.path().join("absent.png")] {
        let o = sonoflow(&[
            "segment",
            "--image",
            image.to_str().unwrap(),
            "--box",
            "1,1,9,9",
            "--out",
            mask.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert!(stderr(&o).contains(image.to_str().unwrap()), "{}", stderr(&o));
    }
}

#[test]
fn bench_speaks_the_tools_bench_protocol() {
    if common::model_weights().is_none() {
        return;
    }
    // tools/bench/run passes its settings in SONOFLOW_BENCH_* variables.
    let o = Command::new(env!("CARGO_BIN_EXE_sonoflow"))
        .args(["bench", "--json"])
        .env("SONOFLOW_BENCH_FRAMES", "2")
        .env("SONOFLOW_BENCH_WARMUP", "0")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(v["engine"].as_str().unwrap().starts_with("sonoflow"));
    for key in ["encoder_ms", "decoder_ms"] {
        let times = v[key].as_array().unwrap();
        assert_eq!(times.len(), 2, "{key}");
        assert!(times.iter().all(|t| t.as_f64().unwrap() > 0.0));
    }
}

#[test]
fn bench_refuses_an_input_of_the_wrong_size() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("frame.raw");
    std::fs::write(&raw, [0u8; 100]).unwrap();
    let o =
        sonoflow(&["bench", "--input", raw.to_str().unwrap(), "--width", "16", "--height", "16", "--box", "1,1,8,8"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("100 bytes, a 16 x 16 Gray8 frame has 256"), "{}", stderr(&o));
}

#[test]
fn a_recording_plays_without_a_config_and_record_counts_its_frames_out() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("s.mha");
    let o = sonoflow(&["simulate", "--out", seq.to_str().unwrap(), "--frames", "12"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // No --config: the built-in replay defaults process every frame.
    let o = sonoflow(&["run", "--input", seq.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("12 frames in, 12 out, 0 dropped"), "{}", stderr(&o));
    assert_eq!(sonoflow(&["run"]).status.code(), Some(2), "neither --config nor --input is a usage error");
    // `record` runs no stages: capture is the sink, and its frames are the output.
    let out = dir.path().join("copy.mha");
    let o = sonoflow(&["record", "--input", seq.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("12 frames in, 12 out"), "{}", stderr(&o));
}

#[test]
fn a_box_outside_the_image_and_a_missing_model_folder_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("s.mha");
    let o = sonoflow(&["simulate", "--out", seq.to_str().unwrap(), "--frames", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mask = dir.path().join("m.png");
    let segment = |extra: &[&str]| {
        let mut a = vec!["segment", "--input", seq.to_str().unwrap(), "--out", mask.to_str().unwrap()];
        a.extend_from_slice(extra);
        sonoflow(&a)
    };
    let o = segment(&["--box", "300,300,400,400"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("outside the 256x256 image"), "{}", stderr(&o));
    let empty = dir.path().join("no-model");
    std::fs::create_dir(&empty).unwrap();
    let o = segment(&["--box", "10,10,50,50", "--model-dir", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = stderr(&o);
    assert!(text.contains("no model here") && text.contains("sonoflow model fetch"), "{text}");
    assert!(!mask.exists(), "no mask is written without a model");
}
