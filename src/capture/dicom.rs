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
//!
//! The file is untrusted: sizes are checked against the header and the data before anything is
//! allocated from them, RLE Lossless is decoded here (dicom-pixeldata's RLE decoder indexes and
//! allocates from the fragment headers unchecked), and a panic inside the other codecs becomes
//! an error naming the file.

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
const SAMPLES_PER_PIXEL: Tag = Tag(0x0028, 0x0002);
const PHOTOMETRIC_INTERPRETATION: Tag = Tag(0x0028, 0x0004);
const NUMBER_OF_FRAMES: Tag = Tag(0x0028, 0x0008);
const ROWS: Tag = Tag(0x0028, 0x0010);
const COLUMNS: Tag = Tag(0x0028, 0x0011);
const BITS_ALLOCATED: Tag = Tag(0x0028, 0x0100);
const BITS_STORED: Tag = Tag(0x0028, 0x0101);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// Physical Units X/Y Direction code for centimetres.
const UNITS_CM: u16 = 3;
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
        if !(dx > 0.0 && dy > 0.0 && dx.is_finite() && dy.is_finite() && x0 >= 0 && y0 >= 0 && x1 >= x0 && y1 >= y0) {
            return None;
        }
        // Region bounds are inclusive pixel coordinates; values too large for a size are refused
        // later, when the crop does not fit the frame.
        let size = |lo: i64, hi: i64| usize::try_from(hi.checked_sub(lo)?.checked_add(1)?).ok();
        let crop = [usize::try_from(x0).ok()?, usize::try_from(y0).ok()?, size(x0, x1)?, size(y0, y1)?];
        Some((crop, [dx * 10.0, dy * 10.0]))
    })
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

/// Checks every value length that dicom-object will allocate from against the bytes the file
/// has left: its reader reserves (and, for the meta group, zero-fills) each value's declared
/// length, up to 4 GiB, before reading a byte of it. Walks the meta group and the data set
/// (explicit or implicit VR, either byte order, deflated or not), into sequences where the VR
/// says so; anything it cannot follow is left to the parser.
fn check_lengths(path: &Path) -> Result<(), CaptureError> {
    use std::io::{BufReader, Read, Seek};
    let io = |e: std::io::Error| fail(path, format!("cannot read: {e}"));
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut input = BufReader::new(file);
    // The preamble and `DICM`; `open_file` checks them.
    let mut pos = 132u64;
    input.seek(std::io::SeekFrom::Start(pos)).map_err(io)?;
    // File meta group: explicit VR little endian whatever the data set uses, as long as
    // (0002,0000) says; dicom-object reads it so.
    let Some(first) = next_element(&mut input, true, false) else { return Ok(()) };
    let mut group_length = [0u8; 4];
    if (first.group, first.element, first.len) != (0x0002, 0x0000, 4) || input.read_exact(&mut group_length).is_err() {
        return Ok(());
    }
    pos += first.header + 4;
    let meta_end = pos + u64::from(u32::from_le_bytes(group_length));
    let mut transfer_syntax = Vec::new();
    while pos < meta_end {
        let Some(e) = next_element(&mut input, true, false) else { return Ok(()) };
        let left = size.saturating_sub(pos + e.header);
        if e.len != u32::MAX && u64::from(e.len) > left {
            return Err(too_long(path, &e, pos, left));
        }
        pos += e.header + u64::from(e.len);
        if (e.group, e.element) == (0x0002, 0x0010) && e.len <= 64 {
            transfer_syntax = vec![0; e.len as usize];
            input.read_exact(&mut transfer_syntax).map_err(io)?;
        } else if e.len == u32::MAX {
            // dicom-object refuses it.
            return Ok(());
        } else {
            input.seek_relative(i64::from(e.len)).map_err(io)?;
        }
    }
    let uid = String::from_utf8_lossy(&transfer_syntax).trim_end_matches(['\0', ' ']).to_string();
    let data_set = match uid.as_str() {
        "1.2.840.10008.1.2.1.99" => DataSet::Deflated(flate2::read::DeflateDecoder::new(input)),
        _ => DataSet::Plain { input, left: size.saturating_sub(pos) },
    };
    walk_data_set(path, data_set, pos, uid != "1.2.840.10008.1.2", uid == "1.2.840.10008.1.2.2")
}

