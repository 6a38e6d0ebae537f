//! Element-wise and per-row kernels of the CPU engine (activations in token layout: rows of
//! channels): GELU, LayerNorm, depthwise 3×3 convolution, softmax.
//!
//! Each kernel is written once as plain loops over contiguous channels and compiled twice: for
//! AVX2+FMA (picked at run time) and for the baseline, so the compiler vectorises the inner loops
//! with wide registers without target-cpu flags. GELU is the exact (erf) form, with erf as a
//! rational function (|error| < 5e-7; closer to the reference's outputs than the exp-based
//! Abramowitz–Stegun form, and half its instructions).

use super::features::CpuFeatures;
use super::pool::ThreadPool;

/// Runs `$body` (an expression using the function's arguments) in a copy compiled for AVX2+FMA
/// when the CPU has them.
macro_rules! multiversion {
    (fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $body
                if $crate::segment::cpu::features::CpuFeatures::get().avx2_fma {
                    // SAFETY: the CPU supports the features `wide` was compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// e^x = 2^n · e^r with r = x − n·ln 2 (ln 2 split in two for precision) and Cephes expf's
/// minimax polynomial on |r| ≤ ln 2 / 2: e^r ≈ 1 + r + r²·(c5 + r·(c4 + … r·c0)).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
const EXP_C: [f32; 6] = [1.987_569_2e-4, 1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
/// Below this e^x underflows: clamp so the exponent arithmetic stays in range.
const EXP_MIN: f32 = -87.0;
/// e^x for x ≤ 0 (all softmax needs), branch-free so it vectorises: 2^n · p(r), |rel error| ~1e-7.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    let x = x.max(EXP_MIN);
    // Ties-to-even rounds in one vector instruction; `round` (ties away) is a libm call that
    // stops the loop from vectorising.
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((EXP_C[0] * r + EXP_C[1]) * r + EXP_C[2]) * r + EXP_C[3]) * r + EXP_C[4]) * r + EXP_C[5];
    f32::from_bits(((n as i32 + 127) as u32) << 23) * (p * r * r + r + 1.0)
}

/// [`exp_neg`] of 8 lanes with AVX2/FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp8_neg(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let set = _mm256_set1_ps;
    let x = _mm256_max_ps(x, set(EXP_MIN));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        set(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, set(LN2_LO), _mm256_fnmadd_ps(n, set(LN2_HI), x));
    let mut p = set(EXP_C[0]);
    for c in &EXP_C[1..] {
        p = _mm256_fmadd_ps(p, r, set(*c));
    }
    let e = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, set(1.0)));
    let scale =
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
    _mm256_mul_ps(e, scale)
}

/// A kernel body over a scratch slice, written once and run by [`run_wide`]. `run` must be
/// `#[inline(always)]` so that it is compiled into the wide copy (closures would not be).
pub trait WideJob {
    fn run(&self, scratch: &mut [f32]);
}

/// Runs `job` in a copy compiled for AVX2+FMA when the CPU has them (the compiler then vectorises
/// its loops with wide registers, without target-cpu flags), else in the baseline copy.
#[inline(always)]
pub fn run_wide<J: WideJob>(job: &J, scratch: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<J: WideJob>(job: &J, scratch: &mut [f32]) {
            job.run(scratch)
        }
        if has_avx2_fma() {
            // SAFETY: the CPU has the features `wide` was compiled for.
            return unsafe { wide(job, scratch) };
        }
    }
    job.run(scratch)
}

/// erf as a rational function (Eigen's float erf): x·P(x²)/Q(x²) on x clamped to [−4, 4],
/// |error| < 5e-7; no exponential, so about half the instructions of the form above.
const ERF_NUM: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_3e-3,
    -1.609_603_3e-2,
];
const ERF_DEN: [f32; 5] = [-1.456_607_2e-5, -2.133_740_5e-4, -1.682_827e-3, -7.373_329_2e-3, -1.426_474e-2];

