//! Post-processing of the official LiteMedSAM inference: the mask decoder's 256 x 256 low-res
//! logits (covering the padded model input) are cropped to the resized image, resized back to the
//! frame with PyTorch's bilinear interpolation (`align_corners=False`, no antialias, float32) and
//! thresholded (`sigmoid(x) > 0.5`, i.e. `x > 0`) into a 0/1 mask. Also the mask's bounding box,
//! for trackers that turn one frame's mask into the next frame's box prompt.
//!
//! The resize reproduces PyTorch's CPU kernels bit for bit, fused multiply-adds included (PyTorch's
//! x86-64 build contracts `a * b + c * d` into them), so the frame-size logits equal the
//! reference's exactly rather than to within float32 rounding.
//!
//! Cost: three fused multiply-adds and a compare per frame pixel, about 0.7 ms for an 820 x 616
//! frame on one core (x86-64 with FMA; the portable path for CPUs without it is about 4 times
//! slower); a plain copy when the frame's long side is already 256 px. Allocation-free.

use super::letterbox::Letterbox;

const SIDE: usize = Letterbox::SIDE;

/// Why logits cannot be mapped back to the frame.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PostprocessError {
    #[error("low-res logits must hold {expected} values (256 x 256), got {got}")]
    LowResLength { expected: usize, got: usize },
    #[error("{buffer} must hold {expected} values for a {width} x {height} frame, got {got}")]
    OutputLength { buffer: &'static str, width: usize, height: usize, expected: usize, got: usize },
    #[error("letterbox {letterbox:?} is inconsistent (resized size must be 1..=256 px, frame non-empty)")]
    Letterbox { letterbox: Letterbox },
    #[error("mask must hold {expected} values for a {width} x {height} frame, got {got}")]
    MaskLength { width: usize, height: usize, expected: usize, got: usize },
}

/// Low-res logits (256 x 256, covering the padded model input) → logits at frame size (crop to
/// the resized area, PyTorch bilinear `align_corners=False`) and the binary mask (logit > 0 → 1).
/// Allocation-free; out buffers must hold width x height.
pub fn logits_to_frame(
    low_res: &[f32],
    letterbox: &Letterbox,
    logits_out: &mut [f32],
    mask_out: &mut [u8],
) -> Result<(), PostprocessError> {
    let lb = *letterbox;
    let (w, h) = (lb.frame_width, lb.frame_height);
    let (nw, nh) = (lb.resized_width, lb.resized_height);
    // The fields are public, so a hand-made letterbox is checked like any other input.
    if w == 0 || h == 0 || !(1..=SIDE).contains(&nw) || !(1..=SIDE).contains(&nh) {
        return Err(PostprocessError::Letterbox { letterbox: lb });
    }
    if low_res.len() != SIDE * SIDE {
        return Err(PostprocessError::LowResLength { expected: SIDE * SIDE, got: low_res.len() });
    }
    let expected = w.checked_mul(h).ok_or(PostprocessError::Letterbox { letterbox: lb })?;
    for (buffer, got) in [("logits_out", logits_out.len()), ("mask_out", mask_out.len())] {
        if got != expected {
            return Err(PostprocessError::OutputLength { buffer, width: w, height: h, expected, got });
        }
    }

    if (nw, nh) == (w, h) {
        // PyTorch copies when the sizes match; the interpolation would be the identity anyway.
        for (out_row, row) in logits_out.chunks_exact_mut(w).zip(low_res.chunks_exact(SIDE)) {
            out_row.copy_from_slice(&row[..w]);
        }
    } else if w + h <= SMALL_OUTPUT_MAX_SIDES {
        resize_small_output(low_res, nw, nh, w, h, logits_out);
    } else {
        resize_generic(low_res, nw, nh, w, h, logits_out);
    }
    for (m, &l) in mask_out.iter_mut().zip(logits_out.iter()) {
        // sigmoid(l) > 0.5 is l > 0 except for |l| below ~3e-8, where float32 sigmoid rounds to 0.5.
        *m = u8::from(l > 0.0);
    }
    Ok(())
}

