//! Attention kernels of the CPU engine.
//!
//! Window attention (TinyViT): one task per window, all heads; q·kᵀ is computed as rows of
//! axpys over a transposed K so the inner loop runs over contiguous keys (vectorisable), the
//! relative-position bias is looked up as `|dy|·ws + |dx|`, and only queries inside the image are
//! computed (padded tokens are keys and values, never outputs). Scratch is per thread, sized at
//! plan time. (The mask decoder's attention is in `cross_attention.rs`.)

use super::gemm::{Epilogue, NR, gemm_serial_rows, pack_columns_into, pack_rows_into, packed_len};
use super::kernels::{SharedMut, WideJob, run_wide, softmax_row};
use super::pool::ThreadPool;
use crate::segment::ops::WindowGeometry;
#[cfg(test)]
use crate::segment::ops::expand_window_bias;

/// Most tokens in a window (TinyViT's largest window is 14 × 14).
const MAX_WINDOW_TOKENS: usize = 256;

/// Scratch floats one thread needs for windows of `n` tokens and `head_dim` channels: packed
/// kᵀ and v, the scores (rows padded to whole panels) and a row of zeros (the products' absent
/// bias). Queries are read and outputs written in place.
pub fn window_scratch_len(n: usize, head_dim: usize) -> usize {
    let row = n.next_multiple_of(NR);
    packed_len(head_dim, row) + packed_len(n, head_dim) + n * row + row.max(head_dim)
}

/// See [`crate::segment::ops::Ops::window_attention`]; `bias` is expanded to heads × n × n.
/// `scratch` holds `threads × window_scratch_len` floats.
pub fn window_attention(
    pool: &ThreadPool,
    qkv: &[f32],
    padding: &[f32],
    g: &WindowGeometry,
    bias: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let (ws, hd, heads) = (g.window, g.head_dim, g.heads);
    let n = ws * ws;
    let per_thread = window_scratch_len(n, hd);
    assert!(scratch.len() >= per_thread * pool.threads(), "window attention scratch");
    let c = heads * hd;
    assert!(qkv.len() >= g.height * g.width * 3 * c && padding.len() == 3 * c && out.len() >= g.height * g.width * c);
    assert_eq!(bias.len(), heads * n * n, "expanded attention bias");
    let windows_x = g.padded_width / ws;
    let out_ptr = SharedMut::new(out);
    let scratch_ptr = SharedMut::new(scratch);
    pool.for_each_on_thread((g.padded_height / ws) * windows_x, &|w, thread| {
        // SAFETY: each thread uses its own slice of the scratch.
        let s = unsafe { scratch_ptr.rows(thread * per_thread, per_thread) };
        let job = Window { qkv, padding, g, bias, out: out_ptr, wy: w / windows_x, wx: w % windows_x };
        run_wide(&job, s)
    });
}

/// One window of one image, all heads.
struct Window<'a> {
    qkv: &'a [f32],
    padding: &'a [f32],
    g: &'a WindowGeometry,
    bias: &'a [f32],
    out: SharedMut<'a>,
    wy: usize,
    wx: usize,
}

