//! Replay of a recorded PLUS sequence file, at recorded pace or as fast as the pipeline takes it.
//!
//! Pacing maps the file's timestamps onto the pipeline clock: frame i is due at
//! `start + (t_i − t_0)`. With the mock clock the wait is virtual, so a recorded-pace replay in a
//! test takes no wall time and stamps identically every run. Looping restarts at frame 0 and keeps
//! capture times increasing (each loop adds the recording's duration plus one frame interval), so
//! downstream stages never see time run backwards.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capture::{CaptureError, Next, Source, SourceFormat};
use crate::frame::{Frame, PixelPool};
use crate::io::SequenceReader;
use crate::pipeline::clock::Clock;

/// How fast a recording is played back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pace {
    /// Frames are released when their recorded timestamps say.
    #[default]
    Recorded,
    /// Frames are released as soon as the pipeline has room.
    Fast,
}

pub struct ReplaySource {
    reader: SequenceReader,
    /// Label masks replayed alongside, one per frame, and the buffers they travel in.
    labels: Option<(SequenceReader, PixelPool)>,
    pace: Pace,
    looping: bool,
    next: usize,
    /// Added to recorded timestamps on the current loop.
    loop_offset_s: f64,
    /// Clock time and recorded time of the first frame released.
    origin: Option<(u64, f64)>,
}

impl ReplaySource {
    pub fn open(path: &Path, pace: Pace, looping: bool) -> Result<Self, CaptureError> {
        let reader = SequenceReader::open(path)?;
        if reader.frames().is_empty() {
            return Err(CaptureError::Failed {
                source_name: path.display().to_string(),
                message: "the file holds no frames".into(),
            });
        }
        Ok(ReplaySource { reader, labels: None, pace, looping, next: 0, loop_offset_s: 0.0, origin: None })
    }

    /// Attaches the masks of a label sequence (e.g. the simulator's `.labels.mha`) to the frames;
    /// it must hold one mask of the image's size per frame. `buffers` must match the frame pool,
    /// so that every frame in flight can carry its mask.
    pub fn with_labels(mut self, path: &Path, buffers: usize) -> Result<Self, CaptureError> {
        let labels = SequenceReader::open(path)?;
        let (h, l) = (self.reader.header(), labels.header());
        if (l.width, l.height, l.frame_count) != (h.width, h.height, h.frame_count) {
            return Err(CaptureError::Failed {
                source_name: path.display().to_string(),
                message: format!(
                    "labels are {}x{}x{} but the images are {}x{}x{}",
                    l.width, l.height, l.frame_count, h.width, h.height, h.frame_count
                ),
            });
        }
        let pool = PixelPool::new(l.pixel_format, l.width * l.height, buffers);
        self.labels = Some((labels, pool));
        Ok(self)
    }

    pub fn frame_count(&self) -> usize {
        self.reader.frames().len()
    }

    /// Recorded duration plus one frame interval: the time one loop adds.
    fn loop_period_s(&self) -> f64 {
        let frames = self.reader.frames();
        let first = frames[0].timestamp_s;
        let last = frames[frames.len() - 1].timestamp_s;
        let interval = if frames.len() > 1 { (last - first) / (frames.len() - 1) as f64 } else { 0.0 };
        // A single-frame file still needs time to advance between loops; 30 fps is a typical rate.
        let interval = if interval > 0.0 { interval } else { 1.0 / 30.0 };
        (last - first) + interval
    }
}

impl Source for ReplaySource {
    fn describe(&self) -> String {
        self.reader.path().display().to_string()
    }

    fn format(&self) -> SourceFormat {
        let h = self.reader.header();
        SourceFormat { width: h.width, height: h.height, pixel_format: h.pixel_format }
    }

    fn image_fields(&self) -> Vec<(String, String)> {
        self.reader.header().fields.clone()
    }

    fn wait_next(&mut self, clock: &mut Clock, keep_waiting: &dyn Fn() -> bool) -> Result<Next, CaptureError> {
        if self.next >= self.reader.frames().len() {
            if !self.looping {
                return Ok(Next::End);
            }
            self.reader.rewind()?;
            if let Some((labels, _)) = self.labels.as_mut() {
                labels.rewind()?;
            }
            self.loop_offset_s += self.loop_period_s();
            self.next = 0;
        }
        if self.pace == Pace::Recorded {
            let t = self.reader.frames()[self.next].timestamp_s + self.loop_offset_s;
            let (start_ns, t0) = *self.origin.get_or_insert_with(|| (clock.now_ns(), t));
            let due_ns = start_ns + ((t - t0).max(0.0) * 1e9) as u64;
            if !clock.sleep_until_ns(due_ns, keep_waiting) {
                return Ok(Next::End);
            }
        }
        Ok(Next::Ready)
    }

    fn fill(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let index = self.reader.read_next(frame.image.pixels.data_mut())?;
        let source_name = || self.reader.path().display().to_string();
        if index != Some(self.next) {
            return Err(CaptureError::BadFrame {
                source_name: source_name(),
                frame: self.next,
                message: format!("reader returned frame {index:?} instead"),
            });
        }
        frame.mask = None;
        if let Some((labels, pool)) = self.labels.as_mut() {
            let Some(mut mask) = pool.try_acquire() else {
                return Err(CaptureError::BadFrame {
                    source_name: labels.path().display().to_string(),
                    frame: self.next,
                    message: "no free mask buffer (the label pool must be as large as the frame pool)".into(),
                });
            };
            labels.read_next(mask.data_mut())?;
            frame.mask = Some(mask);
        }
        let header = self.reader.header();
        let meta = &self.reader.frames()[self.next];
        frame.image.width = header.width;
        frame.image.height = header.height;
        frame.image.spacing_mm = header.spacing_mm;
        frame.capture_time_s = meta.timestamp_s + self.loop_offset_s;
        frame.image_ok = meta.image_ok;
        frame.transforms.clear();
        for t in &meta.transforms {
            frame.transforms.set(&t.name, t.matrix, t.status).map_err(|e| CaptureError::BadFrame {
                source_name: source_name(),
                frame: self.next,
                message: e.to_string(),
            })?;
        }
        self.next += 1;
        Ok(())
    }
}
