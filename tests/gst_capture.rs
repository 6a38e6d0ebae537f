//! GStreamer capture (needs the `gstreamer` feature and GStreamer's base and good plugins):
//! the test pattern, lossless video round trips compared pixel for pixel, damaged files, a
//! missing device, loops, and the bounded live queue.
#![cfg(feature = "gstreamer")]

use std::path::Path;
use std::process::{Command, Output};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use sonoflow::capture::gst::{GstOptions, GstSource};
use sonoflow::capture::settings::GstSettings;
use sonoflow::capture::{Next, Pace, Source};
use sonoflow::config::SourceKind;
use sonoflow::frame::{Frame, PixelFormat, PixelPool};
use sonoflow::pipeline::clock::Clock;

const W: usize = 64;
const H: usize = 48;

fn test_pattern(frames: u64) -> GstOptions {
    GstOptions {
        kind: SourceKind::Test,
        settings: GstSettings { width_px: W, height_px: H, frames, ..GstSettings::default() },
        path: None,
        pace: Pace::Fast,
        looping: false,
        roi_px: None,
        spacing_mm: None,
    }
}

fn file(path: &Path) -> GstOptions {
    GstOptions { kind: SourceKind::File, path: Some(path.to_path_buf()), ..test_pattern(0) }
}

struct Captured {
    pixels: Vec<u8>,
    time_s: f64,
    size: (usize, usize),
}

/// Plays `source` to its end or `limit` frames.
fn play(source: &mut GstSource, limit: usize) -> Result<Vec<Captured>, String> {
    let f = source.format();
    let pool = PixelPool::new(f.pixel_format, f.width * f.height, 2);
    let mut clock = Clock::mock();
    let mut out = Vec::new();
    while out.len() < limit {
        match source.wait_next(&mut clock, &|| true).map_err(|e| e.to_string())? {
            Next::End => break,
            Next::Ready => {}
        }
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        source.fill(&mut frame).map_err(|e| e.to_string())?;
        let pixels = match frame.image.as_u8() {
            Some(p) => p.to_vec(),
            None => frame.image.as_u16().unwrap().iter().flat_map(|p| p.to_le_bytes()).collect(),
        };
        out.push(Captured { pixels, time_s: frame.capture_time_s, size: (frame.image.width, frame.image.height) });
    }
    Ok(out)
}

#[test]
fn test_pattern_frames_have_the_size_count_and_increasing_timestamps() {
    let mut source = GstSource::open(test_pattern(15)).unwrap();
    let frames = play(&mut source, usize::MAX).unwrap();
    assert_eq!(frames.len(), 15);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.size, (W, H));
        // The PTS of a 30 fps pattern, relative to the first frame.
        assert!((f.time_s - i as f64 / 30.0).abs() < 1e-6, "frame {i} at {}", f.time_s);
    }
    assert!(frames.windows(2).all(|p| p[1].time_s > p[0].time_s));
    assert!(frames.windows(2).any(|p| p[0].pixels != p[1].pixels), "the ball moves");
}

#[test]
fn crop_and_16_bit_output_come_from_the_settings() {
    let mut options = test_pattern(3);
    options.roi_px = Some([10, 5, 20, 30]);
    options.spacing_mm = Some([0.15, 0.2]);
    let full = play(&mut GstSource::open(test_pattern(3)).unwrap(), usize::MAX).unwrap();
    let cropped = play(&mut GstSource::open(options).unwrap(), usize::MAX).unwrap();
    let expected: Vec<u8> = (5..35).flat_map(|y| full[0].pixels[y * W + 10..y * W + 30].to_vec()).collect();
    assert_eq!(cropped[0].size, (20, 30));
    assert!(cropped[0].pixels == expected);

    let mut options = test_pattern(2);
    options.settings.pixel_format = PixelFormat::Gray16;
    let source = GstSource::open(options).unwrap();
    assert_eq!(source.format().pixel_format, PixelFormat::Gray16);
}

/// Encodes 12 frames of the moving-ball pattern with `encoder` into `path` and returns the
/// frames as they entered the encoder (a tee feeds an appsink too).
fn write_video(path: &Path, encoder: &str) -> Vec<Vec<u8>> {
    gst::init().unwrap();
    let line = format!(
        "videotestsrc num-buffers=12 pattern=ball ! video/x-raw,format=GRAY8,width={W},height={H},framerate=30/1 ! \
         tee name=t ! queue ! {encoder} ! filesink name=out t. ! queue ! appsink name=orig sync=false"
    );
    let pipeline = gst::parse::launch(&line).unwrap().downcast::<gst::Pipeline>().unwrap();
    pipeline.by_name("out").unwrap().set_property("location", path.to_str().unwrap());
    let sink = pipeline.by_name("orig").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        frames.push(sample.buffer().unwrap().map_readable().unwrap().as_slice()[..W * H].to_vec());
    }
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Eos, gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(frames.len(), 12);
    frames
}

#[test]
fn lossless_videos_replay_pixel_for_pixel() {
    let dir = tempfile::tempdir().unwrap();
    for (name, encoder) in [("png.avi", "pngenc ! avimux"), ("png.mov", "pngenc ! qtmux"), ("raw.mkv", "matroskamux")] {
        let path = dir.path().join(name);
        let original = write_video(&path, encoder);
        let replayed = play(&mut GstSource::open(file(&path)).unwrap(), usize::MAX).unwrap();
        assert_eq!(replayed.len(), original.len(), "{name}");
        for (i, (r, o)) in replayed.iter().zip(&original).enumerate() {
            assert!(r.pixels == *o, "{name}: frame {i} differs");
            assert!((r.time_s - i as f64 / 30.0).abs() < 1e-3, "{name}: frame {i} at {}", r.time_s);
        }
    }
}

