//! Single-precision matrix products for the CPU engine: `C = A · B + bias`, then an epilogue
//! (activation, residual add), where B is a weight matrix packed once at plan time.
//!
//! Why our own: every product in the model multiplies activations by a constant weight, so B can
//! be packed once (16-column panels, k-major) and no packing buffer is needed per call; crates
//! that pack per call allocate per call, and the hot path must not allocate. The 6×16 AVX2/FMA
//! micro-kernel keeps 12 accumulators in registers; where the CPU has AVX-512, an 8×32 kernel
//! (`gemm_pair`) takes two panels at once. K is blocked so a B panel stays in L1 while A rows
//! stream from L2. Work is split over the thread pool by (row block, column block).
//! Accumulation is plain float32 (no reduced precision), as parity with the reference demands.

use super::features::CpuFeatures;
use super::kernels::SharedMut;
use super::pool::ThreadPool;
pub use crate::segment::ops::Epilogue;

/// Columns per packed panel (two AVX registers).
pub const NR: usize = 16;
/// Rows per micro-kernel call.
pub const MR: usize = 6;
/// Rows per call of the two-panel kernel (AVX-512).
pub const PAIR_MR: usize = 8;
/// Depth of one K block: a panel of KC × NR floats (32 KiB) stays in L1.
const KC: usize = 512;
/// Rows per task: 8 micro-rows, an A block of MC × KC floats (96 KiB) stays in L2.
const MC: usize = 48;
/// Panels per task.
const PANELS_PER_TASK: usize = 8;

/// A weight matrix B (k × n) packed in panels of NR columns, with its bias.
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    /// Panel p, row kk, column j at `p * k * NR + kk * NR + j`; columns past n are zero.
    panels: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedB {
    /// From `get(kk, j)` = B[kk][j].
    fn pack(k: usize, n: usize, get: impl Fn(usize, usize) -> f32, bias: Option<&[f32]>) -> Self {
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![0.0; panels_n * k * NR];
        for p in 0..panels_n {
            for kk in 0..k {
                for j in 0..NR.min(n - p * NR) {
                    panels[p * k * NR + kk * NR + j] = get(kk, p * NR + j);
                }
            }
        }
        let bias = bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec);
        PackedB { k, n, panels, bias }
    }

    /// A PyTorch `Linear` weight (out × in, i.e. n × k) and bias: `y = x Wᵀ + b`.
    pub fn from_linear(weight: &[f32], n: usize, k: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(weight.len(), n * k, "linear weight size");
        Self::pack(k, n, |kk, j| weight[j * k + kk], bias)
    }

    /// A row-major k × n matrix.
    pub fn from_k_by_n(b: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Self {
        assert_eq!(b.len(), k * n, "matrix size");
        Self::pack(k, n, |kk, j| b[kk * n + j], bias)
    }

    /// A borrowed view for [`gemm`]'s tasks.
    pub fn view(&self) -> PackedRef<'_> {
        PackedRef { k: self.k, n: self.n, panels: &self.panels, bias: &self.bias }
    }
}

/// A packed B in borrowed memory: a weight's, or activations packed for one product.
#[derive(Clone, Copy)]
pub struct PackedRef<'a> {
    pub k: usize,
    pub n: usize,
    panels: &'a [f32],
    bias: &'a [f32],
}

impl PackedRef<'_> {
    fn panel(&self, p: usize) -> &[f32] {
        &self.panels[p * self.k * NR..(p + 1) * self.k * NR]
    }
}

/// Floats a packed k × n matrix takes.
pub fn packed_len(k: usize, n: usize) -> usize {
    n.div_ceil(NR) * k * NR
}