/// PyTorch (CPU, float32) picks its bilinear kernel by the output size: height + width <= 128
/// goes to the channels-last kernel, anything larger to the generic N-d kernel. They round
/// differently, so both are reproduced. (`_use_vectorized_kernel_cond_2d` in
/// `aten/src/ATen/native/cpu/UpSampleKernel.cpp`.)
const SMALL_OUTPUT_MAX_SIDES: usize = 128;

/// The generic kernel: per axis a (source index, weight) pair with the source position computed
/// without fusing, then `fma(a0, w0, a1 * w1)` along x and again along y. The fused multiply-adds
/// are what the compiler made of PyTorch's `t0 * w0 + t1 * w1` in its x86-64 build; with them the
/// result equals PyTorch's bit for bit (checked on 580 random frame sizes).
fn resize_generic(low_res: &[f32], nw: usize, nh: usize, w: usize, h: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::segment::cpu::features::CpuFeatures::get().fma {
        // SAFETY: the function's only requirement is the FMA instruction set, detected just above.
        unsafe { resize_generic_x86_fma(low_res, nw, nh, w, h, out) };
        return;
    }
    if cfg!(any(target_arch = "aarch64", target_feature = "fma")) {
        // The fused instruction is part of the target: `mul_add` compiles to it.
        resize_generic_with(low_res, nw, nh, w, h, out, f32::mul_add);
    } else {
        resize_generic_with(low_res, nw, nh, w, h, out, fma);
    }
}

/// [`resize_generic`] compiled for FMA-capable x86-64: `mul_add` becomes one instruction instead
/// of a call to the C library (4 times faster than the portable [`fma`] on an 820 x 616 frame).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn resize_generic_x86_fma(low_res: &[f32], nw: usize, nh: usize, w: usize, h: usize, out: &mut [f32]) {
    resize_generic_with(low_res, nw, nh, w, h, out, f32::mul_add);
}

#[inline(always)]
fn resize_generic_with(
    low_res: &[f32],
    nw: usize,
    nh: usize,
    w: usize,
    h: usize,
    out: &mut [f32],
    fma: impl Fn(f32, f32, f32) -> f32,
) {
    // The x taps of a band of columns, computed once per band instead of once per pixel; bands
    // keep the table on the stack for any frame width.
    const BAND: usize = 256;
    let mut x_taps = [(0usize, 0usize, 0.0f32, 0.0f32); BAND];
    for band_start in (0..w).step_by(BAND) {
        let band = BAND.min(w - band_start);
        for (k, tap) in x_taps[..band].iter_mut().enumerate() {
            *tap = source_taps(nw, w, band_start + k, false);
        }
        for y in 0..h {
            let (y0, y1, ly0, ly1) = source_taps(nh, h, y, false);
            let (row0, row1) = (&low_res[y0 * SIDE..][..nw], &low_res[y1 * SIDE..][..nw]);
            for (o, &(x0, x1, lx0, lx1)) in out[y * w + band_start..][..band].iter_mut().zip(&x_taps[..band]) {
                let top = fma(row0[x0], lx0, row0[x1] * lx1);
                let bottom = fma(row1[x0], lx0, row1[x1] * lx1);
                *o = fma(top, ly0, bottom * ly1);
            }
        }
    }
}

/// The channels-last kernel (tiny frames only): the source position is fused
/// (`fma(scale, dst + 0.5, -0.5)`), the four weights are products of the axis weights, and the
/// sum runs `fma(a11, w11, fma(a10, w10, fma(a00, w00, a01 * w01)))`.
fn resize_small_output(low_res: &[f32], nw: usize, nh: usize, w: usize, h: usize, out: &mut [f32]) {
    for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
        let (y0, y1, ly0, ly1) = source_taps(nh, h, y, true);
        let (row0, row1) = (&low_res[y0 * SIDE..][..nw], &low_res[y1 * SIDE..][..nw]);
        for (x, o) in out_row.iter_mut().enumerate() {
            let (x0, x1, lx0, lx1) = source_taps(nw, w, x, true);
            let (w00, w01, w10, w11) = (ly0 * lx0, ly0 * lx1, ly1 * lx0, ly1 * lx1);
            let sum = fma(row0[x0], w00, row0[x1] * w01);
            *o = fma(row1[x1], w11, fma(row1[x0], w10, sum));
        }
    }
}

