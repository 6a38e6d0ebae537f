//! Hole filling after insertion, as PLUS does it: every voxel no pixel reached (accumulation 0)
//! is given a value from filled voxels nearby by the first step that succeeds; a voxel no step
//! can fill stays 0. Steps read only originally filled voxels, so the result does not depend on
//! the order voxels are visited in (and threads, splitting by z, give the same volume).
//!
//! - STICK: along 13 directions (the axes, face and body diagonals), walk both ways to the nearest
//!   filled voxel; a stick succeeds when both ends are found within `stick_length_limit` voxels in
//!   all. Its value is the distance-weighted blend of its ends; the shortest stick(s) win.
//! - NEAREST_NEIGHBOR: grow a cube shell by shell up to `size`; at the first shell holding filled
//!   voxels, their mean, if they are more than `minimum_known_voxels_ratio` of the full cube.

use super::settings::HoleFilling;

/// The 13 stick directions, as PLUS lists them (its tie-breaking depends on the order).
const STICKS: [[i64; 3]; 13] = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
    [1, 1, 0],
    [1, 0, 1],
    [0, 1, 1],
    [1, -1, 0],
    [1, 0, -1],
    [0, 1, -1],
    [1, 1, 1],
    [-1, 1, 1],
    [1, -1, 1],
    [-1, -1, 1],
];

/// The volume with its holes filled by `steps` (a copy; the inputs are kept for further frames).
pub fn fill_holes(values: &[u8], acc: &[u16], dims: [usize; 3], steps: &[HoleFilling], threads: usize) -> Vec<u8> {
    let mut out = values.to_vec();
    if steps.is_empty() {
        return out;
    }
    let nxy = dims[0] * dims[1];
    let per = dims[2].div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (t, slab) in out.chunks_mut(per * nxy).enumerate() {
            scope.spawn(move || {
                let z0 = t * per;
                for (i, voxel) in slab.iter_mut().enumerate() {
                    let index = z0 * nxy + i;
                    if acc[index] != 0 {
                        continue;
                    }
                    let at = [(index % dims[0]) as i64, ((index / dims[0]) % dims[1]) as i64, (index / nxy) as i64];
                    *voxel = steps.iter().find_map(|s| fill_one(values, acc, dims, at, s)).unwrap_or(0);
                }
            });
        }
    });
    out
}