/// Packs B (k × n) given by its rows (`row(kk)` holds B[kk][0..n]) into `dst` for
/// [`gemm_serial`], 16 contiguous values at a time; `bias` must hold n values. Inlined so the
/// caller's target features (AVX2) apply to the copy loops.
#[inline(always)]
pub fn pack_rows_into<'a, 'r>(
    dst: &'a mut [f32],
    k: usize,
    n: usize,
    row: impl Fn(usize) -> &'r [f32],
    bias: &'a [f32],
) -> PackedRef<'a> {
    let len = packed_len(k, n);
    let dst = &mut dst[..len];
    for kk in 0..k {
        let src = &row(kk)[..n];
        let mut whole = src.chunks_exact(NR);
        for (p, part) in (&mut whole).enumerate() {
            // Fixed-size copies: a call to memcpy per 16 values costs more than the copy.
            let out: &mut [f32; NR] = (&mut dst[(p * k + kk) * NR..][..NR]).try_into().expect("NR values");
            *out = part.try_into().expect("NR values");
        }
        let (p, part) = (n / NR, whole.remainder());
        if !part.is_empty() {
            let out = &mut dst[(p * k + kk) * NR..][..NR];
            out[..part.len()].copy_from_slice(part);
            out[part.len()..].fill(0.0);
        }
    }
    PackedRef { k, n, panels: dst, bias: &bias[..n] }
}

/// Packs `scale` · B (k × n) given by its columns (`column(j)` holds B[0..k][j], e.g. the rows of
/// a matrix whose transpose is B) into `dst`; columns past n are zero.
#[inline(always)]
pub fn pack_columns_into<'a, 'c>(
    dst: &'a mut [f32],
    k: usize,
    n: usize,
    column: impl Fn(usize) -> &'c [f32],
    scale: f32,
    bias: &'a [f32],
) -> PackedRef<'a> {
    let len = packed_len(k, n);
    let dst = &mut dst[..len];
    // Columns past n are read as this empty slice, i.e. as zeros.
    let absent = [0.0f32; 0];
    for (p, panel) in dst.chunks_exact_mut(k * NR).enumerate() {
        // Row by row of the panel, so the stores are contiguous: scattering each column down
        // the panel (one store per 64 bytes) stalls on the store queue.
        let columns: [&[f32]; NR] = std::array::from_fn(|lane| {
            let j = p * NR + lane;
            if j < n { &column(j)[..k] } else { &absent }
        });
        #[cfg(target_arch = "x86_64")]
        if k.is_multiple_of(8) && columns.iter().all(|c| c.len() == k) && super::kernels::has_avx2_fma() {
            // SAFETY: the CPU has AVX2; every column holds k values, k a multiple of 8.
            unsafe { transpose_panel_avx2(&columns, k, scale, panel) };
            continue;
        }
        for (kk, out) in panel.chunks_exact_mut(NR).enumerate() {
            for (o, c) in out.iter_mut().zip(&columns) {
                *o = c.get(kk).map_or(0.0, |v| scale * v);
            }
        }
    }
    PackedRef { k, n, panels: dst, bias: &bias[..n] }
}

/// One panel of [`pack_columns_into`] in 8 × 8 blocks: eight loads, a register transpose and
/// eight contiguous stores per 64 values (the scalar form takes 64 loads and 64 stores).
///
/// # Safety
/// The CPU has AVX2; every column holds k values and k is a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_panel_avx2(columns: &[&[f32]; NR], k: usize, scale: f32, panel: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(panel.len() >= k * NR);
    let scale8 = _mm256_set1_ps(scale);
    for half in 0..NR / 8 {
        for kk in (0..k).step_by(8) {
            // SAFETY: kk + 8 <= k for every column (the caller's contract); stores stay in panel.
            unsafe {
                let r: [__m256; 8] = std::array::from_fn(|l| _mm256_loadu_ps(columns[half * 8 + l].as_ptr().add(kk)));
                // Interleave pairs, then quads, then the 128-bit halves: row i of the result
                // holds element kk + i of columns half·8 .. half·8 + 8.
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let rows = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (i, row) in rows.iter().enumerate() {
                    _mm256_storeu_ps(panel.as_mut_ptr().add((kk + i) * NR + half * 8), _mm256_mul_ps(*row, scale8));
                }
            }
        }
    }
}

