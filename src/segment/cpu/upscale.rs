//! The mask decoder's upscaling and its hypernetwork product as one op of the CPU engine: two 2×2,
//! stride-2 transposed convolutions (LayerNorm2d and GELU after the first, GELU after the second)
//! and a dot product per 256² pixel, a row of the 64² image per task, so neither the 128² × 64 nor
//! the 256² × 32 features leave the thread's scratch.

use super::gemm::{Epilogue, PackedB, gemm_serial_rows};
use super::kernels::{SharedMut, dot8, layer_norm_gelu_rows, multiversion};
use super::pool::ThreadPool;

/// The mask decoder's upscaling: two 2×2, stride-2 transposed convolutions as products (columns
/// (dy, dx, channel)), LayerNorm2d + GELU after the first, GELU after the second.
pub struct Upscaling<'a> {
    pub up1: &'a PackedB,
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
    pub up2: &'a PackedB,
}

/// See [`crate::segment::ops::Ops::upscaled_logits`]: one task per row of the side × side image;
/// its pixels through `up1` (4 rows of `gamma.len()` channels each, left in (x, dy, dx) order:
/// the norm and GELU are per row), then `up2` (4 parts per row), then each part's dot product
/// with `v` onto its pixel. All in the thread's scratch (the pool's threads × 64 K floats).
pub fn upscaled_logits(
    pool: &ThreadPool,
    x: &[f32],
    side: usize,
    up: &Upscaling,
    v: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (k, mid, cols, out_side) = (up.up1.k, up.gamma.len(), v.len(), 4 * side);
    assert!(up.up1.n == 4 * mid && up.up2.k == mid && up.up2.n == 4 * cols, "upscaled_logits: weight shapes");
    assert!(x.len() >= side * side * k && out.len() >= out_side * out_side, "upscaled_logits operand sizes");
    let rows = 4 * side;
    let (first, normed, features) = (side * up.up1.n, rows * mid, rows * up.up2.n);
    let per_thread = scratch.len() / pool.threads();
    assert!(per_thread >= first + normed + features, "upscaled_logits scratch");
    let o = SharedMut::new(out);
    let s = SharedMut::new(scratch);
    pool.for_each_on_thread(side, &|y, thread| {
        // SAFETY: each thread uses its own slice of the scratch (per_thread floats, bounded above).
        let mine = unsafe { s.rows(thread * per_thread, per_thread) };
        let (a, rest) = mine.split_at_mut(first);
        let (b, rest) = rest.split_at_mut(normed);
        let f = &mut rest[..features];
        let (a_at, f_at) = (SharedMut::new(a), SharedMut::new(f));
        // SAFETY: row i of `a` (up1.n floats) is in this thread's scratch.
        unsafe {
            gemm_serial_rows(
                side,
                |i| &x[(y * side + i) * k..][..k],
                up.up1.view(),
                |i| a_at.at(i * up.up1.n),
                Epilogue::None,
            )
        };
        layer_norm_gelu_rows(a, mid, up.gamma, up.beta, up.eps, b);
        let b = &*b;
        // SAFETY: row i of `f` (up2.n floats) is in this thread's scratch.
        unsafe {
            gemm_serial_rows(rows, |i| &b[i * mid..][..mid], up.up2.view(), |i| f_at.at(i * up.up2.n), Epilogue::Gelu)
        };
        // SAFETY: task y writes output rows 4y..4y + 4 only.
        let dst = unsafe { o.rows(4 * y * out_side, 4 * out_side) };
        matvec_upscaled_row(f, cols, v, out_side, dst);
    });
}

multiversion! {
    fn matvec_upscaled_row(rows: &[f32], cols: usize, v: &[f32], out_side: usize, dst: &mut [f32]) {
        for (i, row) in rows.chunks_exact(cols).enumerate() {
            let (x, q1, q2) = (i / 16, (i / 4) % 4, i % 4);
            let (dy, dx) = (2 * (q1 / 2) + q2 / 2, 4 * x + 2 * (q1 % 2) + q2 % 2);
            dst[dy * out_side + dx] = dot8(row, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::cpu::kernels::gelu;

    /// The fused upscaling against the plain steps: product, pixel shuffle, LayerNorm + GELU,
    /// product + GELU, pixel shuffle, then a dot product per pixel.
    #[test]
    fn upscaled_logits_match_the_plain_steps() {
        let (side, k, mid, cols) = (3, 8, 4, 3);
        let val = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| (((i * 7919 + seed * 131) % 997) as f32 / 997.0 - 0.5) * 1.5).collect()
        };
        let (x, w1, b1, w2, b2) =
            (val(side * side * k, 1), val(k * 4 * mid, 2), val(4 * mid, 3), val(mid * 4 * cols, 4), val(4 * cols, 5));
        let (gamma, beta, v) = (val(mid, 6), val(mid, 7), val(cols, 8));
        let (up1, up2) =
            (PackedB::from_k_by_n(&w1, k, 4 * mid, Some(&b1)), PackedB::from_k_by_n(&w2, mid, 4 * cols, Some(&b2)));
        let product = |a: &[f32], rows: usize, w: &[f32], b: &[f32], kk: usize, n: usize| -> Vec<f32> {
            (0..rows * n)
                .map(|i| (0..kk).map(|e| a[i / n * kk + e] * w[e * n + i % n]).sum::<f32>() + b[i % n])
                .collect()
        };
        // (side² rows of 4 parts) → a (2·side)² image of `c`-channel pixels.
        let shuffle = |a: &[f32], side: usize, c: usize| -> Vec<f32> {
            let mut out = vec![0.0; a.len()];
            for (p, part) in a.chunks_exact(c).enumerate() {
                let (cell, q) = (p / 4, p % 4);
                let (y, x) = (2 * (cell / side) + q / 2, 2 * (cell % side) + q % 2);
                out[(y * 2 * side + x) * c..][..c].copy_from_slice(part);
            }
            out
        };
        let h1 = shuffle(&product(&x, side * side, &w1, &b1, k, 4 * mid), side, mid);
        let mut n1 = vec![0.0; h1.len()];
        for (row, o) in h1.chunks_exact(mid).zip(n1.chunks_exact_mut(mid)) {
            layer_norm_gelu_rows(row, mid, &gamma, &beta, 1e-6, o);
        }
        let mut h2 = product(&n1, 4 * side * side, &w2, &b2, mid, 4 * cols);
        h2.iter_mut().for_each(|v| *v = gelu(*v));
        let h2 = shuffle(&h2, 2 * side, cols);
        let want: Vec<f32> = h2.chunks_exact(cols).map(|p| p.iter().zip(&v).map(|(a, b)| a * b).sum()).collect();

        let pool = ThreadPool::new(2).unwrap();
        let mut out = vec![f32::NAN; 16 * side * side];
        let mut scratch = vec![0.0; 2 * 4096];
        let up = Upscaling { up1: &up1, gamma: &gamma, beta: &beta, eps: 1e-6, up2: &up2 };
        upscaled_logits(&pool, &x, side, &up, &v, &mut out, &mut scratch);
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-4, "pixel {i}: {a} vs {b}");
        }
    }
}
