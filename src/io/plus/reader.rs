//! Streaming reader: parses the header once, then reads one frame's pixels at a time into the
//! caller's (pooled) buffer, decompressing zlib data incrementally. A recording of any length
//! reads in constant memory, and after the first frame nothing is allocated per frame.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};
use std::path::{Path, PathBuf};

use flate2::read::{MultiGzDecoder, ZlibDecoder};

use super::error::SequenceError;
use super::fields::{Compression, DataLayout, interpret};
use super::header::{Flavor, read_header};
use super::nrrd;
use super::{FrameMeta, SequenceHeader};
use crate::frame::PixelData;

const READ_BUFFER_BYTES: usize = 1 << 20;

enum Data {
    Raw(BufReader<File>),
    Zlib(Box<ZlibDecoder<Take<BufReader<File>>>>),
    Gzip(Box<MultiGzDecoder<BufReader<File>>>),
}

pub struct SequenceReader {
    path: PathBuf,
    header: SequenceHeader,
    frames: Vec<FrameMeta>,
    layout: DataLayout,
    data: Data,
    next: usize,
    /// Little-endian bytes of one 16-bit frame before conversion.
    scratch: Vec<u8>,
}

impl SequenceReader {
    /// Parses the header and all frame metadata; pixels are read by [`read_next`](Self::read_next).
    pub fn open(path: &Path) -> Result<Self, SequenceError> {
        let io = |source| SequenceError::Io { path: path.to_path_buf(), source };
        let mut input = BufReader::new(File::open(path).map_err(io)?);
        let raw = read_header(path, &mut input)?;
        let parsed = match raw.flavor {
            Flavor::MetaImage => interpret(path, raw.fields, raw.data_offset)?,
            Flavor::Nrrd => {
                let (fields, gzip) = nrrd::to_metaimage(path, raw.fields)?;
                let mut parsed = interpret(path, fields, raw.data_offset)?;
                if gzip {
                    parsed.layout.compression = Compression::Gzip;
                }
                parsed
            }
        };
        let data = open_data(&parsed.layout).map_err(|e| name_header(e, path, &parsed.layout, None))?;
        Ok(SequenceReader {
            path: path.to_path_buf(),
            header: parsed.header,
            frames: parsed.frames,
            layout: parsed.layout,
            data,
            next: 0,
            scratch: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &SequenceHeader {
        &self.header
    }

    pub fn frames(&self) -> &[FrameMeta] {
        &self.frames
    }

    /// Reads the next frame's pixels into the first width×height pixels of `dst` and returns the
    /// frame's index, or `None` after the last frame.
    pub fn read_next(&mut self, dst: &mut PixelData) -> Result<Option<usize>, SequenceError> {
        let frame = self.next;
        if frame >= self.frames.len() {
            return Ok(None);
        }
        let pixels = self.header.width * self.header.height;
        if dst.format() != self.header.pixel_format || dst.len() < pixels {
            return Err(SequenceError::Buffer {
                path: self.path.clone(),
                frame,
                message: format!(
                    "a buffer of {} {} pixels cannot take a {}x{} {} frame",
                    dst.len(),
                    dst.format(),
                    self.header.width,
                    self.header.height,
                    self.header.pixel_format
                ),
            });
        }
        let expected = pixels * self.header.pixel_format.bytes_per_pixel();
        let got = match dst {
            // 8-bit pixels are the bytes on disk: read straight into the frame.
            PixelData::Gray8(v) => read_full(&mut self.data, &mut v[..pixels]),
            PixelData::Gray16(_) => {
                self.scratch.resize(expected, 0);
                let got = read_full(&mut self.data, &mut self.scratch);
                dst.copy_from_le_bytes(&self.scratch);
                got
            }
        };
        match got {
            Ok(n) if n == expected => {}
            Ok(n) => {
                return Err(SequenceError::Truncated {
                    path: self.layout.file.clone(),
                    frame,
                    expected_bytes: expected,
                    got_bytes: n,
                });
            }
            Err(e)
                if self.layout.compression != Compression::None
                    && matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput) =>
            {
                return Err(SequenceError::Zlib { path: self.layout.file.clone(), frame, message: e.to_string() });
            }
            Err(source) => {
                let e = SequenceError::Io { path: self.layout.file.clone(), source };
                return Err(name_header(e, &self.path, &self.layout, Some(frame)));
            }
        }
        self.next += 1;
        Ok(Some(frame))
    }

    /// Starts again at frame 0 (looped replay).
    pub fn rewind(&mut self) -> Result<(), SequenceError> {
        self.data = open_data(&self.layout).map_err(|e| name_header(e, &self.path, &self.layout, None))?;
        self.next = 0;
        Ok(())
    }
}

/// An I/O error on a separate data file (`.raw`, `data file:`) names the header that points to
/// it too: the path may be the header's mistake (`ElementDataFile = /`).
fn name_header(e: SequenceError, header: &Path, layout: &DataLayout, frame: Option<usize>) -> SequenceError {
    match e {
        SequenceError::Io { source, .. } if layout.file != header => SequenceError::Field {
            path: header.to_path_buf(),
            field: "ElementDataFile".into(),
            frame,
            message: format!("data file {}: {source}", layout.file.display()),
        },
        other => other,
    }
}

fn open_data(layout: &DataLayout) -> Result<Data, SequenceError> {
    let io = |source| SequenceError::Io { path: layout.file.clone(), source };
    let mut file = File::open(&layout.file).map_err(io)?;
    file.seek(SeekFrom::Start(layout.offset)).map_err(io)?;
    let reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    Ok(match layout.compression {
        Compression::None => Data::Raw(reader),
        Compression::Zlib => {
            Data::Zlib(Box::new(ZlibDecoder::new(reader.take(layout.compressed_size.unwrap_or(u64::MAX)))))
        }
        Compression::Gzip => Data::Gzip(Box::new(MultiGzDecoder::new(reader))),
    })
}

impl Read for Data {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Data::Raw(r) => r.read(buf),
            Data::Zlib(z) => z.read(buf),
            Data::Gzip(g) => g.read(buf),
        }
    }
}

/// Reads until `buf` is full or the data ends; returns how much was read. A compressed stream
/// cut short ends the data rather than failing, so callers report it as truncation.
pub(crate) fn read_full(data: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads a whole sequence into memory (tests and tools; replay streams with [`SequenceReader`]).
pub fn read_all(path: &Path) -> Result<(SequenceHeader, Vec<(FrameMeta, PixelData)>), SequenceError> {
    let mut reader = SequenceReader::open(path)?;
    let pixels = reader.header.width * reader.header.height;
    let mut out = Vec::with_capacity(reader.frames.len());
    loop {
        let mut data = PixelData::zeroed(reader.header.pixel_format, pixels);
        match reader.read_next(&mut data)? {
            Some(index) => out.push((reader.frames[index].clone(), data)),
            None => break,
        }
    }
    Ok((reader.header, out))
}