#[test]
fn a_looped_file_keeps_its_timestamps_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.mkv");
    let original = write_video(&path, "matroskamux");
    let mut options = file(&path);
    options.looping = true;
    let frames = play(&mut GstSource::open(options).unwrap(), 30).unwrap();
    assert_eq!(frames.len(), 30);
    for (i, f) in frames.iter().enumerate() {
        assert!(f.pixels == original[i % 12], "frame {i}");
        assert!((f.time_s - i as f64 / 30.0).abs() < 1e-3, "frame {i} at {}", f.time_s);
    }
}

#[test]
fn a_truncated_video_is_an_error_after_the_frames_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("whole.mkv");
    write_video(&path, "matroskamux");
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut source = GstSource::open(file(&cut)).unwrap();
    let err = play(&mut source, usize::MAX).err().expect("truncation is reported");
    assert!(err.contains("cut.mkv") && err.contains("truncated"), "{err}");
}

fn sonoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonoflow")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn corrupt_and_truncated_videos_stop_the_run_cleanly_with_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.avi");
    std::fs::write(&corrupt, vec![0x5a; 4096]).unwrap();
    let o = sonoflow(&["run", "--config", "configs/replay.toml", "--input", corrupt.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("corrupt.avi") && stderr(&o).contains("GstDecodeBin"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));

    let path = dir.path().join("whole.mkv");
    write_video(&path, "matroskamux");
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let report = dir.path().join("r.json");
    let o = sonoflow(&[
        "run",
        "--config",
        "configs/replay.toml",
        "--input",
        cut.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["stop_reason"], "source-error");
    let out = r["frames_out"].as_u64().unwrap();
    assert!(out > 0 && out < 12, "the frames before the cut went through: {out}");
}

#[test]
fn a_missing_device_is_a_clear_input_error() {
    let o = sonoflow(&["run", "--config", "configs/replay.toml", "--input", "v4l2:/dev/video-sonoflow-none"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("/dev/video-sonoflow-none") && e.contains("GstV4l2Src"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn record_turns_a_video_into_a_plus_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.avi");
    let original = write_video(&video, "pngenc ! avimux");
    let out = dir.path().join("clip.mha");
    let o = sonoflow(&["record", "--input", video.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (header, frames) = sonoflow::io::sequence::read_all(&out).unwrap();
    assert_eq!((header.width, header.height, frames.len()), (W, H, 12));
    for (i, ((_, pixels), o)) in frames.iter().zip(&original).enumerate() {
        assert!(*pixels == sonoflow::frame::PixelData::Gray8(o.clone()), "frame {i}");
    }
}

/// A live source whose consumer is slow: the appsink holds at most `max_buffers` frames and
/// drops the oldest; every frame that reached it is either taken or counted as dropped.
#[test]
fn a_slow_consumer_makes_the_live_queue_drop_and_count() {
    let mut options = test_pattern(0);
    options.pace = Pace::Recorded; // a live pattern
    options.settings.frame_rate_hz = 500.0;
    options.settings.max_buffers = 1;
    let mut source = GstSource::open(options).unwrap();
    let f = source.format();
    let pool = PixelPool::new(f.pixel_format, f.width * f.height, 2);
    let mut clock = Clock::monotonic();
    for _ in 0..5 {
        assert_eq!(source.wait_next(&mut clock, &|| true).unwrap(), Next::Ready);
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        source.fill(&mut frame).unwrap();
        // Far slower than the source: frames pile up behind and must be dropped.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(source.dropped_frames() > 0);
}

/// A live pipeline that fails every few frames (identity's error-after): the source rebuilds it
/// with backoff and time keeps increasing; with no reconnects allowed, the first error ends the
/// run, naming the element.
#[test]
fn a_failing_live_source_reconnects_then_gives_up_when_told_to() {
    let failing = GstOptions {
        kind: SourceKind::Custom,
        settings: GstSettings {
            pipeline: Some(format!(
                "videotestsrc is-live=true ! video/x-raw,width={W},height={H},framerate=200/1 ! identity error-after=4"
            )),
            reconnect_attempts: 3,
            reconnect_min_ms: 1.0,
            reconnect_max_ms: 4.0,
            max_buffers: 8,
            ..GstSettings::default()
        },
        ..test_pattern(0)
    };
    let mut source = GstSource::open(failing.clone()).unwrap();
    let frames = play(&mut source, 12).unwrap();
    assert_eq!(frames.len(), 12);
    assert!(source.reconnects() >= 2, "{} reconnects", source.reconnects());
    assert!(frames.windows(2).all(|p| p[1].time_s > p[0].time_s), "time keeps increasing across reconnects");

    let mut once = failing;
    once.settings.reconnect_attempts = 0;
    let err = play(&mut GstSource::open(once).unwrap(), 100).err().expect("the error ends the stream");
    assert!(err.contains("GstIdentity"), "{err}");
}

#[test]
fn a_crop_outside_the_frame_is_refused_when_the_source_opens() {
    let mut options = test_pattern(3);
    options.roi_px = Some([60, 0, 10, 10]);
    let err = GstSource::open(options).err().expect("refused").to_string();
    assert!(err.contains("capture.roi_px") && err.contains("64x48"), "{err}");
}
