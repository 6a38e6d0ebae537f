//! From raw header fields to the sequence's image facts and per-frame metadata (PLUS
//! `Seq_FrameNNNN_*` fields).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::SequenceError;
use super::{FrameMeta, SequenceHeader};
use crate::frame::{NamedTransform, PixelFormat, TransformStatus};

/// Image-level keys the writer regenerates, so they are not kept in `SequenceHeader::fields`.
pub const GENERATED_KEYS: [&str; 12] = [
    "ObjectType",
    "NDims",
    "DimSize",
    "ElementType",
    "ElementSpacing",
    "BinaryData",
    "BinaryDataByteOrderMSB",
    "ElementByteOrderMSB",
    "CompressedData",
    "CompressedDataSize",
    "ElementDataFile",
    "ElementNumberOfChannels",
];

/// How the pixel data is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// MetaImage `CompressedData = True`.
    Zlib,
    /// NRRD `encoding: gzip`.
    Gzip,
}

/// Largest frame side accepted (ultrasound frames are at most a few thousand pixels wide).
pub const MAX_FRAME_SIDE: usize = 8192;
/// Most frames accepted in one file (over 9 hours at 30 fps).
pub const MAX_FRAMES: usize = 1_000_000;

/// Where and how the pixel data is stored.
#[derive(Debug, Clone)]
pub struct DataLayout {
    pub file: PathBuf,
    pub offset: u64,
    pub compression: Compression,
    pub compressed_size: Option<u64>,
}

/// Everything the header says.
pub struct Parsed {
    pub header: SequenceHeader,
    pub frames: Vec<FrameMeta>,
    pub layout: DataLayout,
}

/// The file being read and its raw header fields, for lookups and errors that name the field.
struct Ctx<'a> {
    path: &'a Path,
    raw: &'a [(String, String)],
}

impl<'a> Ctx<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.raw.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&'a str, SequenceError> {
        self.get(key).ok_or_else(|| self.field(key, None, "is missing (required)"))
    }

    fn unsupported(&self, message: impl Into<String>) -> SequenceError {
        SequenceError::Unsupported { path: self.path.to_path_buf(), message: message.into() }
    }

    fn field(&self, field: &str, frame: Option<usize>, message: impl Into<String>) -> SequenceError {
        SequenceError::Field { path: self.path.to_path_buf(), field: field.to_string(), frame, message: message.into() }
    }

    fn number<T: std::str::FromStr>(&self, field: &str, frame: Option<usize>, text: &str) -> Result<T, SequenceError> {
        text.parse().map_err(|_| self.field(field, frame, format!("`{text}` is not a valid number")))
    }

    fn numbers<T: std::str::FromStr>(
        &self,
        field: &str,
        frame: Option<usize>,
        text: &str,
    ) -> Result<Vec<T>, SequenceError> {
        text.split_whitespace().map(|t| self.number(field, frame, t)).collect()
    }

    fn boolean(&self, field: &str, text: &str) -> Result<bool, SequenceError> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(self.field(field, None, format!("`{text}` is neither True nor False"))),
        }
    }
}

/// A transform as the header has given it so far: name, matrix, status.
type PartialTransform = (Arc<str>, Option<[f64; 16]>, Option<TransformStatus>);

#[derive(Default)]
struct FrameFields {
    timestamp: Option<f64>,
    image_ok: Option<bool>,
    /// Name, matrix, status, in order of first appearance.
    transforms: Vec<PartialTransform>,
    fields: Vec<(String, String)>,
}

impl FrameFields {
    fn transform(&mut self, name: &Arc<str>) -> &mut PartialTransform {
        let i = match self.transforms.iter().position(|t| t.0 == *name) {
            Some(i) => i,
            None => {
                self.transforms.push((name.clone(), None, None));
                self.transforms.len() - 1
            }
        };
        &mut self.transforms[i]
    }
}

/// Interprets the header of `path` (whose data, for LOCAL files, starts at `data_offset`).
pub fn interpret(path: &Path, raw: Vec<(String, String)>, data_offset: u64) -> Result<Parsed, SequenceError> {
    let cx = Ctx { path, raw: &raw };
    let image = image_facts(&cx)?;
    let layout = data_layout(&cx, data_offset)?;
    let (per_frame, fields) = gather_frame_fields(&cx, image.frame_count)?;
    let frames = frames_from(&cx, per_frame)?;
    let ImageFacts { width, height, frame_count, pixel_format, spacing_mm } = image;
    let header = SequenceHeader { width, height, frame_count, pixel_format, spacing_mm, fields };
    Ok(Parsed { header, frames, layout })
}

