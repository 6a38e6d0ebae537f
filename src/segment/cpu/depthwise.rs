//! Depthwise 3×3 convolution (padding 1) in token layout (H × W × C), for the CPU engine: the
//! standalone op (stride 1 or 2, optional GELU) and the row kernel MBConv's fused pass shares
//! with it.

use super::kernels::{SharedMut, gelu_in_place, has_avx2_fma};
use super::pool::ThreadPool;

/// Depthwise 3×3 convolution, padding 1, in token layout (H × W × C), stride 1 or 2, with bias
/// and an optional GELU. `taps` is the weight reordered tap-major: `taps[(dy * 3 + dx) * C + c]`.
pub struct DepthwiseArgs<'a> {
    pub input: &'a [f32],
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub stride: usize,
    pub taps: &'a [f32],
    pub bias: &'a [f32],
    pub gelu: bool,
}

impl DepthwiseArgs<'_> {
    pub fn out_size(&self) -> (usize, usize) {
        ((self.height + 2 - 3) / self.stride + 1, (self.width + 2 - 3) / self.stride + 1)
    }
}

pub fn depthwise3x3(pool: &ThreadPool, a: &DepthwiseArgs, out: &mut [f32]) {
    let (oh, ow) = a.out_size();
    let (c, s) = (a.channels, a.stride);
    let row = ow * c;
    assert!(out.len() >= oh * row && a.input.len() >= a.height * a.width * c);
    let o = SharedMut::new(out);
    pool.for_each(oh, &|oy| {
        // SAFETY: task oy writes output row oy only.
        let out_row = unsafe { o.rows(oy * row, row) };
        let rows: [Option<&[f32]>; 3] = std::array::from_fn(|dy| {
            let iy = (oy * s + dy).checked_sub(1).filter(|&iy| iy < a.height)?;
            Some(&a.input[iy * a.width * c..(iy + 1) * a.width * c])
        });
        depthwise_row(&rows, a.width, s, a.taps, &a.bias[..c], a.gelu, out_row);
    });
}

/// One output row of `bias.len()` channels per pixel: bias + Σ taps · inputs over the taps
/// inside the image, then GELU if asked. `rows[dy]` is the input row under the taps of row dy
/// (None: outside the image), `width` pixels wide; output pixel ox reads input columns
/// `ox · stride − 1 + dx` where those are inside the row.
pub fn depthwise_row(
    rows: &[Option<&[f32]>; 3],
    width: usize,
    stride: usize,
    taps: &[f32],
    bias: &[f32],
    gelu: bool,
    out: &mut [f32],
) {
    let c = bias.len();
    assert!(c > 0 && out.len().is_multiple_of(c) && taps.len() >= 9 * c, "depthwise weights and output");
    assert!(rows.iter().flatten().all(|r| r.len() >= width * c), "depthwise input rows");
    #[cfg(target_arch = "x86_64")]
    let wide = c.is_multiple_of(CHUNK) && has_avx2_fma();
    for (ox, o) in out.chunks_exact_mut(c).enumerate() {
        let x0 = (ox * stride) as isize - 1;
        // The taps inside the image: dx in dx_range.
        let dx_range = (-x0).clamp(0, 3) as usize..(width as isize - x0).clamp(0, 3) as usize;
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: the CPU has AVX2 and FMA; the asserts and dx_range bound every access.
            unsafe { pixel_avx2(rows, x0, dx_range, taps, bias, gelu, o) };
            continue;
        }
        pixel_portable(rows, x0, dx_range, taps, bias, gelu, o);
    }
}

