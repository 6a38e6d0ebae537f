//! PLUS sequence files: read frame by frame, write as a stream. (API skeleton; bodies pending.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::frame::{Matrix4, NamedTransform, PixelData, PixelFormat, TransformStatus};

/// Everything wrong with a sequence file, naming the file and, where it applies, field, frame and
/// byte offset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

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

/// Per-frame fields of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMeta {
    pub index: usize,
    pub timestamp_s: f64,
    pub image_ok: bool,
    pub transforms: Vec<NamedTransform>,
    pub fields: Vec<(String, String)>,
}

pub struct SequenceReader {
    _private: (),
}

impl SequenceReader {
    pub fn open(path: &Path) -> Result<Self, SequenceError> {
        let _ = path;
        todo!()
    }
    pub fn path(&self) -> &Path {
        todo!()
    }
    pub fn header(&self) -> &SequenceHeader {
        todo!()
    }
    pub fn frames(&self) -> &[FrameMeta] {
        todo!()
    }
    pub fn read_next(&mut self, dst: &mut PixelData) -> Result<Option<usize>, SequenceError> {
        let _ = dst;
        todo!()
    }
    pub fn rewind(&mut self) -> Result<(), SequenceError> {
        todo!()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SequenceSpec {
    pub width: usize,
    pub height: usize,
    pub pixel_format: PixelFormat,
    pub spacing_mm: [f64; 2],
    pub compress: bool,
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SequenceSummary {
    pub path: PathBuf,
    pub frames: usize,
    pub bytes: u64,
}

pub struct SequenceWriter {
    _private: (),
}

impl SequenceWriter {
    pub fn create(path: &Path, spec: SequenceSpec) -> Result<Self, SequenceError> {
        let _ = (path, spec);
        todo!()
    }
    pub fn write_frame<'a>(
        &mut self,
        timestamp_s: f64,
        image_ok: bool,
        transforms: impl IntoIterator<Item = &'a NamedTransform>,
        pixels: &PixelData,
    ) -> Result<(), SequenceError> {
        let _ = (timestamp_s, image_ok, transforms.into_iter().count(), pixels);
        todo!()
    }
    pub fn finish(self) -> Result<SequenceSummary, SequenceError> {
        todo!()
    }
}

#[allow(dead_code)]
fn _uses(_: Arc<str>, _: Matrix4, _: TransformStatus) {}