/// The data set after the meta group, as stored.
enum DataSet {
    /// `left`: bytes from here to the end of the file.
    Plain { input: std::io::BufReader<std::fs::File>, left: u64 },
    /// Deflated: its length is known only by inflating it.
    Deflated(flate2::read::DeflateDecoder<std::io::BufReader<std::fs::File>>),
}

/// One element header.
struct ElementHeader {
    group: u16,
    element: u16,
    vr: [u8; 2],
    len: u32,
    /// Bytes of the header itself.
    header: u64,
}

/// The next element header, or `None` at the end of the input.
fn next_element(input: &mut impl std::io::Read, explicit: bool, big_endian: bool) -> Option<ElementHeader> {
    let u16_at = |b: [u8; 2]| if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) };
    let u32_at = |b: [u8; 4]| if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) };
    let mut h = [0u8; 8];
    input.read_exact(&mut h).ok()?;
    let (group, element) = (u16_at([h[0], h[1]]), u16_at([h[2], h[3]]));
    let vr = [h[4], h[5]];
    if group == 0xFFFE || !explicit {
        return Some(ElementHeader { group, element, vr, len: u32_at([h[4], h[5], h[6], h[7]]), header: 8 });
    }
    // The long form (2 reserved bytes, a 4-byte length) as dicom-encoding decides it: for these
    // VRs, and for any VR it does not know (read as UN).
    let short = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OV", b"PN", b"SH", b"SL",
        b"SS", b"ST", b"SV", b"TM", b"UI", b"UL", b"US", b"UV",
    ];
    if !short.contains(&&vr) {
        let mut l = [0u8; 4];
        input.read_exact(&mut l).ok()?;
        return Some(ElementHeader { group, element, vr, len: u32_at(l), header: 12 });
    }
    Some(ElementHeader { group, element, vr, len: u32::from(u16_at([h[6], h[7]])), header: 8 })
}

fn too_long(path: &Path, e: &ElementHeader, at: u64, left: u64) -> CaptureError {
    fail(
        path,
        format!(
            "element ({:04X},{:04X}) at byte {at} declares {} bytes of value, but the file has {left} left (truncated or corrupt)",
            e.group, e.element, e.len
        ),
    )
}

