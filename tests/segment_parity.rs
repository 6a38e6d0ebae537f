//! Parity of the CPU engine with the reference LiteMedSAM (PyTorch) on the golden cases in
//! `tests/fixtures/litemedsam/` (made by `tools/reference/make_goldens.py`): image embedding,
//! low-res mask logits and predicted IoU, within the tolerances the fixtures state. The same for
//! the student encoder against its PyTorch definition (`tests/fixtures/student/`, made by
//! `tools/distill/export.py` on the same inputs), with the same limits.
//!
//! The model input is built here from the fixture's own resize (`resized.u8`), so this checks
//! the network alone; the pre- and post-processing have their own tests.

use std::path::{Path, PathBuf};

mod common;

use common::model_weights;
use serde_json::Value;
use sonoflow::model::StudentManifest;
use sonoflow::segment::cpu::ops::CpuOps;
use sonoflow::segment::graph::prompt::{Point, Prompt};
use sonoflow::segment::model::LiteMedSam;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litemedsam")
}

fn student_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/student")
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The model input plane from the fixture's resized frame: min-max over the resized area,
/// zero padding elsewhere.
fn plane(case: &Value) -> Vec<f32> {
    let name = case["name"].as_str().unwrap();
    let (rw, rh) =
        (case["resized"]["width"].as_u64().unwrap() as usize, case["resized"]["height"].as_u64().unwrap() as usize);
    let resized = if rw == 256 && rh == 256 {
        std::fs::read(fixtures().join(format!("{name}.input.u8"))).unwrap()
    } else {
        std::fs::read(fixtures().join(format!("{name}.resized.u8"))).unwrap()
    };
    let px = |y: usize, x: usize| resized[y * 256 + x];
    let region: Vec<u8> = (0..rh).flat_map(|y| (0..rw).map(move |x| (y, x))).map(|(y, x)| px(y, x)).collect();
    let (lo, hi) = (*region.iter().min().unwrap(), *region.iter().max().unwrap());
    let range = (hi - lo).max(1) as f32;
    let mut out = vec![0.0; 256 * 256];
    for y in 0..rh {
        for x in 0..rw {
            out[y * 256 + x] = if hi > lo { (px(y, x) - lo) as f32 / range } else { 0.0 };
        }
    }
    out
}

fn prompt_of(case: &Value) -> Prompt {
    let p = &case["prompt"];
    let mut prompt = match p["box_256"].as_array() {
        Some(b) => Prompt::from_box([0, 1, 2, 3].map(|i| b[i].as_f64().unwrap() as f32)),
        None => Prompt::default(),
    };
    for pt in p["points_256"].as_array().into_iter().flatten() {
        let v = pt.as_array().unwrap();
        let point = Point {
            x: v[0].as_f64().unwrap() as f32,
            y: v[1].as_f64().unwrap() as f32,
            positive: v[2].as_f64().unwrap() > 0.5,
        };
        assert!(prompt.push_point(point));
    }
    prompt
}

#[test]
fn cpu_engine_matches_the_reference_on_every_golden_case() {
    let Some(weights) = model_weights() else { return };
    let model = LiteMedSam::plan(CpuOps::new(2).unwrap(), &weights).unwrap();
    check_goldens(model, &fixtures());
}

#[test]
fn student_encoder_matches_its_pytorch_definition_on_every_golden_case() {
    let Some(weights) = model_weights() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/student");
    let manifest = StudentManifest::load(&dir).unwrap();
    let student = manifest.load_weights(&dir).unwrap();
    let model = LiteMedSam::plan_student(CpuOps::new(2).unwrap(), &weights, &student).unwrap();
    check_goldens(model, &student_fixtures());
}

/// Runs every case of `goldens/cases.json` (inputs from the LiteMedSAM fixtures) and checks the
/// embedding slice, the low-res logits and the IoU against the stated tolerances.
fn check_goldens(mut model: LiteMedSam<CpuOps>, goldens: &Path) {
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(goldens.join("cases.json")).unwrap()).unwrap();
    let tol = &cases["tolerances"];
    let (tol_logits, tol_iou, tol_emb) = (
        tol["logits_max_abs"].as_f64().unwrap(),
        tol["iou_abs"].as_f64().unwrap(),
        tol["embedding_slice_rel_l2"].as_f64().unwrap(),
    );
    let mut embedding = vec![0.0; 4096 * 256];
    let mut logits = vec![0.0; 256 * 256];
    let mut failures = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let started = std::time::Instant::now();
        model.encode(&plane(case));
        let encoded = started.elapsed();
        let iou = model.decode(&prompt_of(case), &mut logits);
        model.embedding(&mut embedding);
        // Embedding slice: channels 0..3, stored channel-major (4 × 64 × 64).
        let want = read_f32(&goldens.join(format!("{name}.embedding_slice.f32")));
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for c in 0..4 {
            for t in 0..4096 {
                let (g, w) = (embedding[t * 256 + c] as f64, want[c * 4096 + t] as f64);
                diff += (g - w) * (g - w);
                norm += w * w;
            }
        }
        let rel_l2 = (diff / norm).sqrt();
        let want_logits = read_f32(&goldens.join(format!("{name}.low_res_logits.f32")));
        let max_abs = logits.iter().zip(&want_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) as f64;
        let iou_err = (iou as f64 - case["iou_pred"].as_f64().unwrap()).abs();
        eprintln!(
            "{} {name}: embedding rel L2 {rel_l2:.2e}, logits max |d| {max_abs:.2e}, IoU |d| {iou_err:.2e} (encode {:.0} ms)",
            model.encoder_name(),
            encoded.as_secs_f64() * 1e3
        );
        if rel_l2 > tol_emb || max_abs > tol_logits || iou_err > tol_iou {
            failures.push(name.to_string());
        }
    }
    assert!(failures.is_empty(), "outside the tolerances: {failures:?}");
}

/// Not a test of correctness: prints where the CPU engine's time goes, per op kind.
/// `cargo test --release --test segment_parity -- --ignored --nocapture`
#[test]
#[ignore]
fn profile_by_op_kind() {
    let Some(weights) = model_weights() else { return };
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap()).unwrap();
    let case = &cases["cases"][0];
    let mut ops = CpuOps::new(2).unwrap();
    ops.start_profile();
    let mut model = LiteMedSam::plan(ops, &weights).unwrap();
    let mut logits = vec![0.0; 256 * 256];
    for _ in 0..3 {
        model.encode(&plane(case));
        model.decode(&prompt_of(case), &mut logits);
    }
    let profile = model.ops_mut().take_profile().unwrap();
    for (i, kind) in sonoflow::segment::cpu::ops::OpKind::ALL.iter().enumerate() {
        eprintln!("{:45} {:8.1} ms/frame {:6} calls", kind.name(), profile.ns[i] as f64 / 3e6, profile.calls[i] / 3);
    }
}
