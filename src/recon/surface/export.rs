//! Binary STL and PLY files of a mesh. Both carry `SPACE=LPS` in their header: 3D Slicer reads
//! that mark and places the surface on the volumes it was extracted from (without it, Slicer
//! assumes LPS too, but says so in a warning).

use std::path::Path;

use super::{Mesh, corners};
use crate::recon::volume::{VolumeIoError, write_atomically};

/// Must not begin with `solid`, which readers take as the mark of an ASCII STL.
const STL_HEADER: &[u8] = b"sonoflow surface SPACE=LPS units=mm";

fn too_large(path: &Path, what: &str) -> VolumeIoError {
    VolumeIoError::unsupported(path, format!("the mesh has too many {what} for this file format"))
}

/// A mesh that names a vertex it lacks would write garbage; refuse it instead.
fn check_indices(mesh: &Mesh, path: &Path) -> Result<(), VolumeIoError> {
    let n = mesh.vertices.len();
    match mesh.triangles.iter().flatten().find(|&&i| i as usize >= n) {
        Some(i) => Err(VolumeIoError::unsupported(path, format!("a triangle names vertex {i} of {n}"))),
        None => Ok(()),
    }
}

pub(super) fn write_stl(mesh: &Mesh, path: &Path) -> Result<(), VolumeIoError> {
    check_indices(mesh, path)?;
    let count = u32::try_from(mesh.triangles.len()).map_err(|_| too_large(path, "triangles"))?;
    let mut out = Vec::with_capacity(84 + 50 * mesh.triangles.len());
    out.extend_from_slice(STL_HEADER);
    out.resize(80, 0);
    out.extend_from_slice(&count.to_le_bytes());
    for t in &mesh.triangles {
        let normal = corners(mesh, t).map_or([0.0; 3], |[a, b, c]| {
            let n = (b - a).cross(&(c - a));
            let len = n.norm();
            if len > 0.0 { (n / len).map(|v| v as f32).into() } else { [0.0; 3] }
        });
        let points = t.map(|i| mesh.vertices[i as usize]);
        for v in std::iter::once(normal).chain(points).flatten() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&0u16.to_le_bytes());
    }
    write_atomically(path, &[&out])
}

pub(super) fn write_ply(mesh: &Mesh, path: &Path) -> Result<(), VolumeIoError> {
    check_indices(mesh, path)?;
    // PLY's `int` indices are signed.
    if i32::try_from(mesh.vertices.len()).is_err() {
        return Err(too_large(path, "vertices"));
    }
    let header = format!(
        "ply\nformat binary_little_endian 1.0\ncomment SPACE=LPS\ncomment sonoflow surface, units mm\n\
         element vertex {}\nproperty float x\nproperty float y\nproperty float z\n\
         element face {}\nproperty list uchar int vertex_indices\nend_header\n",
        mesh.vertices.len(),
        mesh.triangles.len()
    );
    let mut out = Vec::with_capacity(header.len() + 12 * mesh.vertices.len() + 13 * mesh.triangles.len());
    out.extend_from_slice(header.as_bytes());
    for v in mesh.vertices.iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for t in &mesh.triangles {
        out.push(3);
        for &i in t {
            out.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }
    write_atomically(path, &[&out])
}
