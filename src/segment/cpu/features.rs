//! The CPU features the engine's kernels are built for, detected once per process and read by
//! every dispatch point (as tract's `plug_fma` picks its kernels once at start-up): the GEMM
//! micro-kernels, the element-wise kernels compiled twice (`multiversion!`, `run_wide`), the
//! depthwise convolution and the logits resize. Kernels compiled for a feature are `unsafe fn`s
//! whose contract is "the CPU has it"; this is the one place that establishes it.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// AVX2 and FMA: the 8-lane kernels.
    pub avx2_fma: bool,
    /// AVX-512F: the two-panel GEMM kernel (with AVX2 and FMA).
    pub avx512f: bool,
    /// FMA alone: the bit-exact logits resize.
    pub fma: bool,
}

impl CpuFeatures {
    /// This CPU's features, detected on the first call.
    pub fn get() -> CpuFeatures {
        static DETECTED: OnceLock<CpuFeatures> = OnceLock::new();
        *DETECTED.get_or_init(CpuFeatures::detect)
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> CpuFeatures {
        use std::arch::is_x86_feature_detected as has;
        let avx2_fma = has!("avx2") && has!("fma");
        CpuFeatures { avx2_fma, avx512f: avx2_fma && has!("avx512f"), fma: has!("fma") }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> CpuFeatures {
        CpuFeatures::default()
    }
}
