//! Multi-head attention with its projections, for the mask decoder's two-way transformer, where
//! one side is a handful of tokens and the other the 4096 positions of the image embedding.
//!
//! Projecting the image side is most of the work of the plain form (4096 × 256 × 128 per
//! projection) and its scores have 16-wide heads, which no kernel runs fast. Both are avoided by
//! moving the projections to the few tokens' side, where they are cheap:
//!
//! - **Few queries, many keys** (tokens attend to the image): `q_h · (W_k,h y + b_k,h)` =
//!   `(W_k,hᵀ q_h) · y` + a term constant over keys (dropped: softmax ignores it), and
//!   `Σ_j p_j (W_v,h y_j + b_v,h) = W_v,h (Σ_j p_j y_j) + b_v,h` (the weights sum to 1). So the
//!   scores of all heads are one product `A · Yᵀ` (A: heads·nq × 256) and the values one product
//!   `P · V` (P: heads·nq × nk), both on the unprojected image rows.
//! - **Many queries, few keys** (the image attends to the tokens): the key side folds into the
//!   query projection, `(W_q,h x + b_q,h) · k_j,h = x · (W_q,hᵀ k_j,h) + b_q,h · k_j,h`, and the
//!   value side into the output projection, `Σ_h W_o,h Σ_j p_hj v_j,h = Σ_hj p_hj (W_o,h v_j,h)`.
//!   So each image row needs one product with a 256 × heads·nk matrix, a softmax per head, and one
//!   product with a heads·nk × 256 matrix, done a block of rows at a time inside one task.
//!
//! The image side costs 2 · 256 · heads·n multiply-adds per row instead of 2 · 256 · 128 plus the
//! attention itself, and every large step is a register-blocked product.

use super::gemm::{
    Epilogue, PackedB, gemm, gemm_packed, gemm_serial_rows, pack_columns_into, pack_rows_into, packed_len,
};
use super::kernels::{SharedMut, dot8, softmax_columns, softmax_row};
use super::pool::ThreadPool;
use crate::segment::ops::AttentionWeights;

/// Up to this many queries and keys, the plain form.
const DIRECT_MAX: usize = 16;
/// Image rows per task in the many-queries form.
const ROWS_PER_TASK: usize = 64;
/// Keys per packed block of V in the few-queries form (with [`COLUMNS_PER_TASK`] columns, a block
/// takes 64 K floats of a thread's scratch).
const KEYS_PER_BLOCK: usize = 1024;
/// Columns of the values per task in the few-queries form.
const COLUMNS_PER_TASK: usize = 64;

/// One call's inputs: q is nq × dim, k and v are nk × dim.
#[derive(Clone, Copy)]
struct Operands<'a> {
    q: &'a [f32],
    nq: usize,
    k: &'a [f32],
    v: &'a [f32],
    nk: usize,
}

/// One call's scratch: shared by the steps, and a slice of `per_thread_len` per thread.
struct Scratch<'a> {
    shared: &'a mut [f32],
    per_thread: &'a mut [f32],
    per_thread_len: usize,
}

/// One attention layer's weights: packed for the small side's projections, and as PyTorch has
/// them for the folds (`W` is out × in).
pub struct CrossAttention {
    /// Model width (input rows and output rows).
    dim: usize,
    /// Inner width (q, k, v), split into `heads` heads.
    inner: usize,
    heads: usize,
    q: PackedB,
    k: PackedB,
    v: PackedB,
    out: PackedB,
    wq: Vec<f32>,
    bq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    bv: Vec<f32>,
    /// `W_o` (dim × inner).
    wo: Vec<f32>,
    bo: Vec<f32>,
}