fn fill_one(values: &[u8], acc: &[u16], dims: [usize; 3], at: [i64; 3], step: &HoleFilling) -> Option<u8> {
    let d = dims.map(|v| v as i64);
    let index = |p: [i64; 3]| -> Option<usize> {
        ((0..3).all(|k| p[k] >= 0 && p[k] < d[k])).then(|| (p[0] + d[0] * (p[1] + d[1] * p[2])) as usize)
    };
    match *step {
        HoleFilling::Stick { stick_length_limit, number_of_sticks_to_use } => {
            let limit = stick_length_limit as i64;
            // Nearest filled voxel along `dir` from `at`, at most `max` steps: (steps, value).
            let walk = |dir: [i64; 3], max: i64| -> Option<(i64, u8)> {
                (1..=max)
                    .map_while(|j| index([0, 1, 2].map(|k| at[k] + j * dir[k])).map(|i| (j, i)))
                    .find_map(|(j, i)| (acc[i] != 0).then_some((j, values[i])))
            };
            let mut sticks = [(0.0f64, 0u8); 13];
            for (s, dir) in STICKS.iter().enumerate() {
                let Some((fwd, fwd_value)) = walk(*dir, limit - 1) else { continue };
                let Some((rvs, rvs_value)) = walk(dir.map(|v| -v), limit - fwd - 1) else { continue };
                let total = (fwd + rvs + 1) as f64;
                let weight_fwd = (rvs + 1) as f64 / total;
                let length = total * ((dir.iter().map(|v| v * v).sum::<i64>()) as f64).sqrt();
                let value = ((1.0 - weight_fwd) * rvs_value as f64 + weight_fwd * fwd_value as f64) as u8;
                sticks[s] = (1.0 / length, value);
            }
            // Use the best-scoring sticks (all of those tied) until enough are used.
            let (mut used, mut sum, mut weights) = (0, 0.0, 0.0);
            while used < number_of_sticks_to_use {
                let best = sticks.iter().fold(0.0f64, |m, s| m.max(s.0));
                if best == 0.0 {
                    break;
                }
                for s in sticks.iter_mut().filter(|s| s.0 == best) {
                    sum += s.1 as f64 * s.0;
                    weights += s.0;
                    used += 1;
                    s.0 = 0.0;
                }
            }
            (weights != 0.0).then(|| (sum / weights) as u8)
        }
        HoleFilling::NearestNeighbor { size, minimum_known_voxels_ratio } => {
            let max_range = (size as i64 - 1) / 2;
            for range in 1..=max_range {
                let (mut sum, mut count) = (0.0f64, 0usize);
                for z in -range..=range {
                    for y in -range..=range {
                        for x in -range..=range {
                            if let Some(i) = index([at[0] + x, at[1] + y, at[2] + z])
                                && acc[i] != 0
                            {
                                sum += values[i] as f64;
                                count += 1;
                            }
                        }
                    }
                }
                if count > 0 {
                    let ratio = count as f64 / (size * size * size) as f64;
                    return (ratio > minimum_known_voxels_ratio).then(|| (sum / count as f64) as u8);
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stick_interpolates_across_a_gap_by_distance() {
        // A 7×1×1 row: filled 10 at x=1, 40 at x=4; holes elsewhere.
        let dims = [7, 1, 1];
        let mut values = vec![0u8; 7];
        let mut acc = vec![0u16; 7];
        (values[1], acc[1], values[4], acc[4]) = (10, 256, 40, 256);
        let stick = [HoleFilling::Stick { stick_length_limit: 9, number_of_sticks_to_use: 1 }];
        let out = fill_holes(&values, &acc, dims, &stick, 1);
        // x=2: forward end 40 two steps away, reverse 10 one step away → 10·2/4 + 40·… = 20 (PLUS's weights).
        assert_eq!(out[2], ((2.0 / 4.0) * 10.0 + (2.0 / 4.0) * 40.0) as u8);
        assert_eq!(out[3], ((1.0 / 4.0) * 10.0 + (3.0 / 4.0) * 40.0) as u8);
        // x=0 and x=5, 6 have a filled voxel on one side only.
        assert_eq!((out[0], out[5], out[6]), (0, 0, 0));
        assert_eq!((out[1], out[4]), (10, 40));
        // Too long a gap for the limit: nothing.
        let short = [HoleFilling::Stick { stick_length_limit: 3, number_of_sticks_to_use: 1 }];
        assert_eq!(fill_holes(&values, &acc, dims, &short, 1)[2], 0);
    }

    #[test]
    fn nearest_neighbor_needs_enough_known_voxels() {
        let dims = [3, 3, 3];
        let mut values = vec![0u8; 27];
        let mut acc = vec![0u16; 27];
        for i in [0, 1, 2, 3] {
            (values[i], acc[i]) = (100 + i as u8, 256);
        }
        let nn = |ratio| [HoleFilling::NearestNeighbor { size: 3, minimum_known_voxels_ratio: ratio }];
        let out = fill_holes(&values, &acc, dims, &nn(0.1), 2);
        assert_eq!(out[13], ((100 + 101 + 102 + 103) as f64 / 4.0) as u8);
        assert_eq!(fill_holes(&values, &acc, dims, &nn(0.2), 2)[13], 0);
    }

    #[test]
    fn threads_do_not_change_the_result() {
        let dims = [9, 8, 7];
        let n = 9 * 8 * 7;
        let values: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
        let acc: Vec<u16> = (0..n).map(|i| if i % 3 == 0 { 256 } else { 0 }).collect();
        let steps = [
            HoleFilling::Stick { stick_length_limit: 4, number_of_sticks_to_use: 2 },
            HoleFilling::NearestNeighbor { size: 5, minimum_known_voxels_ratio: 0.1 },
        ];
        let one = fill_holes(&values, &acc, dims, &steps, 1);
        assert_eq!(fill_holes(&values, &acc, dims, &steps, 2), one);
        assert!(one.iter().zip(&acc).filter(|(v, a)| **a == 0 && **v != 0).count() > n / 3);
    }
}
