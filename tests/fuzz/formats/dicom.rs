//! DICOM Part 10 files: meta group, image-pixel and cine attributes, native and encapsulated pixel data.

use super::*;

pub const DICOM_WORDS: &[&str] = &[
    "MONOCHROME1",
    "MONOCHROME2",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "PALETTE COLOR",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.1.99",
    "DICM",
    "OB",
    "OW",
    "SQ",
    "UN",
    "US",
    "UL",
    "DS",
    "IS",
    "FD",
];

struct Dcm {
    explicit: bool,
    out: Vec<u8>,
}

fn long_vr(vr: &str) -> bool {
    matches!(vr, "OB" | "OW" | "OF" | "SQ" | "UT" | "UN" | "UC" | "UR" | "OD" | "OL" | "OV" | "SV" | "UV")
}

impl Dcm {
    fn tag(&mut self, group: u16, element: u16) {
        self.out.extend_from_slice(&group.to_le_bytes());
        self.out.extend_from_slice(&element.to_le_bytes());
    }

    /// A value of defined length (`len` overrides the header's length, for lies).
    fn element(&mut self, group: u16, element: u16, vr: &str, value: &[u8]) {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(if matches!(vr, "UI" | "OB" | "UN") { 0 } else { b' ' });
        }
        self.header(group, element, vr, value.len() as u32);
        self.out.extend_from_slice(&value);
    }

    fn header(&mut self, group: u16, element: u16, vr: &str, len: u32) {
        self.tag(group, element);
        if self.explicit {
            self.out.extend_from_slice(vr.as_bytes());
            if long_vr(vr) {
                self.out.extend_from_slice(&[0, 0]);
                self.out.extend_from_slice(&len.to_le_bytes());
            } else {
                self.out.extend_from_slice(&(len as u16).to_le_bytes());
            }
        } else {
            self.out.extend_from_slice(&len.to_le_bytes());
        }
    }

    fn us(&mut self, group: u16, element: u16, v: u16) {
        self.element(group, element, "US", &v.to_le_bytes());
    }

    fn text(&mut self, group: u16, element: u16, vr: &str, v: &str) {
        self.element(group, element, vr, v.as_bytes());
    }

    fn item(&mut self, data: &[u8]) {
        self.tag(0xfffe, 0xe000);
        self.out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.extend_from_slice(data);
    }
}

/// One ultrasound region of the Sequence of Ultrasound Regions.
#[derive(Debug, Clone)]
pub struct RegionSpec {
    /// Min X0, Min Y0, Max X1, Max Y1.
    pub bounds: [i64; 4],
    /// VR of the bounds: `UL` (as the standard says) or `IS` (text, any size).
    pub bounds_vr: &'static str,
    pub units: [u16; 2],
    pub delta: [f64; 2],
    /// Region Spatial Format and Region Data Type, when written.
    pub kind: Option<[u16; 2]>,
}

/// Palette colour lookup tables: the same descriptor and data for red, green and blue.
#[derive(Debug, Clone)]
pub struct PaletteSpec {
    /// Entries (0: 65536), first mapped value, bits per entry.
    pub descriptor: [u16; 3],
    pub data: Vec<u16>,
    /// Segmented tables (0028,122x) rather than plain ones (0028,120x).
    pub segmented: bool,
}

fn palette() -> impl Strategy<Value = PaletteSpec> {
    let count = prop_oneof![4 => 1u16..300, 1 => select(&[0u16, 256, 65535][..])];
    let first = prop_oneof![4 => 0u16..20, 1 => select(&[255u16, 32768, 65535][..])];
    let bits = prop_oneof![3 => Just(8u16), 3 => Just(16u16), 1 => any::<u16>()];
    // Segmented data: opcodes 0-2 and their lengths mostly, anything sometimes.
    let word = prop_oneof![4 => 0u16..4, 3 => 0u16..300, 1 => any::<u16>()];
    ((count, first, bits), vec(word, 0..400), prop::bool::weighted(0.4))
        .prop_map(|((c, f, b), data, segmented)| PaletteSpec { descriptor: [c, f, b], data, segmented })
}

