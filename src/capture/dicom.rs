//! DICOM cine replay: a multi-frame ultrasound file (US Multi-frame Image Storage, or any
//! multi-frame image) exported from a scanner, played as a stream.
//!
//! Every frame is decoded to grey when the file is opened (uncompressed, RLE and JPEG through
//! dicom-pixeldata's pure-Rust codecs), so `fill` is one crop copy and never allocates. Pacing
//! follows the file: Frame Time Vector, else Frame Time, else Cine Rate, else 30 fps (logged).
//! Spacing comes from `capture.spacing_mm`, else the first ultrasound region measured in cm
//! (whose rectangle is also the default crop: scanners export the whole screen, annotations
//! included), else Pixel Spacing, else 1 mm (logged). Colour frames (RGB, or YBR decoded to RGB)
//! become luma; MONOCHROME1 is inverted so that bright always means echo.

use std::path::{Path, PathBuf};

use dicom_object::{DefaultDicomObject, InMemDicomObject, Tag};
use dicom_pixeldata::PixelDecoder;

use crate::capture::settings::Roi;
use crate::capture::{CaptureError, Next, Pace, Source, SourceFormat};
use crate::frame::{Frame, PixelData};
use crate::pipeline::clock::Clock;

const FRAME_TIME: Tag = Tag(0x0018, 0x1063);
const FRAME_TIME_VECTOR: Tag = Tag(0x0018, 0x1065);
const CINE_RATE: Tag = Tag(0x0018, 0x0040);
const PIXEL_SPACING: Tag = Tag(0x0028, 0x0030);
const ULTRASOUND_REGIONS: Tag = Tag(0x0018, 0x6011);
const REGION_MIN_X0: Tag = Tag(0x0018, 0x6018);
const REGION_MIN_Y0: Tag = Tag(0x0018, 0x601A);
const REGION_MAX_X1: Tag = Tag(0x0018, 0x601C);
const REGION_MAX_Y1: Tag = Tag(0x0018, 0x601E);
const UNITS_X: Tag = Tag(0x0018, 0x6024);
const UNITS_Y: Tag = Tag(0x0018, 0x6026);
const DELTA_X: Tag = Tag(0x0018, 0x602C);
const DELTA_Y: Tag = Tag(0x0018, 0x602E);
/// Physical Units X/Y Direction code for centimetres.
const UNITS_CM: u16 = 3;
/// Used when the file gives no timing at all: a common scanner frame rate.
const FALLBACK_RATE_HZ: f64 = 30.0;
/// Decoded frames live in memory; past this a file is refused rather than exhausting it.
const MAX_DECODED_BYTES: usize = 4 << 30;

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

/// The ultrasound region to use: the first one measured in cm along both axes, as
/// `(crop, [column, row] spacing in mm)`.
fn ultrasound_region(obj: &InMemDicomObject) -> Option<([usize; 4], [f64; 2])> {
    let regions = obj.element_opt(ULTRASOUND_REGIONS).ok().flatten()?.items()?;
    regions.iter().find_map(|r| {
        let cm = |tag| int(r, tag) == Some(UNITS_CM as i64);
        if !(cm(UNITS_X) && cm(UNITS_Y)) {
            return None;
        }
        let (dx, dy) = (float(r, DELTA_X)?, float(r, DELTA_Y)?);
        let (x0, y0, x1, y1) =
            (int(r, REGION_MIN_X0)?, int(r, REGION_MIN_Y0)?, int(r, REGION_MAX_X1)?, int(r, REGION_MAX_Y1)?);
        if !(dx > 0.0 && dy > 0.0 && x0 >= 0 && y0 >= 0 && x1 >= x0 && y1 >= y0) {
            return None;
        }
        // Region bounds are inclusive pixel coordinates.
        let crop = [x0 as usize, y0 as usize, (x1 - x0 + 1) as usize, (y1 - y0 + 1) as usize];
        Some((crop, [dx * 10.0, dy * 10.0]))
    })
}

/// Frame start times (s, first frame at 0) and one loop's duration.
fn frame_times(obj: &InMemDicomObject, frames: usize, path: &Path) -> (Vec<f64>, f64) {
    // Frame Time Vector holds the time since the previous frame, first entry 0.
    if let Some(v) = floats(obj, FRAME_TIME_VECTOR).filter(|v| v.len() == frames && v.iter().all(|t| *t >= 0.0)) {
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
        (Some(ms), _) if ms > 0.0 => ms / 1000.0,
        (_, Some(rate)) if rate > 0.0 => 1.0 / rate,
        _ => {
            tracing::warn!("{}: no frame time or cine rate; playing at {FALLBACK_RATE_HZ} fps", path.display());
            1.0 / FALLBACK_RATE_HZ
        }
    };
    ((0..frames).map(|i| i as f64 * interval_s).collect(), frames as f64 * interval_s)
}

