//! Surfaces must be closed, edge- and vertex-manifold and outward-wound for every voxel pattern;
//! measured volumes must match analytic ones; files must read back exactly.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::recon::volume::IDENTITY;

/// Checks the mesh is a closed oriented 2-manifold and returns its Euler characteristic.
/// Every directed edge must appear once and its reverse once (watertight, consistent winding),
/// and the triangles around each vertex must form one fan that closes (no pinched vertices).
fn euler_of_closed_manifold(mesh: &Mesh) -> i64 {
    let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
    let mut around: HashMap<u32, HashMap<u32, u32>> = HashMap::new();
    for t in &mesh.triangles {
        assert!(t[0] != t[1] && t[1] != t[2] && t[0] != t[2], "degenerate triangle {t:?}");
        for k in 0..3 {
            let (a, b, c) = (t[k], t[(k + 1) % 3], t[(k + 2) % 3]);
            *directed.entry((a, b)).or_default() += 1;
            assert!(around.entry(a).or_default().insert(b, c).is_none(), "vertex {a}: two fans leave {b}");
        }
    }
    for (&(a, b), &n) in &directed {
        assert_eq!(n, 1, "edge {a}->{b} is used {n} times in one direction");
        assert_eq!(directed.get(&(b, a)), Some(&1), "edge {a}->{b} has no opposite triangle (hole or flipped winding)");
    }
    for (v, next) in &around {
        let start = *next.keys().next().unwrap();
        let (mut at, mut steps) = (start, 0);
        loop {
            at = next[&at];
            steps += 1;
            if at == start {
                break;
            }
            assert!(steps <= next.len(), "vertex {v}: open fan");
        }
        assert_eq!(steps, next.len(), "vertex {v}: {} triangles in more than one fan", next.len());
    }
    assert_eq!(around.len(), mesh.vertices.len(), "unused vertices");
    mesh.vertices.len() as i64 - directed.len() as i64 / 2 + mesh.triangles.len() as i64
}

fn grid(dims: [usize; 3], inside: impl Fn([usize; 3]) -> bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                v.push(u8::from(inside([x, y, z])));
            }
        }
    }
    v
}

fn unit(dims: [usize; 3]) -> VolumeGeometry {
    VolumeGeometry::axis_aligned(dims, [0.0; 3], [1.0; 3])
}

#[test]
fn one_voxel_is_an_octahedron() {
    let g = unit([1, 1, 1]);
    let mesh = marching_cubes(&[1], &g, 1);
    assert_eq!((mesh.vertices.len(), mesh.triangles.len()), (6, 8));
    assert_eq!(euler_of_closed_manifold(&mesh), 2);
    // Vertices halfway to the neighbours: half-diagonals of 0.5 mm, volume 4/3 · 0.5³ mm³.
    assert!((mesh.enclosed_volume_ml() * 1000.0 - 1.0 / 6.0).abs() < 1e-9);
    assert!((mesh.area_mm2() - 3f64.sqrt()).abs() < 1e-6);
    assert!(marching_cubes(&[1], &g, 2).triangles.is_empty());
}

#[test]
fn diagonal_neighbours_stay_apart_and_closed() {
    // Along a face diagonal, an edge-only contact, and a corner-only contact.
    for other in [[1, 1, 0], [1, 1, 1], [0, 1, 1]] {
        let labels = grid([2, 2, 2], |p| p == [0, 0, 0] || p == other);
        let mesh = marching_cubes(&labels, &unit([2, 2, 2]), 1);
        assert_eq!(euler_of_closed_manifold(&mesh), 4, "two spheres for {other:?}");
        assert!((mesh.enclosed_volume_ml() * 1000.0 - 2.0 / 6.0).abs() < 1e-9);
    }
    // The complement: background on a diagonal inside a solid block stays one closed surface.
    let labels = grid([4, 4, 4], |p| !(p == [1, 1, 1] || p == [2, 2, 1]));
    assert_eq!(euler_of_closed_manifold(&marching_cubes(&labels, &unit([4, 4, 4]), 1)), 4);
}

/// Deterministic pseudo-random voxels (splitmix64), so a failure names its seed.
fn random_labels(n: usize, seed: u64, percent_inside: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            u8::from((z ^ (z >> 31)) % 100 < percent_inside)
        })
        .collect()
}

#[test]
fn random_voxels_always_give_closed_oriented_manifolds() {
    let dims = [7, 6, 5];
    for seed in 0..300 {
        let labels = random_labels(dims.iter().product(), seed, 10 + seed % 80);
        let mesh = marching_cubes(&labels, &unit(dims), 1);
        let chi = euler_of_closed_manifold(&mesh);
        assert_eq!(chi % 2, 0, "seed {seed}: a closed orientable surface has an even Euler characteristic");
        let voxels = labels.iter().filter(|&&v| v == 1).count();
        assert!(voxels == 0 || mesh.enclosed_volume_ml() > 0.0, "seed {seed}: inward-facing surface");
    }
}

