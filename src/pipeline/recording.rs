//! Recording tap: copies frames off the live path into a PLUS sequence file on its own thread.
//!
//! The live path never waits for the disk. `offer` copies the pixels into a buffer from the tap's
//! own pool and hands it to the writer thread over a bounded queue; when the pool or the queue is
//! full (the disk fell behind), the frame is not recorded and the drop is counted. The writer
//! creates its file on the first frame (that frame fixes size and spacing) and finishes it when
//! the tap is dropped, so an ended or interrupted run still leaves a complete, readable file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::frame::{Frame, PixelData, PixelFormat, PixelPool, PooledPixels, TransformSet};
use crate::io::{SequenceError, SequenceSpec, SequenceWriter};

/// What the tap copies out of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapContent {
    /// The ultrasound image.
    Image,
    /// The label mask (frames without one are not recorded and counted as `without_mask`).
    Mask,
}

#[derive(Debug, Default)]
struct TapCounters {
    offered: AtomicU64,
    dropped: AtomicU64,
    without_mask: AtomicU64,
}

/// The report's view of one recording.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingReport {
    pub path: PathBuf,
    pub offered: u64,
    pub written: u64,
    /// Frames not recorded because the writer fell behind.
    pub dropped: u64,
    pub without_mask: u64,
    pub error: Option<String>,
}

struct Item {
    pixels: PooledPixels,
    width: usize,
    height: usize,
    spacing_mm: [f64; 2],
    timestamp_s: f64,
    image_ok: bool,
    transforms: TransformSet,
}

/// The live-path end of a recording.
pub struct RecordingTap {
    content: TapContent,
    pool: PixelPool,
    tx: Option<crossbeam_channel::Sender<Item>>,
    counters: Arc<TapCounters>,
    writer: Option<JoinHandle<(u64, Option<SequenceError>)>>,
    path: PathBuf,
}

/// How a recording is written.
#[derive(Debug, Clone, PartialEq)]
pub struct TapSettings {
    /// Bounds both the writer's queue and the tap's pixel pool.
    pub queue_frames: usize,
    pub compress: bool,
    /// Image-level fields for the file header (e.g. the source's `UltrasoundImageOrientation`),
    /// so a recording keeps what its source said about the images.
    pub fields: Vec<(String, String)>,
}

