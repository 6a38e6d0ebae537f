//! TinyViT's MBConv fused into one pass over row bands, for the CPU engine:
//! `out = gelu(x + conv3(gelu(dw3x3(gelu(conv1(x))))))`.
//!
//! Why: at 256 × 256 the hidden activations are 64 MiB each, so running the three layers one
//! after another streams ~260 MB through memory per block. Here each thread walks a band of image
//! rows keeping only three rows of the hidden layer (a ring, ~768 KiB) and one row of the
//! depthwise output in its scratch: the hidden layers never leave the cache. A band recomputes the
//! two hidden rows at its edges (8 bands: ~6 % more conv1 work).

use super::depthwise::depthwise_row;
use super::gemm::{Epilogue, PackedB, gemm_serial};
use super::kernels::{SharedMut, WideJob, add_gelu_in_place, run_wide};
use super::pool::ThreadPool;

/// Rows of the image one task walks.
const BAND_ROWS: usize = 32;

pub struct MbConvArgs<'a> {
    pub x: &'a [f32],
    pub height: usize,
    pub width: usize,
    pub conv1: &'a PackedB,
    /// Depthwise taps, tap-major (`taps[t * hidden + c]`), and bias.
    pub taps: &'a [f32],
    pub dw_bias: &'a [f32],
    pub conv3: &'a PackedB,
}

/// Scratch floats one thread needs: three hidden rows and one depthwise-output row.
pub fn scratch_len(width: usize, hidden: usize) -> usize {
    4 * width * hidden
}

pub fn mbconv(pool: &ThreadPool, a: &MbConvArgs, out: &mut [f32], scratch: &mut [f32]) {
    let (c, hidden) = (a.conv1.k, a.conv1.n);
    assert!(a.conv3.k == hidden && a.conv3.n == c && a.taps.len() == 9 * hidden && a.dw_bias.len() == hidden);
    assert!(a.x.len() >= a.height * a.width * c && out.len() >= a.height * a.width * c);
    let per_thread = scratch_len(a.width, hidden);
    assert!(scratch.len() >= per_thread * pool.threads(), "mbconv scratch");
    let out_ptr = SharedMut::new(out);
    let scratch_ptr = SharedMut::new(scratch);
    pool.for_each_on_thread(a.height.div_ceil(BAND_ROWS), &|band, thread| {
        // SAFETY: each thread uses its own part of the scratch.
        let s = unsafe { scratch_ptr.rows(thread * per_thread, per_thread) };
        let job = Band { a, out: out_ptr, rows: band * BAND_ROWS..((band + 1) * BAND_ROWS).min(a.height) };
        run_wide(&job, s)
    });
}

struct Band<'a> {
    a: &'a MbConvArgs<'a>,
    out: SharedMut<'a>,
    rows: std::ops::Range<usize>,
}

impl Band<'_> {
    /// conv1 + GELU of image row `r` into its ring slot (`r % 3`).
    #[inline(always)]
    fn hidden_row(&self, r: usize, ring: &mut [f32]) {
        let a = self.a;
        let (w, c, hidden) = (a.width, a.conv1.k, a.conv1.n);
        let row_len = w * hidden;
        let slot = &mut ring[(r % 3) * row_len..(r % 3 + 1) * row_len];
        gemm_serial(&a.x[r * w * c..(r + 1) * w * c], c, w, a.conv1.view(), slot, hidden, Epilogue::Gelu);
    }
}

