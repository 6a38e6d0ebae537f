//! Distance from the tool tip to the segmented anatomy.
//!
//! Two sources, best first:
//! - a [`VolumeField`]: signed distance (mm, negative inside) of a label volume, computed once
//!   per label update with the exact EDT and queried with trilinear interpolation, whose
//!   gradient gives the push-out direction;
//! - the current frame's mask ([`nearest_in_plane`]) when no volume exists: the exact distance
//!   from the tip to the nearest structure pixel of the image plane (the mask is treated as a
//!   sheet: a tip beyond it is not known to be "inside").

use crate::frame::Matrix4;
use crate::geometry::{Vec3, affine_inverse, apply, to_na};

use super::edt;

/// Distance and push-out direction at the tip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSample {
    /// mm; negative inside the structure.
    pub distance_mm: f64,
    /// Unit vector (Reference frame) along which the distance grows, i.e. away from the structure.
    pub direction: Vec3,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    #[error("label volume of {dims:?} voxels holds {got} labels")]
    Size { dims: [usize; 3], got: usize },
    #[error("the volume's voxel-to-Reference transform is singular")]
    Singular,
}

/// Signed distance field of a label volume.
pub struct VolumeField {
    dims: [usize; 3],
    /// Voxel index (x, y, z) → Reference mm.
    voxel_to_reference: Matrix4,
    reference_to_voxel: Matrix4,
    distance_mm: Vec<f32>,
    /// Sequence number of the label volume it was made from (for reports and tests).
    pub version: u64,
}

impl VolumeField {
    /// Computes the field of the voxels where `is_structure(label)` holds. Costs a few passes
    /// over the volume; run it when the labels change, not per haptic tick.
    pub fn from_labels(
        labels: &[u8],
        dims: [usize; 3],
        voxel_to_reference: Matrix4,
        is_structure: impl Fn(u8) -> bool,
        version: u64,
    ) -> Result<Self, FieldError> {
        let n = dims.iter().product();
        if labels.len() != n {
            return Err(FieldError::Size { dims, got: labels.len() });
        }
        let reference_to_voxel = affine_inverse(&voxel_to_reference).ok_or(FieldError::Singular)?;
        // Each voxel axis's length in mm: the norms of the linear part's columns.
        let linear = to_na(&voxel_to_reference).fixed_view::<3, 3>(0, 0).into_owned();
        let spacing = [0, 1, 2].map(|c| linear.column(c).norm());
        let mut scratch = edt::Scratch::new(dims.into_iter().max().unwrap_or(0));
        let (mut outside, mut inside) = (vec![0.0; n], vec![0.0; n]);
        edt::squared_distances(dims, spacing, |i| is_structure(labels[i]), &mut outside, &mut scratch);
        edt::squared_distances(dims, spacing, |i| !is_structure(labels[i]), &mut inside, &mut scratch);
        let distance_mm = (0..n)
            .map(|i| if is_structure(labels[i]) { -inside[i].sqrt() } else { outside[i].sqrt() } as f32)
            .collect();
        Ok(VolumeField { dims, voxel_to_reference, reference_to_voxel, distance_mm, version })
    }

    fn at(&self, x: usize, y: usize, z: usize) -> f64 {
        self.distance_mm[x + self.dims[0] * (y + self.dims[1] * z)] as f64
    }

    /// Trilinear value and its gradient in voxel coordinates at a point inside the grid.
    fn trilinear(&self, p: Vec3) -> (f64, Vec3) {
        let base = [0, 1, 2].map(|k| (p[k].floor() as usize).min(self.dims[k].saturating_sub(2)));
        let t = [0, 1, 2].map(|k| if self.dims[k] > 1 { p[k] - base[k] as f64 } else { 0.0 });
        let next = [0, 1, 2].map(|k| (base[k] + 1).min(self.dims[k] - 1));
        let c = |i: usize, j: usize, k: usize| {
            self.at(
                if i == 0 { base[0] } else { next[0] },
                if j == 0 { base[1] } else { next[1] },
                if k == 0 { base[2] } else { next[2] },
            )
        };
        let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
        // Interpolate along x on the four x-edges, then y, then z; derivatives follow the same tree.
        let e = |j, k| (c(0, j, k), c(1, j, k));
        let (e00, e10, e01, e11) = (e(0, 0), e(1, 0), e(0, 1), e(1, 1));
        let x = |e: (f64, f64)| lerp(e.0, e.1, t[0]);
        let dx = |e: (f64, f64)| e.1 - e.0;
        let (y0, y1) = (lerp(x(e00), x(e10), t[1]), lerp(x(e01), x(e11), t[1]));
        let value = lerp(y0, y1, t[2]);
        let d_dx = lerp(lerp(dx(e00), dx(e10), t[1]), lerp(dx(e01), dx(e11), t[1]), t[2]);
        let d_dy = lerp(x(e10) - x(e00), x(e11) - x(e01), t[2]);
        let d_dz = y1 - y0;
        (value, Vec3::new(d_dx, d_dy, d_dz))
    }

