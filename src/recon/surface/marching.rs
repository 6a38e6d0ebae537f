//! The walk over the grid: every cube between voxel centres, plus one layer of background cubes
//! around the grid so the surface closes where the structure touches the grid's border.
//! Vertices sit at the middle of crossed edges (a 0/1 indicator crosses 0.5 there) and are
//! shared by all cubes around the edge.

use std::collections::HashMap;

use super::Mesh;
use super::cases::{EDGES, corner, table};
use crate::recon::volume::VolumeGeometry;

/// Index-space vertex positions are converted to physical mm as they are created.
struct Builder<'a> {
    geometry: &'a VolumeGeometry,
    mesh: Mesh,
    /// Vertex of each crossed grid edge, keyed by (padded corner index, axis).
    edge_vertices: HashMap<u64, u32>,
    /// Mirrored grids (negative direction determinant) turn index-space winding inside out.
    mirrored: bool,
}

impl Builder<'_> {
    fn vertex(&mut self, index: [f64; 3]) -> u32 {
        let p = self.geometry.index_to_physical(index);
        self.mesh.vertices.push([p[0] as f32, p[1] as f32, p[2] as f32]);
        (self.mesh.vertices.len() - 1) as u32
    }

    fn triangle(&mut self, a: u32, b: u32, c: u32) {
        self.mesh.triangles.push(if self.mirrored { [a, c, b] } else { [a, b, c] });
    }
}

/// The padded indicator: 1 where the voxel holds `label`, with a background layer all round.
/// `labels` holds exactly the grid's voxels (checked by the caller).
fn padded_indicator(labels: &[u8], dims: [usize; 3], label: u8) -> Vec<u8> {
    let p = [dims[0] + 2, dims[1] + 2, dims[2] + 2];
    let mut out = vec![0u8; p[0] * p[1] * p[2]];
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            let row = (z * dims[1] + y) * dims[0];
            let src = &labels[row..row + dims[0]];
            let dst = ((z + 1) * p[1] + y + 1) * p[0] + 1;
            for (d, &s) in out[dst..dst + dims[0]].iter_mut().zip(src) {
                *d = u8::from(s == label);
            }
        }
    }
    out
}

pub(super) fn extract(labels: &[u8], geometry: &VolumeGeometry, label: u8) -> Mesh {
    let dims = geometry.dims;
    let inside = padded_indicator(labels, dims, label);
    let p = [dims[0] + 2, dims[1] + 2, dims[2] + 2];
    let stride = [1, p[0], p[0] * p[1]];
    let corner_offsets: [usize; 8] = std::array::from_fn(|c| {
        let k = corner(c);
        k[0] * stride[0] + k[1] * stride[1] + k[2] * stride[2]
    });
    let mut b = Builder {
        geometry,
        mesh: Mesh::default(),
        edge_vertices: HashMap::new(),
        mirrored: geometry.direction_determinant() < 0.0,
    };
    let table = table();
    let mut loop_vertices: Vec<u32> = Vec::with_capacity(12);
    // Cube (x, y, z) has its lowest corner at padded voxel (x, y, z), i.e. grid voxel (x-1, y-1, z-1).
    for z in 0..p[2] - 1 {
        for y in 0..p[1] - 1 {
            for x in 0..p[0] - 1 {
                let base = x + y * stride[1] + z * stride[2];
                let case = (0..8).fold(0usize, |m, c| m | (usize::from(inside[base + corner_offsets[c]]) << c));
                if case == 0 || case == 255 {
                    continue;
                }
                for l in &table[case] {
                    loop_vertices.clear();
                    for &e in &l.edges {
                        let (c, axis) = EDGES[e as usize];
                        let key = ((base + corner_offsets[c]) as u64) * 3 + axis as u64;
                        let id = match b.edge_vertices.get(&key) {
                            Some(&id) => id,
                            None => {
                                let id = b.vertex(edge_midpoint([x, y, z], e));
                                b.edge_vertices.insert(key, id);
                                id
                            }
                        };
                        loop_vertices.push(id);
                    }
                    fan(&mut b, &loop_vertices, &l.edges, l.center, [x, y, z]);
                }
            }
        }
    }
    b.mesh
}

/// Triangulates one loop: a fan from its first vertex, or around a new vertex at the centre of
/// the loop's edge midpoints (computed in index space, where they are exact).
fn fan(b: &mut Builder, ring: &[u32], edges: &[u8], center: bool, cube: [usize; 3]) {
    if !center {
        for i in 1..ring.len() - 1 {
            b.triangle(ring[0], ring[i], ring[i + 1]);
        }
        return;
    }
    let mut index = [0.0f64; 3];
    for &e in edges {
        let m = edge_midpoint(cube, e);
        index = std::array::from_fn(|i| index[i] + m[i]);
    }
    let centre = b.vertex(index.map(|v| v / edges.len() as f64));
    for i in 0..ring.len() {
        b.triangle(centre, ring[i], ring[(i + 1) % ring.len()]);
    }
}

/// Grid index of the middle of edge `e` of the cube whose lowest corner is padded voxel `cube`.
fn edge_midpoint(cube: [usize; 3], e: u8) -> [f64; 3] {
    let (c, axis) = EDGES[e as usize];
    let k = corner(c);
    std::array::from_fn(|i| (cube[i] + k[i]) as f64 - 1.0 + if i == axis { 0.5 } else { 0.0 })
}