/// Decoded samples of all frames to grey, `frames × rows × columns`.
fn to_grey(path: &Path, obj: &DefaultDicomObject) -> Result<(PixelData, usize, usize, usize), CaptureError> {
    let decoded = obj.decode_pixel_data().map_err(|e| fail(path, format!("cannot decode the pixel data: {e}")))?;
    let (rows, columns) = (decoded.rows() as usize, decoded.columns() as usize);
    let frames = decoded.number_of_frames() as usize;
    let samples = decoded.samples_per_pixel() as usize;
    let bits = decoded.bits_allocated();
    let pixels = rows * columns * frames;
    if pixels == 0 {
        return Err(fail(path, "the file holds no image frames"));
    }
    if pixels.saturating_mul(samples).saturating_mul(bits as usize / 8) > MAX_DECODED_BYTES {
        return Err(fail(path, format!("{frames} frames of {columns}x{rows} are too large to hold in memory")));
    }
    let data = decoded.data();
    let photometric = decoded.photometric_interpretation().to_string();
    let planar = decoded.planar_configuration() as u8 == 1;
    let expected = pixels * samples * (bits as usize).div_ceil(8);
    if data.len() < expected {
        return Err(fail(path, format!("pixel data holds {} bytes, {expected} expected", data.len())));
    }
    let grey = match (bits, samples) {
        (8, 1) => {
            let mut v = data[..pixels].to_vec();
            if photometric == "MONOCHROME1" {
                v.iter_mut().for_each(|p| *p = 255 - *p);
            }
            PixelData::Gray8(v)
        }
        (16, 1) => {
            let mut v: Vec<u16> =
                data[..pixels * 2].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            if photometric == "MONOCHROME1" {
                let max = ((1u32 << decoded.bits_stored().min(16)) - 1) as u16;
                v.iter_mut().for_each(|p| *p = max.saturating_sub(*p));
            }
            PixelData::Gray16(v)
        }
        (8, 3) if photometric == "RGB" => {
            let frame_px = rows * columns;
            let luma = |r: u8, g: u8, b: u8| ((299 * r as u32 + 587 * g as u32 + 114 * b as u32 + 500) / 1000) as u8;
            let v = (0..pixels)
                .map(|i| {
                    if planar {
                        let (f, p) = (i / frame_px, i % frame_px);
                        let base = f * frame_px * 3 + p;
                        luma(data[base], data[base + frame_px], data[base + 2 * frame_px])
                    } else {
                        luma(data[3 * i], data[3 * i + 1], data[3 * i + 2])
                    }
                })
                .collect();
            PixelData::Gray8(v)
        }
        _ => {
            return Err(fail(
                path,
                format!("unsupported pixels: {bits} bits, {samples} samples per pixel, {photometric}"),
            ));
        }
    };
    Ok((grey, rows, columns, frames))
}

impl DicomCineSource {
    pub fn open(path: &Path, options: DicomOptions) -> Result<Self, CaptureError> {
        let obj = dicom_object::open_file(path).map_err(|e| fail(path, format!("not a readable DICOM file: {e}")))?;
        let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
        let (pixels, rows, columns, frame_count) = to_grey(path, &obj).map_err(|e| match e {
            CaptureError::Failed { source_name, message } => {
                CaptureError::Failed { source_name, message: format!("{message} (transfer syntax {ts})") }
            }
            other => other,
        })?;
        let region = ultrasound_region(&obj);
        let crop = options.roi_px.or(region.map(|(crop, _)| crop));
        let roi = Roi::within(crop, columns, rows)
            .map_err(|m| fail(path, format!("crop (capture.roi_px or the ultrasound region) {m}")))?;
        let spacing_mm = match (options.spacing_mm, region, floats(&obj, PIXEL_SPACING)) {
            (Some(s), _, _) => s,
            (None, Some((_, s)), _) => s,
            // Pixel Spacing is (row spacing, column spacing).
            (None, None, Some(ps)) if ps.len() == 2 && ps.iter().all(|s| *s > 0.0) => [ps[1], ps[0]],
            _ => {
                tracing::warn!("{}: no pixel spacing or ultrasound region; assuming 1 mm", path.display());
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
            let due_ns = start + ((self.times_s[self.next] + self.loop_offset_s) * 1e9) as u64;
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