/// Like [`gemm`] on the calling thread only: for small products inside a task that is already
/// one of many running in parallel (window attention).
#[inline(always)]
pub fn gemm_serial(a: &[f32], lda: usize, m: usize, b: PackedRef, c: &mut [f32], ldc: usize, epi: Epilogue) {
    assert!(m == 0 || (a.len() >= (m - 1) * lda + b.k && c.len() >= (m - 1) * ldc + b.n), "gemm operand sizes");
    let out = SharedMut::new(c);
    // SAFETY: the assert bounds every row; c is borrowed mutably, so this call alone writes it.
    unsafe { gemm_serial_rows(m, |r| &a[r * lda..], b, |r| out.at(r * ldc), epi) }
}

/// [`gemm_serial`] with A's and C's rows wherever they are: `a_row(r)` starts A's row r (at
/// least k values) and `c_row(r)` C's row r. Gathers a window's tokens in place of copies.
///
/// # Safety
/// For every r < m, `c_row(r)` points at `b.n` floats that this call alone reads and writes.
#[inline(always)]
pub unsafe fn gemm_serial_rows<'a>(
    m: usize,
    a_row: impl Fn(usize) -> &'a [f32] + Copy,
    b: PackedRef,
    c_row: impl Fn(usize) -> *mut f32 + Copy,
    epi: Epilogue,
) {
    // SAFETY: the caller's contract.
    unsafe { gemm_serial_with(Kernels::select(), m, a_row, b, c_row, epi) }
}

/// [`gemm_serial_rows`] with the given micro-kernels.
///
/// # Safety
/// As for [`gemm_serial_rows`]; and the CPU runs `kernels`.
#[inline(always)]
unsafe fn gemm_serial_with<'a>(
    kernels: Kernels,
    m: usize,
    a_row: impl Fn(usize) -> &'a [f32] + Copy,
    b: PackedRef,
    c_row: impl Fn(usize) -> *mut f32 + Copy,
    epi: Epilogue,
) {
    let col_blocks = b.n.div_ceil(NR).div_ceil(PANELS_PER_TASK);
    for task in 0..m.div_ceil(MC) * col_blocks {
        Task { a_row, m, b, c_row, epi, kernels, task, col_blocks }.run();
    }
}

/// `c[m × n] (row stride ldc) = epilogue(a[m × k] (row stride lda) · b + bias)`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(pool: &ThreadPool, a: &[f32], lda: usize, m: usize, b: &PackedB, c: &mut [f32], ldc: usize, epi: Epilogue) {
    gemm_packed(pool, a, lda, m, b.view(), c, ldc, epi)
}

/// [`gemm`] with B packed anywhere (activations packed for one product).
#[allow(clippy::too_many_arguments)]
pub fn gemm_packed(
    pool: &ThreadPool,
    a: &[f32],
    lda: usize,
    m: usize,
    b: PackedRef,
    c: &mut [f32],
    ldc: usize,
    epi: Epilogue,
) {
    let (k, n) = (b.k, b.n);
    assert!(m == 0 || (a.len() >= (m - 1) * lda + k && c.len() >= (m - 1) * ldc + n), "gemm operand sizes");
    if m == 0 || n == 0 {
        return;
    }
    let row_blocks = m.div_ceil(MC);
    let panels = n.div_ceil(NR);
    let col_blocks = panels.div_ceil(PANELS_PER_TASK);
    let out = SharedMut::new(c);
    let kernels = Kernels::select();
    let wide = kernels.wide();
    let a_row = |r: usize| &a[r * lda..];
    // SAFETY: the assert bounds every row, and each task writes its own (rows, panels) block.
    let c_row = |r: usize| unsafe { out.at(r * ldc) };
    pool.for_each(row_blocks * col_blocks, &|task| {
        let job = Task { a_row, m, b, c_row, epi, kernels, task, col_blocks };
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn run_wide<'r, A: Fn(usize) -> &'r [f32] + Copy, C: Fn(usize) -> *mut f32 + Copy>(
                job: &Task<A, C>,
            ) {
                job.run()
            }
            if wide {
                // SAFETY: the AVX2 kernel was selected, so the CPU has AVX2 and FMA.
                return unsafe { run_wide(&job) };
            }
        }
        let _ = wide;
        job.run()
    });
}

