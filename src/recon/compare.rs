//! Voxel-by-voxel agreement of two grey volumes on the same grid, as the PLUS comparison reports
//! it: over the voxels non-zero in either volume, the fraction equal, within ±1 and within ±2
//! grey levels, and the fraction filled in one volume and empty (0) in the other.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Voxels non-zero in either volume.
    pub compared: usize,
    /// Of those, voxels whose values differ at all.
    pub differing: usize,
    pub equal: f64,
    pub within_1: f64,
    pub within_2: f64,
    pub filled_in_one_only: f64,
}

pub fn agreement(a: &[u8], b: &[u8]) -> Agreement {
    let (mut compared, mut equal, mut within_1, mut within_2, mut one_only) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        if x == 0 && y == 0 {
            continue;
        }
        compared += 1;
        let d = x.abs_diff(y);
        equal += usize::from(d == 0);
        within_1 += usize::from(d <= 1);
        within_2 += usize::from(d <= 2);
        one_only += usize::from(x == 0 || y == 0);
    }
    let f = |n: usize| if compared == 0 { 1.0 } else { n as f64 / compared as f64 };
    Agreement {
        compared,
        differing: compared - equal,
        equal: f(equal),
        within_1: f(within_1),
        within_2: f(within_2),
        filled_in_one_only: if compared == 0 { 0.0 } else { one_only as f64 / compared as f64 },
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{} voxels non-zero in either, {} differ: {:.3}% equal, {:.3}% within ±1, {:.3}% within ±2, {:.3}% filled in one only",
            self.compared,
            self.differing,
            100.0 * self.equal,
            100.0 * self.within_1,
            100.0 * self.within_2,
            100.0 * self.filled_in_one_only
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_over_voxels_nonzero_in_either() {
        let a = agreement(&[0, 10, 10, 10, 0, 7], &[0, 10, 11, 13, 5, 0]);
        assert_eq!(a.compared, 5);
        assert_eq!((a.equal, a.within_1, a.within_2), (0.2, 0.4, 0.4));
        assert_eq!(a.filled_in_one_only, 0.4);
    }
}
