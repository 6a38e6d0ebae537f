//! Decoded samples to 8-bit grey, the one format a DICOM replay gives.
//!
//! - MONOCHROME2 as stored; MONOCHROME1 inverted, so that bright always means echo.
//! - MONOCHROME with more than 8 bits (12 or 16 stored): Rescale Slope/Intercept, then the
//!   file's first Window Center/Width (PS3.3 C.11.2.1.2.1, linear) to 0..255; without a window,
//!   the whole range Bits Stored can hold (signed when Pixel Representation is 1) spread over
//!   0..255, the same for every frame so that a cine does not flicker.
//! - RGB (and YBR, which the codecs give as RGB) become luma, `(299 R + 587 G + 114 B) / 1000`;
//!   YBR_FULL as stored gives its Y.
//! - PALETTE COLOR through its lookup tables, then the same luma (see `palette`).

use std::borrow::Cow;
use std::path::Path;

use dicom_object::{DefaultDicomObject, InMemDicomObject, Tag};
use dicom_pixeldata::PixelDecoder;

use super::{MAX_DECODED_BYTES, checks, fail, float, palette, rle, transfer_syntax};
use crate::capture::{CaptureError, luma};
use crate::frame::PixelData;

const PIXEL_REPRESENTATION: Tag = Tag(0x0028, 0x0103);
const WINDOW_CENTER: Tag = Tag(0x0028, 0x1050);
const WINDOW_WIDTH: Tag = Tag(0x0028, 0x1051);
const RESCALE_INTERCEPT: Tag = Tag(0x0028, 0x1052);
const RESCALE_SLOPE: Tag = Tag(0x0028, 0x1053);
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Decoded samples, little-endian, pixel-interleaved unless `planar`.
pub(super) struct Samples<'a> {
    pub data: Cow<'a, [u8]>,
    pub rows: usize,
    pub columns: usize,
    pub frames: usize,
    pub samples: usize,
    pub bits: u16,
    pub bits_stored: u16,
    pub photometric: String,
    pub planar: bool,
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload.downcast_ref::<&str>().copied().or(payload.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// Decoded samples of all frames to grey, `frames × rows × columns`.
pub(super) fn to_grey(path: &Path, obj: &DefaultDicomObject) -> Result<(PixelData, usize, usize, usize), CaptureError> {
    checks::check_declared_size(path, obj)?;
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    if let Some(why) = transfer_syntax::undecodable(ts) {
        return Err(fail(path, format!("cannot decode the pixel data: {why}")));
    }
    let decoded;
    let s = if ts == RLE_LOSSLESS {
        rle::decode_rle(path, obj)?
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
            data: Cow::Borrowed(decoded.data()),
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
    let (data, photometric, planar) = (&s.data[..], s.photometric.trim(), s.planar);
    let expected = pixels * samples * (bits as usize).div_ceil(8);
    if data.len() < expected {
        return Err(fail(path, format!("pixel data holds {} bytes, {expected} expected", data.len())));
    }
    let grey = match (bits, samples) {
        (8 | 16, 1) if photometric == "PALETTE COLOR" => {
            let table = palette::grey_table(obj, bits).map_err(|m| fail(path, m))?;
            if bits == 8 {
                data[..pixels].iter().map(|&v| table[usize::from(v)]).collect()
            } else {
                data[..pixels * 2]
                    .chunks_exact(2)
                    .map(|b| table[usize::from(u16::from_le_bytes([b[0], b[1]]))])
                    .collect()
            }
        }
        (8, 1) => {
            let mut v = data[..pixels].to_vec();
            if photometric == "MONOCHROME1" {
                v.iter_mut().for_each(|p| *p = 255 - *p);
            }
            v
        }
        (16, 1) => {
            let table = Window::of(obj, s.bits_stored, photometric == "MONOCHROME1").table();
            data[..pixels * 2].chunks_exact(2).map(|b| table[usize::from(u16::from_le_bytes([b[0], b[1]]))]).collect()
        }
        (8, 3) if photometric == "RGB" || photometric == "YBR_FULL" => {
            let frame_px = rows * columns;
            // YBR_FULL's first sample is the luma itself.
            let ybr = photometric == "YBR_FULL";
            let grey = |r: u8, g: u8, b: u8| if ybr { r } else { luma(r, g, b) };
            (0..pixels)
                .map(|i| {
                    if planar {
                        let (f, p) = (i / frame_px, i % frame_px);
                        let base = f * frame_px * 3 + p;
                        grey(data[base], data[base + frame_px], data[base + 2 * frame_px])
                    } else {
                        grey(data[3 * i], data[3 * i + 1], data[3 * i + 2])
                    }
                })
                .collect()
        }
        _ => {
            return Err(fail(
                path,
                format!("unsupported pixels: {bits} bits, {samples} samples per pixel, {photometric}"),
            ));
        }
    };
    Ok((PixelData::Gray8(grey), rows, columns, frames))
}

/// How MONOCHROME samples of more than 8 bits become 8-bit grey.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Window {
    /// Bits Stored: the rest of each 16-bit word is not the value (it may hold overlays).
    pub bits_stored: u16,
    pub signed: bool,
    pub slope: f64,
    pub intercept: f64,
    /// (center, width) in rescaled units, when the file gives a usable one.
    pub window: Option<(f64, f64)>,
    pub invert: bool,
}

impl Window {
    pub fn of(obj: &InMemDicomObject, bits_stored: u16, invert: bool) -> Window {
        let first = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_multi_float64().ok())
                .and_then(|v| v.first().copied())
                .filter(|v| v.is_finite())
        };
        let slope = float(obj, RESCALE_SLOPE).filter(|s| s.is_finite() && *s != 0.0).unwrap_or(1.0);
        let intercept = float(obj, RESCALE_INTERCEPT).filter(|i| i.is_finite()).unwrap_or(0.0);
        Window {
            bits_stored: bits_stored.clamp(1, 16),
            signed: super::int(obj, PIXEL_REPRESENTATION) == Some(1),
            slope,
            intercept,
            // The standard requires a width of at least 1.
            window: first(WINDOW_CENTER).zip(first(WINDOW_WIDTH)).filter(|(_, w)| *w >= 1.0),
            invert,
        }
    }

    /// The grey level of every 16-bit stored word.
    pub fn table(&self) -> Vec<u8> {
        let bits = u32::from(self.bits_stored);
        let mask = if bits == 16 { u16::MAX } else { (1u16 << bits) - 1 };
        // The range Bits Stored can hold, rescaled (a negative slope turns it around).
        let (lo, hi) =
            if self.signed { (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1) } else { (0, (1i64 << bits) - 1) };
        let (a, b) = (lo as f64 * self.slope + self.intercept, hi as f64 * self.slope + self.intercept);
        let (lo, hi) = (a.min(b), a.max(b));
        (0..=u16::MAX)
            .map(|word| {
                let raw = i64::from(word & mask);
                let stored = if self.signed && raw >= 1 << (bits - 1) { raw - (1 << bits) } else { raw };
                let x = stored as f64 * self.slope + self.intercept;
                let y = match self.window {
                    Some((c, w)) if w > 1.0 => {
                        if x <= c - 0.5 - (w - 1.0) / 2.0 {
                            0.0
                        } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                            255.0
                        } else {
                            ((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0
                        }
                    }
                    // A width of 1 is a threshold.
                    Some((c, _)) => {
                        if x <= c - 0.5 {
                            0.0
                        } else {
                            255.0
                        }
                    }
                    None if hi > lo => (x - lo) / (hi - lo) * 255.0,
                    None => 0.0,
                };
                let y = y.round().clamp(0.0, 255.0) as u8;
                if self.invert { 255 - y } else { y }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(bits_stored: u16, window: Option<(f64, f64)>) -> Window {
        Window { bits_stored, signed: false, slope: 1.0, intercept: 0.0, window, invert: false }
    }

    #[test]
    fn without_a_window_the_stored_range_spreads_over_0_to_255() {
        let t = window(12, None).table();
        assert_eq!((t[0], t[2048], t[4095]), (0, 128, 255));
        // Bits above Bits Stored are not the value.
        assert_eq!(t[0xF000 | 4095], 255);
        assert_eq!(t[0xF000], 0);
        let t = window(16, None).table();
        assert_eq!((t[0], t[257], t[65535]), (0, 1, 255));
    }

    #[test]
    fn the_window_maps_center_and_width_linearly() {
        // Center 1000, width 201: 900 and below black, 1100 and above white.
        let t = window(12, Some((1000.0, 201.0))).table();
        assert_eq!((t[0], t[899], t[900], t[1000], t[1099], t[1100], t[4095]), (0, 0, 1, 128, 254, 255, 255));
        let inverted = Window { invert: true, ..window(12, Some((1000.0, 201.0))) }.table();
        assert_eq!((inverted[0], inverted[4095]), (255, 0));
    }

    #[test]
    fn signed_values_and_rescale() {
        // 12-bit signed: -2048..=2047; 0xFFF is -1.
        let t = Window { signed: true, ..window(12, None) }.table();
        assert_eq!((t[0x800], t[0xFFF], t[0], t[0x7FF]), (0, 127, 128, 255));
        // Rescaled by 2, -100: the window is in rescaled units.
        let t = Window { slope: 2.0, intercept: -100.0, ..window(12, Some((100.0, 101.0))) }.table();
        // x = 2 s - 100: 48 black, 50 just above (1.275), 100 mid (128.775), 150 white.
        assert_eq!((t[74], t[75], t[100], t[125]), (0, 1, 129, 255));
    }
}
