//! Pre-processing of the official LiteMedSAM inference, bit-exact: a Gray8 frame is resized with
//! OpenCV's `INTER_AREA` on uint8 so its longest side is 256 px, min-max normalised over the
//! resized pixels, and zero-padded bottom/right into the 256 x 256 float32 plane the encoder takes
//! (its three input channels are this plane repeated).
//!
//! Bit-exactness matters: one grey level is about 0.004 at the encoder input, and on the PLUS bone
//! fixture moving 0.1 % of the resized pixels by one level moves the logits by 70 times their
//! tolerance. So the resize reproduces OpenCV 5.0's arithmetic, not just its idea (see
//! `tools/reference/README.md`, section 1, and `cv2_inter_area` in `tools/reference/numpy_model.py`,
//! with one correction: the scale is OpenCV's `1 / (n_dst / n_src)`, see `opencv_scale`):
//! - copy when the size does not change;
//! - integer shrink factors: block sums, `(sum + 2) >> 2` for 2 x 2, otherwise
//!   `round_half_even(f32(sum) * f32(1 / area))`;
//! - other shrinks: separable weight tables (float64 weights stored as float32), float32
//!   accumulation in table order, round half even;
//! - enlargement: bilinear with "area" coefficients in 11-bit fixed point and OpenCV's SIMD
//!   vertical pass (`(r >> 4) * c >> 16`).
//!
//! Cost: one pass over the frame plus one over the 256 x 256 plane, about 0.8 ms for an 820 x 616
//! frame (area shrink), 0.6 ms for 1024 x 768 (4 x 4 blocks) and 0.2 ms for 192 x 250 (enlarge) on
//! one core. The plan (weight tables) is rebuilt only when the frame size changes. Nothing is
//! allocated per frame: every buffer is sized in [`Preprocessor::new`].

use super::letterbox::Letterbox;

const SIDE: usize = Letterbox::SIDE;
const PLANE: usize = SIDE * SIDE;

/// Why a frame cannot be pre-processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    #[error("frame of {width} x {height} px is empty")]
    EmptyFrame { width: usize, height: usize },
    #[error("frame of {width} x {height} px is too elongated: its short side would resize to 0 px")]
    DegenerateAspect { width: usize, height: usize },
    #[error("frame of {width} x {height} px exceeds the configured maximum of {max_width} x {max_height} px")]
    FrameTooLarge { width: usize, height: usize, max_width: usize, max_height: usize },
    #[error("frame of {width} x {height} px needs {expected} bytes of Gray8 pixels, got {got}")]
    FrameLength { width: usize, height: usize, expected: usize, got: usize },
    #[error("the model input plane must hold {expected} values (256 x 256), got {got}")]
    OutputLength { expected: usize, got: usize },
}

/// Shrinking weights of one axis (OpenCV's `computeResizeAreaTab`): for destination `d`, the
/// entries `starts[d]..starts[d + 1]` of `entries` are (source index, weight), in the order
/// OpenCV accumulates them — the order fixes the float32 rounding.
#[derive(Debug, Default)]
struct AreaTable {
    starts: Vec<usize>,
    entries: Vec<(usize, f32)>,
}

impl AreaTable {
    fn with_capacity(n_src_max: usize) -> AreaTable {
        // Each destination holds at most ceil(s) + 1 entries; summed over the destinations that is
        // at most n_src + 2 * n_dst.
        AreaTable { starts: Vec::with_capacity(SIDE + 1), entries: Vec::with_capacity(n_src_max + 2 * SIDE + 2) }
    }