/// PyTorch's source taps for output index `dst` of an axis resized from `n_in` to `n_out`
/// (`align_corners=False`), in float32: `src = max(scale * (dst + 0.5) - 0.5, 0)` with
/// `scale = n_in / n_out`, `i0 = floor(src)`, `i1 = min(i0 + 1, n_in - 1)`, weights `1 - l`, `l`
/// with `l = src - i0`. `fused` computes `src` with one rounding, as PyTorch's channels-last
/// kernel does. An axis that keeps its size is copied (weights 1 and 0).
fn source_taps(n_in: usize, n_out: usize, dst: usize, fused: bool) -> (usize, usize, f32, f32) {
    if n_in == n_out {
        return (dst, dst, 1.0, 0.0);
    }
    let scale = n_in as f32 / n_out as f32;
    let centre = dst as f32 + 0.5;
    let src = if fused { fma(scale, centre, -0.5) } else { scale * centre - 0.5 }.max(0.0);
    let i0 = (src as usize).min(n_in - 1);
    let l1 = src - i0 as f32;
    (i0, (i0 + 1).min(n_in - 1), 1.0 - l1, l1)
}

/// `a * b + c` rounded once, as a fused multiply-add instruction computes it.
///
/// The portable path for CPUs without the instruction: `f32::mul_add` gives the same bits but
/// there calls the C library's `fmaf` (about 4 ns a call). Here: the product of two float32
/// is exact in float64, so `product + c` in float64 is rounded once there; rounding that again to
/// float32 is correct unless the float64 sum was inexact and landed exactly halfway between two
/// float32 values, which is detected and nudged one float64 ulp towards the exact value (musl's
/// `fmaf`). Float32-subnormal results, which logits never reach, take `mul_add`.
#[inline]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    let product = f64::from(a) * f64::from(b);
    let c64 = f64::from(c);
    let sum = product + c64;
    let bits = sum.to_bits();
    let halfway = bits & 0x1fff_ffff == 0x1000_0000;
    if !halfway || !sum.is_finite() || (sum - product == c64 && sum - c64 == product) {
        if sum != 0.0 && sum.abs() < f64::from(f32::MIN_POSITIVE) {
            return a.mul_add(b, c);
        }
        return sum as f32;
    }
    // The exact rounding error of the float64 sum (Fast2Sum, larger magnitude first).
    let negative = sum < 0.0;
    let error = if negative == (c64 > product) { product - sum + c64 } else { c64 - sum + product };
    let nudged = if negative == (error < 0.0) { bits + 1 } else { bits - 1 };
    f64::from_bits(nudged) as f32
}

