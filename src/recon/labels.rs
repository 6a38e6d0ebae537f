//! The label volume: per-frame label masks compounded on the grey volume's grid. Masks are always
//! placed nearest-neighbour (interpolating label values would invent labels). With `vote`, each
//! voxel counts the labels of the pixels that land in it and takes the most frequent (background
//! included), so a boundary voxel belongs to the structure only when most of its samples do and
//! measured volumes are nearly unbiased. A tie goes to the higher label: for a protected
//! structure, erring towards it is the safe side (on the simulator's sweep this measures the
//! lesion +0.4% and the vessel +1.1%; ties to background gave -1.2% and -3.0%). With `maximum`
//! any pixel of a structure claims the voxel.

use crate::frame::Matrix4;

use super::grid::OutputGrid;
use super::raster::FramePlan;
use super::rows::RowSpanCache;
use super::settings::{LabelCompounding, MAX_LABEL, ReconSettings};

pub struct LabelVolume {
    pub grid: OutputGrid,
    mode: LabelCompounding,
    /// Vote: `labels` counts per voxel (u16, saturating); maximum: one value per voxel.
    counts: Vec<u16>,
    labels: usize,
    spans: RowSpanCache,
    /// Pixels whose label exceeded [`MAX_LABEL`] (counted as MAX_LABEL).
    pub clamped: u64,
}

impl LabelVolume {
    pub fn new(grid: OutputGrid, settings: &ReconSettings, width: usize, height: usize) -> Self {
        let labels = match settings.label_compounding {
            LabelCompounding::Vote => MAX_LABEL as usize + 1,
            LabelCompounding::Maximum => 1,
        };
        LabelVolume {
            grid,
            mode: settings.label_compounding,
            counts: vec![0; grid.voxels() * labels],
            labels,
            spans: RowSpanCache::new(width, height, settings),
            clamped: 0,
        }
    }

    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.clamped = 0;
    }

    /// Inserts one label mask (one byte per pixel). Allocation-free for masks of the size given
    /// to [`new`](Self::new). Returns false when the pose cannot place it.
    pub fn insert(&mut self, mask: &[u8], width: usize, height: usize, image_to_reference: &Matrix4) -> bool {
        if mask.len() < width * height {
            return false;
        }
        let Some(plan) = FramePlan::new(image_to_reference, &self.grid) else { return false };
        let Some(z) = plan.z_range(width, height) else { return true };
        let nxy = (self.grid.dims[0] * self.grid.dims[1]) as i64;
        let spans = self.spans.get(width, height);
        let (counts, labels, clamped) = (&mut self.counts, self.labels, &mut self.clamped);
        let base = (z.0 * nxy) as usize;
        match self.mode {
            LabelCompounding::Vote => plan.for_each_nearest(spans, width, z, |v, p| {
                let label = mask[p].min(MAX_LABEL);
                *clamped += u64::from(mask[p] > MAX_LABEL);
                let c = &mut counts[(base + v) * labels + label as usize];
                *c = c.saturating_add(1);
            }),
            LabelCompounding::Maximum => plan.for_each_nearest(spans, width, z, |v, p| {
                let c = &mut counts[base + v];
                *c = (*c).max(mask[p] as u16 + 1);
            }),
        }
        true
    }

    /// Writes the label of every voxel into `out` (one byte per voxel; 0 where no pixel landed).
    pub fn labels_into(&self, out: &mut [u8]) {
        match self.mode {
            LabelCompounding::Vote => {
                for (o, c) in out.iter_mut().zip(self.counts.chunks_exact(self.labels)) {
                    let mut best = 0;
                    for (label, &n) in c.iter().enumerate().skip(1) {
                        if n >= c[best] && n > 0 {
                            best = label;
                        }
                    }
                    *o = best as u8;
                }
            }
            LabelCompounding::Maximum => {
                for (o, &c) in out.iter_mut().zip(&self.counts) {
                    *o = c.saturating_sub(1) as u8;
                }
            }
        }
    }

    pub fn labels(&self) -> Vec<u8> {
        let mut out = vec![0; self.grid.voxels()];
        self.labels_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::IDENTITY;

    #[test]
    fn vote_takes_the_majority_and_maximum_any() {
        let grid = OutputGrid { dims: [2, 1, 1], origin_mm: [0.0; 3], spacing_mm: [1.0; 3] };
        // Pixel spacing 0.25 mm: pixels 0..=1 round to voxel 0, 2..=5 to voxel 1, 6..=7 outside.
        let mut pose = IDENTITY;
        pose[0] = 0.25;
        let mask = [1u8, 0, 2, 2, 0, 1, 1, 1];
        // Voxel 0 holds a 1–1 tie (to the label), voxel 1 two 2s against a 0 and a 1.
        for (mode, expected) in [(LabelCompounding::Vote, [1u8, 2]), (LabelCompounding::Maximum, [1, 2])] {
            let settings = ReconSettings { label_compounding: mode, ..Default::default() };
            let mut v = LabelVolume::new(grid, &settings, 8, 1);
            assert!(v.insert(&mask, 8, 1, &pose));
            assert_eq!(v.labels(), expected, "{mode:?}");
        }
    }
}
