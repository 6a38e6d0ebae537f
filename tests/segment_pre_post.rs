//! LiteMedSAM pre- and post-processing against the golden fixtures of the official Python
//! inference (`tests/fixtures/litemedsam/`): the cv2 `INTER_AREA` resize pixel for pixel, the
//! encoder input's statistics and samples bit for bit, the prompt mapping, and the logits resized
//! back to the frame. Also: bad input never panics, and the per-frame calls allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;
use sonoflow::segment::{Letterbox, PreprocessError, Preprocessor, logits_to_frame, mask_bounding_box};

const SIDE: usize = Letterbox::SIDE;
const PLANE: usize = SIDE * SIDE;

/// Max |Δ| allowed between our frame-size logits and PyTorch's (float32 rounding of a 4-tap
/// interpolation of logits of magnitude ~10-40 is a few 1e-6).
const LOGITS_MAX_ABS: f32 = 1e-5;
/// Masks are compared only where the reference logit is clear of the threshold.
const MASK_MARGIN: f32 = 1e-4;

struct CountingAllocator;

thread_local! {
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        THREAD_ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        THREAD_ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_here() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litemedsam")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

fn name(case: &Value) -> &str {
    case["name"].as_str().unwrap()
}

fn frame_size(case: &Value) -> (usize, usize) {
    let f = &case["frame"];
    (f["width"].as_u64().unwrap() as usize, f["height"].as_u64().unwrap() as usize)
}

/// The raw bytes of a case's file for `role`, or None when the case has none.
fn file(case: &Value, role: &str) -> Option<Vec<u8>> {
    let f = case["files"].get(role)?;
    Some(std::fs::read(fixtures().join(f["file"].as_str().unwrap())).unwrap())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn f32_list(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Pre-processes a case's frame; returns the plane, the padded resize and the letterbox.
fn preprocess(case: &Value) -> (Vec<f32>, Vec<u8>, Letterbox) {
    let (w, h) = frame_size(case);
    let frame = file(case, "input").unwrap();
    let mut pre = Preprocessor::new(1024, 1024);
    let mut plane = vec![f32::NAN; PLANE];
    let lb = pre.run(&frame, w, h, &mut plane).unwrap();
    (plane, pre.resized().to_vec(), lb)
}

#[test]
fn resize_matches_cv2_on_every_pixel() {
    for case in cases() {
        let (w, h) = frame_size(&case);
        let (_, resized, lb) = preprocess(&case);
        let r = &case["resized"];
        assert_eq!(
            (lb.resized_width, lb.resized_height),
            (r["width"].as_u64().unwrap() as usize, r["height"].as_u64().unwrap() as usize),
            "{}: resized size",
            name(&case)
        );
        // Within an ulp: serde_json's default float parser is not always correctly rounded.
        let scale = r["scale"].as_f64().unwrap();
        assert!((lb.scale - scale).abs() <= f64::EPSILON * scale, "{}: scale {} vs {scale}", name(&case), lb.scale);
        let expected = match file(&case, "resized") {
            Some(bytes) => bytes,
            None => {
                // 256 x 256 frames: cv2 copies.
                assert_eq!((w, h), (SIDE, SIDE), "{}: only 256 x 256 frames lack resized.u8", name(&case));
                file(&case, "input").unwrap()
            }
        };
        let mismatched = resized.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(mismatched, 0, "{}: {mismatched} resized pixels differ from cv2", name(&case));
        let (lo, hi) = resized
            .chunks_exact(SIDE)
            .take(lb.resized_height)
            .flat_map(|row| &row[..lb.resized_width])
            .fold((u8::MAX, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert_eq!(u64::from(lo), r["resized_min"].as_u64().unwrap(), "{}", name(&case));
        assert_eq!(u64::from(hi), r["resized_max"].as_u64().unwrap(), "{}", name(&case));
    }
}

#[test]
fn input_plane_matches_reference_statistics() {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    for case in json["cases"].as_array().unwrap() {
        let (plane, _, _) = preprocess(case);
        let st = &case["input_stats"];
        // The reference tensor is 3 x 256 x 256: the plane three times.
        let sum: f64 = 3.0 * plane.iter().map(|&v| f64::from(v)).sum::<f64>();
        let sum_sq: f64 = 3.0 * plane.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
        // float64 sums of the same float32 values in another order (NumPy sums pairwise): equal to
        // ~1e-12 relative; a single pixel one grey level off would move them by ~1e-2.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-10 * b.abs().max(1.0);
        assert!(close(sum, st["sum"].as_f64().unwrap()), "{}: sum {sum} vs {}", name(case), st["sum"]);
        assert!(close(sum_sq, st["sum_of_squares"].as_f64().unwrap()), "{}: sum of squares {sum_sq}", name(case));
        let (min, max) = plane.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert_eq!(min, st["min"].as_f64().unwrap() as f32, "{}", name(case));
        assert_eq!(max, st["max"].as_f64().unwrap() as f32, "{}", name(case));
        for s in st["samples"].as_array().unwrap() {
            let chw: Vec<usize> = s["chw"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(s["flat_index"].as_u64().unwrap() as usize, chw[0] * PLANE + chw[1] * SIDE + chw[2]);
            let got = plane[chw[1] * SIDE + chw[2]];
            // The JSON holds the float32 value widened to float64. serde_json's default parser may
            // be an ulp off in float64, which rounding to float32 absorbs: compare float32 bits.
            let expected = s["value"].as_f64().unwrap() as f32;
            assert_eq!(got.to_bits(), expected.to_bits(), "{}: sample at {chw:?}: {got} vs {expected}", name(case));
        }
    }
}

#[test]
fn prompts_map_like_the_reference() {
    for case in cases() {
        let (w, h) = frame_size(&case);
        let lb = Letterbox::for_frame(w, h).unwrap();
        let p = &case["prompt"];
        if !p["box"].is_null() {
            let b = f32_list(&p["box"]);
            let got = lb.box_to_model([b[0], b[1], b[2], b[3]]);
            assert_eq!(got.to_vec(), f32_list(&p["box_256"]), "{}: box", name(&case));
        }
        if !p["points"].is_null() {
            for (pt, expected) in p["points"].as_array().unwrap().iter().zip(p["points_256"].as_array().unwrap()) {
                let (pt, expected) = (f32_list(pt), f32_list(expected));
                assert_eq!(
                    lb.point_to_model([pt[0], pt[1]]).to_vec(),
                    expected[..2].to_vec(),
                    "{}: point",
                    name(&case)
                );
            }
        }
    }
    // The fixtures' points all sit in 256 x 256 frames (ratio 1): check a scaled one by hand,
    // float64 product rounded once to float32, as the reference's np.float32(x * ratio).
    let lb = Letterbox::for_frame(820, 616).unwrap();
    assert_eq!(
        lb.point_to_model([100.3, 7.0]),
        [(100.3f32 as f64 * 256.0 / 820.0) as f32, (7.0 * 256.0 / 820.0) as f32]
    );
}

#[test]
fn logits_back_to_the_frame_match_pytorch() {
    for case in cases() {
        let (w, h) = frame_size(&case);
        let lb = Letterbox::for_frame(w, h).unwrap();
        let low_res = f32s(&file(&case, "low_res_logits").unwrap());
        let reference = match file(&case, "logits") {
            Some(bytes) => f32s(&bytes),
            None => {
                assert!(lb.is_identity(), "{}: only identity frames lack logits.f32", name(&case));
                low_res.clone()
            }
        };
        let mut logits = vec![f32::NAN; w * h];
        let mut mask = vec![7u8; w * h];
        logits_to_frame(&low_res, &lb, &mut logits, &mut mask).unwrap();
        let max_abs = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_abs <= LOGITS_MAX_ABS, "{}: logits max |Δ| {max_abs}", name(&case));
        // Stricter than the tolerance: the resize reproduces PyTorch's kernels (fused multiply-adds
        // included), so the logits are equal bit for bit. A PyTorch build that does not fuse would
        // regenerate fixtures that only meet the tolerance above.
        let differing = logits.iter().zip(&reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differing, 0, "{}: {differing} logits differ from PyTorch's bits", name(&case));
        let ref_mask = file(&case, "mask").unwrap();
        let disagree =
            mask.iter().zip(&ref_mask).zip(&reference).filter(|((m, r), l)| l.abs() > MASK_MARGIN && m != r).count();
        assert_eq!(disagree, 0, "{}: mask pixels differ where |logit| > {MASK_MARGIN}", name(&case));
        let pixels = mask.iter().filter(|&&m| m == 1).count() as u64;
        assert!(mask.iter().all(|&m| m <= 1));
        let expected_pixels = case["outputs"]["mask_pixels"].as_u64();
        if let Some(n) = expected_pixels {
            assert!(pixels.abs_diff(n) <= 2, "{}: {pixels} mask pixels vs {n}", name(&case));
        }
        // The tracker's box of the mask lies in the frame and holds mask pixels on its edges.
        if let Some([x0, y0, x1, y1]) = mask_bounding_box(&mask, w, h).unwrap() {
            assert!(x0 <= x1 && x1 < w && y0 <= y1 && y1 < h);
            assert!((x0..=x1).any(|x| mask[y0 * w + x] == 1) && (y0..=y1).any(|y| mask[y * w + x1] == 1));
        }
    }
}

#[test]
fn per_frame_calls_allocate_nothing() {
    let cases = cases();
    let mut pre = Preprocessor::new(1024, 1024);
    let mut plane = vec![0.0; PLANE];
    let inputs: Vec<(Vec<u8>, usize, usize, Vec<f32>)> = cases
        .iter()
        .map(|c| {
            let (w, h) = frame_size(c);
            (file(c, "input").unwrap(), w, h, f32s(&file(c, "low_res_logits").unwrap()))
        })
        .collect();
    let mut logits = vec![0.0; 1024 * 1024];
    let mut mask = vec![0u8; 1024 * 1024];
    // Extra sizes reach every resize path: integer blocks, area shrink, enlarge, copy.
    let big = vec![9u8; 1024 * 1024];
    let sizes = [(1024, 768), (820, 616), (1000, 37), (60, 90), (100, 256)];
    let before = allocations_here();
    for _ in 0..2 {
        for (frame, w, h, low_res) in &inputs {
            let lb = pre.run(frame, *w, *h, &mut plane).unwrap();
            logits_to_frame(low_res, &lb, &mut logits[..w * h], &mut mask[..w * h]).unwrap();
            mask_bounding_box(&mask[..w * h], *w, *h).unwrap();
        }
        for &(w, h) in &sizes {
            let lb = pre.run(&big[..w * h], w, h, &mut plane).unwrap();
            logits_to_frame(&inputs[0].3, &lb, &mut logits[..w * h], &mut mask[..w * h]).unwrap();
        }
        // Errors allocate nothing either (they carry numbers, not strings).
        assert!(pre.run(&big, 2000, 10, &mut plane).is_err());
    }
    assert_eq!(allocations_here() - before, 0, "allocations in the per-frame calls");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the sizes and buffer lengths, `run` returns Ok or an error, never panics, and a
    /// successful run leaves a plane in [0, 1] with zero padding.
    #[test]
    fn run_never_panics(w in 0usize..700, h in 0usize..700, extra in -2isize..3, seed in any::<u64>(),
                        out_len in prop_oneof![Just(PLANE), 0usize..PLANE + 2]) {
        let mut pre = Preprocessor::new(600, 600);
        let len = (w * h).saturating_add_signed(extra);
        let mut state = seed | 1;
        let frame: Vec<u8> = (0..len).map(|_| { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state as u8 }).collect();
        let mut plane = vec![f32::NAN; out_len];
        match pre.run(&frame, w, h, &mut plane) {
            Ok(lb) => {
                prop_assert!(w > 0 && h > 0 && w <= 600 && h <= 600 && extra == 0 && out_len == PLANE);
                prop_assert_eq!(lb.resized_width.max(lb.resized_height), SIDE);
                for (y, row) in plane.chunks_exact(SIDE).enumerate() {
                    for (x, &v) in row.iter().enumerate() {
                        if x < lb.resized_width && y < lb.resized_height {
                            prop_assert!((0.0..=1.0).contains(&v));
                        } else {
                            prop_assert_eq!(v.to_bits(), 0);
                        }
                    }
                }
                let mut logits = vec![0.0; w * h];
                let mut mask = vec![0; w * h];
                prop_assert!(logits_to_frame(&plane, &lb, &mut logits, &mut mask).is_ok());
            }
            Err(PreprocessError::EmptyFrame { .. }) => prop_assert!(w == 0 || h == 0),
            Err(PreprocessError::DegenerateAspect { .. }) => prop_assert!(w > 512 * h || h > 512 * w),
            Err(PreprocessError::FrameTooLarge { .. }) => prop_assert!(w > 600 || h > 600),
            Err(PreprocessError::FrameLength { .. }) => prop_assert!(extra != 0),
            Err(PreprocessError::OutputLength { .. }) => prop_assert!(out_len != PLANE),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// A constant image has max == min: the reference divides 0 by 1e-8, so the plane is all zeros.
    #[test]
    fn constant_images_give_all_zeros(w in 1usize..600, h in 1usize..600, v in any::<u8>()) {
        prop_assume!(w <= 512 * h && h <= 512 * w);
        let mut pre = Preprocessor::new(600, 600);
        let mut plane = vec![f32::NAN; PLANE];
        let lb = pre.run(&vec![v; w * h], w, h, &mut plane).unwrap();
        prop_assert!(plane.iter().all(|&x| x.to_bits() == 0));
        // Every INTER_AREA path keeps a constant image constant.
        for row in pre.resized().chunks_exact(SIDE).take(lb.resized_height) {
            prop_assert!(row[..lb.resized_width].iter().all(|&p| p == v));
        }
    }
}
