//! TinyViT's MLP with its residual fused into one pass over row blocks, for the CPU engine:
//! `x += fc2(gelu(fc1(layer_norm(x))))`.
//!
//! Why: run as three ops, the 4C-wide hidden layer (up to 32 MiB at 128 × 128 tokens) is written
//! to memory by fc1 and read back by fc2, and the norm makes one more pass. Here each task takes
//! a block of rows, normalises them into its scratch, and runs both products on them while the
//! hidden block (at most 48 × 1280 floats) is still in cache. The same products, in the same
//! order, as the unfused ops: the results are identical.

use super::gemm::{Epilogue, PackedB, gemm_serial};
use super::kernels::{SharedMut, WideJob, layer_norm_rows, run_wide};
use super::pool::ThreadPool;

/// Rows one task takes: one of the products' row blocks.
const BLOCK_ROWS: usize = 48;

pub struct MlpArgs<'a> {
    pub rows: usize,
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
    pub fc1: &'a PackedB,
    pub fc2: &'a PackedB,
}

/// Scratch floats one thread needs for `c` channels and a `hidden`-wide layer.
pub fn scratch_len(c: usize, hidden: usize) -> usize {
    BLOCK_ROWS * (c + hidden)
}

/// `x[rows × c] += fc2(gelu(fc1(layer_norm(x))))`, in place.
pub fn mlp(pool: &ThreadPool, a: &MlpArgs, x: &mut [f32], scratch: &mut [f32]) {
    let (c, hidden) = (a.fc1.k, a.fc1.n);
    assert!(a.fc2.k == hidden && a.fc2.n == c && a.gamma.len() == c && a.beta.len() == c, "mlp weights");
    assert!(x.len() >= a.rows * c, "mlp input");
    let per_thread = scratch_len(c, hidden);
    assert!(scratch.len() >= per_thread * pool.threads(), "mlp scratch");
    let x_ptr = SharedMut::new(x);
    let scratch_ptr = SharedMut::new(scratch);
    pool.for_each_on_thread(a.rows.div_ceil(BLOCK_ROWS), &|block, thread| {
        // SAFETY: each thread uses its own part of the scratch.
        let s = unsafe { scratch_ptr.rows(thread * per_thread, per_thread) };
        let rows = block * BLOCK_ROWS..((block + 1) * BLOCK_ROWS).min(a.rows);
        run_wide(&Block { a, x: x_ptr, rows }, s)
    });
}

struct Block<'a> {
    a: &'a MlpArgs<'a>,
    x: SharedMut<'a>,
    /// The rows of x this task reads for the norm and adds fc2's output to.
    rows: std::ops::Range<usize>,
}

impl WideJob for Block<'_> {
    #[inline(always)]
    fn run(&self, scratch: &mut [f32]) {
        let a = self.a;
        let (c, hidden) = (a.fc1.k, a.fc1.n);
        let m = self.rows.len();
        // SAFETY: these rows of x belong to this task alone (`mlp` splits them by block).
        let x = unsafe { self.x.rows(self.rows.start * c, m * c) };
        let (normed, rest) = scratch.split_at_mut(m * c);
        let hidden_rows = &mut rest[..m * hidden];
        layer_norm_rows(x, c, a.gamma, a.beta, a.eps, normed);
        gemm_serial(normed, c, m, a.fc1.view(), hidden_rows, hidden, Epilogue::Gelu);
        gemm_serial(hidden_rows, hidden, m, a.fc2.view(), x, c, Epilogue::AddToOutput);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::cpu::gemm::gemm;
    use crate::segment::cpu::kernels::layer_norm;

    #[test]
    fn fused_equals_the_layers_one_after_another() {
        let pool = ThreadPool::new(2).unwrap();
        // 101 rows: blocks of 48 with a ragged last one; 40 channels: ragged panels.
        let (rows, c, hidden) = (101, 40, 160);
        let v = |n: usize, m: usize| -> Vec<f32> { (0..n).map(|i| ((i * m) % 17) as f32 * 0.02 - 0.16).collect() };
        let x = v(rows * c, 7);
        let (gamma, beta) = (v(c, 3), v(c, 5));
        let fc1 = PackedB::from_linear(&v(hidden * c, 11), hidden, c, Some(&v(hidden, 13)));
        let fc2 = PackedB::from_linear(&v(c * hidden, 19), c, hidden, Some(&v(c, 23)));

        let mut unfused = x.clone();
        let mut normed = vec![0.0; rows * c];
        layer_norm(&pool, &x, rows, c, &gamma, &beta, 1e-5, &mut normed);
        let mut h = vec![0.0; rows * hidden];
        gemm(&pool, &normed, c, rows, &fc1, &mut h, hidden, Epilogue::Gelu);
        gemm(&pool, &h, hidden, rows, &fc2, &mut unfused, c, Epilogue::AddToOutput);

        let mut fused = x.clone();
        let mut scratch = vec![f32::NAN; scratch_len(c, hidden) * pool.threads()];
        let args = MlpArgs { rows, gamma: &gamma, beta: &beta, eps: 1e-5, fc1: &fc1, fc2: &fc2 };
        mlp(&pool, &args, &mut fused, &mut scratch);

        assert!(fused != x, "the MLP changed nothing");
        for (i, (a, b)) in fused.iter().zip(&unfused).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "element {i}: {a} vs {b}");
        }
    }
}
