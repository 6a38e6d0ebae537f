//! The grey-level volume and its accumulation buffer, and pixel insertion with PLUS's
//! compounding: a voxel's weight is counted in 1/256ths in a u16 (a whole pixel adds 256), MEAN
//! updates `v = (pixel·256 + v·acc) / (acc + 256)` in integers, truncating, and once the buffer
//! would overflow (255 pixels) the voxel moves to PLUS's fixed 255/256 recursive filter.
//!
//! Threads split the grid into z slabs, each thread walking the whole frame but writing only its
//! slab. Every voxel then sees its pixels in the same order as with one thread, so the volume is
//! identical for any thread count (PLUS's own threads race on shared voxels instead).

use crate::frame::Matrix4;

use super::grid::OutputGrid;
use super::raster::FramePlan;
use super::rows::{FLOOR_TOL, RowSpan, RowSpanCache};
use super::settings::{Compounding, Interpolation, ReconSettings};

const ACC_WHOLE: u32 = 256;
const ACC_MAX: u32 = 65535;
const ACC_THRESHOLD: u32 = 65279;

/// `floor(x / d)` as `(x · RECIP[d]) >> 32`, exact for x ≤ 65535 and d ≤ 256 (the error stays
/// under 2^-16, below the 1/d gap to the next integer): integer division is the hot loop's
/// slowest step otherwise.
static RECIP: [u64; 257] = {
    let mut t = [0u64; 257];
    let mut d = 1;
    while d <= 256 {
        t[d] = (1u64 << 32).div_ceil(d as u64);
        d += 1;
    }
    t
};

/// PLUS's round: nearest, halves up, with its small tolerance.
fn plus_round(x: f64) -> i64 {
    (x + 0.5 + FLOOR_TOL).floor() as i64
}

pub struct GreyVolume {
    pub grid: OutputGrid,
    pub values: Vec<u8>,
    /// Inserted weight per voxel, 256 per whole pixel; 0 marks a hole.
    pub acc: Vec<u16>,
    interpolation: Interpolation,
    compounding: Compounding,
    threads: usize,
    spans: RowSpanCache,
    /// Voxels whose accumulation saturated (PLUS warns about these).
    pub saturated: u64,
}

impl GreyVolume {
    /// Allocates the buffers for `grid` and the row spans for `width`×`height` frames.
    pub fn new(grid: OutputGrid, settings: &ReconSettings, width: usize, height: usize) -> Self {
        let n = grid.voxels();
        GreyVolume {
            grid,
            values: vec![0; n],
            acc: vec![0; n],
            interpolation: settings.interpolation,
            compounding: settings.compounding,
            threads: settings.threads,
            spans: RowSpanCache::new(width, height, settings),
            saturated: 0,
        }
    }

    pub fn clear(&mut self) {
        self.values.fill(0);
        self.acc.fill(0);
        self.saturated = 0;
    }