#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ERF_NUM[1..].iter().fold(ERF_NUM[0], |acc, &c| acc * x2 + c);
    let q = ERF_DEN[1..].iter().fold(ERF_DEN[0], |acc, &c| acc * x2 + c);
    // Near the clamp the quotient can pass ±1 by an ulp or two; erf never does.
    (x * p / q).clamp(-1.0, 1.0)
}

#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// A vector GELU: [`gelu`]'s formula (the polynomials fused) written once for each register
/// width, so the AVX2 and AVX-512 kernels compute the same values lane for lane.
macro_rules! vector_gelu {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $v:ident, $set:ident, $mul:ident, $add:ident, $div:ident,
     $min:ident, $max:ident, $fmadd:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        #[inline]
        pub(crate) fn $name(x: std::arch::x86_64::$v) -> std::arch::x86_64::$v {
            use std::arch::x86_64::*;
            let z = $mul(x, $set(std::f32::consts::FRAC_1_SQRT_2));
            let z = $min($max(z, $set(-4.0)), $set(4.0));
            let z2 = $mul(z, z);
            let mut p = $set(ERF_NUM[0]);
            for c in &ERF_NUM[1..] {
                p = $fmadd(p, z2, $set(*c));
            }
            let mut q = $set(ERF_DEN[0]);
            for c in &ERF_DEN[1..] {
                q = $fmadd(q, z2, $set(*c));
            }
            let erf = $div($mul(z, p), q);
            let erf = $min($max(erf, $set(-1.0)), $set(1.0));
            $mul($mul(x, $set(0.5)), $add(erf, $set(1.0)))
        }
    };
}

vector_gelu!(
    /// GELU of 8 lanes with AVX2/FMA.
    gelu8, "avx2,fma", __m256, _mm256_set1_ps, _mm256_mul_ps, _mm256_add_ps, _mm256_div_ps, _mm256_min_ps,
    _mm256_max_ps, _mm256_fmadd_ps
);
vector_gelu!(
    /// GELU of 16 lanes with AVX-512.
    gelu16, "avx512f", __m512, _mm512_set1_ps, _mm512_mul_ps, _mm512_add_ps, _mm512_div_ps, _mm512_min_ps,
    _mm512_max_ps, _mm512_fmadd_ps
);

/// `x = gelu(x + residual)` (residual optional), 8 lanes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_slice_avx2(x: &mut [f32], residual: Option<&[f32]>) {
    use std::arch::x86_64::*;
    let n = x.len();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= len of x (and of residual, checked by the callers' zip lengths).
        unsafe {
            let mut v = _mm256_loadu_ps(x.as_ptr().add(i));
            if let Some(r) = residual {
                v = _mm256_add_ps(v, _mm256_loadu_ps(r.as_ptr().add(i)));
            }
            _mm256_storeu_ps(x.as_mut_ptr().add(i), gelu8(v));
        }
        i += 8;
    }
    for j in i..n {
        x[j] = gelu(x[j] + residual.map_or(0.0, |r| r[j]));
    }
}

/// Whether the AVX2/FMA copies of the kernels may run ([`CpuFeatures`], detected once).
pub(crate) fn has_avx2_fma() -> bool {
    CpuFeatures::get().avx2_fma
}

pub fn gelu_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { gelu_slice_avx2(x, None) };
    }
    for v in x.iter_mut() {
        *v = gelu(*v);
    }
}

pub fn add_gelu_in_place(x: &mut [f32], residual: &[f32]) {
    assert!(residual.len() >= x.len(), "residual shorter than the values");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; residual is at least as long as x.
        return unsafe { gelu_slice_avx2(x, Some(residual)) };
    }
    for (v, r) in x.iter_mut().zip(residual) {
        *v = gelu(*v + r);
    }
}

multiversion! {
    fn add_in_place(x: &mut [f32], other: &[f32]) {
        for (v, o) in x.iter_mut().zip(other) {
            *v += o;
        }
    }
}

multiversion! {
    fn add_into(out: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    }
}

/// Σ f(v) over `x` with 8 independent partial sums, lane i taking elements i, i + 8, …, then the
/// remainder: vectorisable (no reassociation needed), and closer to exact than one chain.
#[inline(always)]
fn sum8(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + rest
}