/// One (row block, column block) of a product; `a_row(r)` and `c_row(r)` are row r of A and C.
struct Task<'a, A, C> {
    a_row: A,
    m: usize,
    b: PackedRef<'a>,
    c_row: C,
    epi: Epilogue,
    kernels: Kernels,
    task: usize,
    col_blocks: usize,
}

impl<'r, A: Fn(usize) -> &'r [f32] + Copy, C: Fn(usize) -> *mut f32 + Copy> Task<'_, A, C> {
    /// Inlined into a wide and a baseline copy, so the epilogue's GELU vectorises.
    #[inline(always)]
    fn run(&self) {
        let (b, n, k) = (&self.b, self.b.n, self.b.k);
        let panels = n.div_ceil(NR);
        let (rb, cb) = (self.task / self.col_blocks, self.task % self.col_blocks);
        let rows = rb * MC..((rb + 1) * MC).min(self.m);
        let panel_range = cb * PANELS_PER_TASK..((cb + 1) * PANELS_PER_TASK).min(panels);
        // Each row's start, found once per task.
        let mut a_starts = [std::ptr::null::<f32>(); MC];
        let mut c_starts = [std::ptr::null_mut::<f32>(); MC];
        for (i, r) in rows.clone().enumerate() {
            let a = (self.a_row)(r);
            assert!(a.len() >= k, "gemm: row {r} of A holds {} of {k} values", a.len());
            a_starts[i] = a.as_ptr();
            c_starts[i] = (self.c_row)(r);
        }
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // The first K block overwrites the output, unless the output holds a residual to add to.
            let overwrite = k0 == 0 && self.epi != Epilogue::AddToOutput;
            // The last K block finishes the values: bias and activation, in the same pass.
            let last = k0 + kc == k;
            let mut p = panel_range.start;
            while p < panel_range.end {
                // Two whole panels at once where the CPU has the kernel for it.
                let pair = self.kernels.pair.filter(|_| p + 1 < panel_range.end && (p + 2) * NR <= n);
                let width = if pair.is_some() { 2 } else { 1 };
                let cols = (width * NR).min(n - p * NR);
                let how = Finish {
                    cols,
                    load: !overwrite,
                    bias: (k0 == 0).then_some(&b.bias[p * NR..p * NR + cols]),
                    relu: last && self.epi == Epilogue::Relu,
                    gelu: last && self.epi == Epilogue::Gelu,
                };
                let panel = |p: usize| &b.panel(p)[k0 * NR..(k0 + kc) * NR];
                let at = Placement { rows: rows.len(), a_starts: &a_starts, c_starts: &c_starts, k0, col0: p * NR };
                match pair {
                    // SAFETY: the kernels come from `Kernels::select` (the CPU runs them); A's
                    // rows hold k values from k0 (asserted above), the panels kc × NR; and each
                    // tile's rows are this task's to write (the callers' contract).
                    Some(kernel) => at.tiles(how, |a, t| unsafe { kernel(a, panel(p), panel(p + 1), kc, t) }),
                    // SAFETY: as above.
                    None => at.tiles(how, |a, t| unsafe { (self.kernels.one)(a, panel(p), kc, t) }),
                }
                p += width;
            }
        }
    }
}

/// Where a task's tiles start: its rows' A and C pointers, the K block and the first column.
struct Placement<'p> {
    rows: usize,
    a_starts: &'p [*const f32; MC],
    c_starts: &'p [*mut f32; MC],
    k0: usize,
    col0: usize,
}