impl CrossAttention {
    pub fn new(w: &AttentionWeights) -> Self {
        let (d, c) = (w.dim, w.inner);
        assert!(w.heads > 0 && c % w.heads == 0, "{c} channels do not split into {} heads", w.heads);
        let check = |(m, b): (&[f32], &[f32]), rows: usize, cols: usize, what: &str| {
            assert!(m.len() == rows * cols && b.len() == rows, "attention {what}: {rows} × {cols} weight expected");
        };
        check(w.q, c, d, "q");
        check(w.k, c, d, "k");
        check(w.v, c, d, "v");
        check(w.out, d, c, "out");
        CrossAttention {
            dim: d,
            inner: c,
            heads: w.heads,
            q: PackedB::from_linear(w.q.0, c, d, Some(w.q.1)),
            k: PackedB::from_linear(w.k.0, c, d, Some(w.k.1)),
            v: PackedB::from_linear(w.v.0, c, d, Some(w.v.1)),
            out: PackedB::from_linear(w.out.0, d, c, Some(w.out.1)),
            wq: w.q.0.to_vec(),
            bq: w.q.1.to_vec(),
            wk: w.k.0.to_vec(),
            wv: w.v.0.to_vec(),
            bv: w.v.1.to_vec(),
            wo: w.out.0.to_vec(),
            bo: w.out.1.to_vec(),
        }
    }

    fn head_dim(&self) -> usize {
        self.inner / self.heads
    }

    fn scale(&self) -> f32 {
        (self.head_dim() as f32).powf(-0.5)
    }

    /// Floats of shared scratch [`attend`](Self::attend) needs for up to `queries` × `keys`.
    pub fn scratch_len(&self, queries: usize, keys: usize) -> usize {
        let (d, c) = (self.dim, self.inner);
        let few = queries.min(keys);
        let width = self.heads * few;
        let few_to_many = 2 * few * c + 2 * width * d + packed_len(d, width) + 2 * queries.max(keys) * width;
        let many_to_few = 2 * few * c + 2 * width * d + packed_len(d, width) + packed_len(width, d) + width;
        let direct = (2 * queries + 2 * keys) * c + keys;
        // Plus a row of zeros (the absent biases).
        few_to_many.max(many_to_few).max(direct) + width.max(d)
    }

    /// Floats of per-thread scratch [`attend`](Self::attend) needs for up to `queries` × `keys`.
    pub fn thread_scratch_len(&self, queries: usize, keys: usize) -> usize {
        let width = self.heads * queries.min(keys);
        (KEYS_PER_BLOCK * COLUMNS_PER_TASK).max(ROWS_PER_TASK * width)
    }