/// Dot product with 8 independent partial sums (vectorisable; one chain of adds is latency-bound).
#[inline(always)]
pub(crate) fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + rest
}

/// LayerNorm of one row into `out` (biased variance, two passes in float32).
#[inline(always)]
fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let c = x.len();
    let mean = sum8(x, |v| v) / c as f32;
    let var = sum8(x, |v| (v - mean) * (v - mean)) / c as f32;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, v), g), b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
        *o = (v - mean) * inv * g + b;
    }
}

multiversion! {
    fn layer_norm_rows(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        for (row, o) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
            layer_norm_row(row, gamma, beta, eps, o);
        }
    }
}

multiversion! {
    fn layer_norm_gelu_rows(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        for (row, o) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
            layer_norm_row(row, gamma, beta, eps, o);
            for v in o.iter_mut() {
                *v = gelu(*v);
            }
        }
    }
}

multiversion! {
    fn add_layer_norm_rows(x: &mut [f32], delta: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f32) {
        for (row, d) in x.chunks_exact_mut(c).zip(delta.chunks_exact(c)) {
            for (v, e) in row.iter_mut().zip(d) {
                *v += e;
            }
            // The same arithmetic as `layer_norm_row`, in place.
            let mean = sum8(row, |v| v) / c as f32;
            let var = sum8(row, |v| (v - mean) * (v - mean)) / c as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// Rows per parallel task for row-wise kernels.
const ROWS_PER_TASK: usize = 64;

/// A mutable slice shared by tasks that write disjoint parts of it: it borrows the slice for its
/// lifetime `'a`, so the parts it hands out cannot outlive the buffer, and it bounds-checks them;
/// that no two tasks touch the same element is the caller's to keep (each kernel documents its
/// split).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<'a> {
    ptr: *mut f32,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}
// SAFETY: tasks write disjoint parts (each kernel documents its split), so sending the pointer to
// another thread shares no element between two writers.
unsafe impl Send for SharedMut<'_> {}
// SAFETY: as for Send: no two tasks touch the same element.
unsafe impl Sync for SharedMut<'_> {}

impl<'a> SharedMut<'a> {
    pub(crate) fn new(slice: &'a mut [f32]) -> Self {
        SharedMut { ptr: slice.as_mut_ptr(), len: slice.len(), _borrow: std::marker::PhantomData }
    }

    /// `len` values from `start`.
    ///
    /// # Safety
    /// No other task reads or writes the range while the returned slice lives.
    pub(crate) unsafe fn rows(self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(start + len <= self.len, "rows {start}..+{len} outside a buffer of {}", self.len);
        // SAFETY: in bounds (asserted), the buffer outlives 'a, and the caller keeps the range
        // to one task.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// Where the element `offset` values in is, for kernels that store through pointers.
    ///
    /// # Safety
    /// Whatever is written through the pointer is written by no other task at the same time.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        assert!(offset <= self.len, "offset {offset} outside a buffer of {}", self.len);
        // SAFETY: in bounds (asserted; one past the end is allowed for an empty range).
        unsafe { self.ptr.add(offset) }
    }
}

/// LayerNorm over the last dimension (`c` channels) of `rows` rows, in parallel.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    pool: &ThreadPool,
    x: &[f32],
    rows: usize,
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    assert!(x.len() >= rows * c && out.len() >= rows * c && gamma.len() == c && beta.len() == c);
    let o = SharedMut::new(out);
    pool.for_each(rows.div_ceil(ROWS_PER_TASK), &|t| {
        let r = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(rows);
        // SAFETY: task t writes rows r only.
        let dst = unsafe { o.rows(r.start * c, r.len() * c) };
        layer_norm_rows(&x[r.start * c..r.end * c], c, gamma, beta, eps, dst);
    });
}

/// `x = LayerNorm(x + delta)` over `rows` rows of `c` channels, in place, in parallel (the
/// transformer's post-norm residual without a pass for the sum and one for a copy); with
/// `plus = (pe, x_pe)`, also `x_pe = x + pe` while the rows are in cache.
#[allow(clippy::too_many_arguments)]
pub fn add_layer_norm(
    pool: &ThreadPool,
    x: &mut [f32],
    delta: &[f32],
    rows: usize,
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    plus: Option<(&[f32], &mut [f32])>,
) {
    assert!(x.len() >= rows * c && delta.len() >= rows * c && gamma.len() == c && beta.len() == c);
    let p = SharedMut::new(x);
    let plus = plus.map(|(pe, out)| {
        assert!(pe.len() >= rows * c && out.len() >= rows * c, "add_layer_norm: positional encoding sizes");
        (pe, SharedMut::new(out))
    });
    pool.for_each(rows.div_ceil(ROWS_PER_TASK), &|t| {
        let r = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(rows);
        let span = r.start * c..r.end * c;
        // SAFETY: task t reads and writes rows r only.
        let rows = unsafe { p.rows(span.start, span.len()) };
        add_layer_norm_rows(rows, &delta[span.clone()], c, gamma, beta, eps);
        if let Some((pe, out)) = plus {
            // SAFETY: task t writes rows r of the output only.
            add_into(unsafe { out.rows(span.start, span.len()) }, rows, &pe[span]);
        }
    });
}

/// `out[r] = x[r] + row` and `out_pe[r] = out[r] + pe[r]` for `rows` rows, in parallel: one
/// pass over the rows where two would write `out` and read it back.
pub fn add_row_pe(
    pool: &ThreadPool,
    x: &[f32],
    rows: usize,
    row: &[f32],
    pe: &[f32],
    out: &mut [f32],
    out_pe: &mut [f32],
) {
    let c = row.len();
    let n = rows * c;
    assert!(x.len() >= n && pe.len() >= n && out.len() >= n && out_pe.len() >= n, "add_row_pe operand sizes");
    let (o, o_pe) = (SharedMut::new(out), SharedMut::new(out_pe));
    pool.for_each(rows.div_ceil(ROWS_PER_TASK), &|t| {
        let r = t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(rows);
        let span = r.start * c..r.end * c;
        // SAFETY: task t writes rows r of each output only.
        let (dst, dst_pe) = unsafe { (o.rows(span.start, span.len()), o_pe.rows(span.start, span.len())) };
        let (x, pe) = (x[span.clone()].chunks_exact(c), pe[span].chunks_exact(c));
        for (((d, d_pe), s), p) in dst.chunks_exact_mut(c).zip(dst_pe.chunks_exact_mut(c)).zip(x).zip(pe) {
            add_into(d, s, row);
            add_into(d_pe, d, p);
        }
    });
}

/// Element-wise `out = a + b` (or `out += b` with `a` absent), in parallel chunks.
pub fn add_par(pool: &ThreadPool, out: &mut [f32], a: Option<&[f32]>, b: &[f32]) {
    const CHUNK: usize = 1 << 14;
    let len = b.len().min(out.len());
    let o = SharedMut::new(out);
    pool.for_each(len.div_ceil(CHUNK), &|t| {
        let r = t * CHUNK..((t + 1) * CHUNK).min(len);
        // SAFETY: task t owns elements r.
        let dst = unsafe { o.rows(r.start, r.len()) };
        match a {
            Some(a) => add_into(dst, &a[r.clone()], &b[r]),
            None => add_in_place(dst, &b[r]),
        }
    });
}

// Softmax down each column of a `rows` × `cols` block (contiguous rows), in place: e.g. the
// scores of one query against `rows` keys for `cols` heads, laid out key-major, where the loops
// over a row of heads vectorise and a softmax over a handful of keys would not.
multiversion! {
    fn softmax_columns(x: &mut [f32], rows: usize, cols: usize) {
        const MAX_COLUMNS: usize = 64;
        assert!(cols <= MAX_COLUMNS && x.len() >= rows * cols, "softmax_columns: {rows} x {cols}");
        let mut max = [f32::NEG_INFINITY; MAX_COLUMNS];
        let mut sum = [0.0f32; MAX_COLUMNS];
        let (max, sum) = (&mut max[..cols], &mut sum[..cols]);
        for row in x.chunks_exact(cols).take(rows) {
            for (m, &v) in max.iter_mut().zip(row) {
                *m = if v > *m { v } else { *m };
            }
        }
        for row in x.chunks_exact_mut(cols).take(rows) {
            for ((v, m), s) in row.iter_mut().zip(&*max).zip(sum.iter_mut()) {
                *v = exp_neg(*v - m);
                *s += *v;
            }
        }
        for s in sum.iter_mut() {
            *s = 1.0 / *s;
        }
        for row in x.chunks_exact_mut(cols).take(rows) {
            for (v, s) in row.iter_mut().zip(&*sum) {
                *v *= s;
            }
        }
    }
}

/// Softmax of one row, in place; inlined into the kernels that call it.
#[inline(always)]
pub(crate) fn softmax_row(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { softmax_row_avx2(x) };
    }
    softmax_row_scalar(x)
}