    fn build(&mut self, n_src: usize, n_dst: usize) {
        self.starts.clear();
        self.entries.clear();
        let n = n_src as f64;
        let s = opencv_scale(n_src, n_dst);
        for d in 0..n_dst {
            self.starts.push(self.entries.len());
            let f1 = d as f64 * s;
            let f2 = f1 + s;
            let cell = s.min(n - f1);
            let i2 = f2.floor().min(n - 1.0);
            let i1 = f1.ceil().min(i2);
            // The 1e-3 thresholds are OpenCV's: slivers thinner than that are dropped, not weighted.
            if i1 - f1 > 1e-3 {
                self.entries.push((i1 as usize - 1, ((i1 - f1) / cell) as f32));
            }
            for i in i1 as usize..i2 as usize {
                self.entries.push((i, (1.0 / cell) as f32));
            }
            if f2 - i2 > 1e-3 {
                self.entries.push((i2 as usize, ((f2 - i2).min(1.0).min(cell) / cell) as f32));
            }
        }
        self.starts.push(self.entries.len());
    }

    fn of(&self, d: usize) -> &[(usize, f32)] {
        &self.entries[self.starts[d]..self.starts[d + 1]]
    }
}

/// Source pixels per destination pixel, as OpenCV computes it: `1 / (n_dst / n_src)`, not
/// `n_src / n_dst`. The two differ in the last bit for some sizes, and where `d * s` should be an
/// integer that bit moves `floor(d * s)` to the neighbouring source pixel: with `n_src / n_dst`,
/// 12 of 600 random enlargements (e.g. 166 x 126 → 256 x 194) come out with a whole row or
/// column from the wrong source pixel.
fn opencv_scale(n_src: usize, n_dst: usize) -> f64 {
    1.0 / (n_dst as f64 / n_src as f64)
}

/// Enlarging taps of one axis: source index `i` (the second tap is `min(i + 1, n_src - 1)`) and
/// the two 11-bit fixed-point coefficients.
#[derive(Debug, Default)]
struct LinearTaps {
    taps: Vec<(usize, [i32; 2])>,
}

impl LinearTaps {
    fn build(&mut self, n_src: usize, n_dst: usize) {
        self.taps.clear();
        let inv = n_dst as f64 / n_src as f64; // destination pixels per source pixel
        let s = opencv_scale(n_src, n_dst);
        for d in 0..n_dst {
            let mut i = (d as f64 * s).floor() as usize;
            // OpenCV's "area" flavour of the bilinear coefficient: the fraction of destination
            // pixel d that falls beyond source pixel i, computed in float64 and kept as float32.
            let mut f = ((d + 1) as f64 - (i + 1) as f64 * inv) as f32;
            f = if f <= 0.0 { 0.0 } else { f - f.floor() };
            if i >= n_src - 1 {
                i = n_src - 1;
                f = 0.0;
            }
            let c0 = ((1.0 - f) * 2048.0).round_ties_even() as i32;
            let c1 = (f * 2048.0).round_ties_even() as i32;
            self.taps.push((i, [c0, c1]));
        }
    }
}

/// Which of OpenCV's `INTER_AREA` algorithms a frame size takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResizePath {
    Copy,
    /// Integer factors (`resizeAreaFast`): source pixels per destination pixel, per axis.
    Blocks {
        sx: usize,
        sy: usize,
    },
    /// Non-integer shrink (`resizeArea`), with the weight tables.
    Area,
    /// Enlargement (bilinear with area coefficients), with the taps.
    Enlarge,
}

/// The resize plan of one frame size; rebuilt when the size changes.
#[derive(Debug)]
struct Plan {
    letterbox: Letterbox,
    path: ResizePath,
    x_area: AreaTable,
    y_area: AreaTable,
    x_taps: LinearTaps,
    y_taps: LinearTaps,
}

impl Plan {
    fn with_capacity(max_width: usize, max_height: usize) -> Plan {
        let placeholder =
            Letterbox { frame_width: 0, frame_height: 0, resized_width: 0, resized_height: 0, scale: 0.0 };
        Plan {
            letterbox: placeholder,
            path: ResizePath::Copy,
            x_area: AreaTable::with_capacity(max_width),
            y_area: AreaTable::with_capacity(max_height),
            x_taps: LinearTaps { taps: Vec::with_capacity(SIDE) },
            y_taps: LinearTaps { taps: Vec::with_capacity(SIDE) },
        }
    }