/// One output pixel of [`depthwise_row`], loop by loop.
fn pixel_portable(
    rows: &[Option<&[f32]>; 3],
    x0: isize,
    dx_range: std::ops::Range<usize>,
    taps: &[f32],
    bias: &[f32],
    gelu: bool,
    out: &mut [f32],
) {
    let c = out.len();
    out.copy_from_slice(bias);
    for (dy, row) in rows.iter().enumerate() {
        let Some(row) = row else { continue };
        for dx in dx_range.clone() {
            let ix = (x0 + dx as isize) as usize;
            let inp = &row[ix * c..(ix + 1) * c];
            let t = &taps[(dy * 3 + dx) * c..(dy * 3 + dx + 1) * c];
            for ((o, i), t) in out.iter_mut().zip(inp).zip(t) {
                *o += i * t;
            }
        }
    }
    if gelu {
        gelu_in_place(out);
    }
}

/// Channels the AVX2 pixel takes at once: four registers of sums.
const CHUNK: usize = 32;

/// One output pixel of [`depthwise_row`] with the sums in registers: per 32 channels the taps
/// accumulate in four registers, and GELU runs on them before the one store. (The portable form
/// loads and stores the output once per tap: its memory traffic, not its arithmetic, set its
/// pace.) The same sums in the same order, each product added by a fused multiply-add.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pixel_avx2(
    rows: &[Option<&[f32]>; 3],
    x0: isize,
    dx_range: std::ops::Range<usize>,
    taps: &[f32],
    bias: &[f32],
    gelu: bool,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let c = out.len();
    for ch in (0..c).step_by(CHUNK) {
        // SAFETY: ch + 32 <= c; the caller bounds the rows, taps and columns.
        unsafe {
            let mut acc: [__m256; 4] = std::array::from_fn(|j| _mm256_loadu_ps(bias.as_ptr().add(ch + 8 * j)));
            for (dy, row) in rows.iter().enumerate() {
                let Some(row) = row else { continue };
                for dx in dx_range.clone() {
                    let inp = row.as_ptr().add((x0 + dx as isize) as usize * c + ch);
                    let t = taps.as_ptr().add((dy * 3 + dx) * c + ch);
                    for (j, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(inp.add(8 * j)), _mm256_loadu_ps(t.add(8 * j)), *a);
                    }
                }
            }
            let o = out.as_mut_ptr().add(ch);
            for (j, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(o.add(8 * j), if gelu { super::kernels::gelu8(*a) } else { *a });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both strides, with and without GELU, on 3 channels (the portable pixel) and 64 (the
    /// AVX2 one where the CPU has it), against sums written out tap by tap.
    #[test]
    fn depthwise_matches_direct_sums_at_both_strides() {
        let pool = ThreadPool::new(2).unwrap();
        for (h, w, c) in [(5, 4, 3), (6, 5, 64)] {
            let input: Vec<f32> = (0..h * w * c).map(|i| (i % 7) as f32 - 3.0).collect();
            let taps: Vec<f32> = (0..9 * c).map(|i| (i % 5) as f32 * 0.25).collect();
            let bias: Vec<f32> = (0..c).map(|i| (i % 3) as f32 - 1.0).collect();
            for (stride, gelu) in [(1, false), (2, false), (1, true), (2, true)] {
                let a = DepthwiseArgs {
                    input: &input,
                    height: h,
                    width: w,
                    channels: c,
                    stride,
                    taps: &taps,
                    bias: &bias,
                    gelu,
                };
                let (oh, ow) = a.out_size();
                let mut out = vec![0.0; oh * ow * c];
                depthwise3x3(&pool, &a, &mut out);
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ch in 0..c {
                            let mut want = bias[ch];
                            for dy in 0..3 {
                                for dx in 0..3 {
                                    let (iy, ix) = ((oy * stride + dy) as isize - 1, (ox * stride + dx) as isize - 1);
                                    if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                        want += input[(iy as usize * w + ix as usize) * c + ch]
                                            * taps[(dy * 3 + dx) * c + ch];
                                    }
                                }
                            }
                            if gelu {
                                want = super::super::kernels::gelu(want);
                            }
                            let got = out[(oy * ow + ox) * c + ch];
                            assert!(
                                (got - want).abs() < 1e-5,
                                "{c} channels, stride {stride}, ({oy}, {ox}, {ch}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
