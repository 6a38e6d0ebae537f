//! PLUS tracked-ultrasound sequence files: MetaImage `.mha` (header + LOCAL data) and `.mhd` with
//! `.raw`/`.zraw` (raw or zlib), and NRRD `.seq.nrrd` (raw or gzip); one 2D frame per slice, with
//! PLUS's per-frame `Seq_FrameNNNN_<Name>Transform`, `...TransformStatus`, `Timestamp` and
//! `ImageStatus` fields.

mod error;
mod fields;
mod header;
mod nrrd;
mod reader;
mod writer;

use std::path::PathBuf;

use crate::frame::{NamedTransform, PixelFormat};

pub use error::SequenceError;
pub use reader::{SequenceReader, read_all};
pub use writer::SequenceWriter;

/// Image-level facts of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceHeader {
    pub width: usize,
    pub height: usize,
    pub frame_count: usize,
    pub pixel_format: PixelFormat,
    pub spacing_mm: [f64; 2],
    /// Other image-level fields, kept in file order so a rewrite preserves them
    /// (e.g. `UltrasoundImageOrientation = MFA`).
    pub fields: Vec<(String, String)>,
}

/// Per-frame fields of a sequence. Transform names drop PLUS's `Transform` suffix.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMeta {
    pub index: usize,
    pub timestamp_s: f64,
    pub image_ok: bool,
    pub transforms: Vec<NamedTransform>,
    /// Other per-frame fields, in file order.
    pub fields: Vec<(String, String)>,
}

/// What a new sequence file will hold.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceSpec {
    pub width: usize,
    pub height: usize,
    pub pixel_format: PixelFormat,
    pub spacing_mm: [f64; 2],
    pub compress: bool,
    /// Extra image-level fields (e.g. `UltrasoundImageOrientation`).
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SequenceSummary {
    pub path: PathBuf,
    pub frames: usize,
    pub bytes: u64,
}
