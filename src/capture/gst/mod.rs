//! GStreamer capture: frame grabbers (V4L2), video files, the test pattern and any pipeline,
//! each ending in an appsink that sonoflow pulls frames from.
//!
//! The pipeline converts to grey (GRAY8 or GRAY16_LE); `fill` maps the buffer and copies the
//! configured crop once into the pooled frame, so the hot path allocates nothing. The buffer's
//! PTS becomes the capture time (relative to the first frame, kept increasing across loops and
//! reconnects). The appsink queue is bounded (`max_buffers`): live sources drop the oldest frame
//! when sonoflow falls behind (latency never builds up; drops are counted), file replays make the
//! decoder wait. Files are paced on the pipeline clock by their PTS (`pace = "recorded"`, so a
//! mock clock replays deterministically) or read as fast as possible. Errors name the element and
//! carry GStreamer's debug message; live sources reopen with backoff before giving up.
//!
//! Budget: the capture stage's 2 ms; the copy of a 640x480 GRAY8 frame takes a few µs.

pub mod launch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use gst::prelude::*;

use crate::capture::settings::SourceKind;
use crate::capture::settings::{GstSettings, Roi};
use crate::capture::{CaptureError, Next, Pace, Source, SourceFormat};
use crate::frame::{Frame, PixelData, PixelFormat};
use crate::pipeline::clock::Clock;

pub use launch::{SINK_NAME, SOURCE_NAME, launch_line};

/// How long one pull waits before the source looks at the bus and the stop flag again.
const POLL: Duration = Duration::from_millis(20);
/// Spacing assumed for video, which carries none.
const VIDEO_SPACING_MM: [f64; 2] = [1.0, 1.0];

/// Everything a GStreamer source is built from (the `[capture]` section, resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct GstOptions {
    pub kind: SourceKind,
    pub settings: GstSettings,
    /// `kind = "file"`: the video to play.
    pub path: Option<PathBuf>,
    pub pace: Pace,
    pub looping: bool,
    pub roi_px: Option<[usize; 4]>,
    pub spacing_mm: Option<[f64; 2]>,
}

/// Size and layout of the frames the pipeline delivers (before the crop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    width: usize,
    height: usize,
    /// Bytes from one row to the next.
    stride_bytes: usize,
}

pub struct GstSource {
    /// What the source was opened with: fixed for its life.
    setup: Setup,
    /// The pipeline: rebuilt on every reconnect.
    run: Running,
    /// What the first frame fixed: size, caps, crop.
    shape: Shape,
    /// Where playback stands: times and counts carried across loops and reconnects.
    play: Playback,
}

struct Setup {
    name: String,
    options: GstOptions,
    /// Frames arrive on the device's schedule and may be dropped; errors trigger reconnects.
    live: bool,
    /// Buffers that reached the appsink (counted by a pad probe on its input; survives rebuilds).
    arrived: Arc<AtomicU64>,
}

struct Running {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
}

struct Shape {
    layout: Layout,
    caps: gst::Caps,
    roi: Roi,
    format: SourceFormat,
}

#[derive(Default)]
struct Playback {
    pulled: u64,
    pending: Option<gst::Sample>,
    /// PTS of the first frame of the current run of the pipeline (restarts reset PTS).
    run_origin_ns: Option<u64>,
    /// Added to PTS differences so time keeps increasing across loops and reconnects.
    offset_ns: u64,
    /// Stream time just after the last frame filled (its time plus its duration).
    last_end_ns: u64,
    /// Duration of the last frame filled.
    last_step_ns: u64,
    /// Pipeline-clock time and stream time of the first frame released (pacing).
    pace_origin: Option<(u64, u64)>,
    frames_filled: usize,
    failures_in_row: u32,
    reconnects: u64,
}

fn fail(name: &str, message: impl Into<String>) -> CaptureError {
    CaptureError::Failed { source_name: name.to_string(), message: message.into() }
}

/// "element: error (debug)" from an error message on the bus.
fn describe_error(err: &gst::message::Error) -> String {
    let element = err.src().map(|s| s.path_string().to_string()).unwrap_or_else(|| "pipeline".into());
    match err.debug() {
        Some(debug) => format!("{element}: {} ({debug})", err.error()),
        None => format!("{element}: {}", err.error()),
    }
}