    /// Distance and direction at `tip` (Reference mm). Outside the grid the distance is bounded
    /// from below (structures lie inside the grid), so the fixture errs towards pushing.
    pub fn sample(&self, tip: Vec3) -> FieldSample {
        let p = apply(&self.reference_to_voxel, tip);
        let clamped = Vec3::from_fn(|k, _| p[k].clamp(0.0, (self.dims[k].max(1) - 1) as f64));
        let (value, grad_voxel) = self.trilinear(clamped);
        // Gradients transform with the inverse transpose of the voxel→Reference linear part.
        let grad = to_na(&self.reference_to_voxel).fixed_view::<3, 3>(0, 0).tr_mul(&grad_voxel);
        let at_grid = apply(&self.voxel_to_reference, clamped);
        let outside = tip - at_grid;
        let gap = outside.norm();
        if gap > 1e-9 && gap >= value - gap {
            return FieldSample { distance_mm: gap, direction: outside * (1.0 / gap) };
        }
        let distance_mm = if gap > 1e-9 { value - gap } else { value };
        let g = grad.norm();
        // On a flat stretch of the field (rare: the middle of a structure) any direction is as
        // good as another; report "up" rather than NaN.
        let direction = if g > 1e-12 { grad * (1.0 / g) } else { Vec3::z() };
        FieldSample { distance_mm, direction }
    }
}

/// The image plane of one frame, in the Reference frame.
pub struct PlaneGeometry {
    /// Centre of pixel (0, 0).
    pub origin: Vec3,
    /// Reference mm per column and per row.
    pub column: Vec3,
    pub row: Vec3,
}

impl PlaneGeometry {
    /// From the `ImageToReference` transform (pixel (column, row, 0) → mm).
    pub fn from_image_to_reference(m: &Matrix4) -> Self {
        let origin = apply(m, Vec3::zeros());
        PlaneGeometry { origin, column: apply(m, Vec3::x()) - origin, row: apply(m, Vec3::y()) - origin }
    }
}