/// What the image-level fields say about the frames.
struct ImageFacts {
    width: usize,
    height: usize,
    frame_count: usize,
    pixel_format: PixelFormat,
    spacing_mm: [f64; 2],
}

/// Sizes, pixel type and spacing, each checked.
fn image_facts(cx: &Ctx) -> Result<ImageFacts, SequenceError> {
    let ndims: usize = cx.number("NDims", None, cx.required("NDims")?)?;
    if !(2..=3).contains(&ndims) {
        return Err(cx.field("NDims", None, format!("{ndims} dimensions; sequences have 2 (one frame) or 3")));
    }
    let dims: Vec<usize> = cx.numbers("DimSize", None, cx.required("DimSize")?)?;
    if dims.len() != ndims || dims.contains(&0) {
        return Err(cx.field("DimSize", None, format!("expected {ndims} sizes above zero, found {dims:?}")));
    }
    let (width, height) = (dims[0], dims[1]);
    let frame_count = if ndims == 3 { dims[2] } else { 1 };
    // Frames are held in fixed pools sized from this header, so an absurd size (a corrupt or
    // hostile file) must be refused here, not discovered as an out-of-memory abort.
    if width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE || frame_count > MAX_FRAMES {
        return Err(cx.field(
            "DimSize",
            None,
            format!("{dims:?} is implausibly large (frames up to {MAX_FRAME_SIDE}x{MAX_FRAME_SIDE}, up to {MAX_FRAMES} of them)"),
        ));
    }
    let pixel_format = match cx.required("ElementType")? {
        "MET_UCHAR" => PixelFormat::Gray8,
        "MET_USHORT" => PixelFormat::Gray16,
        other => return Err(cx.unsupported(format!("ElementType {other} (only MET_UCHAR and MET_USHORT grey images)"))),
    };
    if let Some(channels) = cx.get("ElementNumberOfChannels")
        && cx.number::<usize>("ElementNumberOfChannels", None, channels)? != 1
    {
        return Err(cx.unsupported(format!("{channels} channels per pixel (grey only)")));
    }
    for key in ["BinaryDataByteOrderMSB", "ElementByteOrderMSB"] {
        if let Some(v) = cx.get(key)
            && cx.boolean(key, v)?
            && pixel_format == PixelFormat::Gray16
        {
            return Err(cx.unsupported("big-endian 16-bit pixels"));
        }
    }
    let spacing_mm = match cx.get("ElementSpacing").or(cx.get("ElementSize")) {
        Some(text) => {
            let s: Vec<f64> = cx.numbers("ElementSpacing", None, text)?;
            if s.len() < 2 || s[..2].iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(cx.field("ElementSpacing", None, format!("`{text}`: expected positive spacings")));
            }
            [s[0], s[1]]
        }
        None => [1.0, 1.0],
    };
    Ok(ImageFacts { width, height, frame_count, pixel_format, spacing_mm })
}

/// Where the pixel data is (this file after the header, or one other file) and how it is packed.
fn data_layout(cx: &Ctx, data_offset: u64) -> Result<DataLayout, SequenceError> {
    let compressed = match cx.get("CompressedData") {
        Some(v) => cx.boolean("CompressedData", v)?,
        None => false,
    };
    let compressed_size =
        cx.get("CompressedDataSize").map(|v| cx.number::<u64>("CompressedDataSize", None, v)).transpose()?;
    let data_file = cx.required("ElementDataFile")?;
    let compression = if compressed { Compression::Zlib } else { Compression::None };
    if data_file == "LOCAL" {
        return Ok(DataLayout { file: cx.path.to_path_buf(), offset: data_offset, compression, compressed_size });
    }
    if data_file.contains('%') || data_file.starts_with("LIST") {
        return Err(cx.unsupported(format!("ElementDataFile `{data_file}` (one data file only)")));
    }
    let dir = cx.path.parent().unwrap_or(Path::new("."));
    Ok(DataLayout { file: dir.join(data_file), offset: 0, compression, compressed_size })
}