impl WideJob for Window<'_> {
    /// Inlined into the wide and the baseline copies, so every inner loop vectorises. Per head:
    /// pack scale·kᵀ and v, then S = q·(scale·kᵀ) for the queries inside the image (read in
    /// place), softmax(S + bias) row by row, and O = softmax·v written in place, the products
    /// register-blocked. Score rows are padded to whole panels (zero keys) so no tile of q·kᵀ
    /// takes the ragged path.
    #[inline(always)]
    fn run(&self, scratch: &mut [f32]) {
        let g = self.g;
        let (ws, hd, heads) = (g.window, g.head_dim, g.heads);
        let (n, c) = (ws * ws, heads * hd);
        let row = n.next_multiple_of(NR);
        let scale = (hd as f32).powf(-0.5);
        let (kt, rest) = scratch.split_at_mut(packed_len(hd, row));
        let (vp, rest) = rest.split_at_mut(packed_len(n, hd));
        let (scores, rest) = rest.split_at_mut(n * row);
        // Scratch is shared with other kernels: make the zeros zero.
        let zeros = &mut rest[..row.max(hd)];
        zeros.fill(0.0);
        let zeros = &*zeros;
        // Each token's qkv row, found once per window (the packing below reads every element,
        // and the window arithmetic per element would cost more than the copy), and which tokens
        // are queries: those inside the image (padding tokens are keys and values only).
        assert!(n <= MAX_WINDOW_TOKENS, "windows of {n} tokens");
        let mut token_rows: [&[f32]; MAX_WINDOW_TOKENS] = [&[]; MAX_WINDOW_TOKENS];
        let (mut queries, mut m) = ([0usize; MAX_WINDOW_TOKENS], 0);
        for (t, token_row) in token_rows.iter_mut().enumerate().take(n) {
            let (y, x) = (self.wy * ws + t / ws, self.wx * ws + t % ws);
            *token_row = if y < g.height && x < g.width {
                queries[m] = t;
                m += 1;
                &self.qkv[(y * g.width + x) * 3 * c..][..3 * c]
            } else {
                self.padding
            };
        }
        for h in 0..heads {
            let part = |t: usize, which: usize| &token_rows[t][(3 * h + which) * hd..][..hd];
            // Keys past n (to the whole panel) are zero columns.
            let kt = pack_columns_into(kt, hd, row, |j| if j < n { part(j, 1) } else { zeros }, scale, zeros);
            let vp = pack_rows_into(vp, n, hd, |j| part(j, 2), zeros);
            let scores_at = scores.as_mut_ptr();
            let scores_row = |i: usize| scores_at.wrapping_add(i * row);
            // SAFETY: score row i (of `row` values) is this thread's scratch.
            unsafe { gemm_serial_rows(m, |i| part(queries[i], 0), kt, scores_row, Epilogue::None) };
            let bias = &self.bias[h * n * n..(h + 1) * n * n];
            for (s, &t) in scores.chunks_exact_mut(row).zip(&queries[..m]) {
                let s = &mut s[..n];
                for (v, b) in s.iter_mut().zip(&bias[t * n..(t + 1) * n]) {
                    *v += b;
                }
                softmax_row(s);
            }
            let out_row = |i: usize| {
                let t = queries[i];
                let (y, x) = (self.wy * ws + t / ws, self.wx * ws + t % ws);
                // SAFETY: token (y, x) is inside the image, so its row is inside `out`.
                unsafe { self.out.at((y * g.width + x) * c + h * hd) }
            };
            // SAFETY: query token (y, x)'s head h belongs to this window alone.
            unsafe { gemm_serial_rows(m, |i| &scores[i * row..][..row], vp, out_row, Epilogue::None) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward attention for one head over explicit q, k, v rows.
    fn naive(q: &[Vec<f32>], k: &[Vec<f32>], v: &[Vec<f32>], bias: impl Fn(usize, usize) -> f32) -> Vec<Vec<f32>> {
        let scale = (q[0].len() as f32).powf(-0.5);
        q.iter()
            .enumerate()
            .map(|(i, qi)| {
                let s: Vec<f32> = k
                    .iter()
                    .enumerate()
                    .map(|(j, kj)| qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale + bias(i, j))
                    .collect();
                let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f32 = e.iter().sum();
                (0..v[0].len()).map(|dd| e.iter().zip(v).map(|(p, vj)| p / z * vj[dd]).sum()).collect()
            })
            .collect()
    }

    #[test]
    fn window_attention_matches_naive_with_padding_and_bias() {
        let pool = ThreadPool::new(2).unwrap();
        // A 5 × 4 image, windows of 3: padded to 6 × 6, 2 × 2 windows, 2 heads of 4 channels.
        let g =
            WindowGeometry { height: 5, width: 4, padded_height: 6, padded_width: 6, window: 3, heads: 2, head_dim: 4 };
        let c = 8;
        let qkv: Vec<f32> = (0..20 * 3 * c).map(|i| ((i * 37) % 23) as f32 * 0.1 - 1.1).collect();
        let padding: Vec<f32> = (0..3 * c).map(|i| ((i * 11) % 7) as f32 * 0.15 - 0.4).collect();
        let bias: Vec<f32> = (0..2 * 9).map(|i| i as f32 * 0.05).collect();
        let mut out = vec![0.0; 20 * c];
        let mut scratch = vec![0.0; 2 * window_scratch_len(9, 4)];
        window_attention(&pool, &qkv, &padding, &g, &expand_window_bias(&bias, 2, 3), &mut out, &mut scratch);
        for (wy, wx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let tokens: Vec<(usize, usize)> = (0..9).map(|t| (wy * 3 + t / 3, wx * 3 + t % 3)).collect();
            for h in 0..2 {
                // Tokens outside the 5 × 4 image pad the grid: all share the padding row.
                let part = |t: &(usize, usize), off: usize| {
                    let row = if t.0 < 5 && t.1 < 4 { &qkv[(t.0 * 4 + t.1) * 3 * c..][..3 * c] } else { &padding[..] };
                    row[h * 12 + off..h * 12 + off + 4].to_vec()
                };
                let q: Vec<_> = tokens.iter().map(|t| part(t, 0)).collect();
                let k: Vec<_> = tokens.iter().map(|t| part(t, 4)).collect();
                let v: Vec<_> = tokens.iter().map(|t| part(t, 8)).collect();
                let want =
                    naive(&q, &k, &v, |i, j| bias[h * 9 + (i / 3).abs_diff(j / 3) * 3 + (i % 3).abs_diff(j % 3)]);
                for (i, t) in tokens.iter().enumerate() {
                    if t.0 < 5 && t.1 < 4 {
                        let got = &out[(t.0 * 4 + t.1) * c + h * 4..][..4];
                        for (a, b) in got.iter().zip(&want[i]) {
                            assert!((a - b).abs() < 1e-5, "window ({wy},{wx}) head {h} token {t:?}");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Not a test: window attention at the encoder's stage shapes (stage 2: 6 blocks, stage 1
    /// and 3: 2 each). `cargo test --release --lib window_attention_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn window_attention_speed() {
        let pool = ThreadPool::new(2).unwrap();
        for (side, ws, heads) in [(128usize, 7usize, 4usize), (64, 14, 5), (64, 7, 10)] {
            let padded = side.next_multiple_of(ws);
            let g = WindowGeometry {
                height: side,
                width: side,
                padded_height: padded,
                padded_width: padded,
                window: ws,
                heads,
                head_dim: 32,
            };
            let (n, c) = (ws * ws, heads * 32);
            let qkv: Vec<f32> = (0..side * side * 3 * c).map(|i| ((i * 37) % 23) as f32 * 0.01 - 0.1).collect();
            let padding = vec![0.01; 3 * c];
            let bias = vec![0.1; heads * n * n];
            let mut out = vec![0.0; side * side * c];
            let mut scratch = vec![0.0; 2 * window_scratch_len(n, 32)];
            let mut best = f64::MAX;
            for _ in 0..10 {
                let t = std::time::Instant::now();
                window_attention(&pool, &qkv, &padding, &g, &bias, &mut out, &mut scratch);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let flops = 4.0 * (side * side * n * c) as f64;
            eprintln!(
                "{side}x{side} window {ws} heads {heads}: {:.2} ms, {:.0} GFLOP/s",
                best * 1e3,
                flops / best / 1e9
            );
        }
    }
}
