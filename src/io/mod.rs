//! File formats: PLUS tracked-ultrasound sequence files (MetaImage `.mha`, `.mhd` + `.raw`/`.zraw`,
//! NRRD `.seq.nrrd`).

pub mod plus;

/// The sequence-file API under its descriptive name.
pub use plus as sequence;
pub use plus::{
    FrameMeta, SequenceError, SequenceHeader, SequenceReader, SequenceSpec, SequenceSummary, SequenceWriter,
};
