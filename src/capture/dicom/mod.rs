//! DICOM cine replay: a multi-frame ultrasound file (US Multi-frame Image Storage, or any
//! image) exported from a scanner, played as a stream.
//!
//! Every frame is decoded to 8-bit grey when the file is opened (uncompressed, RLE, JPEG and
//! JPEG 2000 through dicom-pixeldata's pure-Rust codecs), so `fill` is one crop copy and never
//! allocates. Pacing follows the file: Frame Time Vector, else Frame Time, else Cine Rate, else
//! 30 fps (logged).
//!
//! - Crop and spacing (`regions`): `capture.roi_px` and `capture.spacing_mm` when set (a
//!   configured crop that does not fit is an error); else the B-mode ultrasound region in cm
//!   (its rectangle is the default crop: scanners export the whole screen, annotations
//!   included), clamped when it overshoots the frame by a pixel or two, ignored with a warning
//!   when it does not fit at all; else Pixel Spacing and the whole frame; else 1 mm (logged).
//! - Grey (`grey`): MONOCHROME1 inverted so that bright always means echo; MONOCHROME of 12 or
//!   16 bits windowed by the file's first Window Center/Width, else its Bits Stored range, to
//!   8 bits; RGB and YBR as luma; PALETTE COLOR through its lookup tables (`palette`), then luma.
//! - Transfer syntaxes no codec here decodes (JPEG-LS, video) are refused up front, naming what
//!   would decode them (`transfer_syntax`).
//!
//! The file is untrusted (`checks`): sizes are checked against the header and the data before
//! anything is allocated from them, RLE Lossless is decoded here (`rle`: dicom-pixeldata's RLE
//! decoder indexes and allocates from the fragment headers unchecked), and a panic inside the
//! other codecs becomes an error naming the file.

mod checks;
mod grey;
mod palette;
mod regions;
mod rle;
mod transfer_syntax;

use std::path::{Path, PathBuf};

use dicom_object::{InMemDicomObject, Tag};

use crate::capture::settings::Roi;
use crate::capture::{CaptureError, Next, Pace, Source, SourceFormat};
use crate::frame::{Frame, PixelData};
use crate::pipeline::clock::Clock;

const FRAME_TIME: Tag = Tag(0x0018, 0x1063);
const FRAME_TIME_VECTOR: Tag = Tag(0x0018, 0x1065);
const CINE_RATE: Tag = Tag(0x0018, 0x0040);
const PIXEL_SPACING: Tag = Tag(0x0028, 0x0030);
const SAMPLES_PER_PIXEL: Tag = Tag(0x0028, 0x0002);
const PHOTOMETRIC_INTERPRETATION: Tag = Tag(0x0028, 0x0004);
const NUMBER_OF_FRAMES: Tag = Tag(0x0028, 0x0008);
const ROWS: Tag = Tag(0x0028, 0x0010);
const COLUMNS: Tag = Tag(0x0028, 0x0011);
const BITS_ALLOCATED: Tag = Tag(0x0028, 0x0100);
const BITS_STORED: Tag = Tag(0x0028, 0x0101);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
/// Used when the file gives no timing at all: a common scanner frame rate.
const FALLBACK_RATE_HZ: f64 = 30.0;
/// Decoded frames live in memory; past this a file is refused rather than exhausting it.
const MAX_DECODED_BYTES: usize = 4 << 30;
/// Largest frame side accepted (as for sequence files): ultrasound frames are at most a few
/// thousand pixels wide, and a decoder sizes its buffers from the header's Rows and Columns.
const MAX_FRAME_SIDE: u64 = 8192;
/// Most decoded bytes one byte of compressed pixel data can give (JPEG at its densest gives
/// about 1000, RLE 64); the margin keeps every real file clear of it.
const MAX_EXPANSION: u64 = 4096;
/// Frame times past this (a day) are corrupt, not a slow cine.
const MAX_FRAME_TIME_S: f64 = 86_400.0;

/// How the config shapes a DICOM replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DicomOptions {
    pub pace: Pace,
    pub looping: bool,
    pub roi_px: Option<[usize; 4]>,
    pub spacing_mm: Option<[f64; 2]>,
}