/// Sorts the `Seq_FrameNNNN_*` fields into their frames (transforms, timestamp, status, the
/// rest kept by name), and returns them with the other fields the writer does not regenerate.
#[allow(clippy::type_complexity)]
fn gather_frame_fields(
    cx: &Ctx,
    frame_count: usize,
) -> Result<(Vec<FrameFields>, Vec<(String, String)>), SequenceError> {
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    let mut per_frame: Vec<FrameFields> = (0..frame_count).map(|_| FrameFields::default()).collect();
    let mut fields = Vec::new();
    for (key, value) in cx.raw {
        let Some(rest) = key.strip_prefix("Seq_Frame") else {
            if !GENERATED_KEYS.contains(&key.as_str()) {
                fields.push((key.clone(), value.clone()));
            }
            continue;
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, name) = rest.split_at(digits);
        let name = name.strip_prefix('_').filter(|n| !n.is_empty() && digits > 0);
        let Some(name) = name else {
            return Err(cx.field(key, None, "expected `Seq_FrameNNNN_Name`"));
        };
        let index: usize = cx.number(key, None, number)?;
        if index >= frame_count {
            return Err(cx.field(
                key,
                Some(index),
                format!("frame {index} is beyond the {frame_count} frames in DimSize"),
            ));
        }
        let frame = &mut per_frame[index];
        let mut intern = |n: &str| names.entry(n.to_string()).or_insert_with(|| Arc::from(n)).clone();
        if let Some(transform) = name.strip_suffix("TransformStatus") {
            let status = match value.as_str() {
                "OK" => TransformStatus::Ok,
                "INVALID" | "MISSING" => TransformStatus::Invalid,
                other => return Err(cx.field(key, Some(index), format!("`{other}` is not OK or INVALID"))),
            };
            frame.transform(&intern(transform)).2 = Some(status);
        } else if let Some(transform) = name.strip_suffix("Transform") {
            let m: Vec<f64> = cx.numbers(key, Some(index), value)?;
            let matrix: [f64; 16] = m
                .try_into()
                .map_err(|m: Vec<f64>| cx.field(key, Some(index), format!("expected 16 numbers, found {}", m.len())))?;
            frame.transform(&intern(transform)).1 = Some(matrix);
        } else if name == "Timestamp" {
            frame.timestamp = Some(cx.number(key, Some(index), value)?);
        } else if name == "ImageStatus" {
            frame.image_ok = Some(match value.as_str() {
                "OK" => true,
                "INVALID" | "MISSING" => false,
                other => return Err(cx.field(key, Some(index), format!("`{other}` is not OK or INVALID"))),
            });
        } else {
            frame.fields.push((name.to_string(), value.clone()));
        }
    }
    Ok((per_frame, fields))
}

/// Each frame's metadata, every transform complete. A plain volume (no timestamps, no transforms
/// anywhere) reads as slices timed 0, 1, 2, ... s; a tracked sequence must time every frame, or
/// replay pacing would be meaningless.
fn frames_from(cx: &Ctx, per_frame: Vec<FrameFields>) -> Result<Vec<FrameMeta>, SequenceError> {
    let tracked = per_frame.iter().any(|f| f.timestamp.is_some() || !f.transforms.is_empty());
    let mut frames = Vec::with_capacity(per_frame.len());
    for (index, f) in per_frame.into_iter().enumerate() {
        let timestamp_s = match f.timestamp {
            Some(t) => t,
            None if !tracked => index as f64,
            None => return Err(cx.field(&format!("Seq_Frame{index:04}_Timestamp"), Some(index), "is missing")),
        };
        let mut transforms = Vec::with_capacity(f.transforms.len());
        for (name, matrix, status) in f.transforms {
            let Some(matrix) = matrix else {
                return Err(cx.field(
                    &format!("Seq_Frame{index:04}_{name}Transform"),
                    Some(index),
                    "has a status but no matrix",
                ));
            };
            transforms.push(NamedTransform { name, matrix, status: status.unwrap_or(TransformStatus::Ok) });
        }
        frames.push(FrameMeta {
            index,
            timestamp_s,
            image_ok: f.image_ok.unwrap_or(true),
            transforms,
            fields: f.fields,
        });
    }
    Ok(frames)
}