impl WideJob for Band<'_> {
    /// Inlined into the wide and the baseline copies (no closures: they would not inherit the
    /// wide copy's target features).
    #[inline(always)]
    fn run(&self, scratch: &mut [f32]) {
        let a = self.a;
        let (w, c, hidden) = (a.width, a.conv1.k, a.conv1.n);
        let row_len = w * hidden;
        let (ring, dw_row) = scratch.split_at_mut(3 * row_len);
        let dw_row = &mut dw_row[..row_len];
        let first = self.rows.start;
        if first > 0 {
            self.hidden_row(first - 1, ring);
        }
        self.hidden_row(first, ring);
        for y in self.rows.clone() {
            if y + 1 < a.height {
                self.hidden_row(y + 1, ring);
            }
            let mut rows: [Option<&[f32]>; 3] = [None; 3];
            for (i, slot) in rows.iter_mut().enumerate() {
                let r = y as isize + i as isize - 1;
                if r >= 0 && (r as usize) < a.height {
                    *slot = Some(&ring[(r as usize % 3) * row_len..][..row_len]);
                }
            }
            depthwise_row(&rows, w, 1, a.taps, a.dw_bias, true, dw_row);
            // SAFETY: output row y belongs to this band alone.
            let out_row = unsafe { self.out.rows(y * w * c, w * c) };
            gemm_serial(dw_row, hidden, w, a.conv3.view(), out_row, c, Epilogue::None);
            add_gelu_in_place(out_row, &a.x[y * w * c..(y + 1) * w * c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::cpu::depthwise::{DepthwiseArgs, depthwise3x3};

    struct Case {
        x: Vec<f32>,
        conv1: PackedB,
        conv3: PackedB,
        taps: Vec<f32>,
        bias: Vec<f32>,
    }

    fn case(h: usize, w: usize, c: usize) -> Case {
        let hidden = 4 * c;
        let v = |n: usize, m: usize| -> Vec<f32> { (0..n).map(|i| ((i * m) % 17) as f32 * 0.02 - 0.16).collect() };
        Case {
            x: v(h * w * c, 7),
            conv1: PackedB::from_linear(&v(hidden * c, 5), hidden, c, Some(&v(hidden, 3))),
            conv3: PackedB::from_linear(&v(c * hidden, 11), c, hidden, Some(&v(c, 13))),
            taps: v(9 * hidden, 19),
            bias: v(hidden, 23),
        }
    }

    /// The three layers one after another, through whole-image buffers.
    fn unfused(pool: &ThreadPool, k: &Case, h: usize, w: usize) -> Vec<f32> {
        let (c, hidden) = (k.conv1.k, k.conv1.n);
        let mut h1 = vec![0.0; h * w * hidden];
        crate::segment::cpu::gemm::gemm(pool, &k.x, c, h * w, &k.conv1, &mut h1, hidden, Epilogue::Gelu);
        let mut h2 = vec![0.0; h * w * hidden];
        let args = DepthwiseArgs {
            input: &h1,
            height: h,
            width: w,
            channels: hidden,
            stride: 1,
            taps: &k.taps,
            bias: &k.bias,
            gelu: true,
        };
        depthwise3x3(pool, &args, &mut h2);
        let mut out = k.x.clone();
        crate::segment::cpu::gemm::gemm(pool, &h2, hidden, h * w, &k.conv3, &mut out, c, Epilogue::AddToOutput);
        crate::segment::cpu::kernels::gelu_in_place(&mut out);
        out
    }

    fn fused(pool: &ThreadPool, k: &Case, h: usize, w: usize) -> Vec<f32> {
        let (c, hidden) = (k.conv1.k, k.conv1.n);
        let mut out = vec![0.0; h * w * c];
        let mut scratch = vec![0.0; scratch_len(w, hidden) * pool.threads()];
        let args = MbConvArgs {
            x: &k.x,
            height: h,
            width: w,
            conv1: &k.conv1,
            taps: &k.taps,
            dw_bias: &k.bias,
            conv3: &k.conv3,
        };
        mbconv(pool, &args, &mut out, &mut scratch);
        out
    }

    #[test]
    fn fused_equals_the_layers_one_after_another() {
        let pool = ThreadPool::new(2).unwrap();
        // 70 rows: bands of 32 with a ragged last one; 9 columns: ragged GEMM panels. 8
        // channels (32 hidden) take the AVX2 depthwise row where the CPU has it, 6 the portable.
        for (h, w, c) in [(70, 9, 8), (70, 9, 6)] {
            let k = case(h, w, c);
            let (a, b) = (fused(&pool, &k, h, w), unfused(&pool, &k, h, w));
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{c} channels, element {i}: {x} vs {y}");
            }
        }
    }

    /// Not a test: fused against unfused at the model's size.
    /// `cargo test --release --lib mbconv_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn mbconv_speed() {
        let pool = ThreadPool::new(2).unwrap();
        let k = case(256, 256, 64);
        for round in 0..3 {
            let t = std::time::Instant::now();
            std::hint::black_box(fused(&pool, &k, 256, 256));
            let f = t.elapsed();
            let t = std::time::Instant::now();
            std::hint::black_box(unfused(&pool, &k, 256, 256));
            let u = t.elapsed();
            eprintln!("round {round}: fused {:.1} ms, unfused {:.1} ms", f.as_secs_f64() * 1e3, u.as_secs_f64() * 1e3);
        }
    }
}
