//! Exact Euclidean distance transform (Felzenszwalb & Huttenlocher, "Distance Transforms of
//! Sampled Functions", 2012): squared distances by lower envelopes of parabolas, one axis at a
//! time, so a 3D volume costs O(voxels) and anisotropic voxels are exact.

/// Stands for "no feature on this line yet"; large enough to lose every comparison, small enough
/// that adding squared distances cannot overflow to infinity.
const FAR: f64 = 1e20;

/// Reusable buffers for the 1D pass, sized to the longest axis.
pub struct Scratch {
    f: Vec<f64>,
    d: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Scratch {
    pub fn new(longest_axis: usize) -> Self {
        Scratch {
            f: vec![0.0; longest_axis],
            d: vec![0.0; longest_axis],
            v: vec![0; longest_axis],
            z: vec![0.0; longest_axis + 1],
        }
    }
}

/// In place: `s.f[..n]` (squared distances so far along the line) → squared distances that
/// also account for this axis, whose samples lie `step` mm apart.
fn pass_1d(s: &mut Scratch, n: usize, step: f64) {
    let Scratch { f, d, v, z } = s;
    let pos = |q: usize| q as f64 * step;
    // The intersection of the parabolas rooted at q and at p (p < q).
    let meet = |q: usize, p: usize, f: &[f64]| {
        ((f[q] + pos(q) * pos(q)) - (f[p] + pos(p) * pos(p))) / (2.0 * (pos(q) - pos(p)))
    };
    let mut k = 0;
    v[0] = 0;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in 1..n {
        let mut s = meet(q, v[k], f);
        while s <= z[k] {
            k -= 1;
            s = meet(q, v[k], f);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for q in 0..n {
        while z[k + 1] < pos(q) {
            k += 1;
        }
        let dx = pos(q) - pos(v[k]);
        d[q] = dx * dx + f[v[k]];
    }
    f[..n].copy_from_slice(&d[..n]);
}

/// Squared distance (mm²) from every voxel centre to the nearest voxel where `is_feature` holds,
/// for a volume of `dims` = [x, y, z] voxels (x fastest) of `spacing_mm`. Voxels with no feature
/// anywhere get a huge value (>= 1e20).
pub fn squared_distances(
    dims: [usize; 3],
    spacing_mm: [f64; 3],
    is_feature: impl Fn(usize) -> bool,
    out: &mut [f64],
    scratch: &mut Scratch,
) {
    let [nx, ny, nz] = dims;
    for (i, o) in out.iter_mut().enumerate().take(nx * ny * nz) {
        *o = if is_feature(i) { 0.0 } else { FAR };
    }
    let strides = [1, nx, nx * ny];
    for axis in 0..3 {
        let n = dims[axis];
        if n == 0 {
            return;
        }
        let stride = strides[axis];
        // Every line along `axis`: iterate over the other two coordinates.
        let lines = nx * ny * nz / n;
        for line in 0..lines {
            let start = match axis {
                0 => line * nx,
                1 => (line / nx) * nx * ny + line % nx,
                _ => line,
            };
            for q in 0..n {
                scratch.f[q] = out[start + q * stride];
            }
            pass_1d(scratch, n, spacing_mm[axis]);
            for q in 0..n {
                out[start + q * stride] = scratch.f[q];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn brute(dims: [usize; 3], spacing: [f64; 3], features: &[bool]) -> Vec<f64> {
        let [nx, ny, nz] = dims;
        let coords = |i: usize| [i % nx, (i / nx) % ny, i / (nx * ny)];
        (0..nx * ny * nz)
            .map(|i| {
                let a = coords(i);
                (0..features.len())
                    .filter(|&j| features[j])
                    .map(|j| {
                        let b = coords(j);
                        (0..3).map(|k| ((a[k] as f64 - b[k] as f64) * spacing[k]).powi(2)).sum::<f64>()
                    })
                    .fold(FAR, f64::min)
            })
            .collect()
    }

    #[test]
    fn a_single_point_gives_squared_euclidean_distances() {
        let dims = [5, 4, 3];
        let mut features = [false; 60];
        features[2 + 5 + 20] = true; // (2, 1, 1)
        let mut out = vec![0.0; 60];
        squared_distances(dims, [1.0, 2.0, 0.5], |i| features[i], &mut out, &mut Scratch::new(5));
        // Voxel (0, 3, 2): dx = 2 mm, dy = 2 voxels × 2 mm, dz = 0.5 mm.
        assert_eq!(out[3 * 5 + 2 * 20], 4.0 + 16.0 + 0.25);
        assert_eq!(out[2 + 5 + 20], 0.0);
    }

    proptest! {
        #[test]
        fn matches_brute_force(
            nx in 1usize..7, ny in 1usize..7, nz in 1usize..5,
            sx in 0.2f64..3.0, sy in 0.2f64..3.0, sz in 0.2f64..3.0,
            seed in any::<u64>(),
        ) {
            let n = nx * ny * nz;
            let features: Vec<bool> = (0..n).map(|i| (seed.rotate_left(i as u32 % 64) ^ i as u64).is_multiple_of(5)).collect();
            let mut out = vec![0.0; n];
            let dims = [nx, ny, nz];
            squared_distances(dims, [sx, sy, sz], |i| features[i], &mut out, &mut Scratch::new(7));
            let expected = brute(dims, [sx, sy, sz], &features);
            for (got, want) in out.iter().zip(&expected) {
                if *want >= FAR { prop_assert!(*got >= FAR * 0.5); } else { prop_assert!((got - want).abs() < 1e-9); }
            }
        }
    }
}