/// The first error waiting on the bus, described; other messages are discarded so the bus
/// never grows while nobody runs a main loop.
fn pending_error(bus: &gst::Bus) -> Option<String> {
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(describe_error(err));
        }
    }
    None
}

fn layout_of(caps: &gst::CapsRef, expected: PixelFormat) -> Result<Layout, String> {
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("unusable caps {caps}: {e}"))?;
    let want = match expected {
        PixelFormat::Gray8 => gst_video::VideoFormat::Gray8,
        PixelFormat::Gray16 => gst_video::VideoFormat::Gray16Le,
    };
    if info.format() != want {
        return Err(format!("the pipeline delivers {:?}, not {:?}", info.format(), want));
    }
    Ok(Layout { width: info.width() as usize, height: info.height() as usize, stride_bytes: info.stride()[0] as usize })
}

impl GstSource {
    pub fn open(options: GstOptions) -> Result<Self, CaptureError> {
        let name = match (options.kind, &options.path) {
            (SourceKind::File, Some(path)) => path.display().to_string(),
            (SourceKind::V4l2, _) => format!("v4l2:{}", options.settings.device),
            (SourceKind::Test, _) => format!("videotestsrc ({})", options.settings.pattern),
            _ => format!("gstreamer ({})", options.kind.name()),
        };
        gst::init().map_err(|e| fail(&name, format!("cannot initialise GStreamer: {e}")))?;
        let live = match options.kind {
            SourceKind::V4l2 | SourceKind::Custom => true,
            SourceKind::Test => options.pace == Pace::Recorded,
            _ => false,
        };
        let arrived = Arc::new(AtomicU64::new(0));
        let (pipeline, sink, bus) = build(&options, live, &name, &arrived)?;
        // The first frame fixes the size; any failure until then stops the pipeline again.
        let first = first_sample(&sink, &bus, &name, options.settings.first_frame_timeout_ms).and_then(|sample| {
            let caps = sample.caps_owned().ok_or_else(|| fail(&name, "the first frame has no caps"))?;
            let layout = layout_of(&caps, options.settings.pixel_format).map_err(|m| fail(&name, m))?;
            let roi = Roi::within(options.roi_px, layout.width, layout.height)
                .map_err(|m| fail(&name, format!("capture.roi_px {m}")))?;
            Ok((sample, caps, layout, roi))
        });
        let (first, caps, layout, roi) = match first {
            Ok(opened) => opened,
            Err(e) => {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(e);
            }
        };
        let format = SourceFormat { width: roi.width, height: roi.height, pixel_format: options.settings.pixel_format };
        tracing::info!(
            "{name}: {}x{} {} frames, crop {roi:?}, {}",
            layout.width,
            layout.height,
            options.settings.pixel_format,
            if live { "live" } else { "file" }
        );
        Ok(GstSource {
            setup: Setup { name, options, live, arrived },
            run: Running { pipeline, sink, bus },
            shape: Shape { layout, caps, roi, format },
            play: Playback { pulled: 1, pending: Some(first), ..Playback::default() },
        })
    }

    /// Times the source was reopened after an error or end of stream.
    pub fn reconnects(&self) -> u64 {
        self.play.reconnects
    }

    /// Size of the frames the pipeline delivers, before the crop.
    pub fn input_size(&self) -> (usize, usize) {
        (self.shape.layout.width, self.shape.layout.height)
    }

    /// Builds the pipeline afresh (a reconnect): decodebin and similar elements link their pads
    /// only once, so a stopped pipeline cannot simply be set playing again. Time keeps going on.
    fn rebuild(&mut self) -> Result<(), CaptureError> {
        let _ = self.run.pipeline.set_state(gst::State::Null);
        let s = &self.setup;
        let (pipeline, sink, bus) = build(&s.options, s.live, &s.name, &s.arrived)?;
        self.run = Running { pipeline, sink, bus };
        self.play.offset_ns = self.play.last_end_ns;
        self.play.run_origin_ns = None;
        Ok(())
    }