/// Bounding box `[x_min, y_min, x_max, y_max]` (inclusive pixel indices) of the non-zero pixels of
/// a `width` x `height` mask, or `None` when the mask is empty. One pass over the mask.
///
/// Inclusive bounds are MedSAM's own convention for boxes derived from masks; a tracker that feeds
/// the box back as the next prompt usually grows it by a margin first.
pub fn mask_bounding_box(mask: &[u8], width: usize, height: usize) -> Result<Option<[usize; 4]>, PostprocessError> {
    let expected = width.saturating_mul(height);
    if mask.len() != expected || width == 0 {
        return Err(PostprocessError::MaskLength { width, height, expected, got: mask.len() });
    }
    let mut bounds: Option<[usize; 4]> = None;
    for (y, row) in mask.chunks_exact(width).enumerate() {
        let Some(first) = row.iter().position(|&m| m != 0) else { continue };
        // `first` exists, so `rposition` finds at least that pixel.
        let last = row.iter().rposition(|&m| m != 0).unwrap_or(first);
        bounds = Some(match bounds {
            None => [first, y, last, y],
            Some([x0, y0, x1, _]) => [x0.min(first), y0, x1.max(last), y],
        });
    }
    Ok(bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letterbox(w: usize, h: usize) -> Letterbox {
        Letterbox::for_frame(w, h).unwrap()
    }

    #[test]
    fn taps_match_pytorch_rules() {
        // 2 → 4: scale 0.5; dst 0 → src -0.25 clamped to 0; dst 1 → 0.25; dst 2 → 0.75;
        // dst 3 → 1.25 → i0 = 1, i1 clamped to 1.
        assert_eq!(source_taps(2, 4, 0, false), (0, 1, 1.0, 0.0));
        assert_eq!(source_taps(2, 4, 1, false), (0, 1, 0.75, 0.25));
        assert_eq!(source_taps(2, 4, 2, false), (0, 1, 0.25, 0.75));
        assert_eq!(source_taps(2, 4, 3, false), (1, 1, 0.75, 0.25));
        // 4 → 2 (shrinking, no antialias): scale 2; dst 0 → 0.5, dst 1 → 2.5.
        assert_eq!(source_taps(4, 2, 0, false), (0, 1, 0.5, 0.5));
        assert_eq!(source_taps(4, 2, 1, false), (2, 3, 0.5, 0.5));
        // Where fusing matters (256 → 7, dst 3): scale = f32(36.571430), scale * 3.5 = 128.0000057
        // rounds to 128.0 before the - 0.5, but not when fused. PyTorch's small-output kernel gives
        // weights 0.5 -/+ 2^-17 here; its generic kernel gives 0.5 and 0.5.
        assert_eq!(source_taps(256, 7, 3, false), (127, 128, 0.5, 0.5));
        let (i0, i1, l0, l1) = source_taps(256, 7, 3, true);
        let ulp = 2f32.powi(-17); // of 127.5
        assert_eq!((i0, i1, l0, l1), (127, 128, 0.5 - ulp, 0.5 + ulp));
        // A kept axis is copied.
        assert_eq!(source_taps(5, 5, 3, true), (3, 3, 1.0, 0.0));
    }

    #[test]
    fn fma_rounds_once() {
        // 4097 * 4097 = 2^24 + 2^13 + 1 is exactly halfway between two float32 values; a tiny c
        // vanishes in the float64 sum but decides the float32 rounding. Double rounding gets
        // these wrong.
        let tiny = 2f32.powi(-40);
        for (a, b, c) in
            [(4097.0f32, 4097.0f32, tiny), (4097.0, 4097.0, -tiny), (-4097.0, 4097.0, tiny), (4097.0, 4097.0, 0.0)]
        {
            assert_eq!(fma(a, b, c).to_bits(), a.mul_add(b, c).to_bits(), "{a} * {b} + {c}");
        }
        assert_ne!((4097.0f64 * 4097.0 + f64::from(tiny)) as f32, 4097.0f32.mul_add(4097.0, tiny));
        // Random triples over many magnitudes, and halfway-prone ones built from small integers.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200_000 {
            let (a, b, c) = if i % 2 == 0 {
                let f = |r: u64| f32::from_bits((r as u32 & 0x807f_ffff) | ((100 + (r >> 40) % 56) as u32) << 23);
                (f(next()), f(next()), f(next()))
            } else {
                let k = |r: u64| ((r % 8192) as f32 + 1.0) * if r & (1 << 20) != 0 { -1.0 } else { 1.0 };
                let e = (next() % 60) as i32 - 50;
                (k(next()), k(next()), k(next()) * 2f32.powi(e))
            };
            assert_eq!(fma(a, b, c).to_bits(), a.mul_add(b, c).to_bits(), "{a:e} * {b:e} + {c:e}");
        }
    }

    #[test]
    fn portable_and_hardware_fma_paths_agree() {
        // The portable path runs only on CPUs without FMA; check it gives the same bits.
        let low_res: Vec<f32> = (0..SIDE * SIDE).map(|i| ((i * 7919) % 2003) as f32 / 37.0 - 27.0).collect();
        for (w, h) in [(320, 240), (192, 250), (820, 616), (300, 7)] {
            let lb = letterbox(w, h);
            let (nw, nh) = (lb.resized_width, lb.resized_height);
            let mut portable = vec![0.0; w * h];
            let mut fused = vec![0.0; w * h];
            resize_generic_with(&low_res, nw, nh, w, h, &mut portable, fma);
            resize_generic_with(&low_res, nw, nh, w, h, &mut fused, f32::mul_add);
            assert!(portable.iter().zip(&fused).all(|(a, b)| a.to_bits() == b.to_bits()), "{w} x {h}");
        }
    }

    #[test]
    fn identity_for_256_frames_and_threshold() {
        let low_res: Vec<f32> = (0..SIDE * SIDE).map(|i| (i % 7) as f32 - 3.0).collect();
        let lb = letterbox(256, 256);
        let mut logits = vec![0.0; SIDE * SIDE];
        let mut mask = vec![9; SIDE * SIDE];
        logits_to_frame(&low_res, &lb, &mut logits, &mut mask).unwrap();
        assert_eq!(logits, low_res);
        assert!(mask.iter().zip(&low_res).all(|(&m, &l)| m == u8::from(l > 0.0)));
    }

    #[test]
    fn crops_the_padding_and_interpolates() {
        // A 512 x 2 frame resizes to 256 x 1: only low-res row 0 counts; rows below are padding.
        // Back to 512 columns: x = 2k + 1 → src k + 0.25, x = 2k → src k - 0.25.
        let mut low_res = vec![1000.0f32; SIDE * SIDE];
        for (x, v) in low_res[..SIDE].iter_mut().enumerate() {
            *v = x as f32 * 4.0 - 2.0;
        }
        let lb = letterbox(512, 2);
        assert_eq!((lb.resized_width, lb.resized_height), (256, 1));
        let mut logits = vec![0.0; 512 * 2];
        let mut mask = vec![0; 512 * 2];
        logits_to_frame(&low_res, &lb, &mut logits, &mut mask).unwrap();
        assert_eq!(&logits[..5], &[-2.0, -1.0, 1.0, 3.0, 5.0]); // src clamped to 0, then 0.25, 0.75, ...
        assert_eq!(logits[511], 1018.0); // the last column clamps to source 255: 255 * 4 - 2
        assert_eq!(&logits[512..517], &logits[..5]); // both rows read low-res row 0 only
        assert_eq!(&mask[..5], &[0, 0, 1, 1, 1]);
    }

    #[test]
    fn bad_buffers_are_errors() {
        let lb = letterbox(320, 240);
        let low_res = vec![0.0; SIDE * SIDE];
        let mut logits = vec![0.0; 320 * 240];
        let mut mask = vec![0; 320 * 240];
        assert!(matches!(
            logits_to_frame(&low_res[1..], &lb, &mut logits, &mut mask),
            Err(PostprocessError::LowResLength { .. })
        ));
        assert!(matches!(
            logits_to_frame(&low_res, &lb, &mut logits[1..], &mut mask),
            Err(PostprocessError::OutputLength { buffer: "logits_out", .. })
        ));
        assert!(matches!(
            logits_to_frame(&low_res, &lb, &mut logits, &mut mask[1..]),
            Err(PostprocessError::OutputLength { buffer: "mask_out", .. })
        ));
        let bad = Letterbox { resized_width: 300, ..lb };
        assert!(matches!(
            logits_to_frame(&low_res, &bad, &mut logits, &mut mask),
            Err(PostprocessError::Letterbox { .. })
        ));
        let bad = Letterbox { frame_width: 0, ..lb };
        assert!(matches!(logits_to_frame(&low_res, &bad, &mut [], &mut []), Err(PostprocessError::Letterbox { .. })));
        assert!(logits_to_frame(&low_res, &lb, &mut logits, &mut mask).is_ok());
    }

    #[test]
    fn bounding_box() {
        #[rustfmt::skip]
        let mask = [
            0, 0, 0, 0, 0,
            0, 0, 1, 0, 0,
            0, 1, 0, 0, 0,
            0, 0, 0, 1, 0,
        ];
        assert_eq!(mask_bounding_box(&mask, 5, 4), Ok(Some([1, 1, 3, 3])));
        assert_eq!(mask_bounding_box(&[0; 20], 5, 4), Ok(None));
        assert_eq!(mask_bounding_box(&[1], 1, 1), Ok(Some([0, 0, 0, 0])));
        assert!(matches!(mask_bounding_box(&mask, 4, 4), Err(PostprocessError::MaskLength { .. })));
        assert!(matches!(mask_bounding_box(&[], 0, 0), Err(PostprocessError::MaskLength { .. })));
    }
}
