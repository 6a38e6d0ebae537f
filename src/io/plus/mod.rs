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

use std::path::{Path, PathBuf};

use crate::frame::{NamedTransform, PixelFormat};

pub use error::SequenceError;
// Shared with the volume files of `recon::volume`, which use the same header syntax and data reads.
pub(crate) use header::{Flavor, read_header};
pub(crate) use nrrd::parse_vector;
pub(crate) use reader::read_full;
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

/// A file name split at its first dot: `sweep.seq.nrrd` → (`sweep`, `.seq.nrrd`), so companion
/// files keep compound extensions intact.
pub fn split_name(path: &Path) -> (String, String) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.find('.') {
        Some(dot) => (name[..dot].to_string(), name[dot..].to_string()),
        None => (name, String::new()),
    }
}

/// Where the label masks that go with a sequence live: `sweep.mha` → `sweep.labels.mha`.
pub fn labels_path(path: &Path) -> PathBuf {
    let (stem, ext) = split_name(path);
    let ext = if ext.is_empty() { ".mha".to_string() } else { ext };
    path.with_file_name(format!("{stem}.labels{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_path_keeps_compound_extensions() {
        assert_eq!(labels_path(Path::new("/a/sweep.mha")), PathBuf::from("/a/sweep.labels.mha"));
        assert_eq!(labels_path(Path::new("rec.seq.nrrd")), PathBuf::from("rec.labels.seq.nrrd"));
        assert_eq!(labels_path(Path::new("rec")), PathBuf::from("rec.labels.mha"));
    }
}