    fn build(&mut self, letterbox: Letterbox) {
        let (w, h) = (letterbox.frame_width, letterbox.frame_height);
        let (nw, nh) = (letterbox.resized_width, letterbox.resized_height);
        self.letterbox = letterbox;
        let sx = opencv_scale(w, nw);
        let sy = opencv_scale(h, nh);
        let integer = |s: f64| (s - s.round()).abs() < f64::EPSILON;
        self.path = if (w, h) == (nw, nh) {
            ResizePath::Copy
        } else if sx >= 1.0 && sy >= 1.0 {
            if integer(sx) && integer(sy) {
                ResizePath::Blocks { sx: w / nw, sy: h / nh }
            } else {
                self.x_area.build(w, nw);
                self.y_area.build(h, nh);
                ResizePath::Area
            }
        } else {
            // The letterbox keeps the aspect ratio, so a frame never shrinks on one axis and grows
            // on the other: here both factors are <= 1 (one may be exactly 1).
            self.x_taps.build(w, nw);
            self.y_taps.build(h, nh);
            ResizePath::Enlarge
        };
    }
}

/// Gray8 frame → the LiteMedSAM model input plane. Holds every buffer, sized once.
#[derive(Debug)]
pub struct Preprocessor {
    max_width: usize,
    max_height: usize,
    plan: Plan,
    /// The last resize, zero-padded to 256 x 256 (row stride 256).
    resized: Vec<u8>,
    /// Float32 accumulators of the shrink path (one destination row).
    acc: Vec<f32>,
    /// Horizontal fixed-point rows of the enlarge path (the two source rows of one output row).
    rows: [Vec<i32>; 2],
}

impl Preprocessor {
    /// Allocates every buffer for frames up to `max_width` x `max_height`.
    pub fn new(max_width: usize, max_height: usize) -> Preprocessor {
        Preprocessor {
            max_width,
            max_height,
            plan: Plan::with_capacity(max_width, max_height),
            resized: vec![0; PLANE],
            acc: vec![0.0; SIDE],
            rows: [vec![0; SIDE], vec![0; SIDE]],
        }
    }

    /// Gray8 frame (row-major, `width` x `height`) → the model input plane: 256 x 256 f32, min-max
    /// normalised over the resized pixels, zero-padded bottom/right. (The model's three input
    /// channels are this plane repeated.) Allocation-free.
    pub fn run(
        &mut self,
        frame: &[u8],
        width: usize,
        height: usize,
        out: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        let letterbox = Letterbox::for_frame(width, height)?;
        if width > self.max_width || height > self.max_height {
            return Err(PreprocessError::FrameTooLarge {
                width,
                height,
                max_width: self.max_width,
                max_height: self.max_height,
            });
        }
        let expected = width.saturating_mul(height);
        if frame.len() != expected {
            return Err(PreprocessError::FrameLength { width, height, expected, got: frame.len() });
        }
        if out.len() != PLANE {
            return Err(PreprocessError::OutputLength { expected: PLANE, got: out.len() });
        }
        if self.plan.letterbox != letterbox {
            self.plan.build(letterbox);
        }
        self.resize(frame);
        normalise(&self.resized, letterbox.resized_width, letterbox.resized_height, out);
        Ok(letterbox)
    }

    /// The resized uint8 image of the last run, zero-padded to 256 x 256 (for tests and debugging).
    pub fn resized(&self) -> &[u8] {
        &self.resized
    }

