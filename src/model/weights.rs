//! The converted weights file (`engines/<model>/<model>.bin`) and its loader.
//!
//! Layout, all integers little-endian, so the file could equally be memory-mapped:
//!
//! ```text
//! 0   header, 64 bytes: magic "SFWEIGHT", format version u32, tensor count u32,
//!     index offset u64 (= 64), index length u64, data offset u64 (multiple of 64),
//!     data length u64, CRC-32 u32 of every byte after the header, zeros to byte 64
//! 64  index, one record per tensor: name length u16, name (UTF-8), rank u8, dims u64 × rank,
//!     offset u64 (bytes from the data offset, multiple of 64), element count u64
//!     zeros up to the data offset
//! ..  data: each tensor's float32 values, row-major, starting on a 64-byte boundary
//! ```
//!
//! Loading reads the whole file with one read into a 64-byte-aligned buffer and checks the header,
//! the CRC and every index record; tensors are then borrowed slices of that buffer (no per-tensor
//! copy). The CRC catches a damaged file cheaply on every load; the manifest's SHA-256, checked by
//! [`Weights::load_verified`] and by `sonoflow model fetch`/`info`, proves it is the right file.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::digest::sha256_hex;
use super::tensor::{OwnedTensor, Tensor, shape_numel, shape_text};

pub const MAGIC: [u8; 8] = *b"SFWEIGHT";
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const ALIGN: usize = 64;
const MAX_RANK: usize = 8;

const FETCH_HINT: &str = "run `sonoflow model fetch` to rebuild it";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    #[error("{path}: converted model weights not found; run `sonoflow model fetch`")]
    Missing { path: PathBuf },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: truncated: {got} bytes, the header says {expected}; {FETCH_HINT}")]
    Truncated { path: PathBuf, expected: u64, got: u64 },
    #[error("{path}: not a sonoflow weights file (bad magic at byte 0); {FETCH_HINT}")]
    BadMagic { path: PathBuf },
    #[error("{path}: weights format version {found}, this build reads version {FORMAT_VERSION}; {FETCH_HINT}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: corrupt at byte {offset}: {message}; {FETCH_HINT}")]
    Corrupt { path: PathBuf, offset: u64, message: String },
    #[error("{path}: sha256 {actual} does not match the manifest's {expected}; {FETCH_HINT}")]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    #[error("{path}: no tensor named `{name}`")]
    NoTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {actual}, the model expects {expected}")]
    Shape { path: PathBuf, name: String, expected: String, actual: String },
    /// A tensor that cannot be written (encoding only).
    #[error("tensor `{tensor}`: {message}")]
    Invalid { tensor: String, message: String },
}

/// Loaded weights: one aligned buffer holding the whole file, and an index into it.
#[derive(Debug)]
pub struct Weights {
    path: PathBuf,
    buf: AlignedBuf,
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

#[derive(Debug)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    /// First value, as an index into the buffer's floats.
    start: usize,
    len: usize,
}

impl Weights {
    /// Reads and checks a weights file (structure and CRC).
    pub fn load(path: impl AsRef<Path>) -> Result<Weights, WeightsError> {
        let path = path.as_ref();
        Weights::parse(path, read_file(path)?)
    }

    /// [`Weights::load`], also checking the whole file's SHA-256 against `sha256` (lowercase hex).
    pub fn load_verified(path: impl AsRef<Path>, sha256: &str) -> Result<Weights, WeightsError> {
        let path = path.as_ref();
        let buf = read_file(path)?;
        let actual = sha256_hex(buf.bytes());
        if actual != sha256 {
            return Err(WeightsError::HashMismatch { path: path.into(), expected: sha256.to_string(), actual });
        }
        Weights::parse(path, buf)
    }

    /// Parses weights held in memory (copied into an aligned buffer); `label` names them in errors.
    pub fn from_bytes(bytes: &[u8], label: &Path) -> Result<Weights, WeightsError> {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.bytes_mut().copy_from_slice(bytes);
        Weights::parse(label, buf)
    }