fn region() -> impl Strategy<Value = RegionSpec> {
    let coord = prop_oneof![6 => 0i64..70, 1 => select(&[u32::MAX as i64, 1 << 31, 65535, i64::MAX, -1][..])];
    let delta = prop_oneof![6 => 0.001f64..0.1, 1 => select(&[0.0, -1.0, f64::NAN, f64::INFINITY, 1e300][..])];
    (
        prop::array::uniform4(coord),
        prop_oneof![4 => Just("UL"), 1 => Just("IS")],
        prop::array::uniform2(prop_oneof![6 => Just(3u16), 1 => 0u16..5]),
        prop::array::uniform2(delta),
        prop::option::weighted(0.7, prop::array::uniform2(prop_oneof![4 => 0u16..3, 1 => any::<u16>()])),
    )
        .prop_map(|(bounds, bounds_vr, units, delta, kind)| RegionSpec { bounds, bounds_vr, units, delta, kind })
}

/// An RLE Lossless fragment: a 64-byte header (segment count, offsets) and PackBits-like data.
fn rle_fragment() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![4 => 1u32..4, 1 => select(&[0u32, 15, 16, u32::MAX][..])],
        vec(prop_oneof![4 => 64u32..200, 1 => select(&[0u32, 63, 1000, u32::MAX][..])], 0..4),
        any::<u64>(),
        0usize..200,
    )
        .prop_map(|(segments, offsets, seed, len)| rle_header_and(segments, &offsets, &pattern(seed, len)))
}