impl RecordingTap {
    /// Starts the writer thread for frames of at most `max_pixels` pixels.
    pub fn start(
        path: &Path,
        content: TapContent,
        pixel_format: PixelFormat,
        max_pixels: usize,
        settings: TapSettings,
    ) -> std::io::Result<Self> {
        let queue_frames = settings.queue_frames.max(1);
        let pool = PixelPool::new(pixel_format, max_pixels, queue_frames);
        let (tx, rx) = crossbeam_channel::bounded::<Item>(queue_frames);
        let target = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name(format!("record-{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
            .spawn(move || write_all(&target, rx, settings))?;
        Ok(RecordingTap {
            content,
            pool,
            tx: Some(tx),
            counters: Arc::default(),
            writer: Some(writer),
            path: path.to_path_buf(),
        })
    }

    /// Copies `frame` for recording unless the writer is behind. Never blocks; allocation-free.
    pub fn offer(&self, frame: &Frame) {
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
        let source = match self.content {
            TapContent::Image => frame.image.pixels.data(),
            TapContent::Mask => match &frame.mask {
                Some(mask) => mask.data(),
                None => {
                    self.counters.without_mask.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
        };
        let Some(mut pixels) = self.pool.try_acquire() else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !pixels.data_mut().copy_prefix_from(source, frame.image.pixel_count()) {
            // A mask or image of another format or size than the recording: not recordable.
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let item = Item {
            pixels,
            width: frame.image.width,
            height: frame.image.height,
            spacing_mm: frame.image.spacing_mm,
            timestamp_s: frame.capture_time_s,
            image_ok: frame.image_ok,
            transforms: frame.transforms.clone(),
        };
        let sent = self.tx.as_ref().is_some_and(|tx| tx.try_send(item).is_ok());
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes the queue, waits for the writer to finish the file, and reports.
    pub fn finish(mut self) -> RecordingReport {
        self.tx = None;
        let (written, error) = match self.writer.take().map(JoinHandle::join) {
            Some(Ok((written, error))) => (written, error.map(|e| e.to_string())),
            Some(Err(_)) => (0, Some("the writer thread panicked; the file may be incomplete".to_string())),
            None => (0, None),
        };
        let c = &self.counters;
        RecordingReport {
            path: self.path.clone(),
            offered: c.offered.load(Ordering::Relaxed),
            written,
            dropped: c.dropped.load(Ordering::Relaxed),
            without_mask: c.without_mask.load(Ordering::Relaxed),
            error,
        }
    }
}

impl Drop for RecordingTap {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish the file even if `finish` was never called.
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Writer thread: writes frames until the queue closes, then finishes the file. After a write
/// error it keeps draining (so the live path's buffers come back) and reports the first error.
fn write_all(
    path: &Path,
    rx: crossbeam_channel::Receiver<Item>,
    settings: TapSettings,
) -> (u64, Option<SequenceError>) {
    let mut writer: Option<SequenceWriter> = None;
    let mut written = 0u64;
    let mut error = None;
    for item in rx {
        if error.is_some() {
            continue;
        }
        if writer.is_none() {
            let spec = SequenceSpec {
                width: item.width,
                height: item.height,
                pixel_format: item.pixels.data().format(),
                spacing_mm: item.spacing_mm,
                compress: settings.compress,
                fields: settings.fields.clone(),
            };
            match SequenceWriter::create(path, spec) {
                Ok(w) => writer = Some(w),
                Err(e) => {
                    error = Some(e);
                    continue;
                }
            }
        }
        if let Some(w) = writer.as_mut() {
            let pixels: &PixelData = item.pixels.data();
            match w.write_frame(item.timestamp_s, item.image_ok, item.transforms.iter(), pixels) {
                Ok(()) => written += 1,
                Err(e) => error = Some(e),
            }
        }
    }
    if let Some(w) = writer
        && let Err(e) = w.finish()
    {
        error.get_or_insert(e);
    }
    (written, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PixelPool;

    fn frame(pool: &PixelPool, seq: u64) -> Frame {
        let mut f = Frame::new(pool.try_acquire().unwrap());
        f.seq = seq;
        f.capture_time_s = seq as f64;
        f.image.width = 4;
        f.image.height = 2;
        f
    }

    #[test]
    fn a_writer_that_falls_behind_costs_counted_frames_not_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.mha");
        let settings = TapSettings {
            queue_frames: 1,
            compress: false,
            fields: vec![("Kinds".into(), "domain domain list".into())],
        };
        let tap = RecordingTap::start(&path, TapContent::Image, PixelFormat::Gray8, 8, settings).unwrap();
        let pool = PixelPool::new(PixelFormat::Gray8, 8, 1);
        for seq in 0..500 {
            tap.offer(&frame(&pool, seq));
        }
        let report = tap.finish();
        assert_eq!(report.offered, 500);
        assert_eq!(report.written + report.dropped, 500);
        assert!(report.dropped > 0, "a one-frame queue cannot keep up with 500 frames offered at once");
        let (_, frames) = crate::io::sequence::read_all(&path).unwrap();
        assert_eq!(frames.len() as u64, report.written);
        assert!(frames.windows(2).all(|w| w[0].0.timestamp_s < w[1].0.timestamp_s));
    }

    #[test]
    fn frames_without_a_mask_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let settings = TapSettings { queue_frames: 4, compress: true, fields: vec![] };
        let tap =
            RecordingTap::start(&dir.path().join("m.mha"), TapContent::Mask, PixelFormat::Gray8, 8, settings).unwrap();
        let pool = PixelPool::new(PixelFormat::Gray8, 8, 1);
        tap.offer(&frame(&pool, 0));
        let report = tap.finish();
        assert_eq!((report.without_mask, report.written), (1, 0));
        assert!(report.error.is_none());
    }
}