pub struct DicomCineSource {
    path: PathBuf,
    /// All frames, decoded, `columns × rows` samples each.
    pixels: PixelData,
    columns: usize,
    rows: usize,
    frame_count: usize,
    roi: Roi,
    spacing_mm: [f64; 2],
    /// Start time of each frame relative to the first, in s.
    times_s: Vec<f64>,
    /// One loop's duration: last start plus one frame's duration.
    loop_period_s: f64,
    pace: Pace,
    looping: bool,
    next: usize,
    loop_offset_s: f64,
    start_ns: Option<u64>,
}

fn fail(path: &Path, message: impl Into<String>) -> CaptureError {
    CaptureError::Failed { source_name: path.display().to_string(), message: message.into() }
}

fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_float64().ok())
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_multi_float64().ok())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<i64>().ok())
}

/// The crop `[x, y, width, height]` and the [column, row] spacing in mm of the file's ultrasound
/// region (see `regions`): clamped when it overshoots the frame by a pixel or two, `None` (with
/// a warning) when it does not fit at all.
fn file_region(path: &Path, obj: &InMemDicomObject, columns: usize, rows: usize) -> Option<([usize; 4], [f64; 2])> {
    let all = regions::read(obj);
    let region = regions::choose(&all)?;
    match region.fit(columns, rows) {
        regions::Fit::Inside(crop) => Some((crop, region.spacing_mm)),
        regions::Fit::Clamped(crop) => {
            tracing::debug!(
                "{}: ultrasound region {} overshoots the {columns}x{rows} frame; clamped to {crop:?}",
                path.display(),
                region.describe()
            );
            Some((crop, region.spacing_mm))
        }
        regions::Fit::Outside => {
            tracing::warn!(
                "{}: ultrasound region {} does not fit the {columns}x{rows} frame; ignoring it (spacing from Pixel Spacing, the whole frame)",
                path.display(),
                region.describe()
            );
            None
        }
    }
}

/// Frame start times (s, first frame at 0) and one loop's duration.
fn frame_times(obj: &InMemDicomObject, frames: usize, path: &Path) -> (Vec<f64>, f64) {
    // Frame Time Vector holds the time since the previous frame, first entry 0.
    let plausible = |t: f64| (0.0..=MAX_FRAME_TIME_S * 1000.0).contains(&t);
    if let Some(v) = floats(obj, FRAME_TIME_VECTOR).filter(|v| v.len() == frames && v.iter().all(|t| plausible(*t))) {
        let mut t = 0.0;
        let times: Vec<f64> = v
            .iter()
            .enumerate()
            .map(|(i, dt)| {
                if i > 0 {
                    t += dt / 1000.0;
                }
                t
            })
            .collect();
        let mean = if frames > 1 { t / (frames - 1) as f64 } else { 1.0 / FALLBACK_RATE_HZ };
        return (times, t + mean);
    }
    let interval_s = match (float(obj, FRAME_TIME), float(obj, CINE_RATE)) {
        (Some(ms), _) if ms > 0.0 && plausible(ms) => ms / 1000.0,
        (_, Some(rate)) if rate > 0.0 && plausible(1000.0 / rate) => 1.0 / rate,
        _ => {
            tracing::warn!("{}: no frame time or cine rate; playing at {FALLBACK_RATE_HZ} fps", path.display());
            1.0 / FALLBACK_RATE_HZ
        }
    };
    ((0..frames).map(|i| i as f64 * interval_s).collect(), frames as f64 * interval_s)
}

/// An attribute as an unsigned integer, `None` when absent or not a number.
fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u64> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u64>().ok())
}