impl Placement<'_> {
    /// Calls `kernel` on every block of R rows, finishing them as `how` says.
    #[inline(always)]
    fn tiles<const R: usize>(&self, how: Finish, kernel: impl Fn(&[*const f32; R], &Tile<R>)) {
        for i0 in (0..self.rows).step_by(R) {
            let mr = R.min(self.rows - i0);
            let mut a_rows = [std::ptr::null(); R];
            let mut c_rows = [std::ptr::null_mut(); R];
            for i in 0..R {
                // Rows past the end repeat the last real row; the kernel does not store them.
                let r = i0 + i.min(mr - 1);
                // SAFETY: A's rows hold k values (asserted in `Task::run`); C's rows hold n values
                // that this task alone writes in its panels (the callers' contract).
                unsafe {
                    a_rows[i] = self.a_starts[r].add(self.k0);
                    c_rows[i] = self.c_starts[r].add(self.col0);
                }
            }
            let tile = Tile { rows: c_rows, mr, how };
            kernel(&a_rows, &tile);
        }
    }
}

/// Where a micro-kernel puts its block of R rows: output rows, how many are real, and how to
/// finish the values.
pub struct Tile<'a, const R: usize> {
    pub(super) rows: [*mut f32; R],
    pub(super) mr: usize,
    pub(super) how: Finish<'a>,
}

/// What a micro-kernel does on the way out, the same for every tile of a panel (or pair).
#[derive(Clone, Copy)]
pub struct Finish<'a> {
    /// Real columns (fewer than the kernel's width in a ragged last panel).
    pub(super) cols: usize,
    /// Start from the values already there (a residual, or an earlier K block).
    pub(super) load: bool,
    /// Add the bias (on the first K block).
    pub(super) bias: Option<&'a [f32]>,
    pub(super) relu: bool,
    /// GELU on the finished values, in registers (a pass over the stored tile costs several
    /// times more: the products it follows are short).
    pub(super) gelu: bool,
}

impl Tile<'_, MR> {
    /// Portable finish: `acc` is the product block; applies load/bias/relu and stores.
    ///
    /// # Safety
    /// Each of the first `mr` rows points at `how.cols` floats that this call alone writes.
    unsafe fn store(&self, acc: &[[f32; NR]; MR]) {
        for i in 0..self.mr {
            // SAFETY: the contract above.
            let dst = unsafe { std::slice::from_raw_parts_mut(self.rows[i], self.how.cols) };
            for (j, d) in dst.iter_mut().enumerate() {
                let mut v = acc[i][j];
                if self.how.load {
                    v += *d;
                }
                if let Some(b) = self.how.bias {
                    v += b[j];
                }
                *d = if self.how.relu { v.max(0.0) } else { v };
            }
            if self.how.gelu {
                super::kernels::gelu_in_place(dst);
            }
        }
    }
}

/// A micro-kernel: `kernel(a, panel, kc, tile)` multiplies `MR` rows of A (`kc` values each)
/// by a packed panel of B and finishes the tile as it says.
///
/// # Safety
/// The CPU has the features the kernel was compiled for (guaranteed by taking it from
/// [`Kernels::select`]); each `a[i]` points at `kc` readable floats; the panel holds `kc × NR`
/// floats; each of the tile's first `mr` rows points at `how.cols` floats this call alone writes.
type Kernel = unsafe fn(&[*const f32; MR], &[f32], usize, &Tile<MR>);
/// Two panels side by side: `PAIR_MR` rows × 2·NR columns; the same contract, with 2·NR columns.
type PairKernel = unsafe fn(&[*const f32; PAIR_MR], &[f32], &[f32], usize, &Tile<PAIR_MR>);

/// The micro-kernels a product uses: `one` for a single panel (and ragged ones), `pair` where
/// the CPU has one (AVX-512: twice the columns per broadcast, so half the loads per multiply).
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    one: Kernel,
    pair: Option<PairKernel>,
    /// Whether the kernels need AVX2 and FMA, so the code around them may use them too.
    wide: bool,
}

