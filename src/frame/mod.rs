//! The unit of data that flows through the pipeline: one 2D ultrasound image with its timing,
//! tracker transforms, per-stage stamps, and the label mask with its confidence that several
//! stages read (reconstruction, haptics, recording). Data only its own stage and its readers know
//! travels as typed [`Attachments`].
//!
//! Pixel memory comes from a [`PixelPool`] sized once at start-up; a [`PooledPixels`] returns its
//! buffer to the pool when dropped, so a dropped frame (a queue overflow, a skipped frame) frees
//! its memory without touching the allocator. Transform names are shared `Arc<str>`s interned by
//! the source, so copying a frame's transforms never allocates either.

use std::fmt;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

mod attachments;
pub use attachments::{Attachment, AttachmentPool, Attachments, MAX_ATTACHMENTS, TooManyAttachments};

/// How many named transforms one frame can carry (PLUS files seen in practice carry 3–6).
pub const MAX_TRANSFORMS: usize = 16;
/// How many stages can stamp one frame (capture + the five processing stages + spares for tests).
pub const MAX_STAGES: usize = 12;

/// Grey pixel formats sonoflow accepts. Colour input is converted to grey by the capture stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    Gray8,
    Gray16,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            PixelFormat::Gray16 => 2,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Gray8 => "gray8",
            PixelFormat::Gray16 => "gray16",
        })
    }
}

/// Owned pixel storage of one format. u16 pixels live in a `Vec<u16>` so they are always aligned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelData {
    Gray8(Vec<u8>),
    Gray16(Vec<u16>),
}

impl PixelData {
    pub fn zeroed(format: PixelFormat, len: usize) -> Self {
        match format {
            PixelFormat::Gray8 => PixelData::Gray8(vec![0; len]),
            PixelFormat::Gray16 => PixelData::Gray16(vec![0; len]),
        }
    }

    pub fn format(&self) -> PixelFormat {
        match self {
            PixelData::Gray8(_) => PixelFormat::Gray8,
            PixelData::Gray16(_) => PixelFormat::Gray16,
        }
    }

