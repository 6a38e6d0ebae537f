//! Walks a frame's pixels row by row and finds the voxel(s) each lands in.
//!
//! Nearest neighbour follows PLUS's fixed-point path bit for bit: the pixel→voxel matrix is
//! rounded to 18.14 fixed point, each row starts at `origin + row·yAxis`, each pixel adds `xAxis`,
//! and the voxel index is `(v + 2^13) >> 14`. Integer steps mean no drift along a row, and no
//! float rounding in the hot loop. The range of pixels whose voxel lies inside the grid (or a
//! thread's slab of it) is solved per row in closed form, so the loop itself never bounds-checks.

use crate::frame::Matrix4;
use crate::geometry::{affine_inverse, mat_mul};

use super::grid::OutputGrid;
use super::rows::{FLOOR_TOL, RowSpan};

/// Fixed-point fraction bits (PLUS's `fixed` type).
const SHIFT: u32 = 14;
const HALF: i64 = 1 << (SHIFT - 1);

/// Pixel → voxel-index matrix of one frame, in floating point and in PLUS's fixed point.
#[derive(Debug, Clone, Copy)]
pub struct FramePlan {
    /// Row-major 3×4: voxel index = m · (column, row, 0, 1).
    pub m: [[f64; 4]; 3],
    /// The same rounded to fixed point, per output axis: (x axis, y axis, origin).
    fixed: [[i64; 3]; 3],
    pub dims: [i64; 3],
}

fn to_fixed(x: f64) -> i64 {
    (x * (1 << SHIFT) as f64).round_ties_even() as i64
}

impl FramePlan {
    /// `image_to_reference` maps pixel (column, row, 0) to Reference mm. None when the pose is not
    /// finite (a corrupt transform) or the grid cannot be inverted.
    pub fn new(image_to_reference: &Matrix4, grid: &OutputGrid) -> Option<Self> {
        let to_voxel = affine_inverse(&grid.voxel_to_reference())?;
        let full = mat_mul(&to_voxel, image_to_reference);
        if full.iter().any(|v| !v.is_finite() || v.abs() > 1e9) {
            return None;
        }
        let m: [[f64; 4]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| full[r * 4 + c]));
        let fixed = std::array::from_fn(|r| [to_fixed(m[r][0]), to_fixed(m[r][1]), to_fixed(m[r][3])]);
        Some(FramePlan { m, fixed, dims: grid.dims.map(|d| d as i64) })
    }

    /// Voxel z range (inclusive, clamped to the grid) this frame's pixel rectangle can touch.
    pub fn z_range(&self, width: usize, height: usize) -> Option<(i64, i64)> {
        let [a, b, _, c] = self.m[2];
        let corners = [c, c + a * (width as f64 - 1.0), c + b * (height as f64 - 1.0)];
        let far = c + a * (width as f64 - 1.0) + b * (height as f64 - 1.0);
        let lo = corners.iter().chain([&far]).fold(f64::INFINITY, |m, v| m.min(*v));
        let hi = corners.iter().chain([&far]).fold(f64::NEG_INFINITY, |m, v| m.max(*v));
        let (lo, hi) = ((lo.floor() as i64 - 1).max(0), (hi.ceil() as i64 + 1).min(self.dims[2] - 1));
        (lo <= hi).then_some((lo, hi))
    }

    /// Calls `visit(voxel index relative to slab start, pixel index)` for every pixel of the
    /// allowed `spans` whose nearest voxel lies in the grid with z in `z_lo..=z_hi`, in pixel order.
    #[inline]
    pub fn for_each_nearest(
        &self,
        spans: &[RowSpan],
        width: usize,
        (z_lo, z_hi): (i64, i64),
        mut visit: impl FnMut(usize, usize),
    ) {
        let [nx, ny, _] = self.dims;
        let (fx, fy, fz) = (self.fixed[0], self.fixed[1], self.fixed[2]);
        let slab_base = z_lo * nx * ny;
        for (row, span) in spans.iter().enumerate() {
            if span.start > span.end {
                continue;
            }
            let r = row as i64;
            // Fixed-point position of pixel 0 of this row, per axis.
            let p = [fx[2] + r * fx[1], fy[2] + r * fy[1], fz[2] + r * fz[1]];
            let (mut s, mut e) = (0, width as i64 - 1);
            for (k, (lo, hi)) in [(0, nx - 1), (0, ny - 1), (z_lo, z_hi)].into_iter().enumerate() {
                let step = [fx[0], fy[0], fz[0]][k];
                match pixel_range(p[k], step, lo, hi) {
                    Some((a, b)) => {
                        s = s.max(a);
                        e = e.min(b);
                    }
                    None => e = s - 1,
                }
            }
            for (a, b) in span.runs(s, e) {
                if a > b {
                    continue;
                }
                let mut v = [p[0] + a * fx[0], p[1] + a * fy[0], p[2] + a * fz[0]];
                let row_base = row * width;
                for x in a..=b {
                    let (ix, iy, iz) = ((v[0] + HALF) >> SHIFT, (v[1] + HALF) >> SHIFT, (v[2] + HALF) >> SHIFT);
                    visit((ix + nx * (iy + ny * iz) - slab_base) as usize, row_base + x as usize);
                    v[0] += fx[0];
                    v[1] += fy[0];
                    v[2] += fz[0];
                }
            }
        }
    }

    /// Calls `visit(voxel position (x, y, z) in voxel units, pixel index)` for every pixel of the
    /// allowed `spans` whose eight surrounding voxels all lie in the grid (PLUS's trilinear rule),
    /// with its position touching z `z_lo - 1..=z_hi`, in pixel order.
    #[inline]
    pub fn for_each_linear(
        &self,
        spans: &[RowSpan],
        width: usize,
        (z_lo, z_hi): (i64, i64),
        mut visit: impl FnMut([f64; 3], usize),
    ) {
        let m = &self.m;
        let max = self.dims.map(|d| (d - 1) as f64);
        for (row, span) in spans.iter().enumerate() {
            if span.start > span.end {
                continue;
            }
            let r = row as f64;
            let p: [f64; 3] = std::array::from_fn(|k| m[k][3] + r * m[k][1]);
            for (a, b) in span.runs(0, width as i64 - 1) {
                for x in a..=b {
                    let xf = x as f64;
                    let q = [p[0] + xf * m[0][0], p[1] + xf * m[1][0], p[2] + xf * m[2][0]];
                    // All eight corners inside: floor ≥ 0 and ceil ≤ max on every axis.
                    let inside = (0..3).all(|k| q[k] + FLOOR_TOL >= 0.0 && q[k] <= max[k] + FLOOR_TOL);
                    let z0 = (q[2] + FLOOR_TOL).floor() as i64;
                    if inside && z0 >= z_lo - 1 && z0 <= z_hi {
                        visit(q, row * width + x as usize);
                    }
                }
            }
        }
    }
}

