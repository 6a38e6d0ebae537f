//! Errors of sequence files: each names the file and, where it applies, the field, the frame and
//! the byte offset, in words a user can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The header itself is malformed (not text, too long, no data marker).
    #[error("{path}: header at byte {offset}: {message}")]
    Header { path: PathBuf, offset: u64, message: String },
    /// A header field is missing or has a bad value.
    #[error("{path}: field `{field}`{}: {message}", frame_suffix(*frame))]
    Field { path: PathBuf, field: String, frame: Option<usize>, message: String },
    /// The pixel data ends before every frame's pixels were read.
    #[error(
        "{path}: frame {frame}: pixel data ends early (truncated file?): expected {expected_bytes} bytes, got {got_bytes}"
    )]
    Truncated { path: PathBuf, frame: usize, expected_bytes: usize, got_bytes: usize },
    /// The compressed pixel data cannot be decompressed.
    #[error("{path}: frame {frame}: corrupt compressed data: {message}")]
    Zlib { path: PathBuf, frame: usize, message: String },
    /// A well-formed file this reader does not handle.
    #[error("{path}: unsupported: {message}")]
    Unsupported { path: PathBuf, message: String },
    /// The caller's buffer cannot hold a frame.
    #[error("{path}: frame {frame}: {message}")]
    Buffer { path: PathBuf, frame: usize, message: String },
}

fn frame_suffix(frame: Option<usize>) -> String {
    frame.map(|f| format!(" (frame {f})")).unwrap_or_default()
}
