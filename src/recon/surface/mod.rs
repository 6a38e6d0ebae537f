//! Surfaces and measures of a label volume: the boundary of the voxels holding one label as a
//! closed triangle mesh (marching cubes with a hole-free case table, see `cases`), its area and
//! enclosed volume, the label's voxel volume, and binary STL/PLY files for 3D Slicer.
//!
//! Vertices are in physical mm (LPS, the volume's geometry applied), shared between triangles,
//! and every triangle turns counter-clockwise seen from outside the structure, so normals point
//! out and the divergence theorem gives a positive enclosed volume.

mod cases;
mod export;
mod marching;

use std::path::Path;

use crate::geometry::Vec3;

use super::volume::{VolumeGeometry, VolumeIoError};

/// A closed triangle mesh.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mesh {
    /// Positions in physical mm (LPS).
    pub vertices: Vec<[f32; 3]>,
    /// Vertex indices, counter-clockwise seen from outside.
    pub triangles: Vec<[u32; 3]>,
}

/// The iso-surface at 0.5 of the indicator `voxel == label`, with everything outside the grid
/// taken as background so the surface is closed.
///
/// Diagonal neighbours that share only an edge or a corner stay apart (the structure is taken
/// as 6-connected), so each connected structure is one closed, edge-manifold surface.
///
/// A `labels` slice whose length is not the grid's voxel count is a caller's bug that no
/// surface would honestly describe: it is logged and gives an empty mesh.
pub fn marching_cubes(labels: &[u8], geometry: &VolumeGeometry, label: u8) -> Mesh {
    if !fits(labels, geometry) {
        return Mesh::default();
    }
    marching::extract(labels, geometry, label)
}

/// Volume of the voxels holding `label` in mL: voxel count × voxel volume. NaN (and logged) when
/// `labels` does not fit the grid, so a wrong measure cannot pass for a right one.
pub fn label_volume_ml(labels: &[u8], geometry: &VolumeGeometry, label: u8) -> f64 {
    if !fits(labels, geometry) {
        return f64::NAN;
    }
    let count = labels.iter().filter(|&&v| v == label).count();
    count as f64 * geometry.voxel_volume_mm3() / 1000.0
}

fn fits(labels: &[u8], geometry: &VolumeGeometry) -> bool {
    let fits = geometry.voxel_count() == Some(labels.len());
    if !fits {
        tracing::error!(voxels = labels.len(), dims = ?geometry.dims, "label volume does not fit its geometry");
    }
    fits
}

/// A triangle's corners in f64 (the mesh stores f32), or None when it names a missing vertex.
fn corners(m: &Mesh, t: &[u32; 3]) -> Option<[Vec3; 3]> {
    let v = |i: u32| m.vertices.get(i as usize).map(|p| Vec3::from(p.map(f64::from)));
    Some([v(t[0])?, v(t[1])?, v(t[2])?])
}

impl Mesh {
    /// Volume enclosed by the (closed, outward-wound) mesh in mL, by the divergence theorem.
    /// Triangles naming a vertex the mesh lacks are skipped.
    pub fn enclosed_volume_ml(&self) -> f64 {
        // Relative to the first vertex, so far-off origins do not cost precision.
        let o = self.vertices.first().map_or(Vec3::zeros(), |p| Vec3::from(p.map(f64::from)));
        let mm3: f64 = self
            .triangles
            .iter()
            .filter_map(|t| corners(self, t))
            .map(|[a, b, c]| {
                let (a, b, c) = (a - o, b - o, c - o);
                a.dot(&b.cross(&c))
            })
            .sum::<f64>()
            / 6.0;
        mm3 / 1000.0
    }

    /// Surface area in mm².
    pub fn area_mm2(&self) -> f64 {
        self.triangles
            .iter()
            .filter_map(|t| corners(self, t))
            .map(|[a, b, c]| 0.5 * (b - a).cross(&(c - a)).norm())
            .sum()
    }

    /// Writes a binary STL (coordinates in LPS mm, marked `SPACE=LPS` as 3D Slicer reads it).
    pub fn write_stl(&self, path: &Path) -> Result<(), VolumeIoError> {
        export::write_stl(self, path)
    }

    /// Writes a binary little-endian PLY (coordinates in LPS mm, marked `SPACE=LPS`).
    pub fn write_ply(&self, path: &Path) -> Result<(), VolumeIoError> {
        export::write_ply(self, path)
    }
}

#[cfg(test)]
mod tests;