/// Exact distance from `tip` to the nearest pixel of `mask` (width × height, row-major) for
/// which `is_structure` holds, with the direction from that pixel to the tip. None when the mask
/// holds no structure. One pass over the mask, no allocation.
pub fn nearest_in_plane(
    plane: &PlaneGeometry,
    mask: &[u8],
    width: usize,
    height: usize,
    is_structure: impl Fn(u8) -> bool,
    tip: Vec3,
) -> Option<FieldSample> {
    let to_tip = tip - plane.origin;
    // Squared distance from the tip to pixel (c, r): |to_tip − c·column − r·row|², expanded so
    // the inner loop is a few multiply-adds.
    let (column, row) = (&plane.column, &plane.row);
    let (cc, rr, cr) = (column.dot(column), row.dot(row), column.dot(row));
    let (tc, tr, tt) = (to_tip.dot(column), to_tip.dot(row), to_tip.dot(&to_tip));
    let mut best = f64::INFINITY;
    let mut best_pixel = (0, 0);
    for (r, line) in mask.chunks_exact(width).take(height).enumerate() {
        let r = r as f64;
        let row_part = tt - 2.0 * r * tr + r * r * rr;
        for (c, &label) in line.iter().enumerate() {
            if is_structure(label) {
                let c = c as f64;
                let d2 = row_part - 2.0 * c * tc + c * c * cc + 2.0 * c * r * cr;
                if d2 < best {
                    best = d2;
                    best_pixel = (c as usize, r as usize);
                }
            }
        }
    }
    if !best.is_finite() {
        return None;
    }
    let nearest = plane.origin + (plane.column * best_pixel.0 as f64 + plane.row * best_pixel.1 as f64);
    let away = tip - nearest;
    let distance_mm = away.norm();
    // A tip exactly on a structure pixel: push out of the plane.
    let direction =
        if distance_mm > 1e-9 { away * (1.0 / distance_mm) } else { plane.column.cross(&plane.row).normalize() };
    Some(FieldSample { distance_mm, direction })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::IDENTITY;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// A 20³ volume of 1 mm voxels with one structure: the half-space x >= 10.
    fn half_space() -> VolumeField {
        let dims = [20, 20, 20];
        let labels: Vec<u8> = (0..8000).map(|i| u8::from(i % 20 >= 10)).collect();
        VolumeField::from_labels(&labels, dims, IDENTITY, |l| l == 1, 1).unwrap()
    }

    #[test]
    fn half_space_distance_is_linear_and_points_away() {
        let f = half_space();
        let s = f.sample(Vec3::new(4.25, 7.0, 9.5));
        assert!(close(s.distance_mm, 5.75, 1e-6), "{s:?}");
        assert!(close(s.direction[0], -1.0, 1e-9), "{s:?}");
        // Inside: negative, measured to the nearest background voxel centre.
        let s = f.sample(Vec3::new(12.0, 7.0, 9.5));
        assert!(close(s.distance_mm, -3.0, 1e-6), "{s:?}");
    }

    #[test]
    fn anisotropic_rotated_volumes_report_reference_millimetres() {
        // Voxels 2 mm along x, the grid rotated 90° about z and shifted.
        let m = [0.0, -1.0, 0.0, 50.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        let dims = [10, 10, 3];
        // Structure: voxel x index >= 5 → Reference y >= 10 mm.
        let labels: Vec<u8> = (0..300).map(|i| u8::from(i % 10 >= 5)).collect();
        let f = VolumeField::from_labels(&labels, dims, m, |l| l == 1, 1).unwrap();
        let s = f.sample(Vec3::new(47.0, 3.0, 1.0));
        assert!(close(s.distance_mm, 7.0, 1e-6), "{s:?}");
        assert!(close(s.direction[1], -1.0, 1e-9), "{s:?}");
    }

    #[test]
    fn outside_the_grid_the_distance_is_a_lower_bound() {
        let f = half_space();
        let s = f.sample(Vec3::new(4.0, 7.0, 30.0));
        // 11 mm above the grid; the structure is 6 mm away sideways: true distance √(11²+6²).
        assert!(s.distance_mm <= (11.0f64 * 11.0 + 36.0).sqrt() + 1e-9);
        assert!(s.distance_mm >= 11.0 - 1e-9);
    }

    #[test]
    fn wrong_sizes_and_singular_transforms_are_errors() {
        assert!(matches!(
            VolumeField::from_labels(&[0; 7], [2, 2, 2], IDENTITY, |l| l > 0, 0),
            Err(FieldError::Size { .. })
        ));
        assert!(matches!(
            VolumeField::from_labels(&[0; 8], [2, 2, 2], [0.0; 16], |l| l > 0, 0),
            Err(FieldError::Singular)
        ));
    }

    #[test]
    fn in_plane_distance_is_exact_with_out_of_plane_offset() {
        // 0.5 mm pixels in the z = 0 plane; structure pixel at column 6, row 2 → (3, 1, 0) mm.
        let plane =
            PlaneGeometry { origin: Vec3::zeros(), column: Vec3::new(0.5, 0.0, 0.0), row: Vec3::new(0.0, 0.5, 0.0) };
        let mut mask = vec![0u8; 8 * 4];
        mask[2 * 8 + 6] = 2;
        let s = nearest_in_plane(&plane, &mask, 8, 4, |l| l == 2, Vec3::new(0.0, 1.0, 4.0)).unwrap();
        assert!(close(s.distance_mm, 5.0, 1e-12), "{s:?}");
        assert!(close(s.direction[0], -0.6, 1e-12) && close(s.direction[2], 0.8, 1e-12), "{s:?}");
        assert!(nearest_in_plane(&plane, &mask, 8, 4, |l| l == 1, Vec3::zeros()).is_none());
    }
}