/// Walks the data set that starts at byte `start`; offsets in a deflated one count inflated bytes.
fn walk_data_set(
    path: &Path,
    mut data: DataSet,
    start: u64,
    explicit: bool,
    big_endian: bool,
) -> Result<(), CaptureError> {
    use std::io::Read;
    let io = |e: std::io::Error| fail(path, format!("cannot read: {e}"));
    let mut pos = start;
    let mut in_pixel_fragments = false;
    loop {
        let next = match &mut data {
            DataSet::Plain { input, .. } => next_element(input, explicit, big_endian),
            DataSet::Deflated(input) => next_element(input, explicit, big_endian),
        };
        let Some(e) = next else { return Ok(()) };
        let at = pos;
        pos += e.header;
        if let DataSet::Plain { left, .. } = &mut data {
            *left = left.saturating_sub(e.header);
        }
        // Implicit VR does not say which values are sequences (the parser's dictionary does):
        // one whose value starts with an item is walked as one.
        let starts_with_item = |data: &mut DataSet| match data {
            DataSet::Plain { input, .. } => {
                use std::io::BufRead;
                input.fill_buf().is_ok_and(|b| b.starts_with(&[0xFE, 0xFF, 0x00, 0xE0]))
            }
            DataSet::Deflated(_) => false,
        };
        let sequence_or_item = e.group == 0xFFFE
            || (explicit && &e.vr == b"SQ")
            || (!explicit
                && !in_pixel_fragments
                && (e.group, e.element) != (0x7FE0, 0x0010)
                && e.len != u32::MAX
                && e.len >= 8
                && starts_with_item(&mut data));
        if e.len == u32::MAX {
            // Undefined length: pixel fragments, or (dicom-parser reads any other element so,
            // whatever its VR) a sequence of items in the same encoding.
            if (e.group, e.element) == (0x7FE0, 0x0010) {
                in_pixel_fragments = true;
            }
            continue;
        }
        if (e.group, e.element) == (0xFFFE, 0xE0DD) {
            in_pixel_fragments = false;
        }
        // Sequences and their items hold elements: walk into them. Any other value is skipped.
        if sequence_or_item && !in_pixel_fragments {
            if let DataSet::Plain { left, .. } = &data
                && u64::from(e.len) > *left
            {
                return Err(too_long(path, &e, at, *left));
            }
            continue;
        }
        // dicom-parser reads a numeric value as whole numbers and goes on from where they end,
        // not from where the length says the value ends: follow it there.
        let read = match explicit.then_some(&e.vr) {
            Some(b"US" | b"OW" | b"SS") => e.len & !1,
            Some(b"AT" | b"FL" | b"OF" | b"SL" | b"OL" | b"UL") => e.len & !3,
            Some(b"FD" | b"OD" | b"SV" | b"OV" | b"UV") => e.len & !7,
            _ => e.len,
        };
        match &mut data {
            DataSet::Plain { input, left } => {
                if u64::from(e.len) > *left {
                    return Err(too_long(path, &e, at, *left));
                }
                input.seek_relative(i64::from(read)).map_err(io)?;
                *left -= u64::from(read);
            }
            DataSet::Deflated(input) => {
                let skipped =
                    std::io::copy(&mut input.by_ref().take(u64::from(read)), &mut std::io::sink()).map_err(io)?;
                if skipped < u64::from(read) {
                    return Err(too_long(path, &e, at, skipped));
                }
            }
        }
        pos += u64::from(read);
    }
}

/// An attribute as an unsigned integer, `None` when absent or not a number.
fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u64> {
    obj.element_opt(tag).ok().flatten().and_then(|e| e.to_int::<u64>().ok())
}