/// Pixels `x` (any integer) with `lo ≤ round_fixed(p0 + x·step) ≤ hi`, or None.
fn pixel_range(p0: i64, step: i64, lo: i64, hi: i64) -> Option<(i64, i64)> {
    // lo·2^S ≤ p0 + x·step + HALF < (hi+1)·2^S  ⇔  l ≤ x·step ≤ u
    let l = (lo << SHIFT) - HALF - p0;
    let u = ((hi + 1) << SHIFT) - HALF - 1 - p0;
    let (a, b) = match step.signum() {
        0 => return (l <= 0 && 0 <= u).then_some((i64::MIN / 4, i64::MAX / 4)),
        1 => (ceil_div(l, step), floor_div(u, step)),
        _ => (ceil_div(-u, -step), floor_div(-l, -step)),
    };
    (a <= b).then_some((a, b))
}

fn floor_div(n: i64, d: i64) -> i64 {
    n.div_euclid(d)
}

fn ceil_div(n: i64, d: i64) -> i64 {
    -(-n).div_euclid(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::IDENTITY;
    use crate::geometry::{Vec3, rigid};

    #[test]
    fn pixel_range_matches_brute_force() {
        for (p0, step, lo, hi) in
            [(100, 3000, 0, 9), (-50000, 7777, 2, 5), (900000, -12345, 0, 40), (5, 0, 0, 3), (5 << 14, 0, 0, 3)]
        {
            let brute: Vec<i64> =
                (-2000..2000).filter(|x| (lo..=hi).contains(&((p0 + x * step + HALF) >> SHIFT))).collect();
            match pixel_range(p0, step, lo, hi) {
                Some((a, b)) if step != 0 => assert_eq!((a, b), (brute[0], *brute.last().unwrap()), "{p0} {step}"),
                Some(_) => assert_eq!(brute.len(), 4000),
                None => assert!(brute.is_empty()),
            }
        }
    }

    #[test]
    fn nearest_visits_every_in_grid_pixel_once_in_order() {
        let grid = OutputGrid { dims: [6, 5, 4], origin_mm: [0.0, 0.0, -1.0], spacing_mm: [0.5, 0.5, 0.5] };
        let mut pose = rigid(2, 0.3, Vec3::new(0.2, 0.1, 0.0));
        for r in 0..3 {
            pose[r * 4] *= 0.3;
            pose[r * 4 + 1] *= 0.3;
        }
        let plan = FramePlan::new(&pose, &grid).unwrap();
        let spans = vec![RowSpan { start: 0, end: 11, skip: None }; 9];
        let mut seen = Vec::new();
        plan.for_each_nearest(&spans, 12, (0, 3), |v, p| seen.push((v, p)));
        let mut expected = Vec::new();
        for p in 0..12 * 9 {
            let (x, y) = ((p % 12) as i64, (p / 12) as i64);
            let f = |k: usize, c: usize| to_fixed(plan.m[k][c]);
            let i: [i64; 3] = std::array::from_fn(|k| (f(k, 3) + y * f(k, 1) + x * f(k, 0) + HALF) >> SHIFT);
            if (0..3).all(|k| i[k] >= 0 && i[k] < plan.dims[k]) {
                expected.push(((i[0] + 6 * (i[1] + 5 * i[2])) as usize, p));
            }
        }
        assert!(!expected.is_empty());
        assert_eq!(seen, expected);
        // A slab sees only its own voxels, indexed from the slab's start.
        let mut slab = Vec::new();
        plan.for_each_nearest(&spans, 12, (2, 2), |v, p| slab.push((v + 2 * 30, p)));
        let in_slab: Vec<_> = expected.iter().copied().filter(|(v, _)| v / 30 == 2).collect();
        assert_eq!(slab, in_slab);
        assert!(FramePlan::new(&[f64::NAN; 16], &grid).is_none());
        assert!(FramePlan::new(&IDENTITY, &grid).is_some());
    }
}