proptest! {
    /// Every configuration of a 3×3×3 block (so every cube case and every face pairing occurs).
    #[test]
    fn any_block_is_a_closed_oriented_manifold(bits in any::<u32>(), label in 1u8..4) {
        let labels: Vec<u8> = (0..27).map(|i| if bits >> i & 1 == 1 { label } else { 0 }).collect();
        euler_of_closed_manifold(&marching_cubes(&labels, &unit([3, 3, 3]), label));
    }
}

/// An ellipsoid with semi-axes `abc` mm centred in a grid of `spacing` mm.
fn ellipsoid(abc: [f64; 3], spacing: f64) -> (Vec<u8>, [usize; 3]) {
    let dims = abc.map(|a| (2.0 * a / spacing).ceil() as usize + 4);
    let labels = grid(dims, |p| {
        (0..3)
            .map(|i| {
                let x = (p[i] as f64 - (dims[i] - 1) as f64 / 2.0) * spacing / abc[i];
                x * x
            })
            .sum::<f64>()
            <= 1.0
    });
    (labels, dims)
}

#[test]
fn voxelised_ball_is_a_sphere_of_the_right_volume() {
    let (labels, dims) = ellipsoid([6.0; 3], 0.5);
    let g = VolumeGeometry::axis_aligned(dims, [0.0; 3], [0.5; 3]);
    let mesh = marching_cubes(&labels, &g, 1);
    assert_eq!(euler_of_closed_manifold(&mesh), 2);
    let truth_ml = 4.0 / 3.0 * std::f64::consts::PI * 216.0 / 1000.0;
    let got = mesh.enclosed_volume_ml();
    println!("ball r = 6 mm at 0.5 mm: {got:.4} mL by surface, {truth_ml:.4} mL true");
    assert!((got / truth_ml - 1.0).abs() < 0.02, "{got} mL vs {truth_ml} mL");
    let area = 4.0 * std::f64::consts::PI * 36.0;
    // A staircase approximation overestimates area a little, never by a quarter.
    assert!(mesh.area_mm2() > 0.97 * area && mesh.area_mm2() < 1.25 * area, "{} mm²", mesh.area_mm2());
}