/// Refuses, from the header alone, pixel data too large to decode: the codecs size their output
/// from Rows × Columns × Number of Frames before reading any data.
fn check_declared_size(path: &Path, obj: &DefaultDicomObject) -> Result<(), CaptureError> {
    let (Some(rows), Some(columns)) = (uint(obj, ROWS), uint(obj, COLUMNS)) else { return Ok(()) };
    if rows > MAX_FRAME_SIDE || columns > MAX_FRAME_SIDE {
        return Err(fail(
            path,
            format!("Rows {rows} × Columns {columns}: frames are at most {MAX_FRAME_SIDE} pixels a side"),
        ));
    }
    // The codecs read Number of Frames as an unsigned number, 1 when it is not one.
    let frames = uint(obj, NUMBER_OF_FRAMES).unwrap_or(1);
    let samples = uint(obj, SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits = uint(obj, BITS_ALLOCATED).unwrap_or(8);
    // Only these become grey frames (see `to_grey`); refusing the rest now spares decoding them.
    if !(samples == 1 || samples == 3) || !(bits == 8 || bits == 16) {
        return Err(fail(path, format!("unsupported pixels: {bits} bits, {samples} samples per pixel")));
    }
    let bytes = bits / 8;
    let total = [rows, columns, frames, samples, bytes].iter().try_fold(1u64, |acc, &v| acc.checked_mul(v));
    if total.is_none_or(|t| t > MAX_DECODED_BYTES as u64) {
        return Err(fail(
            path,
            format!(
                "{frames} frames of {columns}x{rows} ({samples} samples of {bytes} bytes) are too large to hold in memory"
            ),
        ));
    }
    let Some(fragments) = obj.element_opt(PIXEL_DATA).ok().flatten().and_then(|e| e.value().fragments()) else {
        return Ok(());
    };
    // Every frame of encapsulated data starts a fragment (PS3.5 A.4).
    if frames > fragments.len() as u64 {
        return Err(fail(
            path,
            format!("Number of Frames is {frames} but the pixel data holds {} fragments", fragments.len()),
        ));
    }
    // No codec read here packs more than MAX_EXPANSION decoded bytes into one byte (a JPEG block
    // costs at least a bit per component, RLE a byte per 64): more is a header that lies, and
    // the decoders would allocate it before finding out.
    let encoded: u64 = fragments.iter().map(|f| f.len() as u64).sum();
    let total = total.unwrap_or(u64::MAX);
    if total > encoded.saturating_mul(MAX_EXPANSION).saturating_add(1 << 20) {
        return Err(fail(
            path,
            format!(
                "{frames} frames of {columns}x{rows} ({samples} samples of {bytes} bytes) cannot come from {encoded} bytes of compressed data"
            ),
        ));
    }
    // The JPEG decoder sizes and paces its work from each stream's own frame header: one larger
    // than the DICOM header (65535 x 65535 in a 10 kB file) keeps it decoding for minutes.
    let data: Vec<u8> = fragments.iter().flatten().copied().collect();
    for (i, (height, width, components)) in jpeg_frame_headers(&data).into_iter().enumerate() {
        if u64::from(height) > rows || u64::from(width) > columns || u64::from(components) > samples {
            return Err(fail(
                path,
                format!(
                    "JPEG frame header {i} says {width}x{height} with {components} components; the DICOM header says {columns}x{rows} with {samples} samples"
                ),
            ));
        }
    }
    Ok(())
}

/// The (height, width, components) of every JPEG frame header (SOFn) in `data`, found by
/// following the marker segments and skipping entropy-coded data (where 0xFF is followed by 0x00
/// or a restart marker).
fn jpeg_frame_headers(data: &[u8]) -> Vec<(u16, u16, u8)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] != 0xFF {
            i += 1;
            continue;
        }
        let marker = data[i + 1];
        // Fill bytes, stuffed zeros, restarts, SOI, EOI and TEM carry no length.
        if matches!(marker, 0xFF | 0x00 | 0x01 | 0xD0..=0xD9) {
            i += if marker == 0xFF { 1 } else { 2 };
            continue;
        }
        let Some(&[hi, lo]) = data.get(i + 2..i + 4) else { break };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if matches!(marker, 0xC0..=0xCF)
            && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
            && let Some(&[_, h1, h0, w1, w0, n]) = data.get(i + 4..i + 10)
        {
            out.push((u16::from_be_bytes([h1, h0]), u16::from_be_bytes([w1, w0]), n));
        }
        // After a scan header the entropy-coded data follows; it is skipped byte by byte above.
        i += 2 + length.max(2);
    }
    out
}

