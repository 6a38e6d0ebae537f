//! Size checks on an untrusted file, before anything is allocated from it: every value length
//! against the bytes the file has left, and the pixel data's declared size against the header's
//! limits and the compressed bytes that must produce it.

use std::path::Path;

use dicom_object::DefaultDicomObject;

use super::{
    BITS_ALLOCATED, COLUMNS, MAX_DECODED_BYTES, MAX_EXPANSION, MAX_FRAME_SIDE, NUMBER_OF_FRAMES, PIXEL_DATA, ROWS,
    SAMPLES_PER_PIXEL, fail, uint,
};
use crate::capture::CaptureError;

/// Checks every value length that dicom-object will allocate from against the bytes the file
/// has left: its reader reserves (and, for the meta group, zero-fills) each value's declared
/// length, up to 4 GiB, before reading a byte of it. Walks the meta group and the data set
/// (explicit or implicit VR, either byte order, deflated or not), into sequences where the VR
/// says so; anything it cannot follow is left to the parser.
pub(super) fn check_lengths(path: &Path) -> Result<(), CaptureError> {
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

/// Refuses, from the header alone, pixel data too large to decode: the codecs size their output
/// from Rows × Columns × Number of Frames before reading any data.
pub(super) fn check_declared_size(path: &Path, obj: &DefaultDicomObject) -> Result<(), CaptureError> {
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
    // So does the JPEG 2000 decoder, from each codestream's image and tile size (SIZ): a tile
    // grid of a pixel per tile is millions of tile records.
    for (i, siz) in j2k_sizes(&data).into_iter().enumerate() {
        if siz.width > columns || siz.height > rows || siz.components > samples || siz.tiles > MAX_J2K_TILES {
            return Err(fail(
                path,
                format!(
                    "JPEG 2000 codestream {i} says {}x{} with {} components in {} tiles; the DICOM header says {columns}x{rows} with {samples} samples (and at most {MAX_J2K_TILES} tiles are accepted)",
                    siz.width, siz.height, siz.components, siz.tiles
                ),
            ));
        }
    }
    Ok(())
}

/// Most tiles a JPEG 2000 codestream may have: real ones use one, or 1024-pixel tiles.
const MAX_J2K_TILES: u64 = 4096;

/// What a JPEG 2000 codestream's SIZ segment declares.
#[derive(Debug, Clone, Copy, PartialEq)]
struct J2kSize {
    width: u64,
    height: u64,
    components: u64,
    tiles: u64,
}

/// The image and tile grid of every JPEG 2000 codestream in `data`: each starts with SOC
/// (FF4F) followed at once by SIZ (FF51).
fn j2k_sizes(data: &[u8]) -> Vec<J2kSize> {
    let be32 = |b: &[u8], i: usize| u64::from(u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    data.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0xFF, 0x4F, 0xFF, 0x51])
        .filter_map(|(at, _)| {
            // Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz.
            let siz = data.get(at + 4..at + 4 + 38)?;
            let (x, y, x0, y0) = (be32(siz, 4), be32(siz, 8), be32(siz, 12), be32(siz, 16));
            let (tw, th, tx0, ty0) = (be32(siz, 20), be32(siz, 24), be32(siz, 28), be32(siz, 32));
            let components = u64::from(u16::from_be_bytes([siz[36], siz[37]]));
            let tiles = |end: u64, origin: u64, size: u64| end.saturating_sub(origin).div_ceil(size.max(1));
            Some(J2kSize {
                width: x.saturating_sub(x0),
                height: y.saturating_sub(y0),
                components,
                tiles: tiles(x, tx0, tw).saturating_mul(tiles(y, ty0, th)),
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn siz(width: u32, height: u32, tile: u32, components: u16) -> Vec<u8> {
        let mut s = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [width, height, 0, 0, tile, tile, 0, 0] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        s.extend_from_slice(&components.to_be_bytes());
        s
    }

    #[test]
    fn j2k_codestream_sizes_and_tile_counts() {
        let data = [vec![1, 2, 3], siz(640, 480, 640, 3), vec![0xFF, 0x90], siz(65535, 65535, 1, 1)].concat();
        assert_eq!(
            j2k_sizes(&data),
            [
                J2kSize { width: 640, height: 480, components: 3, tiles: 1 },
                J2kSize { width: 65535, height: 65535, components: 1, tiles: 65535 * 65535 }
            ]
        );
        assert_eq!(j2k_sizes(&siz(640, 480, 256, 1)[..30]), [], "cut short");
        assert_eq!(j2k_sizes(&siz(640, 480, 256, 1))[0].tiles, 3 * 2);
    }
}