    /// Resizes `frame` into `self.resized` along the current plan and zeroes the padding.
    fn resize(&mut self, frame: &[u8]) {
        let lb = self.plan.letterbox;
        let (w, h) = (lb.frame_width, lb.frame_height);
        let (nw, nh) = (lb.resized_width, lb.resized_height);
        let out = &mut self.resized;
        match self.plan.path {
            ResizePath::Copy => {
                for y in 0..nh {
                    out[y * SIDE..][..nw].copy_from_slice(&frame[y * w..][..w]);
                }
            }
            ResizePath::Blocks { sx, sy } => {
                // OpenCV's 2 x 2 kernel rounds in integers (ties up); every other factor scales
                // the integer sum by a float32 reciprocal and rounds half to even.
                let two_by_two = sx == 2 && sy == 2;
                let inv_area = (1.0 / (sx * sy) as f64) as f32;
                for dy in 0..nh {
                    for dx in 0..nw {
                        let mut sum: u64 = 0;
                        for row in frame[dy * sy * w..].chunks_exact(w).take(sy) {
                            sum += row[dx * sx..][..sx].iter().map(|&p| u64::from(p)).sum::<u64>();
                        }
                        out[dy * SIDE + dx] =
                            if two_by_two { ((sum + 2) >> 2) as u8 } else { saturate_u8(sum as f32 * inv_area) };
                    }
                }
            }
            ResizePath::Area => {
                let (xt, yt) = (&self.plan.x_area, &self.plan.y_area);
                let acc = &mut self.acc[..nw];
                for dy in 0..nh {
                    acc.fill(0.0);
                    for &(sy, wy) in yt.of(dy) {
                        let row = &frame[sy * w..][..w];
                        for (dx, a) in acc.iter_mut().enumerate() {
                            // Sums start at 0.0 and add each product in table order: the same
                            // float32 roundings as OpenCV. (Rust never fuses a * b + c into an FMA.)
                            let mut horizontal = 0.0f32;
                            for &(sx, wx) in xt.of(dx) {
                                horizontal += f32::from(row[sx]) * wx;
                            }
                            *a += wy * horizontal;
                        }
                    }
                    for (o, &a) in out[dy * SIDE..][..nw].iter_mut().zip(acc.iter()) {
                        *o = saturate_u8(a);
                    }
                }
            }
            ResizePath::Enlarge => {
                let (xt, yt) = (&self.plan.x_taps.taps, &self.plan.y_taps.taps);
                let [r0, r1] = &mut self.rows;
                for dy in 0..nh {
                    let (i, [c0, c1]) = yt[dy];
                    horizontal_taps(&frame[i * w..][..w], xt, &mut r0[..nw]);
                    horizontal_taps(&frame[(i + 1).min(h - 1) * w..][..w], xt, &mut r1[..nw]);
                    for ((o, &a), &b) in out[dy * SIDE..][..nw].iter_mut().zip(r0.iter()).zip(r1.iter()) {
                        // OpenCV's SIMD vertical pass (used for every pixel): 16-bit high halves
                        // of the rows shifted right by 4. The exact (a*c0 + b*c1 + 2^21) >> 22 is
                        // off by one grey level on about 1 pixel in 8.
                        let v = (((a >> 4) * c0) >> 16) + (((b >> 4) * c1) >> 16);
                        *o = ((v + 2) >> 2).clamp(0, 255) as u8;
                    }
                }
            }
        }
        for y in 0..nh {
            out[y * SIDE + nw..(y + 1) * SIDE].fill(0);
        }
        out[nh * SIDE..].fill(0);
    }
}

/// One source row through the horizontal enlarge taps (11-bit fixed point, exact in i32).
fn horizontal_taps(row: &[u8], taps: &[(usize, [i32; 2])], out: &mut [i32]) {
    let last = row.len() - 1;
    for (o, &(i, [c0, c1])) in out.iter_mut().zip(taps) {
        *o = i32::from(row[i]) * c0 + i32::from(row[(i + 1).min(last)]) * c1;
    }
}

