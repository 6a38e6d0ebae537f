//! Errors of volume and surface files: each names the file and, where it applies, the header field
//! at fault, in words a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeIoError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The header itself is malformed (not text, too long, no end).
    #[error("{path}: header at byte {offset}: {message}")]
    Header { path: PathBuf, offset: u64, message: String },
    /// A header field (or, when writing, the geometry or data it is written from) is missing or wrong.
    #[error("{path}: field `{field}`: {message}")]
    Field { path: PathBuf, field: String, message: String },
    /// The voxel data ends before DimSize's voxels were read.
    #[error("{path}: voxel data ends early (truncated file?): expected {expected_bytes} bytes, got {got_bytes}")]
    Truncated { path: PathBuf, expected_bytes: u64, got_bytes: u64 },
    /// The compressed voxel data cannot be decompressed.
    #[error("{path}: corrupt compressed voxel data: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// A well-formed file (or file name) this code does not handle.
    #[error("{path}: unsupported: {message}")]
    Unsupported { path: PathBuf, message: String },
}

impl VolumeIoError {
    pub(crate) fn field(path: &std::path::Path, field: &str, message: impl Into<String>) -> Self {
        VolumeIoError::Field { path: path.to_path_buf(), field: field.to_string(), message: message.into() }
    }

    pub(crate) fn unsupported(path: &std::path::Path, message: impl Into<String>) -> Self {
        VolumeIoError::Unsupported { path: path.to_path_buf(), message: message.into() }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| VolumeIoError::Io { path: path.to_path_buf(), source }
    }
}

/// The shared header reader speaks in sequence errors; a volume file reports the same facts.
impl From<crate::io::SequenceError> for VolumeIoError {
    fn from(e: crate::io::SequenceError) -> Self {
        use crate::io::SequenceError as S;
        match e {
            S::Io { path, source } => VolumeIoError::Io { path, source },
            S::Header { path, offset, message } => VolumeIoError::Header { path, offset, message },
            S::Field { path, field, message, .. } => VolumeIoError::Field { path, field, message },
            S::Unsupported { path, message } => VolumeIoError::Unsupported { path, message },
            S::Zlib { path, message, .. } => VolumeIoError::Corrupt { path, message },
            S::Truncated { path, expected_bytes, got_bytes, .. } => {
                VolumeIoError::Truncated { path, expected_bytes: expected_bytes as u64, got_bytes: got_bytes as u64 }
            }
            S::Buffer { path, message, .. } => VolumeIoError::Unsupported { path, message },
        }
    }
}