    fn parse(path: &Path, mut buf: AlignedBuf) -> Result<Weights, WeightsError> {
        let layout = Layout::parse(path, buf.bytes())?;
        let data_start = layout.data_offset / 4;
        let entries: Vec<Entry> = layout
            .records
            .into_iter()
            .map(|r| Entry { name: r.name, shape: r.shape, start: data_start + r.offset / 4, len: r.len })
            .collect();
        buf.data_from_le(layout.data_offset);
        let by_name = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Ok(Weights { path: path.into(), buf, entries, by_name })
    }

    /// The file the weights were loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn file_len(&self) -> usize {
        self.buf.len
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tensor names in file order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Every tensor in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Tensor<'_>> + '_ {
        self.entries.iter().map(|e| self.view(e))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn tensor(&self, name: &str) -> Result<Tensor<'_>, WeightsError> {
        match self.by_name.get(name) {
            Some(&i) => Ok(self.view(&self.entries[i])),
            None => Err(WeightsError::NoTensor { path: self.path.clone(), name: name.to_string() }),
        }
    }

    /// The tensor, provided it has exactly `shape`.
    pub fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<Tensor<'_>, WeightsError> {
        let tensor = self.tensor(name)?;
        if tensor.shape != shape {
            return Err(WeightsError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape_text(shape),
                actual: shape_text(tensor.shape),
            });
        }
        Ok(tensor)
    }

    /// Values in all tensors.
    pub fn param_count(&self) -> usize {
        self.entries.iter().map(|e| e.len).sum()
    }

    /// Values in the tensors whose names start with `prefix` (e.g. `image_encoder.`).
    pub fn param_count_under(&self, prefix: &str) -> usize {
        self.entries.iter().filter(|e| e.name.starts_with(prefix)).map(|e| e.len).sum()
    }

    fn view<'a>(&'a self, e: &'a Entry) -> Tensor<'a> {
        Tensor { name: &e.name, shape: &e.shape, data: &self.buf.floats()[e.start..e.start + e.len] }
    }
}

/// Serialises tensors in the order given. The bytes depend only on the tensors, so the same
/// checkpoint always converts to the same file (and the manifest's hash).
pub fn encode(tensors: &[OwnedTensor]) -> Result<Vec<u8>, WeightsError> {
    let mut names = HashSet::new();
    let mut index = Vec::new();
    let mut data_len = 0usize;
    for t in tensors {
        let invalid = |message: String| WeightsError::Invalid { tensor: t.name.clone(), message };
        if !names.insert(t.name.as_str()) {
            return Err(invalid("listed twice".into()));
        }
        let name_len = u16::try_from(t.name.len()).map_err(|_| invalid("name longer than 65535 bytes".into()))?;
        if t.shape.len() > MAX_RANK {
            return Err(invalid(format!("rank {} above the supported {MAX_RANK}", t.shape.len())));
        }
        if shape_numel(&t.shape) != Some(t.data.len()) {
            return Err(invalid(format!("{} values do not fill shape {}", t.data.len(), shape_text(&t.shape))));
        }
        index.extend_from_slice(&name_len.to_le_bytes());
        index.extend_from_slice(t.name.as_bytes());
        index.push(t.shape.len() as u8);
        for &d in &t.shape {
            index.extend_from_slice(&(d as u64).to_le_bytes());
        }
        index.extend_from_slice(&(data_len as u64).to_le_bytes());
        index.extend_from_slice(&(t.data.len() as u64).to_le_bytes());
        data_len += align_up(t.data.len() * 4);
    }
    let count = u32::try_from(tensors.len())
        .map_err(|_| WeightsError::Invalid { tensor: String::new(), message: "more than 2^32 tensors".into() })?;
    let data_offset = align_up(HEADER_LEN + index.len());

    let mut out = vec![0u8; data_offset + data_len];
    out[HEADER_LEN..HEADER_LEN + index.len()].copy_from_slice(&index);
    let mut at = data_offset;
    for t in tensors {
        for (dst, v) in out[at..at + t.data.len() * 4].chunks_exact_mut(4).zip(&t.data) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        at += align_up(t.data.len() * 4);
    }
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    let header = &mut out[..HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&count.to_le_bytes());
    header[16..24].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
    header[24..32].copy_from_slice(&(index.len() as u64).to_le_bytes());
    header[32..40].copy_from_slice(&(data_offset as u64).to_le_bytes());
    header[40..48].copy_from_slice(&(data_len as u64).to_le_bytes());
    header[48..52].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Writes `bytes` to `<path>.partial`, flushes it to disk, then renames it to `path`, so a
/// reader never sees half a file, whatever interrupts the write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|source| WeightsError::Io { path: partial.clone(), source })?;
    std::fs::rename(&partial, path).map_err(|source| WeightsError::Io { path: path.into(), source })
}