/// OpenCV's `saturate_cast<uchar>(float)`: round half to even, then clamp.
fn saturate_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// Min-max over the `nw` x `nh` resized pixels, written into the 256 x 256 plane with zero padding.
///
/// The reference divides in float64 and casts to float32; `(v - min) as f32 / (max - min) as f32`
/// gives the same bits for every pair of uint8 values, so a 256-entry table covers it.
fn normalise(resized: &[u8], nw: usize, nh: usize, out: &mut [f32]) {
    let (mut lo, mut hi) = (u8::MAX, u8::MIN);
    for row in resized.chunks_exact(SIDE).take(nh) {
        for &v in &row[..nw] {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let mut table = [0.0f32; 256];
    // A constant image: the reference divides 0 by 1e-8, giving all zeros.
    if hi > lo {
        let range = f32::from(hi - lo);
        for v in lo..=hi {
            table[usize::from(v)] = f32::from(v - lo) / range;
        }
    }
    for (y, (out_row, row)) in out.chunks_exact_mut(SIDE).zip(resized.chunks_exact(SIDE)).enumerate() {
        if y < nh {
            for (o, &v) in out_row[..nw].iter_mut().zip(&row[..nw]) {
                *o = table[usize::from(v)];
            }
            out_row[nw..].fill(0.0);
        } else {
            out_row.fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one frame and returns the resized pixels (unpadded) and the plane.
    fn run(frame: &[u8], w: usize, h: usize) -> (Vec<u8>, Vec<f32>, Letterbox) {
        let mut p = Preprocessor::new(w, h);
        let mut plane = vec![f32::NAN; PLANE];
        let lb = p.run(frame, w, h, &mut plane).unwrap();
        let resized = p
            .resized()
            .chunks_exact(SIDE)
            .take(lb.resized_height)
            .flat_map(|r| &r[..lb.resized_width])
            .copied()
            .collect();
        (resized, plane, lb)
    }

    #[test]
    fn two_by_two_blocks_round_ties_up() {
        // 512 x 2 → 256 x 1, 2 x 2 blocks. Sums 2 (0.5), 6 (1.5), 10 (2.5), 1 (0.25), 3 (0.75), 1020.
        let mut frame = vec![0u8; 512 * 2];
        let blocks: [[u8; 4]; 6] = [[0, 1, 1, 0], [1, 2, 2, 1], [2, 3, 3, 2], [1, 0, 0, 0], [1, 1, 1, 0], [255; 4]];
        for (b, v) in blocks.iter().enumerate() {
            frame[2 * b] = v[0];
            frame[2 * b + 1] = v[1];
            frame[512 + 2 * b] = v[2];
            frame[512 + 2 * b + 1] = v[3];
        }
        let (resized, _, lb) = run(&frame, 512, 2);
        assert_eq!((lb.resized_width, lb.resized_height), (256, 1));
        // (sum + 2) >> 2: 0.5 → 1, 1.5 → 2, 2.5 → 3 (half up, not half even), 0.25 → 0, 0.75 → 1.
        assert_eq!(&resized[..7], &[1, 2, 3, 0, 1, 255, 0]);
    }

    #[test]
    fn integer_blocks_round_half_even() {
        // 512 x 1 → 256 x 1: 2 x 1 blocks, not the 2 x 2 kernel: f32(sum) * 0.5, half to even.
        let mut frame = vec![0u8; 512];
        frame[..8].copy_from_slice(&[0, 1, 1, 2, 2, 3, 255, 255]);
        let (resized, _, _) = run(&frame, 512, 1);
        assert_eq!(&resized[..5], &[0, 2, 2, 255, 0]); // 0.5 → 0, 1.5 → 2, 2.5 → 2
        // 768 x 3 → 256 x 1: 3 x 3 blocks, sums times f32(1 / 9).
        let mut frame = vec![0u8; 768 * 3];
        frame[..3].copy_from_slice(&[1, 2, 2]); // sum 5 + 0 + 0 → 0.556 → 1
        frame[768 + 3..768 + 6].copy_from_slice(&[4, 4, 5]); // 13 → 1.44 → 1
        frame[2 * 768 + 6..2 * 768 + 9].copy_from_slice(&[9, 9, 9]); // 27 → 3
        let (resized, _, lb) = run(&frame, 768, 3);
        assert_eq!((lb.resized_width, lb.resized_height), (256, 1));
        assert_eq!(&resized[..4], &[1, 1, 3, 0]);
    }

    #[test]
    fn area_shrink_weights_and_rounding() {
        // 640 x 5 → 256 x 2: s = 2.5 on both axes. x table: d0 = {0: 0.4, 1: 0.4, 2: 0.2},
        // d1 = {2: 0.2, 3: 0.4, 4: 0.4}; y the same over rows 0..4.
        let mut t = AreaTable::default();
        t.build(5, 2);
        let w = |v: f64| v as f32;
        assert_eq!(t.of(0), &[(0, w(0.4)), (1, w(0.4)), (2, w(0.2))]);
        assert_eq!(t.of(1), &[(2, w(0.5 / 2.5)), (3, w(0.4)), (4, w(0.4))]);
        // A 1.25 factor (320 → 256): d1 covers [1.25, 2.5): 0.75 of pixel 1 and 0.5 of pixel 2.
        t.build(320, 256);
        assert_eq!(t.of(1), &[(1, w(0.75 / 1.25)), (2, w(0.5 / 1.25))]);
        assert_eq!(t.of(3), &[(3, w(0.25 / 1.25)), (4, w(1.0 / 1.25))]);

        // Pixels: 100 everywhere except 200 in column 2 and 255 in column 7 of every row.
        // d0 = 0.4 * 100 + 0.4 * 100 + 0.2 * 200 = 120; d1 = 0.2 * 200 + 0.4 * 100 + 0.4 * 100
        // = 120; d2 = 0.4 * 100 + 0.4 * 100 + 0.2 * 255 = 131 and d3 likewise (column 7 is shared);
        // the rows are alike and their weights 0.4 + 0.4 + 0.2 sum to 1 (to float32 rounding).
        let mut frame = vec![100u8; 640 * 5];
        for y in 0..5 {
            frame[y * 640 + 2] = 200;
            frame[y * 640 + 7] = 255;
        }
        let (resized, _, lb) = run(&frame, 640, 5);
        assert_eq!((lb.resized_width, lb.resized_height), (256, 2));
        assert_eq!(&resized[..5], &[120, 120, 131, 131, 100]);
        assert_eq!(&resized[256..261], &[120, 120, 131, 131, 100]);
        // Rounding to nearest: 1 * 0.4 + 1 * 0.4 + 3 * 0.2 = 1.4 → 1; 3 * 0.2 = 0.6 → 1;
        // 3 * 0.4 + 1 * 0.4 = 1.6 → 2.
        let mut frame = vec![0u8; 640 * 5];
        for y in 0..5 {
            frame[y * 640..y * 640 + 8].copy_from_slice(&[1, 1, 3, 0, 0, 3, 1, 0]);
        }
        let (resized, _, _) = run(&frame, 640, 5);
        assert_eq!(&resized[..3], &[1, 1, 2]);
    }

    #[test]
    fn enlarge_coefficients() {
        // 128 → 256 (factor 2): f = (d + 1) - (i + 1) * 2 is never positive, so OpenCV's area
        // flavour of bilinear replicates pixels here instead of blending them.
        let mut t = LinearTaps::default();
        t.build(128, 256);
        assert_eq!(t.taps[0], (0, [2048, 0])); // f = 1 - 2 < 0 → 0
        assert_eq!(t.taps[1], (0, [2048, 0])); // f = 2 - 2 = 0
        assert_eq!(t.taps[2], (1, [2048, 0]));
        assert_eq!(t.taps[255], (127, [2048, 0])); // last source pixel: clamped
        // 3 → 4: s = 0.75, inv = 4/3. d = 1: i = 0, f = 2 - 4/3 = 0.667 → (683, 1365).
        t.build(3, 4);
        assert_eq!(t.taps, vec![(0, [2048, 0]), (0, [683, 1365]), (1, [1365, 683]), (2, [2048, 0])]);
        // 126 → 194 (a 166 x 126 frame): 97 * 126 / 194 is exactly 63, but OpenCV's scale
        // 1 / (194 / 126) gives 62.999999999999993, so destination row 97 is source row 62.
        t.build(126, 194);
        assert_eq!(t.taps[97], (62, [2048, 0]));
    }

    #[test]
    fn enlarge_uses_opencvs_scale() {
        // Rows holding their own index: cv2 gives rows 95..99 = 61, 62, 62, 63, 64.
        let frame: Vec<u8> = (0..126u8).flat_map(|y| [y; 166]).collect();
        let (resized, _, lb) = run(&frame, 166, 126);
        assert_eq!((lb.resized_width, lb.resized_height), (256, 194));
        assert_eq!([95, 96, 97, 98, 99].map(|y| resized[y * 256]), [61, 62, 62, 63, 64]);
    }

    #[test]
    fn enlarge_pixels() {
        // 192 x 3 → 256 x 4 (s = 0.75 on both axes): the taps above on both axes.
        // Source rows 0, 1, 2 constant 0, 90, 180 in columns 0..3.
        let mut frame = vec![0u8; 192 * 3];
        for (y, v) in [0u8, 90, 180].into_iter().enumerate() {
            frame[y * 192..(y + 1) * 192].fill(v);
        }
        let (resized, _, lb) = run(&frame, 192, 3);
        assert_eq!((lb.resized_width, lb.resized_height), (256, 4));
        // Rows are constant, so every horizontal value is v * 2048. Row 1 (taps 0, 1, 683, 1365):
        // ((0 >> 4) * 683 >> 16) + ((90 * 2048 >> 4) * 1365 >> 16) = 0 + 239 (11520 * 1365 / 65536
        // = 239.9 floored), (239 + 2) >> 2 = 60: the exact 90 * 2/3 = 60.
        // Row 2 (taps 1, 2, 1365, 683): (11520 * 1365 >> 16) + (23040 * 683 >> 16) = 239 + 240
        // = 479 → 120.
        assert_eq!(resized[0], 0);
        assert_eq!(resized[256], 60);
        assert_eq!(resized[2 * 256], 120);
        assert_eq!(resized[3 * 256], 180);
        // Where OpenCV's truncating vertical pass and exact rounding differ: rows 3 and 2 mixed
        // 1365 : 683 are 2.67 (exact rounding: 3), but (384 * 1365 >> 16) + (256 * 683 >> 16)
        // = 7 + 2 = 9 → (9 + 2) >> 2 = 2. OpenCV gives 2.
        let mut frame = vec![3u8; 192 * 3];
        frame[2 * 192..].fill(2);
        let (resized, _, _) = run(&frame, 192, 3);
        assert_eq!(resized[2 * 256], 2);
    }

    #[test]
    fn copy_min_max_and_padding() {
        // 4 x 256 is already 256 on its long side: copied, padded on the right.
        let frame: Vec<u8> = (0..4 * 256).map(|i| 10 + (i % 4) as u8 * 10).collect(); // 10, 20, 30, 40
        let (resized, plane, lb) = run(&frame, 4, 256);
        assert!(lb.is_identity());
        assert_eq!(resized, frame);
        assert_eq!(&plane[..6], &[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 0.0, 0.0]);
        assert_eq!(plane[255 * 256 + 3], 1.0);
    }

    #[test]
    fn constant_image_is_all_zeros() {
        let (_, plane, _) = run(&vec![77u8; 300 * 200], 300, 200);
        assert!(plane.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let mut p = Preprocessor::new(320, 240);
        let mut plane = vec![0.0; PLANE];
        let frame = vec![0u8; 320 * 240];
        assert_eq!(p.run(&frame, 0, 240, &mut plane), Err(PreprocessError::EmptyFrame { width: 0, height: 240 }));
        assert!(matches!(p.run(&frame, 321, 240, &mut plane), Err(PreprocessError::FrameTooLarge { .. })));
        assert!(matches!(p.run(&frame, 320, 239, &mut plane), Err(PreprocessError::FrameLength { .. })));
        assert!(matches!(p.run(&frame, 320, 240, &mut plane[1..]), Err(PreprocessError::OutputLength { .. })));
        assert!(p.run(&frame, 320, 240, &mut plane).is_ok());
    }
}