impl Kernels {
    /// The fastest this CPU runs ([`CpuFeatures`], detected once).
    fn select() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = CpuFeatures::get();
            if cpu.avx2_fma {
                let pair = cpu.avx512f.then_some(super::gemm_pair::kernel_avx512 as PairKernel);
                return Kernels { one: kernel_avx2, pair, wide: true };
            }
        }
        Kernels::portable()
    }

    fn portable() -> Kernels {
        Kernels { one: kernel_generic, pair: None, wide: false }
    }

    fn wide(&self) -> bool {
        self.wide
    }
}

/// Portable micro-kernel: block[i][j] = Σ_kk a_i[kk] · panel[kk][j], then the tile's finish.
///
/// # Safety
/// The [`Kernel`] contract.
unsafe fn kernel_generic(a: &[*const f32; MR], panel: &[f32], kc: usize, out: &Tile<MR>) {
    let mut tile = [[0.0f32; NR]; MR];
    for kk in 0..kc {
        let b = &panel[kk * NR..kk * NR + NR];
        for (i, row) in tile.iter_mut().enumerate() {
            // SAFETY: each a[i] points at kc readable values (the contract).
            let av = unsafe { *a[i].add(kk) };
            for (t, bv) in row.iter_mut().zip(b) {
                *t += av * bv;
            }
        }
    }
    // SAFETY: the tile's rows are this call's to write (the contract).
    unsafe { out.store(&tile) };
}