/// The whole file, read with one call into an aligned buffer sized from its metadata.
fn read_file(path: &Path) -> Result<AlignedBuf, WeightsError> {
    let io = |source| WeightsError::Io { path: path.into(), source };
    let mut file = std::fs::File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => WeightsError::Missing { path: path.into() },
        _ => io(source),
    })?;
    let len = file.metadata().map_err(io)?.len();
    let len = usize::try_from(len).map_err(|_| WeightsError::Corrupt {
        path: path.into(),
        offset: 0,
        message: format!("{len} bytes does not fit in memory"),
    })?;
    let mut buf = AlignedBuf::zeroed(len);
    let dst = buf.bytes_mut();
    let mut filled = 0;
    while filled < dst.len() {
        match file.read(&mut dst[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    if filled < len {
        // The file shrank between the size query and the read.
        return Err(WeightsError::Truncated { path: path.into(), expected: len as u64, got: filled as u64 });
    }
    Ok(buf)
}

fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The header and index of a weights file, checked against the file's length.
struct Layout {
    data_offset: usize,
    records: Vec<Record>,
}

struct Record {
    name: String,
    shape: Vec<usize>,
    /// Bytes from the data offset.
    offset: usize,
    len: usize,
}

impl Layout {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Layout, WeightsError> {
        let corrupt = |offset: usize, message: String| WeightsError::Corrupt {
            path: path.into(),
            offset: offset as u64,
            message,
        };
        if bytes.len() < HEADER_LEN {
            if bytes.len() >= 8 && bytes[..8] != MAGIC {
                return Err(WeightsError::BadMagic { path: path.into() });
            }
            return Err(WeightsError::Truncated {
                path: path.into(),
                expected: HEADER_LEN as u64,
                got: bytes.len() as u64,
            });
        }
        if bytes[..8] != MAGIC {
            return Err(WeightsError::BadMagic { path: path.into() });
        }
        let mut header = Cursor { bytes: &bytes[..HEADER_LEN], pos: 8 };
        let version = header.u32().unwrap_or_default();
        if version != FORMAT_VERSION {
            return Err(WeightsError::Version { path: path.into(), found: version });
        }
        let fields: Option<_> =
            (|| Some((header.u32()?, header.u64()?, header.u64()?, header.u64()?, header.u64()?, header.u32()?)))();
        let (count, index_offset, index_len, data_offset, data_len, crc) = fields.unwrap_or_default();
        if bytes[52..HEADER_LEN].iter().any(|&b| b != 0) {
            return Err(corrupt(52, "reserved header bytes are not zero".into()));
        }
        let to_usize = |v: u64, at: usize| usize::try_from(v).map_err(|_| corrupt(at, format!("{v} is too large")));
        let (index_offset, index_len) = (to_usize(index_offset, 16)?, to_usize(index_len, 24)?);
        let (data_offset, data_len) = (to_usize(data_offset, 32)?, to_usize(data_len, 40)?);
        if index_offset != HEADER_LEN {
            return Err(corrupt(16, format!("index offset {index_offset}, expected {HEADER_LEN}")));
        }
        let index_end =
            index_offset.checked_add(index_len).ok_or_else(|| corrupt(24, "index length overflows".into()))?;
        if data_offset % ALIGN != 0 || data_offset < index_end {
            return Err(corrupt(32, format!("data offset {data_offset} is not a 64-byte boundary after the index")));
        }
        let expected = data_offset.checked_add(data_len).ok_or_else(|| corrupt(40, "data length overflows".into()))?;
        if bytes.len() < expected {
            return Err(WeightsError::Truncated {
                path: path.into(),
                expected: expected as u64,
                got: bytes.len() as u64,
            });
        }
        if bytes.len() > expected {
            return Err(corrupt(expected, format!("{} bytes after the end of the data", bytes.len() - expected)));
        }
        if crc32fast::hash(&bytes[HEADER_LEN..]) != crc {
            return Err(corrupt(48, "CRC-32 mismatch: the file is damaged".into()));
        }

        let mut index = Cursor { bytes: &bytes[..index_end], pos: index_offset };
        let mut records = Vec::with_capacity((count as usize).min(index_len / 11 + 1));
        let mut names = HashSet::new();
        for i in 0..count {
            let at = index.pos;
            let record = index.record(data_len).map_err(|m| corrupt(at, format!("index record {i}: {m}")))?;
            if !names.insert(record.name.clone()) {
                return Err(corrupt(at, format!("index record {i}: tensor `{}` listed twice", record.name)));
            }
            records.push(record);
        }
        if index.pos != index_end {
            return Err(corrupt(index.pos, format!("{} unused bytes at the end of the index", index_end - index.pos)));
        }
        Ok(Layout { data_offset, records })
    }
}

/// Bounds-checked little-endian reads.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.bytes.len())?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Some(slice)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn record(&mut self, data_len: usize) -> Result<Record, String> {
        const SHORT: &str = "runs past the end of the index";
        let name_len = self.array().map(u16::from_le_bytes).ok_or(SHORT)?;
        let name = self.take(usize::from(name_len)).ok_or(SHORT)?;
        let name = std::str::from_utf8(name).map_err(|_| "name is not UTF-8".to_string())?.to_string();
        let rank = usize::from(self.array::<1>().ok_or(SHORT)?[0]);
        if rank > MAX_RANK {
            return Err(format!("tensor `{name}` has rank {rank}, above {MAX_RANK}"));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = self.u64().ok_or(SHORT)?;
            shape.push(usize::try_from(d).map_err(|_| format!("tensor `{name}`: dimension {d} too large"))?);
        }
        let offset = self.u64().ok_or(SHORT)?;
        let len = self.u64().ok_or(SHORT)?;
        let numel = shape_numel(&shape);
        if numel.map(|n| n as u64) != Some(len) {
            return Err(format!("tensor `{name}`: {len} values do not fill shape {}", shape_text(&shape)));
        }
        let fits = offset % ALIGN as u64 == 0
            && len.checked_mul(4).and_then(|b| b.checked_add(offset)).is_some_and(|end| end <= data_len as u64);
        if !fits {
            return Err(format!("tensor `{name}`: {len} values at data offset {offset} do not fit the data section"));
        }
        Ok(Record { name, shape, offset: offset as usize, len: len as usize })
    }
}

