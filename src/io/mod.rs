//! File formats: PLUS tracked-ultrasound sequence files (MetaImage `.mha`, `.mhd` + `.raw`/`.zraw`,
//! and `.seq.nrrd`), plus the helpers they share.

pub mod sequence;

pub use sequence::{FrameMeta, SequenceError, SequenceHeader, SequenceReader, SequenceSpec, SequenceSummary, SequenceWriter};
