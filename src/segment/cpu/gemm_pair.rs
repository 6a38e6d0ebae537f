//! The AVX-512 micro-kernel: PAIR_MR rows × two packed panels (32 columns) per call.
//!
//! Why: the AVX2 kernel loads one A value per 16 columns; here each broadcast feeds 32, so a
//! multiply needs half the loads, and 16 accumulators fill half of AVX-512's 32 registers. On
//! the development machine's Zen 4 cores (AVX-512 at the AVX2 kernel's FMA rate) it is only
//! 2–4 % faster on operands in cache, but the whole encoder on two cores ran 5–10 % faster in
//! each of 8 interleaved runs: fewer loads leave more room for the ones that miss. Same
//! arithmetic as the AVX2 kernel, lane for lane (one FMA per product term, in k order), so the
//! results do not depend on which kernel ran (tested).

use super::gemm::{NR, PAIR_MR, Tile};

/// block[i][j] = Σ_kk a_i[kk] · [p0 | p1][kk][j] for two whole panels, then the tile's finish.
///
/// # Safety
/// A [`PairKernel`](super::gemm) contract: the CPU has AVX-512F, each `a[i]` points at `kc`
/// readable floats, and each of the tile's rows at 2·NR floats that this call alone writes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel_avx512(a: &[*const f32; PAIR_MR], p0: &[f32], p1: &[f32], kc: usize, out: &Tile<PAIR_MR>) {
    use std::arch::x86_64::*;
    assert!(p0.len() >= kc * NR && p1.len() >= kc * NR && out.how.cols == 2 * NR, "pair kernel operands");
    let mut acc = [[_mm512_setzero_ps(); 2]; PAIR_MR];
    let (b0, b1) = (p0.as_ptr(), p1.as_ptr());
    // As in the AVX2 kernel: ask for the output's lines before the loop.
    for &row in &out.rows[..out.mr] {
        _mm_prefetch::<_MM_HINT_T0>(row as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(2 * NR - 1) as *const i8);
    }
    for kk in 0..kc {
        // SAFETY: each panel holds kc × NR floats; each a[i] has kc readable floats.
        unsafe {
            let (v0, v1) = (_mm512_loadu_ps(b0.add(kk * NR)), _mm512_loadu_ps(b1.add(kk * NR)));
            for i in 0..PAIR_MR {
                let av = _mm512_set1_ps(*a[i].add(kk));
                acc[i][0] = _mm512_fmadd_ps(av, v0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(av, v1, acc[i][1]);
            }
        }
    }
    // SAFETY: every row pointer has 2·NR writable floats (two whole panels); the bias as many.
    unsafe {
        let (bias0, bias1) = match out.how.bias {
            Some(bv) => (_mm512_loadu_ps(bv.as_ptr()), _mm512_loadu_ps(bv.as_ptr().add(NR))),
            None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
        };
        let zero = _mm512_setzero_ps();
        for i in 0..out.mr {
            let row = out.rows[i];
            let (mut v0, mut v1) = (_mm512_add_ps(acc[i][0], bias0), _mm512_add_ps(acc[i][1], bias1));
            if out.how.load {
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(row));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(row.add(NR)));
            }
            if out.how.relu {
                v0 = _mm512_max_ps(v0, zero);
                v1 = _mm512_max_ps(v1, zero);
            }
            if out.how.gelu {
                v0 = super::kernels::gelu16(v0);
                v1 = super::kernels::gelu16(v1);
            }
            _mm512_storeu_ps(row, v0);
            _mm512_storeu_ps(row.add(NR), v1);
        }
    }
}