/// 64 bytes of float32, so a buffer of blocks is 64-byte aligned and a valid float array.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([f32; 16]);

/// The whole file in one aligned allocation.
struct AlignedBuf {
    blocks: Vec<Block>,
    /// Length of the file in bytes (the last block may be padded).
    len: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf { blocks: vec![Block([0.0; 16]); len.div_ceil(64)], len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `Block` is 16 f32s with no padding, so the blocks are `blocks.len() * 64`
        // initialised bytes, and `len` never exceeds that; u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; and every byte pattern is a valid f32, so writes through the
        // byte view cannot make the blocks invalid.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), self.len) }
    }

    fn floats(&self) -> &[f32] {
        // SAFETY: the blocks are contiguous `[f32; 16]` with no padding, so they form one
        // `blocks.len() * 16` f32 slice, aligned to 64 bytes.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<f32>(), self.blocks.len() * 16) }
    }

    fn floats_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `floats`, through the unique borrow of the blocks.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<f32>(), self.blocks.len() * 16) }
    }

    /// The file stores little-endian floats; on a big-endian host the data section is swapped
    /// in place once (after hashing, which covers the bytes as stored).
    fn data_from_le(&mut self, data_offset: usize) {
        if cfg!(target_endian = "big") {
            for v in &mut self.floats_mut()[data_offset / 4..] {
                *v = f32::from_bits(u32::from_le(v.to_bits()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[usize], data: &[f32]) -> OwnedTensor {
        OwnedTensor { name: name.into(), shape: shape.to_vec(), data: data.to_vec() }
    }

    fn sample() -> Vec<OwnedTensor> {
        vec![
            t("a.weight", &[2, 3], &[1.0, -2.0, 3.5, f32::MIN_POSITIVE, -0.0, 1e30]),
            t("a.bias", &[2], &[0.25, -0.125]),
            t("scalar", &[], &[42.0]),
            t("empty", &[0, 4], &[]),
        ]
    }

    #[test]
    fn round_trips_exact_values_and_aligns_every_tensor() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes.len() % 64, 0);
        let w = Weights::from_bytes(&bytes, Path::new("mem.bin")).unwrap();
        assert_eq!(w.names().collect::<Vec<_>>(), ["a.weight", "a.bias", "scalar", "empty"]);
        for (want, got) in sample().iter().zip(w.iter()) {
            assert_eq!(want.view(), got);
            assert_eq!(got.data.as_ptr() as usize % 64, 0, "{} is not 64-byte aligned", got.name);
        }
        assert_eq!(w.param_count(), 9);
        assert_eq!(w.param_count_under("a."), 8);
        assert_eq!(w.expect_shape("a.bias", &[2]).unwrap().data, [0.25, -0.125]);
        // The same tensors always give the same bytes.
        assert_eq!(encode(&sample()).unwrap(), bytes);
    }

    #[test]
    fn lookups_name_the_file_and_tensor() {
        let w = Weights::from_bytes(&encode(&sample()).unwrap(), Path::new("mem.bin")).unwrap();
        let err = w.tensor("nope").unwrap_err().to_string();
        assert_eq!(err, "mem.bin: no tensor named `nope`");
        let err = w.expect_shape("a.weight", &[3, 2]).unwrap_err().to_string();
        assert_eq!(err, "mem.bin: tensor `a.weight` has shape [2, 3], the model expects [3, 2]");
    }

    #[test]
    fn damaged_files_are_errors_naming_the_cause() {
        let good = encode(&sample()).unwrap();
        let load = |b: &[u8]| Weights::from_bytes(b, Path::new("w.bin")).unwrap_err();

        assert!(matches!(load(&good[..good.len() - 64]), WeightsError::Truncated { .. }));
        assert!(matches!(load(&good[..10]), WeightsError::Truncated { expected: 64, got: 10, .. }));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(load(&bad), WeightsError::BadMagic { .. }));
        let mut bad = good.clone();
        bad[8] = 9;
        assert!(matches!(load(&bad), WeightsError::Version { found: 9, .. }));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        let err = load(&bad).to_string();
        assert!(err.contains("CRC-32 mismatch") && err.contains("sonoflow model fetch"), "{err}");
        let mut long = good.clone();
        long.extend_from_slice(&[0; 64]);
        assert!(load(&long).to_string().contains("bytes after the end of the data"));
    }

    #[test]
    fn bad_tensors_are_refused_when_encoding() {
        let err = encode(&[t("x", &[2, 2], &[1.0])]).unwrap_err().to_string();
        assert_eq!(err, "tensor `x`: 1 values do not fill shape [2, 2]");
        assert!(encode(&[t("x", &[1], &[1.0]), t("x", &[1], &[1.0])]).is_err());
    }

    #[test]
    fn missing_file_says_how_to_get_it() {
        let err = Weights::load("/nonexistent/litemedsam.bin").unwrap_err().to_string();
        assert!(err.contains("run `sonoflow model fetch`"), "{err}");
    }
}
