//! Voxel bytes on disk: little-endian encoding, zlib (MetaImage) or gzip (NRRD) compression, and
//! bounded reading, so a truncated, corrupt or hostile file ends in an error, never a panic or an
//! allocation the file cannot back.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::read::{MultiGzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

use super::{ElementType, MAX_VOLUME_BYTES, OwnedVolumeData, VolumeData, VolumeGeometry, VolumeIoError};
use crate::io::plus::read_full;

/// Deflate never expands data by more than about 1032:1, so compressed data that claims more
/// than this many bytes per stored byte cannot be genuine.
const MAX_INFLATE_RATIO: u64 = 1100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Raw,
    /// MetaImage `CompressedData = True`.
    Zlib,
    /// NRRD `encoding: gzip`.
    Gzip,
}

/// Where a file's voxels are and how they are stored.
pub(crate) struct Payload {
    pub file: PathBuf,
    pub offset: u64,
    pub encoding: Encoding,
    /// MetaImage `CompressedDataSize`, when given.
    pub compressed_size: Option<u64>,
    pub element: ElementType,
    pub big_endian: bool,
}

/// Writes a volume file: the header (given the stored payload's size, which MetaImage records)
/// followed by the voxels in `encoding`, after checking the voxels fit the geometry.
pub(crate) fn write_volume_file(
    path: &Path,
    geometry: &VolumeGeometry,
    data: &VolumeData,
    encoding: Encoding,
    header: impl FnOnce(usize) -> String,
) -> Result<(), VolumeIoError> {
    geometry.validate_data(path, data)?;
    let payload = encode(le_bytes(data), encoding).map_err(VolumeIoError::io(path))?;
    write_atomically(path, &[header(payload.len()).as_bytes(), &payload])
}

/// The voxels as little-endian bytes (borrowed for 8-bit data).
fn le_bytes<'a>(data: &VolumeData<'a>) -> Cow<'a, [u8]> {
    match *data {
        VolumeData::U8(v) => Cow::Borrowed(v),
        VolumeData::U16(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        VolumeData::F32(v) => Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

/// Compresses (or not) the voxel bytes; volumes are written once, so the default level.
fn encode<'a>(bytes: Cow<'a, [u8]>, encoding: Encoding) -> std::io::Result<Cow<'a, [u8]>> {
    let level = flate2::Compression::default();
    Ok(match encoding {
        Encoding::Raw => bytes,
        Encoding::Zlib => {
            let mut z = ZlibEncoder::new(Vec::with_capacity(bytes.len() / 4), level);
            z.write_all(&bytes)?;
            Cow::Owned(z.finish()?)
        }
        Encoding::Gzip => {
            let mut g = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), level);
            g.write_all(&bytes)?;
            Cow::Owned(g.finish()?)
        }
    })
}

/// Reads `voxels` voxels as the payload describes them.
pub(crate) fn read_voxels(header_path: &Path, p: &Payload, voxels: usize) -> Result<OwnedVolumeData, VolumeIoError> {
    let path = p.file.as_path();
    let expected = (voxels as u64).checked_mul(p.element.bytes() as u64).filter(|&b| b <= MAX_VOLUME_BYTES);
    let Some(expected) = expected else {
        return Err(VolumeIoError::field(
            header_path,
            "DimSize",
            format!("{voxels} voxels exceed the {MAX_VOLUME_BYTES}-byte limit on volumes read"),
        ));
    };
    let mut file = File::open(path).map_err(VolumeIoError::io(path))?;
    let stored = file.metadata().map_err(VolumeIoError::io(path))?.len().saturating_sub(p.offset);
    if let Some(size) = p.compressed_size.filter(|&size| size > stored) {
        return Err(VolumeIoError::Truncated { path: path.to_path_buf(), expected_bytes: size, got_bytes: stored });
    }
    let stored = p.compressed_size.unwrap_or(stored);
    let room = if p.encoding == Encoding::Raw { stored } else { stored.saturating_mul(MAX_INFLATE_RATIO) };
    if room < expected {
        return Err(VolumeIoError::Truncated { path: path.to_path_buf(), expected_bytes: expected, got_bytes: room });
    }
    file.seek(SeekFrom::Start(p.offset)).map_err(VolumeIoError::io(path))?;
    let mut input = BufReader::new(file).take(stored);
    let mut bytes = vec![0u8; expected as usize];
    let (got, extra) = match p.encoding {
        Encoding::Raw => (read_full(&mut input, &mut bytes), Ok(0)),
        Encoding::Zlib => read_all_of(ZlibDecoder::new(input), &mut bytes),
        Encoding::Gzip => read_all_of(MultiGzDecoder::new(input), &mut bytes),
    };
    let corrupt = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
            VolumeIoError::Corrupt { path: path.to_path_buf(), message: e.to_string() }
        }
        _ => VolumeIoError::Io { path: path.to_path_buf(), source: e },
    };
    let got = got.map_err(corrupt)? as u64;
    if got < expected {
        return Err(VolumeIoError::Truncated { path: path.to_path_buf(), expected_bytes: expected, got_bytes: got });
    }
    let extra = extra.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => VolumeIoError::Corrupt {
            path: path.to_path_buf(),
            message: "the compressed stream stops before its end (truncated file?)".into(),
        },
        _ => corrupt(e),
    })?;
    // Compressed data that inflates past DimSize means the header and the data disagree.
    if extra > 0 {
        return Err(VolumeIoError::field(
            header_path,
            "DimSize",
            format!("the compressed data holds more than the {expected} bytes of {voxels} voxels"),
        ));
    }
    Ok(decode(bytes, p.element, p.big_endian))
}

/// Fills `buf`, then reads on to the end of the compressed stream: returns (bytes read, bytes
/// beyond `buf`). The stream must end properly, so a gzip trailer cut off (its checksum and
/// length) is an error even when every voxel arrived.
fn read_all_of(mut r: impl Read, buf: &mut [u8]) -> (std::io::Result<usize>, std::io::Result<usize>) {
    let got = read_full(&mut r, buf);
    if !got.as_ref().is_ok_and(|&n| n == buf.len()) {
        return (got, Ok(0));
    }
    let extra = loop {
        match r.read(&mut [0u8]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Err(e),
            other => break other,
        }
    };
    (got, extra)
}

fn decode(bytes: Vec<u8>, element: ElementType, big_endian: bool) -> OwnedVolumeData {
    match element {
        ElementType::U8 => OwnedVolumeData::U8(bytes),
        ElementType::U16 => OwnedVolumeData::U16(
            bytes
                .chunks_exact(2)
                .map(|c| if big_endian { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) })
                .collect(),
        ),
        ElementType::F32 => OwnedVolumeData::F32(
            bytes
                .chunks_exact(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    if big_endian { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }
                })
                .collect(),
        ),
    }
}

/// Writes `parts` to `<path>.partial`, then renames it into place: a crash or a full disk never
/// leaves a half-written file under the name a viewer will open.
pub(crate) fn write_atomically(path: &Path, parts: &[&[u8]]) -> Result<(), VolumeIoError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let io = VolumeIoError::io(&partial);
    let result = File::create(&partial).and_then(|mut f| {
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(io(e));
    }
    std::fs::rename(&partial, path).map_err(VolumeIoError::io(path))
}