    /// Back to the start of a file (a loop): a flushing seek, which also clears the sink's
    /// end-of-stream. Time keeps going on.
    fn rewind(&mut self) -> Result<(), CaptureError> {
        self.run
            .pipeline
            .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, gst::ClockTime::ZERO)
            .map_err(|e| fail(&self.setup.name, format!("cannot seek back to the start to loop: {e}")))?;
        self.play.offset_ns = self.play.last_end_ns;
        self.play.run_origin_ns = None;
        Ok(())
    }

    /// A live source failed (`why`): reopen it with backoff, or give up after the configured
    /// attempts. Ok(false) when the pipeline is stopping meanwhile.
    fn reconnect(
        &mut self,
        why: String,
        clock: &mut Clock,
        keep_waiting: &dyn Fn() -> bool,
    ) -> Result<bool, CaptureError> {
        let mut why = why;
        loop {
            let s = &self.setup.options.settings;
            if !self.setup.live || self.play.failures_in_row >= s.reconnect_attempts {
                let tries = if self.setup.live {
                    format!(" (after {} reconnect attempts)", self.play.failures_in_row)
                } else {
                    String::new()
                };
                return Err(fail(&self.setup.name, format!("{why}{tries}")));
            }
            let wait_ms = s.backoff_ms(self.play.failures_in_row);
            self.play.failures_in_row += 1;
            tracing::warn!(
                "{}: {why}; reconnecting in {wait_ms:.0} ms (attempt {})",
                self.setup.name,
                self.play.failures_in_row
            );
            let due = clock.now_ns() + (wait_ms * 1e6) as u64;
            if !clock.sleep_until_ns(due, keep_waiting) {
                return Ok(false);
            }
            self.play.pending = None;
            match self.rebuild() {
                Ok(()) => {
                    self.play.reconnects += 1;
                    return Ok(true);
                }
                Err(e) => why = e.to_string(),
            }
        }
    }

    /// Stream time of `sample`: PTS relative to this run's first frame, plus the offset of earlier
    /// runs. A buffer without PTS is placed right after the previous frame.
    fn stream_ns(&mut self, sample: &gst::Sample) -> u64 {
        match sample.buffer().and_then(|b| b.pts()) {
            Some(pts) => {
                let origin = *self.play.run_origin_ns.get_or_insert(pts.nseconds());
                self.play.offset_ns + pts.nseconds().saturating_sub(origin)
            }
            None => self.play.last_end_ns,
        }
    }

    /// At the end of a file: demuxers stop quietly at the cut of a truncated file, so compare
    /// where the stream ended with the duration its header declares.
    fn check_complete(&self) -> Result<(), CaptureError> {
        let Some(declared) = self.run.pipeline.query_duration::<gst::ClockTime>() else { return Ok(()) };
        let ended = self.play.last_end_ns.saturating_sub(self.play.offset_ns) + self.play.run_origin_ns.unwrap_or(0);
        // Muxers round durations; a frame and a half of slack (and 1 ms) absorbs that.
        let slack = self.play.last_step_ns + self.play.last_step_ns / 2 + 1_000_000;
        if ended + slack < declared.nseconds() {
            return Err(fail(
                &self.setup.name,
                format!(
                    "the stream ended at {:.3} s but the file declares {:.3} s: it is truncated or damaged \
                     ({} frames read)",
                    ended as f64 / 1e9,
                    declared.nseconds() as f64 / 1e9,
                    self.play.frames_filled
                ),
            ));
        }
        Ok(())
    }

    /// Copies the crop of `sample` into `frame`'s pixels.
    fn copy_pixels(&self, sample: &gst::Sample, frame: &mut Frame) -> Result<(), String> {
        let buffer = sample.buffer().ok_or("a sample without a buffer")?;
        let map = buffer.map_readable().map_err(|_| "cannot map the buffer".to_string())?;
        let bytes = map.as_slice();
        match frame.image.pixels.data_mut() {
            PixelData::Gray8(dst) => self.shape.roi.copy(bytes, self.shape.layout.stride_bytes, dst),
            PixelData::Gray16(dst) => {
                let r = self.shape.roi;
                let need = (r.y + r.height - 1) * self.shape.layout.stride_bytes + (r.x + r.width) * 2;
                if bytes.len() < need || dst.len() < r.width * r.height {
                    return Err(format!("a buffer of {} bytes is too small for the frame", bytes.len()));
                }
                for (row, out) in dst.chunks_exact_mut(r.width).take(r.height).enumerate() {
                    let start = (r.y + row) * self.shape.layout.stride_bytes + r.x * 2;
                    for (p, b) in out.iter_mut().zip(bytes[start..start + r.width * 2].chunks_exact(2)) {
                        *p = u16::from_le_bytes([b[0], b[1]]);
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks that a sample's caps still describe the layout the pool was sized for.
    fn check_caps(&mut self, sample: &gst::Sample) -> Result<(), String> {
        let Some(caps) = sample.caps() else { return Ok(()) };
        // Same caps object (the usual case) or equal caps: nothing to do, nothing allocated.
        if caps.as_ptr() == self.shape.caps.as_ptr() || caps == self.shape.caps.as_ref() {
            return Ok(());
        }
        let layout = layout_of(caps, self.setup.options.settings.pixel_format)?;
        if (layout.width, layout.height) != (self.shape.layout.width, self.shape.layout.height) {
            return Err(format!(
                "the source changed its frame size from {}x{} to {}x{}",
                self.shape.layout.width, self.shape.layout.height, layout.width, layout.height
            ));
        }
        self.shape.layout = layout;
        self.shape.caps = caps.to_owned();
        Ok(())
    }
}

/// Parses the pipeline for `options`, configures its appsink (bounded queue, drop on live,
/// counting probe) and sets it playing.
fn build(
    options: &GstOptions,
    live: bool,
    name: &str,
    arrived: &Arc<AtomicU64>,
) -> Result<(gst::Pipeline, gst_app::AppSink, gst::Bus), CaptureError> {
    let line = launch_line(options.kind, &options.settings, live).map_err(|m| fail(name, m))?;
    let pipeline = gst::parse::launch(&line)
        .map_err(|e| fail(name, format!("cannot build the pipeline `{line}`: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| fail(name, format!("`{line}` is not a pipeline")))?;
    if let Some(src) = pipeline.by_name(SOURCE_NAME) {
        match (options.kind, &options.path) {
            (SourceKind::File, Some(path)) => src.set_property("location", path.to_string_lossy().as_ref()),
            (SourceKind::V4l2, _) => src.set_property("device", options.settings.device.as_str()),
            _ => {}
        }
    }
    let sink = pipeline
        .by_name(SINK_NAME)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| fail(name, format!("the pipeline has no appsink named {SINK_NAME}")))?;
    sink.set_max_buffers(options.settings.max_buffers);
    sink.set_drop(live);
    // Never sync in the sink: live frames are due when they arrive, and files are paced on the
    // pipeline's own clock (which may be the deterministic mock clock).
    sink.set_sync(false);
    if let Some(pad) = sink.static_pad("sink") {
        let count = arrived.clone();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let bus = pipeline.bus().ok_or_else(|| fail(name, "the pipeline has no bus"))?;
    start(&pipeline, &bus, name)?;
    Ok((pipeline, sink, bus))
}

/// Sets the pipeline playing; a refusal is reported with the error the element posted.
fn start(pipeline: &gst::Pipeline, bus: &gst::Bus, name: &str) -> Result<(), CaptureError> {
    if pipeline.set_state(gst::State::Playing).is_err() {
        let detail = bus
            .timed_pop_filtered(gst::ClockTime::from_mseconds(500), &[gst::MessageType::Error])
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(err) => Some(describe_error(err)),
                _ => None,
            })
            .unwrap_or_else(|| "the pipeline refused to start".into());
        let _ = pipeline.set_state(gst::State::Null);
        return Err(fail(name, detail));
    }
    Ok(())
}

/// Waits for the first frame, which fixes the frame size; errors and an early end are reported.
fn first_sample(
    sink: &gst_app::AppSink,
    bus: &gst::Bus,
    name: &str,
    timeout_ms: f64,
) -> Result<gst::Sample, CaptureError> {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_ms / 1000.0);
    loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64)) {
            return Ok(sample);
        }
        if let Some(error) = pending_error(bus) {
            return Err(fail(name, error));
        }
        if sink.is_eos() {
            return Err(fail(name, "the stream ended before its first frame"));
        }
        if Instant::now() > deadline {
            return Err(fail(
                name,
                format!("no frame within {timeout_ms} ms (capture.gstreamer.first_frame_timeout_ms)"),
            ));
        }
    }
}

impl Source for GstSource {
    fn describe(&self) -> String {
        self.setup.name.clone()
    }

    fn format(&self) -> SourceFormat {
        self.shape.format
    }

    fn wait_next(&mut self, clock: &mut Clock, keep_waiting: &dyn Fn() -> bool) -> Result<Next, CaptureError> {
        let poll = gst::ClockTime::from_nseconds(POLL.as_nanos() as u64);
        while self.play.pending.is_none() {
            if !keep_waiting() {
                return Ok(Next::End);
            }
            if let Some(error) = pending_error(&self.run.bus) {
                if !self.reconnect(error, clock, keep_waiting)? {
                    return Ok(Next::End);
                }
                continue;
            }
            if let Some(sample) = self.run.sink.try_pull_sample(poll) {
                self.play.pulled += 1;
                self.play.pending = Some(sample);
                break;
            }
            if self.run.sink.is_eos() {
                // A source that fails posts its error, then sends end-of-stream: the error wins.
                if let Some(error) = pending_error(&self.run.bus) {
                    if !self.reconnect(error, clock, keep_waiting)? {
                        return Ok(Next::End);
                    }
                    continue;
                }
                // A grabber that ends its stream was unplugged or lost its signal: reopen it.
                if self.setup.options.kind == SourceKind::V4l2 {
                    if !self.reconnect("end of stream".into(), clock, keep_waiting)? {
                        return Ok(Next::End);
                    }
                    continue;
                }
                if self.setup.options.kind == SourceKind::File {
                    self.check_complete()?;
                }
                if self.setup.options.looping && self.play.frames_filled > 0 {
                    self.rewind()?;
                    continue;
                }
                return Ok(Next::End);
            }
        }
        if !self.setup.live && self.setup.options.pace == Pace::Recorded {
            let sample = self.play.pending.take();
            let t = sample.as_ref().map(|s| self.stream_ns(s)).unwrap_or(self.play.last_end_ns);
            self.play.pending = sample;
            let (start_ns, t0) = *self.play.pace_origin.get_or_insert_with(|| (clock.now_ns(), t));
            if !clock.sleep_until_ns(start_ns + t.saturating_sub(t0), keep_waiting) {
                return Ok(Next::End);
            }
        }
        Ok(Next::Ready)
    }

    fn fill(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let Some(sample) = self.play.pending.take() else {
            return Err(CaptureError::BadFrame {
                source_name: self.setup.name.clone(),
                frame: self.play.frames_filled,
                message: "no frame is pending (fill without wait_next)".into(),
            });
        };
        let copied = self.check_caps(&sample).and_then(|()| self.copy_pixels(&sample, frame));
        if let Err(message) = copied {
            return Err(CaptureError::BadFrame {
                source_name: self.setup.name.clone(),
                frame: self.play.frames_filled,
                message,
            });
        }
        let t = self.stream_ns(&sample);
        let duration = sample.buffer().and_then(|b| b.duration()).map(|d| d.nseconds());
        // Without a duration, assume the gap since the previous frame repeats.
        let step = duration.unwrap_or_else(|| t.saturating_sub(self.play.last_end_ns).max(1));
        self.play.last_end_ns = t + step;
        self.play.last_step_ns = step;
        frame.image.width = self.shape.roi.width;
        frame.image.height = self.shape.roi.height;
        frame.image.spacing_mm = self.setup.options.spacing_mm.unwrap_or(VIDEO_SPACING_MM);
        frame.capture_time_s = t as f64 / 1e9;
        frame.image_ok = true;
        frame.transforms.clear();
        frame.mask = None;
        self.play.frames_filled += 1;
        self.play.failures_in_row = 0;
        Ok(())
    }

    fn dropped_frames(&mut self) -> u64 {
        if !self.setup.live {
            return 0;
        }
        // Frames still queued when capture ended were not dropped by the queue, just not taken.
        let mut left = 0;
        while self.run.sink.try_pull_sample(gst::ClockTime::ZERO).is_some() {
            left += 1;
        }
        self.setup.arrived.load(Ordering::Relaxed).saturating_sub(self.play.pulled + left)
    }
}

impl Drop for GstSource {
    fn drop(&mut self) {
        // Stops the streaming threads and releases the device.
        let _ = self.run.pipeline.set_state(gst::State::Null);
    }
}