    /// `out[nq × dim] = out_proj(attention(q_proj(q), k_proj(k), v_proj(v)))`: q is nq × dim,
    /// k and v are nk × dim. `shared` holds [`scratch_len`](Self::scratch_len) floats,
    /// `per_thread` the pool's threads × [`thread_scratch_len`](Self::thread_scratch_len).
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        pool: &ThreadPool,
        q: &[f32],
        nq: usize,
        k: &[f32],
        v: &[f32],
        nk: usize,
        out: &mut [f32],
        shared: &mut [f32],
        per_thread: &mut [f32],
    ) {
        let d = self.dim;
        assert!(
            q.len() >= nq * d && k.len() >= nk * d && v.len() >= nk * d && out.len() >= nq * d,
            "attention operands"
        );
        assert!(shared.len() >= self.scratch_len(nq, nk), "attention scratch");
        let per_thread_len = per_thread.len() / pool.threads();
        assert!(per_thread_len >= self.thread_scratch_len(nq, nk), "attention per-thread scratch");
        let io = Operands { q, nq, k, v, nk };
        let scratch = Scratch { shared, per_thread, per_thread_len };
        if nq.max(nk) <= DIRECT_MAX {
            self.direct(pool, &io, out, scratch.shared);
        } else if nq <= nk {
            self.few_queries(pool, &io, out, scratch);
        } else {
            self.many_queries(pool, &io, out, scratch);
        }
    }

    /// The plain form, for a handful of queries and keys (the tokens' self-attention), where
    /// the folds and the parallel steps would cost more than they save.
    fn direct(&self, pool: &ThreadPool, io: &Operands, out: &mut [f32], shared: &mut [f32]) {
        let Operands { q, nq, k, v, nk } = *io;
        let (d, c, hd) = (self.dim, self.inner, self.head_dim());
        let (qp, rest) = shared.split_at_mut(nq * c);
        let (kp, rest) = rest.split_at_mut(nk * c);
        let (vp, rest) = rest.split_at_mut(nk * c);
        let (attn, rest) = rest.split_at_mut(nq * c);
        let scores = &mut rest[..nk];
        gemm(pool, q, d, nq, &self.q, qp, c, Epilogue::None);
        gemm(pool, k, d, nk, &self.k, kp, c, Epilogue::None);
        gemm(pool, v, d, nk, &self.v, vp, c, Epilogue::None);
        let scale = self.scale();
        for h in 0..self.heads {
            // Row i's channels of head h.
            let part = |i: usize| i * c + h * hd..i * c + (h + 1) * hd;
            for i in 0..nq {
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = dot8(&qp[part(i)], &kp[part(j)]) * scale;
                }
                softmax_row(scores);
                let o = &mut attn[part(i)];
                o.fill(0.0);
                for (j, &p) in scores.iter().enumerate() {
                    for (x, y) in o.iter_mut().zip(&vp[part(j)]) {
                        *x += p * y;
                    }
                }
            }
        }
        gemm(pool, attn, c, nq, &self.out, out, d, Epilogue::None);
    }

    /// Few queries over many keys: scores `A · kᵀ`, softmax, `P · v`, then the small projections.
    fn few_queries(&self, pool: &ThreadPool, io: &Operands, out: &mut [f32], scratch: Scratch) {
        let Operands { q, nq, k, v, nk } = *io;
        let Scratch { shared, per_thread, per_thread_len } = scratch;
        let (d, c, hd) = (self.dim, self.inner, self.head_dim());
        let width = self.heads * nq;
        let (qp, rest) = shared.split_at_mut(nq * c);
        let (a, rest) = rest.split_at_mut(width * d);
        let (a_packed, rest) = rest.split_at_mut(packed_len(d, width));
        let (scores_t, rest) = rest.split_at_mut(nk * width);
        let (probs, rest) = rest.split_at_mut(width * nk);
        let (g, rest) = rest.split_at_mut(width * d);
        let (attn, rest) = rest.split_at_mut(nq * c);
        let zeros = &mut rest[..width.max(d)];
        zeros.fill(0.0);
        let zeros = &*zeros;

        // A[h·nq + i] = scale · W_k,hᵀ q_i,h: each query, per head, moved into the keys' space.
        gemm(pool, q, d, nq, &self.q, qp, c, Epilogue::None);
        let scale = self.scale();
        for h in 0..self.heads {
            for i in 0..nq {
                let row = &mut a[(h * nq + i) * d..][..d];
                row.fill(0.0);
                for e in h * hd..(h + 1) * hd {
                    let s = scale * qp[i * c + e];
                    for (r, w) in row.iter_mut().zip(&self.wk[e * d..(e + 1) * d]) {
                        *r += s * w;
                    }
                }
            }
        }
        // Scores, key-major (nk × heads·nq): the keys are the product's rows, read in place.
        let a_t = pack_columns_into(a_packed, d, width, |r| &a[r * d..(r + 1) * d], 1.0, zeros);
        gemm_packed(pool, k, d, nk, a_t, scores_t, width, Epilogue::None);
        // Query-major, then a softmax over the keys of each (head, query).
        transpose(pool, scores_t, nk, width, probs);
        let p = SharedMut::new(probs);
        pool.for_each(width, &|r| {
            // SAFETY: task r owns row r.
            softmax_row(unsafe { p.rows(r * nk, nk) })
        });
        // G = P · v, a block of value columns per task, v packed a block of keys at a time.
        let probs = &*probs;
        let g_ptr = SharedMut::new(g);
        let s_ptr = SharedMut::new(per_thread);
        pool.for_each_on_thread(d.div_ceil(COLUMNS_PER_TASK), &|task, thread| {
            let col0 = task * COLUMNS_PER_TASK;
            let cols = COLUMNS_PER_TASK.min(d - col0);
            // SAFETY: each thread uses its own slice of the scratch.
            let block = unsafe { s_ptr.rows(thread * per_thread_len, per_thread_len) };
            for j0 in (0..nk).step_by(KEYS_PER_BLOCK) {
                let keys = KEYS_PER_BLOCK.min(nk - j0);
                let vb = pack_rows_into(block, keys, cols, |j| &v[(j0 + j) * d + col0..][..cols], zeros);
                let epi = if j0 == 0 { Epilogue::None } else { Epilogue::AddToOutput };
                // SAFETY: this task alone writes columns col0.. of G's rows.
                unsafe {
                    gemm_serial_rows(width, |r| &probs[r * nk + j0..][..keys], vb, |r| g_ptr.at(r * d + col0), epi)
                };
            }
        });
        // attn_i,h = W_v,h G[h·nq + i] + b_v,h, then the output projection.
        for h in 0..self.heads {
            for i in 0..nq {
                let gr = &g[(h * nq + i) * d..][..d];
                for e in h * hd..(h + 1) * hd {
                    attn[i * c + e] = dot8(gr, &self.wv[e * d..(e + 1) * d]) + self.bv[e];
                }
            }
        }
        gemm(pool, attn, c, nq, &self.out, out, d, Epilogue::None);
    }

    /// Many queries over few keys: per block of query rows, scores `x · B + b`, softmax per head,
    /// and `P · M + b_o`, where B and M fold the keys' and values' projections.
    fn many_queries(&self, pool: &ThreadPool, io: &Operands, out: &mut [f32], scratch: Scratch) {
        let Operands { q, nq, k, v, nk } = *io;
        let Scratch { shared, per_thread, per_thread_len } = scratch;
        let (d, c, hd) = (self.dim, self.inner, self.head_dim());
        let width = self.heads * nk;
        let (kp, rest) = shared.split_at_mut(nk * c);
        let (vp, rest) = rest.split_at_mut(nk * c);
        let (b_cols, rest) = rest.split_at_mut(width * d);
        let (m, rest) = rest.split_at_mut(width * d);
        let (b_packed, rest) = rest.split_at_mut(packed_len(d, width));
        let (m_packed, rest) = rest.split_at_mut(packed_len(width, d));
        let (b_bias, _) = rest.split_at_mut(width);

        gemm(pool, k, d, nk, &self.k, kp, c, Epilogue::None);
        gemm(pool, v, d, nk, &self.v, vp, c, Epilogue::None);
        let scale = self.scale();
        // Columns key-major (r = j·heads + h), so the softmax over keys runs across whole rows
        // of heads (vectorised) rather than along runs of nk values.
        let heads_n = self.heads;
        for h in 0..self.heads {
            let heads = h * hd..(h + 1) * hd;
            for j in 0..nk {
                let r = j * heads_n + h;
                let key = &kp[j * c..][..c];
                // Column r of B = scale · W_q,hᵀ k_j,h, its bias scale · b_q,h · k_j,h.
                let col = &mut b_cols[r * d..][..d];
                col.fill(0.0);
                for e in heads.clone() {
                    let s = scale * key[e];
                    for (x, w) in col.iter_mut().zip(&self.wq[e * d..(e + 1) * d]) {
                        *x += s * w;
                    }
                }
                b_bias[r] = scale * dot8(&self.bq[heads.clone()], &key[heads.clone()]);
                // Row r of M = W_o,h v_j,h.
                let value = &vp[j * c + h * hd..][..hd];
                for (o, x) in m[r * d..][..d].iter_mut().enumerate() {
                    *x = dot8(value, &self.wo[o * c + h * hd..][..hd]);
                }
            }
        }
        let b = pack_columns_into(b_packed, d, width, |r| &b_cols[r * d..(r + 1) * d], 1.0, b_bias);
        let m = pack_rows_into(m_packed, width, d, |r| &m[r * d..(r + 1) * d], &self.bo);
        let out_ptr = SharedMut::new(out);
        let s_ptr = SharedMut::new(per_thread);
        pool.for_each_on_thread(nq.div_ceil(ROWS_PER_TASK), &|task, thread| {
            let rows = ROWS_PER_TASK.min(nq - task * ROWS_PER_TASK);
            let r0 = task * ROWS_PER_TASK;
            // SAFETY: each thread uses its own slice of the scratch.
            let scores = unsafe { s_ptr.rows(thread * per_thread_len, rows * width) };
            let scores_at = SharedMut::new(scores);
            // SAFETY: the scores are this thread's scratch, rows × width.
            unsafe {
                gemm_serial_rows(rows, |i| &q[(r0 + i) * d..][..d], b, |i| scores_at.at(i * width), Epilogue::None)
            };
            for row in scores.chunks_exact_mut(width) {
                softmax_columns(row, nk, heads_n);
            }
            let scores = &*scores;
            // SAFETY: this task alone writes output rows r0..r0 + rows.
            unsafe {
                gemm_serial_rows(
                    rows,
                    |i| &scores[i * width..][..width],
                    m,
                    |i| out_ptr.at((r0 + i) * d),
                    Epilogue::None,
                )
            };
        });
    }
}