#[test]
fn ellipsoid_volume_at_fine_spacing_and_under_any_pose() {
    let abc = [10.0, 7.0, 5.0];
    let spacing = 0.25;
    let (labels, dims) = ellipsoid(abc, spacing);
    let truth_ml = 4.0 / 3.0 * std::f64::consts::PI * abc.iter().product::<f64>() / 1000.0;
    let straight = VolumeGeometry::axis_aligned(dims, [0.0; 3], [spacing; 3]);
    let mesh = marching_cubes(&labels, &straight, 1);
    assert_eq!(euler_of_closed_manifold(&mesh), 2);
    let base = mesh.enclosed_volume_ml();
    assert!((base / truth_ml - 1.0).abs() < 0.005, "{base} mL vs {truth_ml} mL");
    let voxels = label_volume_ml(&labels, &straight, 1);
    println!("ellipsoid 10×7×5 mm at 0.25 mm: {base:.4} mL by surface, {voxels:.4} by voxels, {truth_ml:.4} true");
    assert!((voxels / truth_ml - 1.0).abs() < 0.005, "{voxels} mL by voxel count vs {truth_ml} mL");

    // Turned about an oblique axis, moved far off, and mirrored: the same structure.
    let (s, c) = 0.6f64.sin_cos();
    let turned = [[c, -s, 0.0], [s * 0.6, c * 0.6, -0.8], [s * 0.8, c * 0.8, 0.6]];
    let mirrored = [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for direction in [turned, mirrored] {
        let g = VolumeGeometry { direction, origin_mm: [-120.5, 210.25, 33.0], ..straight.clone() };
        let moved = marching_cubes(&labels, &g, 1);
        assert_eq!(moved.triangles.len(), mesh.triangles.len());
        assert!((moved.enclosed_volume_ml() / base - 1.0).abs() < 1e-4, "{} vs {base}", moved.enclosed_volume_ml());
        assert!((moved.area_mm2() / mesh.area_mm2() - 1.0).abs() < 1e-4);
        assert!((label_volume_ml(&labels, &g, 1) / voxels - 1.0).abs() < 1e-12);
    }
}

#[test]
fn vertices_are_in_physical_millimetres() {
    let g = VolumeGeometry {
        dims: [1, 1, 1],
        origin_mm: [10.0, 20.0, 30.0],
        spacing_mm: [2.0, 4.0, 8.0],
        direction: [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let mesh = marching_cubes(&[1], &g, 1);
    let mut got: Vec<[f32; 3]> = mesh.vertices.clone();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // ±half a voxel along each axis: axis 0 (2 mm) along +y, axis 1 (4 mm) along -x.
    let mut want = vec![
        [10.0, 19.0, 30.0],
        [10.0, 21.0, 30.0],
        [8.0, 20.0, 30.0],
        [12.0, 20.0, 30.0],
        [10.0, 20.0, 26.0],
        [10.0, 20.0, 34.0],
    ];
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, want);
    assert!(mesh.enclosed_volume_ml() > 0.0);
    assert_eq!(g.direction_determinant(), 1.0);
    assert_eq!(IDENTITY[0][0], 1.0);
}

#[test]
fn labels_that_do_not_fit_the_grid_give_no_surface_and_no_volume() {
    let g = unit([3, 3, 3]);
    assert!(marching_cubes(&[1, 1], &g, 1).triangles.is_empty());
    assert!(marching_cubes(&[1; 28], &g, 1).triangles.is_empty());
    assert!(label_volume_ml(&[1, 1], &g, 1).is_nan());
    let absurd = VolumeGeometry::axis_aligned([usize::MAX, 2, 1], [0.0; 3], [1.0; 3]);
    assert!(marching_cubes(&[1, 1], &absurd, 1).triangles.is_empty());
    assert!(label_volume_ml(&[1; 27], &g, 1) == 0.027);
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A few hundred triangles off the origin, for the file tests.
fn small_mesh() -> Mesh {
    let (labels, dims) = ellipsoid([2.0, 1.5, 1.0], 0.5);
    marching_cubes(&labels, &VolumeGeometry::axis_aligned(dims, [1.0, 2.0, 3.0], [0.5; 3]), 1)
}

#[test]
fn stl_reads_back_exactly() {
    let mesh = small_mesh();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.stl");
    mesh.write_stl(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.starts_with(b"solid"), "a binary STL must not look like an ASCII one");
    assert!(bytes[..80].windows(9).any(|w| w == b"SPACE=LPS"));
    let count = u32::from_le_bytes(bytes[80..84].try_into().unwrap()) as usize;
    assert_eq!(count, mesh.triangles.len());
    assert_eq!(bytes.len(), 84 + 50 * count);
    for (t, record) in mesh.triangles.iter().zip(bytes[84..].chunks_exact(50)) {
        let v = f32s(&record[..48]);
        for k in 0..3 {
            assert_eq!(&v[3 + 3 * k..6 + 3 * k], &mesh.vertices[t[k] as usize]);
        }
        // The stored normal points the way the winding does, and is unit length.
        let [a, b, c] = corners(&mesh, t).unwrap();
        let n = (b - a).cross(&(c - a));
        let dot: f64 = (0..3).map(|i| n[i] * v[i] as f64).sum();
        assert!(dot > 0.0);
        assert!(((v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) - 1.0).abs() < 1e-5);
        assert_eq!(&record[48..], &[0, 0]);
    }
}

#[test]
fn ply_reads_back_exactly() {
    let mesh = small_mesh();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.ply");
    mesh.write_ply(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let end = bytes.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
    let header = std::str::from_utf8(&bytes[..end]).unwrap();
    assert!(header.starts_with("ply\nformat binary_little_endian 1.0\n"));
    assert!(header.contains(&format!("element vertex {}\n", mesh.vertices.len())));
    assert!(header.contains(&format!("element face {}\n", mesh.triangles.len())));
    assert!(header.contains("property list uchar int vertex_indices\n"));
    let (vertex_bytes, face_bytes) = bytes[end..].split_at(12 * mesh.vertices.len());
    let vertices: Vec<[f32; 3]> = f32s(vertex_bytes).chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    assert_eq!(vertices, mesh.vertices);
    let triangles: Vec<[u32; 3]> = face_bytes
        .chunks_exact(13)
        .map(|f| {
            assert_eq!(f[0], 3);
            std::array::from_fn(|k| i32::from_le_bytes(f[1 + 4 * k..5 + 4 * k].try_into().unwrap()) as u32)
        })
        .collect();
    assert_eq!(triangles, mesh.triangles);
    assert_eq!(face_bytes.len(), 13 * mesh.triangles.len());
}

#[test]
fn meshes_naming_missing_vertices_are_refused() {
    let mesh = Mesh { vertices: vec![[0.0; 3]; 2], triangles: vec![[0, 1, 2]] };
    let dir = tempfile::tempdir().unwrap();
    assert!(mesh.write_stl(&dir.path().join("m.stl")).is_err());
    assert!(mesh.write_ply(&dir.path().join("m.ply")).is_err());
    assert_eq!(mesh.enclosed_volume_ml(), 0.0);
    assert_eq!(mesh.area_mm2(), 0.0);
}
