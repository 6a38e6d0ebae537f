//! The marching-cubes case table, built once from the cube's geometry rather than typed in.
//!
//! Why built: the classic 256-entry tables resolve an ambiguous face (two inside corners on a
//! diagonal) differently in the two cubes that share it, which leaves holes. Here every face is
//! cut by one rule that looks only at the face's own four corners (each run of consecutive inside
//! corners is cut off by one segment, so diagonal inside corners are kept apart: the structure is
//! 6-connected, the background 26-connected), and both cubes sharing a face see the same segments.
//! The segments on a cube's six faces chain into closed loops; each loop becomes a fan of
//! triangles, so the surface is closed, every edge is shared by exactly two triangles, and
//! orientation is consistent.
//!
//! Orientation: a face's corners are walked counter-clockwise as seen from outside the cube and
//! each segment runs from the edge where a run of inside corners starts to the edge where it
//! ends. The neighbouring cube walks the same face the other way, so the two cubes traverse a
//! shared segment in opposite directions, and a loop's fan (v0, vi, vi+1) faces away from the
//! inside corners.

use std::sync::OnceLock;

/// Corner `c` of a cube sits at `(c & 1, c >> 1 & 1, c >> 2 & 1)`.
pub const fn corner(c: usize) -> [usize; 3] {
    [c & 1, (c >> 1) & 1, (c >> 2) & 1]
}

/// The 12 edges as (lower corner, axis); edge `4·axis + k` runs from the `k`-th corner (in
/// increasing order) whose `axis` bit is clear to the corner with that bit set.
pub const EDGES: [(usize, usize); 12] = {
    let mut edges = [(0, 0); 12];
    let mut axis = 0;
    while axis < 3 {
        let (mut c, mut k) = (0, 0);
        while c < 8 {
            if c & (1 << axis) == 0 {
                edges[4 * axis + k] = (c, axis);
                k += 1;
            }
            c += 1;
        }
        axis += 1;
    }
    edges
};

fn edge_between(a: usize, b: usize) -> u8 {
    let (lo, axis) = (a.min(b), (a ^ b).trailing_zeros() as usize);
    EDGES.iter().position(|&e| e == (lo, axis)).map_or(0, |i| i as u8)
}

/// Face (axis, side)'s corners, counter-clockwise as seen from outside the cube.
fn face_corners(axis: usize, side: usize) -> [usize; 4] {
    let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
    // (0,0) → (1,0) → (1,1) → (0,1) in the (u, v) plane turns about +axis (u × v = axis).
    let at = |du: usize, dv: usize| (side << axis) | (du << u) | (dv << v);
    let ccw_from_plus = [at(0, 0), at(1, 0), at(1, 1), at(0, 1)];
    if side == 1 { ccw_from_plus } else { [ccw_from_plus[0], ccw_from_plus[3], ccw_from_plus[2], ccw_from_plus[1]] }
}

/// Whether two edges lie on a common cube face.
fn share_face(e1: u8, e2: u8) -> bool {
    let (c1, a1) = EDGES[e1 as usize];
    let (c2, a2) = EDGES[e2 as usize];
    (0..3).any(|f| f != a1 && f != a2 && (c1 >> f) & 1 == (c2 >> f) & 1)
}

/// One closed loop of the surface inside a cube.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loop {
    /// The cube edges the loop crosses, in order.
    pub edges: Vec<u8>,
    /// Triangulate around a new vertex at the loop's centre instead of a fan from `edges[0]`:
    /// needed when every corner's fan would draw a diagonal across a cube face, which the
    /// neighbouring cube could draw too (an edge of four triangles).
    pub center: bool,
}

/// The loops of configuration `inside` (bit `c` set: corner `c` is inside the structure).
fn loops_of(inside: u8) -> Vec<Loop> {
    let is_in = |c: usize| inside & (1 << c) != 0;
    let mut next: [Option<u8>; 12] = [None; 12];
    for axis in 0..3 {
        for side in 0..2 {
            let p = face_corners(axis, side);
            for i in 0..4 {
                let prev = p[(i + 3) % 4];
                if !is_in(p[i]) || is_in(prev) {
                    continue;
                }
                let mut j = i;
                while is_in(p[(j + 1) % 4]) {
                    j = (j + 1) % 4;
                }
                next[edge_between(prev, p[i]) as usize] = Some(edge_between(p[j], p[(j + 1) % 4]));
            }
        }
    }
    let mut loops = Vec::new();
    let mut seen = [false; 12];
    for start in 0..12u8 {
        if seen[start as usize] || next[start as usize].is_none() {
            continue;
        }
        let mut edges = Vec::new();
        let mut e = start;
        while !seen[e as usize] {
            seen[e as usize] = true;
            edges.push(e);
            e = next[e as usize].unwrap_or(start);
        }
        loops.push(fan_apex_first(edges));
    }
    loops
}

/// Rotates the loop so that a fan from its first vertex draws no diagonal across a cube face;
/// marks it for a centre vertex when no vertex can be the apex.
fn fan_apex_first(edges: Vec<u8>) -> Loop {
    let n = edges.len();
    for k in 0..n {
        let rotated: Vec<u8> = edges[k..].iter().chain(&edges[..k]).copied().collect();
        if (2..n.saturating_sub(1)).all(|i| !share_face(rotated[0], rotated[i])) {
            return Loop { edges: rotated, center: false };
        }
    }
    Loop { edges, center: true }
}

/// The table: loops for each of the 256 corner configurations.
pub fn table() -> &'static [Vec<Loop>; 256] {
    static TABLE: OnceLock<[Vec<Loop>; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|inside| loops_of(inside as u8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_join_corners_one_step_apart() {
        for (c, axis) in EDGES {
            assert_eq!(c & (1 << axis), 0);
        }
        assert_eq!(EDGES[0], (0, 0));
        assert_eq!(EDGES[4], (0, 1));
        assert_eq!(EDGES[11], (3, 2));
    }

    #[test]
    fn one_inside_corner_is_one_triangle_facing_away_from_it() {
        // Corner 0 alone: the loop crosses the x, y and z edges at corner 0, in the order whose
        // right-hand normal points towards (1, 1, 1), away from the inside corner.
        assert_eq!(table()[1], vec![Loop { edges: vec![0, 4, 8], center: false }]);
    }

    #[test]
    fn diagonal_corners_on_a_face_stay_apart() {
        // Corners 0 and 3 (a diagonal of the z = 0 face): two separate triangles.
        let loops = &table()[0b1001];
        assert_eq!(loops.len(), 2);
        assert!(loops.iter().all(|l| l.edges.len() == 3));
        // The complement: one hexagon around the tube of background joining 0 and 3.
        let complement = &table()[0b1111_0110];
        assert_eq!(complement.len(), 1);
        assert_eq!(complement[0].edges.len(), 6);
    }

    #[test]
    fn every_crossed_edge_is_on_exactly_one_loop() {
        for (inside, loops) in table().iter().enumerate() {
            let mut crossed: Vec<u8> = (0..12u8)
                .filter(|&e| {
                    let (c, axis) = EDGES[e as usize];
                    (inside >> c & 1) != (inside >> (c | 1 << axis) & 1)
                })
                .collect();
            let mut on_loops: Vec<u8> = loops.iter().flat_map(|l| l.edges.clone()).collect();
            on_loops.sort_unstable();
            crossed.sort_unstable();
            assert_eq!(on_loops, crossed, "case {inside:#010b}");
        }
    }
}
