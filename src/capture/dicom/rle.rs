//! RLE Lossless, decoded here rather than by dicom-pixeldata, whose RLE decoder indexes and
//! allocates from the fragment headers unchecked.

use std::path::Path;

use dicom_object::DefaultDicomObject;

use super::grey::Samples;
use super::{
    BITS_ALLOCATED, BITS_STORED, COLUMNS, NUMBER_OF_FRAMES, PHOTOMETRIC_INTERPRETATION, PIXEL_DATA, ROWS,
    SAMPLES_PER_PIXEL, fail, uint,
};
use crate::capture::CaptureError;

/// RLE Lossless (PS3.5 annex G): one fragment per frame, a 64-byte header giving the number of
/// segments and their offsets, one PackBits segment per byte of each sample (most significant
/// first). Every offset and length is checked against the fragment; errors name the frame and
/// segment.
pub(super) fn decode_rle(path: &Path, obj: &DefaultDicomObject) -> Result<Samples<'static>, CaptureError> {
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
