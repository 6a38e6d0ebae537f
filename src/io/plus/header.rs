//! Header lines. MetaImage: `Key = Value` text up to and including `ElementDataFile`, after
//! which (for `LOCAL`) the binary data starts. NRRD: a `NRRD000N` magic line, then `key: value`
//! fields and `key:=value` pairs up to a blank line, after which the data starts.

use std::io::BufRead;
use std::path::Path;

use super::error::SequenceError;

/// Headers of real recordings reach tens of MB (thousands of frames × a few transforms); anything
/// past this is not a MetaImage header.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// Which kind of header a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MetaImage,
    Nrrd,
}

/// The header's fields in file order, and the byte offset where the data starts.
pub struct RawHeader {
    pub flavor: Flavor,
    pub fields: Vec<(String, String)>,
    pub data_offset: u64,
}

/// Reads header lines until the data starts.
pub fn read_header(path: &Path, input: &mut impl BufRead) -> Result<RawHeader, SequenceError> {
    let mut fields = Vec::new();
    let mut offset = 0u64;
    let mut line = Vec::new();
    let mut flavor = Flavor::MetaImage;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|source| SequenceError::Io { path: path.to_path_buf(), source })?;
        let header_error = |message: String| SequenceError::Header { path: path.to_path_buf(), offset, message };
        if n == 0 {
            return Err(header_error(match flavor {
                Flavor::MetaImage => {
                    "the header ends without `ElementDataFile` (not a MetaImage file, or truncated)".into()
                }
                Flavor::Nrrd => "the header ends without the blank line before the data (truncated?)".into(),
            }));
        }
        if offset + n as u64 > MAX_HEADER_BYTES {
            return Err(header_error(format!("no `ElementDataFile` within the first {MAX_HEADER_BYTES} bytes")));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| header_error("binary data where a header line was expected".into()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        let line_start = offset;
        offset += n as u64;
        if line_start == 0 && super::nrrd::is_magic(text) {
            flavor = Flavor::Nrrd;
            continue;
        }
        if flavor == Flavor::Nrrd {
            if text.is_empty() {
                return Ok(RawHeader { flavor, fields, data_offset: offset });
            }
            if text.starts_with('#') {
                continue;
            }
            // `key:=value` is a key-value pair, `key: value` a field; both keep their key.
            let Some((key, value)) = text.split_once(":=").or_else(|| text.split_once(": ")) else {
                return Err(SequenceError::Header {
                    path: path.to_path_buf(),
                    offset: line_start,
                    message: format!(
                        "expected `key: value` or `key:=value`, found `{}`",
                        text.chars().take(80).collect::<String>()
                    ),
                });
            };
            fields.push((key.trim().to_string(), value.trim().to_string()));
            continue;
        }
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
            return Ok(RawHeader { flavor, fields, data_offset: offset });
        }
    }
}