/// Softmax with explicit 8-lane steps: the compiler does not vectorise a float max (NaN rules)
/// nor, reliably, the exponential, and attention spends a fifth of its time here. The last,
/// partial step is masked (rows of 7 or 49 scores are common: the decoder's prompt tokens, 7 × 7
/// windows), so no value takes the scalar path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn softmax_row_avx2(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let (n, body) = (x.len(), x.len() / 8 * 8);
    if n == 0 {
        return;
    }
    let p = x.as_mut_ptr();
    // Lanes of the last step inside the row: lane i is in when i < n − body.
    let tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((n - body) as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let tail_ps = _mm256_castsi256_ps(tail);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    // SAFETY (all loads and stores below): i + 8 <= body <= n; the masked ones touch only the
    // lanes below n.
    let mut max8 = neg_inf;
    for i in (0..body).step_by(8) {
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        max8 = _mm256_max_ps(max8, unsafe { _mm256_loadu_ps(p.add(i)) });
    }
    if body < n {
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        let last = unsafe { _mm256_maskload_ps(p.add(body), tail) };
        max8 = _mm256_max_ps(max8, _mm256_blendv_ps(neg_inf, last, tail_ps));
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), max8) };
    let max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let (max8, mut sum8) = (_mm256_set1_ps(max), _mm256_setzero_ps());
    for i in (0..body).step_by(8) {
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        let e = exp8_neg(_mm256_sub_ps(unsafe { _mm256_loadu_ps(p.add(i)) }, max8));
        sum8 = _mm256_add_ps(sum8, e);
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        unsafe { _mm256_storeu_ps(p.add(i), e) };
    }
    if body < n {
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        let last = unsafe { _mm256_maskload_ps(p.add(body), tail) };
        // Lanes past the row are zeroed so they add nothing.
        let e = _mm256_and_ps(exp8_neg(_mm256_sub_ps(last, max8)), tail_ps);
        sum8 = _mm256_add_ps(sum8, e);
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        unsafe { _mm256_maskstore_ps(p.add(body), tail, e) };
    }
    // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum8) };
    // The same order as `sum8`.
    let a = lanes;
    let inv8 = _mm256_set1_ps(1.0 / (((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))));
    for i in (0..body).step_by(8) {
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        unsafe { _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), inv8)) };
    }
    if body < n {
        // SAFETY: in bounds: full steps end at body <= n; masked ones touch only lanes < n.
        unsafe { _mm256_maskstore_ps(p.add(body), tail, _mm256_mul_ps(_mm256_maskload_ps(p.add(body), tail), inv8)) };
    }
}