    /// Number of pixels held.
    pub fn len(&self) -> usize {
        match self {
            PixelData::Gray8(v) => v.len(),
            PixelData::Gray16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` pixels as little-endian bytes (the on-disk order of MetaImage and NRRD).
    /// Borrowed for u8; u16 is converted into `scratch`, which keeps its capacity between calls.
    /// `n` must not exceed `len()`.
    pub fn le_bytes<'a>(&'a self, n: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            PixelData::Gray8(v) => &v[..n],
            PixelData::Gray16(v) => {
                scratch.clear();
                scratch.extend(v[..n].iter().flat_map(|p| p.to_le_bytes()));
                scratch
            }
        }
    }

    /// Copies the first `n` pixels of `src`; false when formats differ or either is shorter.
    pub fn copy_prefix_from(&mut self, src: &PixelData, n: usize) -> bool {
        match (self, src) {
            (PixelData::Gray8(d), PixelData::Gray8(s)) if d.len() >= n && s.len() >= n => {
                d[..n].copy_from_slice(&s[..n])
            }
            (PixelData::Gray16(d), PixelData::Gray16(s)) if d.len() >= n && s.len() >= n => {
                d[..n].copy_from_slice(&s[..n])
            }
            _ => return false,
        }
        true
    }

    /// Fills the first pixels from little-endian bytes (as many as `bytes` holds, which must not
    /// be more than `len()`).
    pub fn copy_from_le_bytes(&mut self, bytes: &[u8]) {
        match self {
            PixelData::Gray8(v) => v[..bytes.len()].copy_from_slice(bytes),
            PixelData::Gray16(v) => {
                for (p, b) in v.iter_mut().zip(bytes.chunks_exact(2)) {
                    *p = u16::from_le_bytes([b[0], b[1]]);
                }
            }
        }
    }
}

/// A fixed set of buffers made once, shared by every thread that holds frames: acquire and
/// release are lock-free and never allocate. Pixels ([`PixelPool`]) and the stages' per-frame data
/// ([`AttachmentPool`]) both live in one.
pub struct Pool<T> {
    free: Arc<ArrayQueue<T>>,
    buffers: usize,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool { free: self.free.clone(), buffers: self.buffers }
    }
}

impl<T> Pool<T> {
    /// `buffers` buffers made by `make`, now and never again.
    pub fn new(buffers: usize, mut make: impl FnMut() -> T) -> Self {
        let free = Arc::new(ArrayQueue::new(buffers.max(1)));
        for _ in 0..buffers {
            // Cannot fail: the queue was made with room for exactly this many.
            let _ = free.push(make());
        }
        Pool { free, buffers }
    }

    /// Takes a free buffer, or `None` when every buffer is in flight (the caller decides whether
    /// to wait or to drop the frame and count it).
    pub fn try_acquire(&self) -> Option<Pooled<T>> {
        self.free.pop().map(|data| Pooled { data: Some(data), home: self.free.clone() })
    }

    /// Total number of buffers the pool owns.
    pub fn buffers(&self) -> usize {
        self.buffers
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.free.len()
    }
}

/// Equally sized pixel buffers of one format.
#[derive(Clone)]
pub struct PixelPool {
    pool: Pool<PixelData>,
    format: PixelFormat,
    capacity_pixels: usize,
}

impl PixelPool {
    /// Allocates `buffers` buffers of `capacity_pixels` pixels each, now and never again.
    pub fn new(format: PixelFormat, capacity_pixels: usize, buffers: usize) -> Self {
        let pool = Pool::new(buffers, || PixelData::zeroed(format, capacity_pixels));
        PixelPool { pool, format, capacity_pixels }
    }

    /// See [`Pool::try_acquire`].
    pub fn try_acquire(&self) -> Option<PooledPixels> {
        self.pool.try_acquire()
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }

    pub fn capacity_pixels(&self) -> usize {
        self.capacity_pixels
    }

    /// Total number of buffers the pool owns.
    pub fn buffers(&self) -> usize {
        self.pool.buffers()
    }

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.pool.available()
    }
}

impl fmt::Debug for PixelPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PixelPool")
            .field("format", &self.format)
            .field("capacity_pixels", &self.capacity_pixels)
            .field("buffers", &self.buffers())
            .field("available", &self.available())
            .finish()
    }
}

/// A buffer on loan from a pool; dropping it gives the buffer back (no allocator involved).
pub struct Pooled<T> {
    data: Option<T>,
    home: Arc<ArrayQueue<T>>,
}

/// A pixel buffer on loan from a [`PixelPool`].
pub type PooledPixels = Pooled<PixelData>;

impl<T> Pooled<T> {
    pub fn data(&self) -> &T {
        // Only `drop` takes the data out.
        self.data.as_ref().expect("pooled buffer present until drop")
    }

    pub fn data_mut(&mut self) -> &mut T {
        self.data.as_mut().expect("pooled buffer present until drop")
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            // The queue has one slot per buffer the pool made, so there is always room.
            let _ = self.home.push(data);
        }
    }
}

impl fmt::Debug for PooledPixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PooledPixels({} x {})", self.data().len(), self.data().format())
    }
}

/// A 2D grey image whose pixels live in a pooled buffer that may be larger than the image.
#[derive(Debug)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// Size of one pixel in mm, (column, row).
    pub spacing_mm: [f64; 2],
    pub pixels: PooledPixels,
}

impl Image {
    pub fn pixel_count(&self) -> usize {
        self.width * self.height
    }

    /// The image's pixels as u8 (None when the image is 16-bit).
    pub fn as_u8(&self) -> Option<&[u8]> {
        match self.pixels.data() {
            PixelData::Gray8(v) => Some(&v[..self.pixel_count()]),
            PixelData::Gray16(_) => None,
        }
    }

    /// The image's pixels as u16 (None when the image is 8-bit).
    pub fn as_u16(&self) -> Option<&[u16]> {
        match self.pixels.data() {
            PixelData::Gray16(v) => Some(&v[..self.pixel_count()]),
            PixelData::Gray8(_) => None,
        }
    }

    pub fn format(&self) -> PixelFormat {
        self.pixels.data().format()
    }
}

/// Whether a tracker could see the tool when the frame was taken (PLUS `...TransformStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TransformStatus {
    Ok,
    Invalid,
}

impl TransformStatus {
    pub fn as_plus_str(self) -> &'static str {
        match self {
            TransformStatus::Ok => "OK",
            TransformStatus::Invalid => "INVALID",
        }
    }
}

/// A rigid (or calibration) 4x4 homogeneous matrix, row-major as PLUS writes it.
pub type Matrix4 = [f64; 16];

pub const IDENTITY: Matrix4 = [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.];

/// One tracked transform, e.g. `ProbeToTracker` (the name never carries the `Transform` suffix
/// that PLUS appends in files).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTransform {
    pub name: Arc<str>,
    pub matrix: Matrix4,
    pub status: TransformStatus,
}

/// The transforms of one frame, stored inline so frames never allocate for them.
#[derive(Debug, Clone, Default)]
pub struct TransformSet {
    items: [Option<NamedTransform>; MAX_TRANSFORMS],
    len: usize,
}

/// Returned when a frame already carries [`MAX_TRANSFORMS`] transforms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frame carries at most {MAX_TRANSFORMS} transforms")]
pub struct TooManyTransforms;

impl TransformSet {
    /// Sets `name` (replacing an existing entry of that name).
    pub fn set(&mut self, name: &Arc<str>, matrix: Matrix4, status: TransformStatus) -> Result<(), TooManyTransforms> {
        let entry = NamedTransform { name: name.clone(), matrix, status };
        if let Some(slot) = self.items[..self.len].iter_mut().find(|t| t.as_ref().is_some_and(|t| t.name == *name)) {
            *slot = Some(entry);
            return Ok(());
        }
        if self.len == MAX_TRANSFORMS {
            return Err(TooManyTransforms);
        }
        self.items[self.len] = Some(entry);
        self.len += 1;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&NamedTransform> {
        self.iter().find(|t| &*t.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &NamedTransform> {
        self.items[..self.len].iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        for slot in &mut self.items[..self.len] {
            *slot = None;
        }
        self.len = 0;
    }
}

impl PartialEq for TransformSet {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// Start and end of one stage's work on a frame, in ns of the pipeline clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageStamp {
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Per-stage stamps, indexed by the stage's position in the pipeline. The runtime writes them;
/// stages never do, so latency is measured in exactly one place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageStamps {
    stamps: [StageStamp; MAX_STAGES],
}

impl StageStamps {
    pub fn get(&self, stage: usize) -> StageStamp {
        self.stamps.get(stage).copied().unwrap_or_default()
    }

    pub fn set_start(&mut self, stage: usize, ns: u64) {
        if let Some(s) = self.stamps.get_mut(stage) {
            s.start_ns = ns;
        }
    }

    pub fn set_end(&mut self, stage: usize, ns: u64) {
        if let Some(s) = self.stamps.get_mut(stage) {
            s.end_ns = ns;
        }
    }
}

/// One ultrasound frame in flight.
#[derive(Debug)]
pub struct Frame {
    /// Position in the stream as the capture stage saw it (gaps mean the source dropped frames).
    pub seq: u64,
    /// When the source says the image was taken, in seconds (GStreamer PTS or the recorded
    /// `Timestamp`); this is what recordings store and replays pace by.
    pub capture_time_s: f64,
    /// When sonoflow received the frame, in ns of the pipeline clock; end-to-end latency is
    /// measured from here.
    pub receive_ns: u64,
    /// False when the source flagged the image as missing (PLUS `ImageStatus = INVALID`).
    pub image_ok: bool,
    pub image: Image,
    pub transforms: TransformSet,
    /// Optional label mask of the same size as the image (0 = background), from the segmentation
    /// stages or, in simulations, the ground truth.
    pub mask: Option<PooledPixels>,
    /// How far the mask can be trusted (0–1; the segmentation's predicted IoU); None when it is
    /// not rated (ground truth, or no segmentation stage).
    pub mask_confidence: Option<f32>,
    /// Data of the stages' own types (the segment stage's logits and prompt, ...).
    pub attachments: Attachments,
    pub stamps: StageStamps,
}

impl Frame {
    /// A blank frame around a pooled buffer; the source fills in the rest.
    pub fn new(pixels: PooledPixels) -> Self {
        Frame {
            seq: 0,
            capture_time_s: 0.0,
            receive_ns: 0,
            image_ok: true,
            image: Image { width: 0, height: 0, spacing_mm: [1.0, 1.0], pixels },
            transforms: TransformSet::default(),
            mask: None,
            mask_confidence: None,
            attachments: Attachments::default(),
            stamps: StageStamps::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_buffers_return_on_drop() {
        let pool = PixelPool::new(PixelFormat::Gray8, 16, 2);
        let a = pool.try_acquire().unwrap();
        let b = pool.try_acquire().unwrap();
        assert!(pool.try_acquire().is_none());
        drop(a);
        assert_eq!(pool.available(), 1);
        let frame = Frame::new(pool.try_acquire().unwrap());
        assert_eq!(pool.available(), 0);
        drop(frame);
        drop(b);
        assert_eq!(pool.available(), 2);
    }

    #[test]
    fn transform_set_replaces_by_name_and_caps_count() {
        let mut set = TransformSet::default();
        let probe: Arc<str> = Arc::from("ProbeToTracker");
        set.set(&probe, IDENTITY, TransformStatus::Ok).unwrap();
        let mut moved = IDENTITY;
        moved[3] = 5.0;
        set.set(&probe, moved, TransformStatus::Invalid).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.get("ProbeToTracker").unwrap().matrix[3], 5.0);
        assert_eq!(set.get("ProbeToTracker").unwrap().status, TransformStatus::Invalid);
        for i in 1..MAX_TRANSFORMS {
            set.set(&Arc::from(format!("T{i}ToTracker")), IDENTITY, TransformStatus::Ok).unwrap();
        }
        assert_eq!(set.set(&Arc::from("OneTooMany"), IDENTITY, TransformStatus::Ok), Err(TooManyTransforms));
    }

    #[test]
    fn le_bytes_round_trip_u16() {
        let data = PixelData::Gray16(vec![0x0102, 0xfffe]);
        let mut scratch = Vec::new();
        let bytes = data.le_bytes(2, &mut scratch).to_vec();
        assert_eq!(bytes, vec![0x02, 0x01, 0xfe, 0xff]);
        let mut back = PixelData::zeroed(PixelFormat::Gray16, 2);
        back.copy_from_le_bytes(&bytes);
        assert_eq!(back, data);
    }
}