impl DicomCineSource {
    pub fn open(path: &Path, options: DicomOptions) -> Result<Self, CaptureError> {
        checks::check_lengths(path)?;
        let obj = dicom_object::open_file(path).map_err(|e| fail(path, format!("not a readable DICOM file: {e}")))?;
        let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
        let (pixels, rows, columns, frame_count) = grey::to_grey(path, &obj).map_err(|e| match e {
            CaptureError::Failed { source_name, message } => {
                CaptureError::Failed { source_name, message: format!("{message} (transfer syntax {ts})") }
            }
            other => other,
        })?;
        let region = file_region(path, &obj, columns, rows);
        let roi = match (options.roi_px, region) {
            (Some(crop), _) => {
                Roi::within(Some(crop), columns, rows).map_err(|m| fail(path, format!("crop capture.roi_px {m}")))?
            }
            (None, Some((crop, _))) => Roi::within(Some(crop), columns, rows)
                .map_err(|m| fail(path, format!("crop from the ultrasound region {m}")))?,
            (None, None) => Roi::full(columns, rows),
        };
        let spacing_mm = match (options.spacing_mm, region, floats(&obj, PIXEL_SPACING)) {
            (Some(s), _, _) => s,
            (None, Some((_, s)), _) => s,
            // Pixel Spacing is (row spacing, column spacing).
            (None, None, Some(ps)) if ps.len() == 2 && ps.iter().all(|s| *s > 0.0 && s.is_finite()) => [ps[1], ps[0]],
            _ => {
                tracing::warn!("{}: no Pixel Spacing and no usable ultrasound region; assuming 1 mm", path.display());
                [1.0, 1.0]
            }
        };
        let (times_s, loop_period_s) = frame_times(&obj, frame_count, path);
        Ok(DicomCineSource {
            path: path.to_path_buf(),
            pixels,
            columns,
            rows,
            frame_count,
            roi,
            spacing_mm,
            times_s,
            loop_period_s,
            pace: options.pace,
            looping: options.looping,
            next: 0,
            loop_offset_s: 0.0,
            start_ns: None,
        })
    }

    pub fn frame_count(&self) -> usize {
        self.frame_count
    }

    pub fn spacing_mm(&self) -> [f64; 2] {
        self.spacing_mm
    }

    /// Start time of frame `index` relative to the first, in s.
    pub fn frame_time_s(&self, index: usize) -> f64 {
        self.times_s[index]
    }
}

impl Source for DicomCineSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn format(&self) -> SourceFormat {
        SourceFormat { width: self.roi.width, height: self.roi.height, pixel_format: self.pixels.format() }
    }

    fn wait_next(&mut self, clock: &mut Clock, keep_waiting: &dyn Fn() -> bool) -> Result<Next, CaptureError> {
        if self.next >= self.frame_count {
            if !self.looping {
                return Ok(Next::End);
            }
            self.next = 0;
            self.loop_offset_s += self.loop_period_s;
        }
        if self.pace == Pace::Recorded {
            let start = *self.start_ns.get_or_insert_with(|| clock.now_ns());
            let due_ns = start.saturating_add(((self.times_s[self.next] + self.loop_offset_s) * 1e9) as u64);
            if !clock.sleep_until_ns(due_ns, keep_waiting) {
                return Ok(Next::End);
            }
        }
        Ok(Next::Ready)
    }

    fn fill(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let frame_px = self.columns * self.rows;
        let range = self.next * frame_px..(self.next + 1) * frame_px;
        let copied = match (&self.pixels, frame.image.pixels.data_mut()) {
            (PixelData::Gray8(src), PixelData::Gray8(dst)) => self.roi.copy(&src[range], self.columns, dst),
            (PixelData::Gray16(src), PixelData::Gray16(dst)) => self.roi.copy(&src[range], self.columns, dst),
            _ => Err("the frame buffer's pixel format differs from the file's".to_string()),
        };
        copied.map_err(|message| CaptureError::BadFrame {
            source_name: self.path.display().to_string(),
            frame: self.next,
            message,
        })?;
        frame.image.width = self.roi.width;
        frame.image.height = self.roi.height;
        frame.image.spacing_mm = self.spacing_mm;
        frame.capture_time_s = self.times_s[self.next] + self.loop_offset_s;
        frame.image_ok = true;
        frame.transforms.clear();
        frame.mask = None;
        self.next += 1;
        Ok(())
    }
}

/// True when `path` starts like a DICOM Part 10 file ("DICM" after the 128-byte preamble).
pub fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..] == b"DICM"
}