#[inline(always)]
fn softmax_row_scalar(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for v in x.iter_mut() {
        *v = exp_neg(*v - max);
    }
    let inv = 1.0 / sum8(x, |v| v);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // High-precision series / continued fraction is overkill: compare with a Taylor sum,
        // accurate to 1e-12 for |x| <= 3 with enough terms.
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_and_exp_are_accurate() {
        for i in -300i32..=300 {
            let x = i as f32 / 100.0;
            let err = (erf(x) as f64 - erf64(x as f64)).abs();
            assert!(err < 4e-7, "erf({x}): off by {err:e}");
            let x = -(i.abs() as f32) / 10.0;
            let (e, want) = (exp_neg(x), (x as f64).exp());
            assert!(((e as f64 - want) / want).abs() < 3e-7, "exp({x}): {e} vs {want}");
        }
    }

    #[test]
    fn vector_gelu_matches_the_scalar_formula() {
        let xs: Vec<f32> = (-6000..=6000).map(|i| i as f32 / 1000.0).collect();
        let mut wide = xs.clone();
        gelu_in_place(&mut wide);
        for (x, g) in xs.iter().zip(&wide) {
            let want = gelu(*x);
            // One ulp of erf moves GELU by |x|·2⁻²⁴: scale the tolerance by |x|, not the result.
            assert!((g - want).abs() <= 3e-7 * (1.0 + x.abs()), "gelu({x}): {g} vs {want}");
        }
        let mut with_residual = xs.clone();
        add_gelu_in_place(&mut with_residual, &vec![0.5; xs.len()]);
        assert!((with_residual[6000] - gelu(0.5)).abs() < 1e-6);
    }

    #[test]
    fn vector_softmax_matches_the_scalar_one() {
        for n in [1, 7, 8, 9, 49, 196, 208] {
            let row: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 * 0.7 - 8.0).collect();
            let (mut wide, mut scalar) = (row.clone(), row.clone());
            softmax_row(&mut wide);
            softmax_row_scalar(&mut scalar);
            for (a, b) in wide.iter().zip(&scalar) {
                assert!((a - b).abs() <= 1e-7 + 1e-6 * b, "n = {n}: {a} vs {b}");
            }
            assert!((wide.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn layer_norm_normalises() {
        let pool = ThreadPool::new(2).unwrap();
        let x: Vec<f32> = (0..3 * 5).map(|i| i as f32).collect();
        let mut out = vec![0.0; 15];
        layer_norm(&pool, &x, 3, 5, &[1.0; 5], &[0.5; 5], 1e-5, &mut out);
        // Each row is 5 consecutive values: mean in the middle, variance 2.
        let want = [-2.0, -1.0, 0.0, 1.0, 2.0].map(|d: f32| d / (2.0f32 + 1e-5).sqrt() + 0.5);
        for row in out.chunks(5) {
            for (g, w) in row.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1.0, 2.0, 3.0, -50.0];
        softmax_row(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((x[2] / x[1] - std::f32::consts::E).abs() < 1e-5);
    }

    /// Every row length around the 8-lane steps (whole, partial, shorter than one), against a
    /// float64 softmax, and nothing past the row is touched.
    #[test]
    fn softmax_matches_float64_at_every_length() {
        for n in (1..=26).chain([49, 196]) {
            let mut buf: Vec<f32> = (0..n + 8).map(|i| ((i * 37) % 23) as f32 * 0.7 - 8.0).collect();
            let original = buf.clone();
            softmax_row(&mut buf[..n]);
            let max = original[..n].iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let sum: f64 = original[..n].iter().map(|&v| (v as f64 - max).exp()).sum();
            for (i, (&got, &v)) in buf[..n].iter().zip(&original).enumerate() {
                let want = (v as f64 - max).exp() / sum;
                assert!((got as f64 - want).abs() <= 1e-6 * want.max(1e-3), "n {n}, element {i}: {got} vs {want}");
            }
            assert_eq!(buf[n..], original[n..], "n {n}: values past the row changed");
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Not a test: GELU throughput. `cargo test --release --lib gelu_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gelu_speed() {
        let mut x: Vec<f32> = (0..1 << 24).map(|i| (i % 1000) as f32 / 100.0 - 5.0).collect();
        gelu_in_place(&mut x);
        let t = std::time::Instant::now();
        for _ in 0..5 {
            gelu_in_place(&mut x);
        }
        let s = t.elapsed().as_secs_f64() / 5.0;
        eprintln!("GELU on 16.7 M values: {:.1} ms ({:.2} ns/value on 1 thread)", s * 1e3, s * 1e9 / (1 << 24) as f64);
    }
}
