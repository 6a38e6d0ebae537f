//! Post-processing of the official LiteMedSAM inference: the mask decoder's 256 x 256 low-res
//! logits (covering the padded model input) are cropped to the resized image, resized back to the
//! frame with PyTorch's bilinear interpolation (`align_corners=False`, no antialias, float32) and
//! thresholded (`sigmoid(x) > 0.5`, i.e. `x > 0`) into a 0/1 mask.
//!
//! Cost: four multiply-adds and a compare per frame pixel (about 0.2 ms for 820 x 616 on one core);
//! a plain copy when the frame's long side is already 256 px. Allocation-free.

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
    } else {
        for (y, out_row) in logits_out.chunks_exact_mut(w).enumerate() {
            let (y0, y1, ly0, ly1) = source_taps(nh, h, y);
            let (row0, row1) = (&low_res[y0 * SIDE..][..nw], &low_res[y1 * SIDE..][..nw]);
            for (x, o) in out_row.iter_mut().enumerate() {
                // Recomputing the x taps per row is cheaper than a table would be to keep
                // allocation-free for any frame width; they are a few float32 operations.
                let (x0, x1, lx0, lx1) = source_taps(nw, w, x);
                *o = ly0 * (lx0 * row0[x0] + lx1 * row0[x1]) + ly1 * (lx0 * row1[x0] + lx1 * row1[x1]);
            }
        }
    }
    for (m, &l) in mask_out.iter_mut().zip(logits_out.iter()) {
        // sigmoid(l) > 0.5 is l > 0 except for |l| below ~3e-8, where float32 sigmoid rounds to 0.5.
        *m = u8::from(l > 0.0);
    }
    Ok(())
}

/// PyTorch's `upsample_bilinear2d` source taps for output index `dst` of an axis resized from
/// `n_in` to `n_out` (`align_corners=False`), all in float32 as PyTorch computes them:
/// `src = max(scale * (dst + 0.5) - 0.5, 0)`, `i0 = floor(src)`, `i1 = min(i0 + 1, n_in - 1)`,
/// weights `1 - l`, `l` with `l = src - i0`.
fn source_taps(n_in: usize, n_out: usize, dst: usize) -> (usize, usize, f32, f32) {
    let scale = n_in as f32 / n_out as f32;
    let src = (scale * (dst as f32 + 0.5) - 0.5).max(0.0);
    let i0 = (src as usize).min(n_in - 1);
    let l1 = src - i0 as f32;
    (i0, (i0 + 1).min(n_in - 1), 1.0 - l1, l1)
}

/// Bounding box `[x_min, y_min, x_max, y_max]` (inclusive pixel indices) of the non-zero pixels of
/// a `width` x `height` mask, or `None` when the mask is empty. One pass over the mask.
///
/// Inclusive bounds are MedSAM's own convention for boxes derived from masks; a tracker that feeds
/// the box back as the next prompt usually grows it by a margin first.
pub fn mask_bounding_box(mask: &[u8], width: usize, height: usize) -> Result<Option<[usize; 4]>, PostprocessError> {
    let expected = width.checked_mul(height).unwrap_or(usize::MAX);
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
        assert_eq!(source_taps(2, 4, 0), (0, 1, 1.0, 0.0));
        assert_eq!(source_taps(2, 4, 1), (0, 1, 0.75, 0.25));
        assert_eq!(source_taps(2, 4, 2), (0, 1, 0.25, 0.75));
        assert_eq!(source_taps(2, 4, 3), (1, 1, 0.75, 0.25));
        // 4 → 2 (shrinking, no antialias): scale 2; dst 0 → 0.5, dst 1 → 2.5.
        assert_eq!(source_taps(4, 2, 0), (0, 1, 0.5, 0.5));
        assert_eq!(source_taps(4, 2, 1), (2, 3, 0.5, 0.5));
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
        for x in 0..SIDE {
            low_res[x] = x as f32 * 4.0 - 2.0;
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
        assert!(matches!(logits_to_frame(&low_res, &bad, &mut logits, &mut mask), Err(PostprocessError::Letterbox { .. })));
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
