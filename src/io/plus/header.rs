//! MetaImage header lines: `Key = Value` text up to and including `ElementDataFile`, after which
//! (for `LOCAL`) the binary data starts.

use std::io::BufRead;
use std::path::Path;

use super::error::SequenceError;

/// Headers of real recordings reach tens of MB (thousands of frames × a few transforms); anything
/// past this is not a MetaImage header.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// The header's fields in file order, and the byte offset where the data starts.
pub struct RawHeader {
    pub fields: Vec<(String, String)>,
    pub data_offset: u64,
}

/// Reads header lines until `ElementDataFile`.
pub fn read_header(path: &Path, input: &mut impl BufRead) -> Result<RawHeader, SequenceError> {
    let mut fields = Vec::new();
    let mut offset = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|source| SequenceError::Io { path: path.to_path_buf(), source })?;
        let header_error = |message: String| SequenceError::Header { path: path.to_path_buf(), offset, message };
        if n == 0 {
            return Err(header_error(
                "the header ends without `ElementDataFile` (not a MetaImage file, or truncated)".into(),
            ));
        }
        if offset + n as u64 > MAX_HEADER_BYTES {
            return Err(header_error(format!("no `ElementDataFile` within the first {MAX_HEADER_BYTES} bytes")));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| header_error("binary data where a header line was expected".into()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        offset += n as u64;
        if text.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = text.split_once('=') else {
            return Err(SequenceError::Header {
                path: path.to_path_buf(),
                offset: offset - n as u64,
                message: format!("expected `Key = Value`, found `{}`", text.chars().take(80).collect::<String>()),
            });
        };
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        let is_last = key == "ElementDataFile";
        fields.push((key, value));
        if is_last {
            return Ok(RawHeader { fields, data_offset: offset });
        }
    }
}