/// Decoded samples, little-endian, pixel-interleaved unless `planar`.
struct Samples<'a> {
    data: std::borrow::Cow<'a, [u8]>,
    rows: usize,
    columns: usize,
    frames: usize,
    samples: usize,
    bits: u16,
    bits_stored: u16,
    photometric: String,
    planar: bool,
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// Decoded samples of all frames to grey, `frames × rows × columns`.
fn to_grey(path: &Path, obj: &DefaultDicomObject) -> Result<(PixelData, usize, usize, usize), CaptureError> {
    check_declared_size(path, obj)?;
    let decoded;
    let s = if obj.meta().transfer_syntax().trim_end_matches('\0') == RLE_LOSSLESS {
        decode_rle(path, obj)?
    } else {
        // dicom-pixeldata's codecs can panic on corrupt data (the JPEG adapter copies a frame
        // into a buffer sized from the header without checking); that is the file's fault, and
        // reported as such.
        decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
            .map_err(|p| {
                fail(path, format!("cannot decode the pixel data: the decoder failed on it ({})", panic_text(&*p)))
            })?
            .map_err(|e| fail(path, format!("cannot decode the pixel data: {e}")))?;
        Samples {
            data: std::borrow::Cow::Borrowed(decoded.data()),
            rows: decoded.rows() as usize,
            columns: decoded.columns() as usize,
            frames: decoded.number_of_frames() as usize,
            samples: decoded.samples_per_pixel() as usize,
            bits: decoded.bits_allocated(),
            bits_stored: decoded.bits_stored(),
            photometric: decoded.photometric_interpretation().to_string(),
            planar: decoded.planar_configuration() as u8 == 1,
        }
    };
    let (rows, columns, frames, samples, bits) = (s.rows, s.columns, s.frames, s.samples, s.bits);
    let pixels = rows * columns * frames;
    if pixels == 0 {
        return Err(fail(path, "the file holds no image frames"));
    }
    if pixels.saturating_mul(samples).saturating_mul(bits as usize / 8) > MAX_DECODED_BYTES {
        return Err(fail(path, format!("{frames} frames of {columns}x{rows} are too large to hold in memory")));
    }
    let (data, photometric, planar) = (&s.data[..], s.photometric.as_str(), s.planar);
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
                let max = ((1u32 << s.bits_stored.min(16)) - 1) as u16;
                v.iter_mut().for_each(|p| *p = max.saturating_sub(*p));
            }
            PixelData::Gray16(v)
        }
        (8, 3) if photometric == "RGB" || photometric == "YBR_FULL" => {
            let frame_px = rows * columns;
            let ybr = photometric == "YBR_FULL";
            // YBR_FULL's first sample is the luma itself.
            let luma = |r: u8, g: u8, b: u8| {
                if ybr { r } else { ((299 * r as u32 + 587 * g as u32 + 114 * b as u32 + 500) / 1000) as u8 }
            };
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

/// RLE Lossless (PS3.5 annex G): one fragment per frame, a 64-byte header giving the number of
/// segments and their offsets, one PackBits segment per byte of each sample (most significant
/// first). Every offset and length is checked against the fragment; errors name the frame and
/// segment.
fn decode_rle(path: &Path, obj: &DefaultDicomObject) -> Result<Samples<'static>, CaptureError> {
    let missing = |name: &str| fail(path, format!("RLE pixel data: {name} is missing or not a number"));
    let get = |tag, name| uint(obj, tag).ok_or_else(|| missing(name));
    let (rows, columns) = (get(ROWS, "Rows")? as usize, get(COLUMNS, "Columns")? as usize);
    let samples = get(SAMPLES_PER_PIXEL, "Samples per Pixel")? as usize;
    let bits = get(BITS_ALLOCATED, "Bits Allocated")?;
    let frames = match obj.element_opt(NUMBER_OF_FRAMES).ok().flatten() {
        None => 1,
        Some(e) => e.to_int::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| missing("Number of Frames"))? as usize,
    };
    if !(bits == 8 || bits == 16) || !(samples == 1 || samples == 3) {
        return Err(fail(
            path,
            format!("RLE pixel data of {samples} samples of {bits} bits (1 or 3 samples of 8 or 16 bits)"),
        ));
    }
    let bits = bits as u16;
    let bytes_per_sample = usize::from(bits / 8);
    let segments = samples * bytes_per_sample;
    let plane = rows * columns;
    let pixel_data = obj.element_opt(PIXEL_DATA).ok().flatten().ok_or_else(|| fail(path, "no pixel data"))?;
    let fragments = pixel_data.value().fragments().ok_or_else(|| fail(path, "RLE pixel data is not encapsulated"))?;
    if fragments.len() < frames {
        return Err(fail(path, format!("RLE pixel data holds {} fragments for {frames} frames", fragments.len())));
    }
    // Every header is checked before the output is allocated: a PackBits segment of n bytes
    // decodes to at most 64 n bytes (a two-byte run of 128), so the output is bounded by the file.
    let mut ranges = Vec::with_capacity(frames * segments);
    for (f, fragment) in fragments.iter().take(frames).enumerate() {
        let error = |message: String| fail(path, format!("RLE frame {f}: {message}"));
        if fragment.len() < 64 {
            return Err(error(format!("a fragment of {} bytes cannot hold the 64-byte RLE header", fragment.len())));
        }
        let word = |i: usize| {
            u32::from_le_bytes([fragment[4 * i], fragment[4 * i + 1], fragment[4 * i + 2], fragment[4 * i + 3]])
                as usize
        };
        if word(0) != segments {
            return Err(error(format!(
                "{} segments, {segments} expected for {samples} samples of {bits} bits",
                word(0)
            )));
        }
        for segment in 0..segments {
            let start = word(1 + segment);
            let end = if segment + 1 < segments { word(2 + segment) } else { fragment.len() };
            if !(64 <= start && start <= end && end <= fragment.len()) {
                return Err(error(format!(
                    "segment {segment} at bytes {start}..{end} is not within the {}-byte fragment after its header",
                    fragment.len()
                )));
            }
            if (end - start).saturating_mul(64) < plane {
                return Err(error(format!(
                    "segment {segment} of {} bytes cannot decode to the {plane} bytes of a {columns}x{rows} frame",
                    end - start
                )));
            }
            ranges.push(start..end);
        }
    }
    let frame_bytes = plane * segments;
    let mut out = vec![0u8; frames * frame_bytes];
    for (i, range) in ranges.into_iter().enumerate() {
        let (f, segment) = (i / segments, i % segments);
        let frame = &mut out[f * frame_bytes..(f + 1) * frame_bytes];
        // Segment order is most significant byte first; the output is little-endian.
        let (sample, byte) = (segment / bytes_per_sample, bytes_per_sample - 1 - segment % bytes_per_sample);
        let put = |p: usize, v: u8| frame[(p * samples + sample) * bytes_per_sample + byte] = v;
        unpack_bits(&fragments[f][range.clone()], plane, put).map_err(|m| {
            fail(path, format!("RLE frame {f}: segment {segment} (bytes {}..{}): {m}", range.start, range.end))
        })?;
    }
    let photometric = obj
        .element_opt(PHOTOMETRIC_INTERPRETATION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let bits_stored = uint(obj, BITS_STORED).and_then(|b| u16::try_from(b).ok()).unwrap_or(bits);
    Ok(Samples {
        data: std::borrow::Cow::Owned(out),
        rows,
        columns,
        frames,
        samples,
        bits,
        bits_stored,
        photometric,
        planar: false,
    })
}

/// PackBits: a header byte n < 128 copies the next n + 1 bytes, n > 128 repeats the next byte
/// 257 − n times, 128 does nothing. Stops after `len` bytes (encoders may pad the segment).
fn unpack_bits(src: &[u8], len: usize, mut put: impl FnMut(usize, u8)) -> Result<(), String> {
    let (mut at, mut n) = (0, 0);
    while n < len {
        let Some(&header) = src.get(at) else {
            return Err(format!("decodes to {n} bytes, {len} expected"));
        };
        at += 1;
        let (run, literal) = match header {
            0..=127 => (usize::from(header) + 1, true),
            128 => continue,
            _ => (257 - usize::from(header), false),
        };
        let take = if literal { run } else { 1 };
        let Some(bytes) = src.get(at..at + take) else {
            return Err(format!("the run at byte {} runs past the end of the segment", at - 1));
        };
        at += take;
        for i in 0..run.min(len - n) {
            put(n + i, if literal { bytes[i] } else { bytes[0] });
        }
        n += run.min(len - n);
    }
    Ok(())
}

impl DicomCineSource {
    pub fn open(path: &Path, options: DicomOptions) -> Result<Self, CaptureError> {
        check_lengths(path)?;
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