/// The 6 × 16 AVX2/FMA micro-kernel.
///
/// # Safety
/// The [`Kernel`] contract (the CPU has AVX2 and FMA).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(a: &[*const f32; MR], panel: &[f32], kc: usize, out: &Tile<MR>) {
    use std::arch::x86_64::*;
    debug_assert!(panel.len() >= kc * NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let b = panel.as_ptr();
    // The output rows are written (or read, for a residual) only after the loop: ask for their
    // cache lines now, so a cold output costs no stall at the end of every tile.
    for &row in &out.rows[..out.mr] {
        _mm_prefetch::<_MM_HINT_T0>(row as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR - 1) as *const i8);
    }
    for kk in 0..kc {
        // SAFETY: panel holds kc × NR floats; each a[i] has kc readable floats.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(kk * NR));
            let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
            for i in 0..MR {
                let av = _mm256_broadcast_ss(&*a[i].add(kk));
                acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
            }
        }
    }
    if out.how.cols < NR {
        // A ragged last panel: finish through the portable path.
        let mut tile = [[0.0f32; NR]; MR];
        for i in 0..MR {
            // SAFETY: tile rows hold NR floats.
            unsafe {
                _mm256_storeu_ps(tile[i].as_mut_ptr(), acc[i][0]);
                _mm256_storeu_ps(tile[i].as_mut_ptr().add(8), acc[i][1]);
            }
        }
        // SAFETY: the tile's rows are this call's to write (the contract).
        unsafe { out.store(&tile) };
        return;
    }
    // SAFETY: every row pointer has NR writable floats (full panel), bias has NR values.
    unsafe {
        let (bias0, bias1) = match out.how.bias {
            Some(bv) => (_mm256_loadu_ps(bv.as_ptr()), _mm256_loadu_ps(bv.as_ptr().add(8))),
            None => (_mm256_setzero_ps(), _mm256_setzero_ps()),
        };
        let zero = _mm256_setzero_ps();
        for i in 0..out.mr {
            let row = out.rows[i];
            let (mut v0, mut v1) = (_mm256_add_ps(acc[i][0], bias0), _mm256_add_ps(acc[i][1], bias1));
            if out.how.load {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(row));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(row.add(8)));
            }
            if out.how.relu {
                v0 = _mm256_max_ps(v0, zero);
                v1 = _mm256_max_ps(v1, zero);
            }
            if out.how.gelu {
                v0 = super::kernels::gelu8(v0);
                v1 = super::kernels::gelu8(v1);
            }
            _mm256_storeu_ps(row, v0);
            _mm256_storeu_ps(row.add(8), v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], m: usize, k: usize, w: &[f32], n: usize, bias: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] =
                    bias[j] as f64 + (0..k).map(|kk| a[i * k + kk] as f64 * w[j * k + kk] as f64).sum::<f64>();
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn matches_a_float64_reference_on_ragged_shapes() {
        let pool = ThreadPool::new(2).unwrap();
        for (m, k, n) in [(1, 1, 1), (7, 3, 17), (50, 600, 33), (13, 1100, 40), (100, 64, 256)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 17) as f32 * 0.05 - 0.4).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
            let packed = PackedB::from_linear(&w, n, k, Some(&bias));
            let mut c = vec![0.0; m * n];
            gemm(&pool, &a, k, m, &packed, &mut c, n, Epilogue::None);
            let want = reference(&a, m, k, &w, n, &bias);
            for (got, want) in c.iter().zip(&want) {
                assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{m}x{k}x{n}: {got} vs {want}");
            }
            let mut relu = vec![0.0; m * n];
            gemm(&pool, &a, k, m, &packed, &mut relu, n, Epilogue::Relu);
            assert!(relu.iter().zip(&c).all(|(r, c)| *r == c.max(0.0)));
            // GELU in registers (full tiles) and on the stored values (ragged ones) alike.
            let mut gelu = vec![0.0; m * n];
            gemm(&pool, &a, k, m, &packed, &mut gelu, n, Epilogue::Gelu);
            let exact = |c: f32| super::super::kernels::gelu(c);
            assert!(gelu.iter().zip(&c).all(|(g, c)| (g - exact(*c)).abs() <= 1e-6 * (1.0 + c.abs())));
            let mut residual = vec![1.0; m * n];
            gemm(&pool, &a, k, m, &packed, &mut residual, n, Epilogue::AddToOutput);
            assert!(residual.iter().zip(&c).all(|(r, c)| (r - (c + 1.0)).abs() <= 1e-4 * (1.0 + c.abs())));
        }
    }

    /// Packing by columns puts `scale` · B[kk][j] at panel j / NR, row kk, lane j % NR, and zero
    /// past n: at depths that take the 8 × 8 transpose (multiples of 8) and that do not, with
    /// ragged and whole last panels.
    #[test]
    fn packing_by_columns_transposes_and_scales() {
        for (k, n) in [(32, 64), (16, 40), (8, 16), (12, 20), (3, 5)] {
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 31) % 19) as f32 - 9.0).collect();
            // Column j of B is row j of bᵀ.
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let bias = vec![0.0; n];
            let mut dst = vec![f32::NAN; packed_len(k, n)];
            let packed = pack_columns_into(&mut dst, k, n, |j| &bt[j * k..(j + 1) * k], 0.5, &bias);
            for p in 0..n.div_ceil(NR) {
                for kk in 0..k {
                    for lane in 0..NR {
                        let j = p * NR + lane;
                        let want = if j < n { 0.5 * b[kk * n + j] } else { 0.0 };
                        assert_eq!(packed.panel(p)[kk * NR + lane], want, "k {k} n {n}: ({kk}, {j})");
                    }
                }
            }
        }
    }

    /// Every micro-kernel this CPU runs agrees: the wide ones bit for bit (the same FMAs in the
    /// same order), the portable one within rounding; on shapes with ragged rows, ragged panels
    /// and odd panel counts, for every epilogue.
    #[test]
    fn every_kernel_gives_the_same_values() {
        let selected = Kernels::select();
        let mut wide = Vec::new();
        if selected.wide() {
            wide.push(Kernels { pair: None, ..selected });
        }
        if selected.pair.is_some() {
            wide.push(selected);
        } else {
            eprintln!("this CPU has no AVX-512: the pair kernel is not tested here");
        }
        for (m, k, n) in [(1, 3, 16), (13, 70, 48), (50, 600, 40), (7, 9, 100), (97, 64, 256)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 * 0.1 - 0.6).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 104729) % 17) as f32 * 0.05 - 0.4).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.01).collect();
            let packed = PackedB::from_linear(&w, n, k, Some(&bias));
            for epi in [Epilogue::None, Epilogue::Gelu, Epilogue::Relu, Epilogue::AddToOutput] {
                let run = |kernels: Kernels| {
                    let mut c = vec![0.5; m * n];
                    let out = SharedMut::new(&mut c);
                    // SAFETY: c holds m × n values; the CPU runs `kernels` (selected for it).
                    unsafe { gemm_serial_with(kernels, m, |r| &a[r * k..], packed.view(), |r| out.at(r * n), epi) };
                    c
                };
                let portable = run(Kernels::portable());
                let wide: Vec<Vec<f32>> = wide.iter().map(|&kernels| run(kernels)).collect();
                for c in &wide {
                    let close = c.iter().zip(&portable).all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()));
                    assert!(close, "{m}x{k}x{n} {epi:?}: a wide kernel disagrees with the portable one");
                }
                for pair in wide.windows(2) {
                    let same = pair[0].iter().zip(&pair[1]).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{m}x{k}x{n} {epi:?}: the AVX-512 and AVX2 kernels differ");
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Not a test: GFLOP/s at the model's shapes, best of 18 on cold operands (as in the model,
    /// where each product's input and output were last touched long before).
    /// `cargo test --release --lib gemm_speed -- --ignored --nocapture` (`T=1` for one thread)
    #[test]
    #[ignore]
    fn gemm_speed() {
        let threads = std::env::var("T").map_or(2, |t| t.parse().expect("T: a thread count"));
        let pool = ThreadPool::new(threads).unwrap();
        for (m, k, n, epi) in [
            (65536, 64, 128, Epilogue::Gelu),
            (16384, 128, 512, Epilogue::Gelu),
            (16384, 512, 128, Epilogue::AddToOutput),
            (17689, 128, 384, Epilogue::None),
            (4096, 160, 640, Epilogue::Gelu),
            (4096, 640, 160, Epilogue::AddToOutput),
            (4900, 160, 480, Epilogue::None),
            (4096, 160, 160, Epilogue::AddToOutput),
            (4096, 320, 1280, Epilogue::Gelu),
            (4096, 1280, 320, Epilogue::AddToOutput),
            (4900, 320, 960, Epilogue::None),
            (4096, 2304, 256, Epilogue::None),
        ] {
            let w = vec![0.25f32; n * k];
            let b = PackedB::from_linear(&w, n, k, None);
            let a_s: Vec<Vec<f32>> = (0..6).map(|_| vec![0.5f32; m * k]).collect();
            let mut cs: Vec<Vec<f32>> = (0..6).map(|_| vec![0.0; m * n]).collect();
            let mut s = f64::MAX;
            for rep in 0..18 {
                let (a, c) = (&a_s[rep % 6], &mut cs[rep % 6]);
                let t = std::time::Instant::now();
                gemm(&pool, a, k, m, &b, c, n, epi);
                s = s.min(t.elapsed().as_secs_f64());
            }
            eprintln!("{m}x{k}x{n} {epi:?}: {:.2} ms, {:.0} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
        }
    }

    /// Not a test: one thread's GFLOP/s on operands that stay in cache, i.e. the micro-kernel's
    /// own speed (compare with `gemm_speed`, whose operands come from memory).
    /// `cargo test --release --lib gemm_hot_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gemm_hot_speed() {
        for (m, k, n) in
            [(48, 64, 128), (48, 512, 128), (256, 64, 256), (96, 1280, 320), (96, 640, 160), (96, 2304, 256)]
        {
            let w = vec![0.25f32; n * k];
            let b = PackedB::from_linear(&w, n, k, None);
            let a = vec![0.5f32; m * k];
            let mut c = vec![0.0f32; m * n];
            let reps = 200_000_000 / (m * k * n);
            let mut best = f64::MAX;
            for _ in 0..20 {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    gemm_serial(&a, k, m, b.view(), &mut c, n, Epilogue::None);
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            eprintln!("hot {m}x{k}x{n}: {:.0} GFLOP/s", 2.0 * (m * k * n * reps) as f64 / best / 1e9);
        }
    }
}