/// A 64-byte RLE header (`segments`, then up to 15 offsets) followed by `data`.
pub fn rle_header_and(segments: u32, offsets: &[u32], data: &[u8]) -> Vec<u8> {
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::with_capacity(64 + data.len());
    out.extend_from_slice(&segments.to_le_bytes());
    for i in 0..15 {
        out.extend_from_slice(&sorted.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A valid RLE Lossless fragment: one PackBits segment per byte of each sample, most
/// significant first, from little-endian pixel-interleaved `samples`.
pub fn rle_encode(pixels: &[u8], samples: usize, bytes_per_sample: usize) -> Vec<u8> {
    let segments = samples * bytes_per_sample;
    let mut encoded = Vec::new();
    let mut offsets = Vec::new();
    for segment in 0..segments {
        offsets.push(64 + encoded.len() as u32);
        let (sample, byte) = (segment / bytes_per_sample, bytes_per_sample - 1 - segment % bytes_per_sample);
        let plane: Vec<u8> =
            pixels.chunks_exact(samples * bytes_per_sample).map(|p| p[sample * bytes_per_sample + byte]).collect();
        // Runs of equal bytes as repeats, the rest as literals of up to 128 bytes.
        let mut i = 0;
        while i < plane.len() {
            let run = plane[i..].iter().take(128).take_while(|&&b| b == plane[i]).count();
            if run >= 2 {
                encoded.extend_from_slice(&[(257 - run) as u8, plane[i]]);
                i += run;
            } else {
                let n = (plane.len() - i).min(128);
                encoded.push((n - 1) as u8);
                encoded.extend_from_slice(&plane[i..i + n]);
                i += n;
            }
        }
        if encoded.len() % 2 == 1 {
            encoded.push(0x80);
        }
    }
    rle_header_and(segments as u32, &offsets, &encoded)
}

/// Transfer syntaxes: (UID, explicit VR, encapsulated pixel data).
pub const RLE_LOSSLESS: (&str, bool, bool) = ("1.2.840.10008.1.2.5", true, true);
pub const EXPLICIT_LITTLE: (&str, bool, bool) = ("1.2.840.10008.1.2.1", true, false);
const TRANSFER_SYNTAXES: &[(&str, bool, bool)] = &[
    EXPLICIT_LITTLE,
    ("1.2.840.10008.1.2", false, false),
    RLE_LOSSLESS,
    ("1.2.840.10008.1.2.4.50", true, true),
    ("1.2.840.10008.1.2.4.70", true, true),
    ("1.2.840.10008.1.2.4.80", true, true),
    ("1.2.840.10008.1.2.4.90", true, true),
    ("1.2.840.10008.1.2.4.91", true, true),
    ("1.2.840.10008.1.2.1.99", true, false),
    ("1.2.840.10008.1.2.2", true, false),
    ("1.2.3.4.5", true, false),
];

/// What a generated DICOM file holds.
#[derive(Debug, Clone)]
pub struct DicomSpec {
    /// UID, explicit VR, encapsulated pixel data.
    pub transfer_syntax: (&'static str, bool, bool),
    pub rows: u16,
    pub columns: u16,
    /// Number of Frames as written (IS text), or absent.
    pub frames: Option<String>,
    pub samples: u16,
    pub bits: u16,
    pub bits_stored: Option<u16>,
    pub photometric: &'static str,
    pub planar: Option<u16>,
    pub frame_time_ms: Option<String>,
    pub frame_time_vector: Option<String>,
    pub cine_rate: Option<String>,
    pub pixel_spacing: Option<String>,
    pub regions: Vec<RegionSpec>,
    pub palette: Option<PaletteSpec>,
    /// Window Center and Width as written (DS text, possibly multi-valued).
    pub window: Option<(String, String)>,
    /// Native pixel data (ignored when encapsulated).
    pub native: Vec<u8>,
    /// Encapsulated fragments, after an empty or one-entry basic offset table.
    pub fragments: Vec<Vec<u8>>,
    pub offset_table: bool,
}

impl DicomSpec {
    /// An uncompressed 8-bit grey cine of `frames` frames of `columns` × `rows`.
    pub fn grey8(rows: u16, columns: u16, frames: usize, pixels: Vec<u8>) -> DicomSpec {
        DicomSpec {
            transfer_syntax: EXPLICIT_LITTLE,
            rows,
            columns,
            frames: Some(frames.to_string()),
            samples: 1,
            bits: 8,
            bits_stored: None,
            photometric: "MONOCHROME2",
            planar: None,
            frame_time_ms: None,
            frame_time_vector: None,
            cine_rate: None,
            pixel_spacing: None,
            regions: Vec::new(),
            palette: None,
            window: None,
            native: pixels,
            fragments: Vec::new(),
            offset_table: false,
        }
    }
}

/// The Part 10 file: preamble, meta group, data set (explicit or implicit VR little endian).
pub fn dicom_bytes(spec: &DicomSpec) -> Vec<u8> {
    let (uid, explicit, encapsulated) = spec.transfer_syntax;
    let mut meta = Dcm { explicit: true, out: Vec::new() };
    meta.element(0x0002, 0x0001, "OB", &[0, 1]);
    meta.text(0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.3.1");
    meta.text(0x0002, 0x0003, "UI", "1.2.3.4.5.6.7");
    meta.text(0x0002, 0x0010, "UI", uid);
    meta.text(0x0002, 0x0012, "UI", "1.2.3.4");
    let mut file = vec![0u8; 128];
    file.extend_from_slice(b"DICM");
    let mut group_length = Dcm { explicit: true, out: Vec::new() };
    group_length.element(0x0002, 0x0000, "UL", &(meta.out.len() as u32).to_le_bytes());
    file.extend(group_length.out);
    file.extend(meta.out);

    let mut d = Dcm { explicit, out: Vec::new() };
    d.text(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.3.1");
    d.text(0x0008, 0x0018, "UI", "1.2.3.4.5.6.7");
    if let Some(rate) = &spec.cine_rate {
        d.text(0x0018, 0x0040, "IS", rate);
    }
    if let Some(t) = &spec.frame_time_ms {
        d.text(0x0018, 0x1063, "DS", t);
    }
    if let Some(v) = &spec.frame_time_vector {
        d.text(0x0018, 0x1065, "DS", v);
    }
    if !spec.regions.is_empty() {
        let mut items = Dcm { explicit, out: Vec::new() };
        for r in &spec.regions {
            let mut e = Dcm { explicit, out: Vec::new() };
            for (element, v) in [0x6018u16, 0x601a, 0x601c, 0x601e].into_iter().zip(r.bounds) {
                match r.bounds_vr {
                    "IS" => e.text(0x0018, element, "IS", &v.to_string()),
                    vr => e.element(0x0018, element, vr, &(v as u32).to_le_bytes()),
                }
            }
            if let Some([format, data_type]) = r.kind {
                e.us(0x0018, 0x6012, format);
                e.us(0x0018, 0x6014, data_type);
            }
            e.us(0x0018, 0x6024, r.units[0]);
            e.us(0x0018, 0x6026, r.units[1]);
            e.element(0x0018, 0x602c, "FD", &r.delta[0].to_le_bytes());
            e.element(0x0018, 0x602e, "FD", &r.delta[1].to_le_bytes());
            items.item(&e.out);
        }
        d.element(0x0018, 0x6011, "SQ", &items.out);
    }
    d.us(0x0028, 0x0002, spec.samples);
    d.text(0x0028, 0x0004, "CS", spec.photometric);
    if let Some(p) = spec.planar {
        d.us(0x0028, 0x0006, p);
    }
    if let Some(f) = &spec.frames {
        d.text(0x0028, 0x0008, "IS", f);
    }
    d.us(0x0028, 0x0010, spec.rows);
    d.us(0x0028, 0x0011, spec.columns);
    if let Some(s) = &spec.pixel_spacing {
        d.text(0x0028, 0x0030, "DS", s);
    }
    let stored = spec.bits_stored.unwrap_or(spec.bits);
    d.us(0x0028, 0x0100, spec.bits);
    d.us(0x0028, 0x0101, stored);
    d.us(0x0028, 0x0102, stored.saturating_sub(1));
    d.us(0x0028, 0x0103, 0);
    if let Some((center, width)) = &spec.window {
        d.text(0x0028, 0x1050, "DS", center);
        d.text(0x0028, 0x1051, "DS", width);
    }
    if let Some(p) = &spec.palette {
        let descriptor: Vec<u8> = p.descriptor.iter().flat_map(|v| v.to_le_bytes()).collect();
        for element in [0x1101u16, 0x1102, 0x1103] {
            d.element(0x0028, element, "US", &descriptor);
        }
        let data: Vec<u8> = p.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let base = if p.segmented { 0x1221u16 } else { 0x1201 };
        for element in base..base + 3 {
            d.element(0x0028, element, "OW", &data);
        }
    }
    if encapsulated {
        d.header(0x7fe0, 0x0010, "OB", u32::MAX);
        d.item(if spec.offset_table { &[0, 0, 0, 0] } else { &[] });
        for f in &spec.fragments {
            d.item(f);
        }
        d.tag(0xfffe, 0xe0dd);
        d.out.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        d.element(0x7fe0, 0x0010, if spec.bits > 8 { "OW" } else { "OB" }, &spec.native);
    }
    file.extend(d.out);
    file
}

/// A small PALETTE COLOR or 12/16-bit grey file whose pixels decode, so that the lookup tables
/// (plain and segmented, any descriptor) and the window are what is exercised.
pub fn dicom_palette_and_window() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::option::weighted(0.8, palette()),
        prop_oneof![Just(8u16), Just(16u16)],
        prop::option::weighted(0.3, 1u16..17),
        prop::option::weighted(0.5, (number(), number())),
        any::<u64>(),
    )
        .prop_map(|(palette, bits, bits_stored, window, seed)| {
            let pixels = pattern(seed, 4 * 6 * 2 * usize::from(bits / 8));
            let mut spec = DicomSpec::grey8(4, 6, 2, pixels);
            spec.bits = bits;
            spec.bits_stored = bits_stored;
            if palette.is_some() {
                spec.photometric = "PALETTE COLOR";
            }
            spec.palette = palette;
            spec.window = window;
            dicom_bytes(&spec)
        })
}

/// A multi-frame DICOM file: image-pixel module, cine timing, ultrasound regions and pixel data
/// (native or encapsulated), every value drawn from plausible and hostile ones.
pub fn dicom() -> impl Strategy<Value = Vec<u8>> {
    let image = (
        select(TRANSFER_SYNTAXES),
        prop_oneof![8 => 1u16..12, 1 => select(&[0u16, 255, 256, 65535][..])],
        prop_oneof![8 => 1u16..12, 1 => select(&[0u16, 255, 256, 65535][..])],
        prop::option::weighted(
            0.9,
            prop_oneof![
                6 => (1u32..4).prop_map(|v| v.to_string()),
                1 => select(&["0", "-1", "4294967295", "1e3", "x", ""][..]).prop_map(str::to_string),
            ],
        ),
        prop_oneof![6 => Just(1u16), 2 => Just(3u16), 1 => any::<u16>()],
        select(&[8u16, 8, 8, 16, 16, 1, 12, 32, 0][..]),
        prop::option::weighted(0.2, 0u16..20),
        select(
            &["MONOCHROME2", "MONOCHROME2", "MONOCHROME1", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", ""][..],
        ),
        prop::option::weighted(0.3, 0u16..3),
    );
    let timing = (
        prop::option::weighted(0.5, number()),
        prop::option::weighted(0.3, vec(number(), 0..5).prop_map(|v| v.join("\\"))),
        prop::option::weighted(0.3, number()),
        prop::option::weighted(0.4, (number(), number()).prop_map(|(a, b)| format!("{a}\\{b}"))),
        vec(region(), 0..3),
        prop::option::weighted(0.3, palette()),
        prop::option::weighted(0.2, (number(), number())),
    );
    let pixels = (
        0u8..4,
        any::<u64>(),
        0usize..256,
        vec(prop_oneof![3 => rle_fragment(), 2 => vec(any::<u8>(), 0..120)], 0..4),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.3),
    );
    (image, timing, pixels).prop_map(|(image, timing, pixels)| {
        let (transfer_syntax, rows, columns, frames, samples, bits, bits_stored, photometric, planar) = image;
        let (frame_time_ms, frame_time_vector, cine_rate, pixel_spacing, regions, palette, window) = timing;
        let (native_mode, seed, random_len, mut fragments, offset_table, valid_rle) = pixels;
        let frame_count = frames.as_deref().and_then(|f| f.parse::<usize>().ok()).unwrap_or(1);
        let bytes = usize::from(bits).div_ceil(8);
        let exact = [usize::from(rows), usize::from(columns), frame_count, usize::from(samples), bytes]
            .iter()
            .fold(1usize, |acc, &v| acc.saturating_mul(v));
        let len = match native_mode {
            0 | 1 => exact.min(1 << 16),
            2 => exact.saturating_sub(1).min(1 << 16),
            _ => random_len,
        };
        // Some RLE files are valid, so decoding (not only its checks) is exercised.
        if transfer_syntax == RLE_LOSSLESS
            && valid_rle
            && (1..=1 << 16).contains(&exact)
            && frame_count <= 16
            && bytes <= 16
        {
            let frame = exact / frame_count.max(1);
            fragments = (0..frame_count)
                .map(|f| rle_encode(&pattern(seed ^ f as u64, frame), usize::from(samples).max(1), bytes))
                .collect();
        }
        dicom_bytes(&DicomSpec {
            transfer_syntax,
            rows,
            columns,
            frames,
            samples,
            bits,
            bits_stored,
            photometric,
            planar,
            frame_time_ms,
            frame_time_vector,
            cine_rate,
            pixel_spacing,
            regions,
            palette,
            window,
            native: pattern(seed, len),
            fragments,
            offset_table,
        })
    })
}