/// `dst[c × r] = srcᵀ` for a row-major `src[r × c]`, in blocks of rows split over the pool.
fn transpose(pool: &ThreadPool, src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    const BLOCK: usize = 64;
    let d = SharedMut::new(dst);
    pool.for_each(rows.div_ceil(BLOCK), &|t| {
        let r = t * BLOCK..((t + 1) * BLOCK).min(rows);
        for col in 0..cols {
            // SAFETY: task t writes columns r of dst's rows only.
            let to = unsafe { d.rows(col * rows + r.start, r.len()) };
            for (x, row) in to.iter_mut().zip(r.clone()) {
                *x = src[row * cols + col];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain form: project, attend per head, project back.
    #[allow(clippy::too_many_arguments)]
    fn naive(w: &AttentionWeights, q: &[f32], nq: usize, k: &[f32], v: &[f32], nk: usize) -> Vec<f32> {
        let (d, c) = (w.dim, w.inner);
        let proj = |x: &[f32], n: usize, (m, b): (&[f32], &[f32]), outs: usize, ins: usize| -> Vec<f32> {
            (0..n * outs)
                .map(|i| {
                    let (r, o) = (i / outs, i % outs);
                    (0..ins).map(|e| x[r * ins + e] as f64 * m[o * ins + e] as f64).sum::<f64>() as f32 + b[o]
                })
                .collect()
        };
        let (qp, kp, vp) = (proj(q, nq, w.q, c, d), proj(k, nk, w.k, c, d), proj(v, nk, w.v, c, d));
        let hd = c / w.heads;
        let mut attn = vec![0.0f32; nq * c];
        for h in 0..w.heads {
            for i in 0..nq {
                let s: Vec<f64> = (0..nk)
                    .map(|j| (0..hd).map(|e| (qp[i * c + h * hd + e] * kp[j * c + h * hd + e]) as f64).sum::<f64>())
                    .map(|x| x / (hd as f64).sqrt())
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for dd in 0..hd {
                    attn[i * c + h * hd + dd] =
                        (0..nk).map(|j| e[j] / z * vp[j * c + h * hd + dd] as f64).sum::<f64>() as f32;
                }
            }
        }
        proj(&attn, nq, w.out, d, c)
    }

    fn values(n: usize, seed: usize, amplitude: f32) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 1013) as f32 / 1013.0 - 0.5) * amplitude).collect()
    }

    fn check(nq: usize, nk: usize) {
        let (d, c, heads) = (32, 16, 4);
        let sizes = [c * d, c, c * d, c, c * d, c, d * c, d];
        let tensors: Vec<Vec<f32>> =
            sizes.iter().enumerate().map(|(i, &n)| values(n, i + 1, if i % 2 == 0 { 0.6 } else { 0.2 })).collect();
        let w = weights_of(&tensors, (d, c, heads), nq, nk);
        let layer = CrossAttention::new(&w);
        let (q, k, v) = (values(nq * d, 9, 2.0), values(nk * d, 10, 2.0), values(nk * d, 11, 2.0));
        let pool = ThreadPool::new(2).unwrap();
        let mut out = vec![0.0; nq * d];
        let mut shared = vec![f32::NAN; layer.scratch_len(nq, nk)];
        let mut per_thread = vec![f32::NAN; 2 * layer.thread_scratch_len(nq, nk)];
        layer.attend(&pool, &q, nq, &k, &v, nk, &mut out, &mut shared, &mut per_thread);
        let want = naive(&w, &q, nq, &k, &v, nk);
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{nq} queries × {nk} keys, value {i}: {a} vs {b}");
        }
    }

    #[test]
    fn few_queries_over_many_keys_match_the_plain_form() {
        // More keys than a packed block of V, and a ragged last block.
        check(7, 2 * KEYS_PER_BLOCK + 37);
        check(3, 5);
    }

    #[test]
    fn many_queries_over_few_keys_match_the_plain_form() {
        // A ragged last row block.
        check(3 * ROWS_PER_TASK + 5, 7);
        check(9, 2);
    }

    #[test]
    fn a_few_queries_and_keys_take_the_plain_form() {
        check(7, 7);
        check(DIRECT_MAX, 3);
    }

    #[test]
    fn equal_counts_past_the_plain_form_take_the_few_queries_form() {
        check(DIRECT_MAX + 1, DIRECT_MAX + 1);
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Not a test: the decoder's shapes. `cargo test --release --lib cross_attention_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn cross_attention_speed() {
        let (d, c, heads) = (256, 128, 8);
        // Small values, as in the model: large scores would underflow to denormals, which are slow.
        let m = |n: usize| (0..n).map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 0.1).collect::<Vec<f32>>();
        let tensors: Vec<Vec<f32>> = [c * d, c, c * d, c, c * d, c, d * c, d].iter().map(|&n| m(n)).collect();
        let pool = ThreadPool::new(2).unwrap();
        for (nq, nk) in [(7usize, 4096usize), (4096, 7), (2, 4096)] {
            let w = weights_of(&tensors, (d, c, heads), nq, nk);
            let layer = CrossAttention::new(&w);
            let (q, k) = (m(nq * d), m(nk * d));
            let mut out = vec![0.0; nq * d];
            let mut shared = vec![0.0; layer.scratch_len(nq, nk)];
            let mut per_thread = vec![0.0; 2 * 4 * 256 * 256];
            let mut best = f64::MAX;
            for _ in 0..30 {
                let t = std::time::Instant::now();
                layer.attend(&pool, &q, nq, &k, &k, nk, &mut out, &mut shared, &mut per_thread);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let flops = 4.0 * (nq.max(nk) * d * heads * nq.min(nk)) as f64;
            eprintln!("{nq} queries x {nk} keys: {:.2} ms, {:.0} GFLOP/s", best * 1e3, flops / best / 1e9);
        }
    }
}

/// Test weights from eight tensors: q, k, v and out, each weight then bias; (dim, inner, heads).
#[cfg(test)]
fn weights_of(
    t: &[Vec<f32>],
    (dim, inner, heads): (usize, usize, usize),
    nq: usize,
    nk: usize,
) -> AttentionWeights<'_> {
    AttentionWeights {
        q: (&t[0], &t[1]),
        k: (&t[2], &t[3]),
        v: (&t[4], &t[5]),
        out: (&t[6], &t[7]),
        dim,
        inner,
        heads,
        max_queries: nq,
        max_keys: nk,
    }
}
