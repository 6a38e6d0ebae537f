//! `sonoflow reconstruct` end to end on a simulated sweep: NRRD volumes that read back, a label
//! volume matching the printed voxel counts, and one closed surface per structure whose enclosed
//! volume is the true one.

use std::path::Path;
use std::process::{Command, Output};

use sonoflow::capture::simulator::{LABEL_LESION, LABEL_VESSEL, SimulationSpec, Simulator, write_simulation};
use sonoflow::recon::volume::{OwnedVolumeData, read_volume};

fn sonoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonoflow")).args(args).output().unwrap()
}

/// Triangle count and enclosed volume (mL) of a binary STL, by the divergence theorem.
fn read_stl(path: &Path) -> (usize, f64) {
    let bytes = std::fs::read(path).unwrap();
    let n = u32::from_le_bytes(bytes[80..84].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 84 + 50 * n, "{}: binary STL size", path.display());
    let f = |at: usize| f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as f64;
    let mut six_v = 0.0;
    for t in 0..n {
        let base = 84 + 50 * t + 12;
        let p: Vec<[f64; 3]> = (0..3).map(|v| [f(base + 12 * v), f(base + 12 * v + 4), f(base + 12 * v + 8)]).collect();
        let cross = [
            p[1][1] * p[2][2] - p[1][2] * p[2][1],
            p[1][2] * p[2][0] - p[1][0] * p[2][2],
            p[1][0] * p[2][1] - p[1][1] * p[2][0],
        ];
        six_v += p[0][0] * cross[0] + p[0][1] * cross[1] + p[0][2] * cross[2];
    }
    (n, six_v / 6.0 / 1000.0)
}

#[test]
fn reconstruct_writes_nrrd_volumes_and_a_surface_per_structure() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SimulationSpec { frames: 200, ..SimulationSpec::default() };
    let sweep = write_simulation(&spec, &dir.path().join("sweep.mha"), &mut |_, _| {}).unwrap();
    let truth = Simulator::new(spec).unwrap().truth();
    let (out, surface) = (dir.path().join("vol.nrrd"), dir.path().join("structure.stl"));
    let args = [
        "reconstruct",
        "--input",
        sweep.images.to_str().unwrap(),
        "--labels",
        sweep.labels.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--surface",
        surface.to_str().unwrap(),
    ];
    let run = sonoflow(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let grey = read_volume(&out).unwrap();
    let labels = read_volume(&dir.path().join("vol.labels.nrrd")).unwrap();
    assert_eq!(grey.geometry, labels.geometry);
    let (OwnedVolumeData::U8(grey_voxels), OwnedVolumeData::U8(label_voxels)) = (&grey.data, &labels.data) else {
        panic!("8-bit volumes expected");
    };
    assert!(grey_voxels.iter().any(|&v| v > 0), "the grey volume is empty");
    for (label, true_ml) in [(LABEL_LESION, truth.lesion_volume_ml), (LABEL_VESSEL, truth.vessel_volume_ml)] {
        let voxels = label_voxels.iter().filter(|&&v| v == label).count();
        assert!(stderr.contains(&format!("label {label}: {voxels} voxels")), "{stderr}");
        let (triangles, ml) = read_stl(&dir.path().join(format!("structure.label{label}.stl")));
        assert!(triangles > 100, "label {label}: {triangles} triangles");
        assert!((ml - true_ml).abs() <= 0.03 * true_ml, "label {label}: surface encloses {ml} mL, truth {true_ml}");
    }
}

#[test]
fn reconstruct_refuses_outputs_it_cannot_write_before_running() {
    let missing = "/nonexistent/sweep.mha";
    for (args, culprit) in [
        (vec!["--out", "v.vtk"], "--out"),
        (vec!["--out", "v.mha", "--surface", "s.stl"], "--surface needs --labels"),
        (vec!["--out", "v.mha", "--labels", missing, "--surface", "s.obj"], "--surface"),
    ] {
        let run = sonoflow(&[&["reconstruct", "--input", missing][..], &args[..]].concat());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(culprit), "{args:?}: {stderr}");
    }
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/replay.toml");
    let run = sonoflow(&["run", "--config", config, "--input", missing, "--volume-out", "v.vtk"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--volume-out v.vtk"), "{stderr}");
}

#[test]
fn the_demo_reconstructs_the_whole_sweep_live_and_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = sonoflow(&["demo", "--frames", "200", "--dir", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let labels = read_volume(&dir.path().join("demo-volume.labels.mha")).unwrap();
    let OwnedVolumeData::U8(voxels) = &labels.data else { panic!("8-bit labels expected") };
    // The live grid covers the whole recording (its bounding box), so the lesion is all there.
    let truth = Simulator::new(SimulationSpec { frames: 200, ..SimulationSpec::default() }).unwrap().truth();
    let ml = voxels.iter().filter(|&&v| v == LABEL_LESION).count() as f64 * labels.geometry.voxel_volume_mm3() / 1000.0;
    // At the recorded 30 fps nothing is dropped on an idle machine; a loaded one may drop a few
    // frames (the demo's queues drop rather than lag), which thins the sweep.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("demo-report.json")).unwrap()).unwrap();
    let dropped: u64 = report["queues"].as_array().unwrap().iter().map(|q| q["dropped"].as_u64().unwrap()).sum();
    let tolerance = if dropped == 0 { 0.03 } else { 0.5 };
    assert!(
        (ml - truth.lesion_volume_ml).abs() <= tolerance * truth.lesion_volume_ml,
        "{ml} mL vs {} ({dropped} frames dropped)",
        truth.lesion_volume_ml
    );
    assert!(read_volume(&dir.path().join("demo-volume.mha")).is_ok());
}