    /// Inserts one `width`×`height` 8-bit frame placed by `image_to_reference`. Returns false when
    /// the pose cannot place it (not finite). Allocation-free for frames of the size given to
    /// [`new`](Self::new).
    pub fn insert(&mut self, pixels: &[u8], width: usize, height: usize, image_to_reference: &Matrix4) -> bool {
        if pixels.len() < width * height {
            return false;
        }
        let Some(plan) = FramePlan::new(image_to_reference, &self.grid) else { return false };
        let Some((z0, z1)) = plan.z_range(width, height) else { return true };
        let nxy = self.grid.dims[0] * self.grid.dims[1];
        let job = Job {
            plan: &plan,
            spans: self.spans.get(width, height),
            width,
            pixels,
            interpolation: self.interpolation,
            compounding: self.compounding,
        };
        let threads = self.threads.min((z1 - z0 + 1) as usize).max(1);
        if threads == 1 {
            let range = z0 as usize * nxy..(z1 as usize + 1) * nxy;
            self.saturated += job.run((z0, z1), &mut self.values[range.clone()], &mut self.acc[range]);
            return true;
        }
        // Split the frame's z footprint into equal slabs, one per thread.
        let total = (z1 - z0 + 1) as usize;
        let (mut values, mut acc) = (&mut self.values[z0 as usize * nxy..], &mut self.acc[z0 as usize * nxy..]);
        let mut slabs = Vec::with_capacity(threads);
        let mut start = z0;
        for t in 0..threads {
            let len = total / threads + usize::from(t < total % threads);
            let (v, rest_v) = std::mem::take(&mut values).split_at_mut(len * nxy);
            let (a, rest_a) = std::mem::take(&mut acc).split_at_mut(len * nxy);
            (values, acc) = (rest_v, rest_a);
            slabs.push(((start, start + len as i64 - 1), v, a));
            start += len as i64;
        }
        let saturated: u64 = std::thread::scope(|scope| {
            let job = &job;
            let handles: Vec<_> = slabs.into_iter().map(|(z, v, a)| scope.spawn(move || job.run(z, v, a))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        self.saturated += saturated;
        true
    }
}

/// One frame's insertion, shared by the threads.
struct Job<'a> {
    plan: &'a FramePlan,
    spans: &'a [RowSpan],
    width: usize,
    pixels: &'a [u8],
    interpolation: Interpolation,
    compounding: Compounding,
}

impl Job<'_> {
    /// Inserts into the slab `z` (voxels `values`/`acc` from z.0 on); returns saturations.
    fn run(&self, z: (i64, i64), values: &mut [u8], acc: &mut [u16]) -> u64 {
        let px = self.pixels;
        let mut saturated = 0u64;
        match (self.interpolation, self.compounding) {
            (Interpolation::Nearest, Compounding::Mean) => {
                self.plan.for_each_nearest(self.spans, self.width, z, |v, p| {
                    let (a, out, pix) = (acc[v] as u32, values[v] as u64, px[p] as u64);
                    if a <= ACC_THRESHOLD {
                        // Nearest-neighbour weights are whole pixels, so acc = 256·k and
                        // (pix·256 + out·acc) / (acc + 256) = (pix + out·k) / (k + 1).
                        let k = (a >> 8) as u64;
                        values[v] = (((pix + out * k) * RECIP[k as usize + 1]) >> 32) as u8;
                        let newa = a + ACC_WHOLE;
                        saturated += u64::from(newa > ACC_THRESHOLD);
                        acc[v] = newa.min(ACC_MAX) as u16;
                    } else {
                        values[v] = (0.99609375 * pix as f64 + 0.00390625 * out as f64) as u8;
                    }
                });
            }
            (Interpolation::Nearest, Compounding::Maximum) => {
                self.plan.for_each_nearest(self.spans, self.width, z, |v, p| {
                    values[v] = values[v].max(px[p]);
                    acc[v] = ACC_WHOLE as u16;
                });
            }
            (Interpolation::Nearest, Compounding::Latest) => {
                self.plan.for_each_nearest(self.spans, self.width, z, |v, p| {
                    values[v] = px[p];
                    acc[v] = ACC_WHOLE as u16;
                });
            }
            (Interpolation::Linear, mode) => {
                let [nx, ny, _] = self.plan.dims;
                let base = z.0 * nx * ny;
                self.plan.for_each_linear(self.spans, self.width, z, |q, p| {
                    saturated += trilinear(q, px[p], mode, z, [nx, ny], base, values, acc);
                });
            }
        }
        saturated
    }
}

/// PLUS's reverse trilinear interpolation of one pixel into the corners that lie in slab `z`.
#[allow(clippy::too_many_arguments)]
fn trilinear(
    q: [f64; 3],
    pixel: u8,
    mode: Compounding,
    z: (i64, i64),
    [nx, ny]: [i64; 2],
    base: i64,
    values: &mut [u8],
    acc: &mut [u16],
) -> u64 {
    let i0 = q.map(|v| (v + FLOOR_TOL).floor() as i64);
    let f: [f64; 3] = std::array::from_fn(|k| q[k] - i0[k] as f64);
    let i1: [i64; 3] = std::array::from_fn(|k| i0[k] + i64::from(f[k] != 0.0));
    let r = f.map(|v| 1.0 - v);
    let mut saturated = 0;
    // PLUS visits the corners from (1,1,1) down to (0,0,0).
    for j in (0..8).rev() {
        let (bx, by, bz) = (j >> 2 & 1, j >> 1 & 1, j & 1);
        let w = [r[0], f[0]][bx] * [r[1], f[1]][by] * [r[2], f[2]][bz];
        let zi = [i0[2], i1[2]][bz];
        if w == 0.0 || zi < z.0 || zi > z.1 {
            continue;
        }
        let idx = ([i0[0], i1[0]][bx] + nx * ([i0[1], i1[1]][by] + ny * zi) - base) as usize;
        let (old_acc, out) = (acc[idx] as f64, values[idx]);
        let mut a = old_acc;
        match mode {
            Compounding::Maximum => {
                if w >= 0.125 && pixel > out {
                    values[idx] = pixel;
                    a = w * ACC_WHOLE as f64;
                }
            }
            Compounding::Latest => {
                if w >= 0.125 {
                    values[idx] = pixel;
                    a = w * ACC_WHOLE as f64;
                }
            }
            Compounding::Mean => {
                let prior = old_acc / ACC_WHOLE as f64;
                let total = w + prior;
                values[idx] = plus_round((w * pixel as f64 + prior * out as f64) / total).clamp(0, 255) as u8;
                a = total * ACC_WHOLE as f64;
            }
        }
        if a > ACC_THRESHOLD as f64 && old_acc <= ACC_THRESHOLD as f64 {
            saturated += 1;
        }
        acc[idx] = if a < ACC_MAX as f64 { plus_round(a).clamp(0, ACC_MAX as i64) as u16 } else { ACC_MAX as u16 };
    }
    saturated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::IDENTITY;

    fn grid() -> OutputGrid {
        OutputGrid { dims: [4, 3, 2], origin_mm: [0.0; 3], spacing_mm: [1.0; 3] }
    }

    #[test]
    fn reciprocal_division_is_exact() {
        for d in 1..=256u64 {
            for x in (0..=65535u64).step_by(7).chain([65535]) {
                assert_eq!((x * RECIP[d as usize]) >> 32, x / d, "{x}/{d}");
            }
        }
    }

    #[test]
    fn mean_truncates_like_plus_and_max_and_latest_keep_their_rule() {
        let settings = ReconSettings { output_spacing_mm: [1.0; 3], ..Default::default() };
        let mut v = GreyVolume::new(grid(), &settings, 1, 1);
        for p in [10u8, 11, 20] {
            assert!(v.insert(&[p], 1, 1, &IDENTITY));
        }
        // (10·256)/256 = 10; (11·256 + 10·256)/512 = 10 (10.5 truncated); (20·256 + 10·512)/768 = 13.33 → 13.
        assert_eq!((v.values[0], v.acc[0]), (13, 768));
        assert_eq!(v.values[1..].iter().filter(|&&x| x != 0).count(), 0);
        for (mode, expected) in [(Compounding::Maximum, 20), (Compounding::Latest, 10)] {
            let mut v = GreyVolume::new(grid(), &ReconSettings { compounding: mode, ..settings.clone() }, 1, 1);
            for p in [10u8, 20, 10] {
                v.insert(&[p], 1, 1, &IDENTITY);
            }
            assert_eq!((v.values[0], v.acc[0]), (expected, 256));
        }
    }

    #[test]
    fn mean_saturates_into_the_recursive_filter() {
        let settings = ReconSettings { output_spacing_mm: [1.0; 3], ..Default::default() };
        let mut v = GreyVolume::new(grid(), &settings, 1, 1);
        for _ in 0..255 {
            v.insert(&[100], 1, 1, &IDENTITY);
        }
        assert_eq!((v.values[0], v.acc[0], v.saturated), (100, 65280, 1));
        v.insert(&[200], 1, 1, &IDENTITY);
        assert_eq!(v.values[0], (0.99609375f64 * 200.0 + 0.00390625 * 100.0) as u8);
    }

    #[test]
    fn linear_spreads_a_pixel_over_its_eight_voxels() {
        let settings =
            ReconSettings { output_spacing_mm: [1.0; 3], interpolation: Interpolation::Linear, ..Default::default() };
        let mut v = GreyVolume::new(grid(), &settings, 1, 1);
        let mut pose = IDENTITY;
        pose[3] = 0.25;
        pose[7] = 0.5;
        pose[11] = 0.5;
        v.insert(&[200], 1, 1, &pose);
        // Voxel (0,0,0) takes 0.75·0.5·0.5 of a pixel, (1,1,1) 0.25·0.5·0.5.
        assert_eq!((v.values[0], v.acc[0]), (200, 48));
        let far = 1 + 4 * (1 + 3);
        assert_eq!((v.values[far], v.acc[far]), (200, 16));
        assert_eq!(v.acc.iter().filter(|&&a| a > 0).count(), 8);
    }

    #[test]
    fn threads_give_the_same_volume() {
        let grid = OutputGrid { dims: [20, 20, 20], origin_mm: [0.0; 3], spacing_mm: [1.0; 3] };
        let (w, h) = (40, 30);
        let pixels: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        for interpolation in [Interpolation::Nearest, Interpolation::Linear] {
            let volume = |threads| {
                let s = ReconSettings { threads, interpolation, output_spacing_mm: [1.0; 3], ..Default::default() };
                let mut v = GreyVolume::new(grid, &s, w, h);
                for k in 0..6 {
                    let mut pose = crate::geometry::rigid(
                        0,
                        0.9 + 0.1 * k as f64,
                        crate::geometry::Vec3::new(1.0, 1.5 + k as f64, 0.5),
                    );
                    for r in 0..3 {
                        pose[r * 4] *= 0.45;
                        pose[r * 4 + 1] *= 0.55;
                    }
                    v.insert(&pixels, w, h, &pose);
                }
                (v.values, v.acc)
            };
            let one = volume(1);
            assert!(one.1.iter().filter(|&&a| a > 0).count() > 300);
            assert_eq!(volume(2), one);
            assert_eq!(volume(3), one);
        }
    }
}
