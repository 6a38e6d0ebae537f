//! Reconstruction against PLUS's own regression case: the spine phantom sweep with PLUS's
//! settings must give PLUS's grid and (nearly) its voxels; the bone sweep must reconstruct with a
//! sane extent. Skipped, with the reason printed, where the shared PLUS data is absent.

mod common;

use std::path::Path;

use sonoflow::recon::compare::agreement;
use sonoflow::recon::volume::{OwnedVolumeData, read_mha};
use sonoflow::recon::{Reconstruction, read_plus_config, reconstruct_sequence};

/// `images` reconstructed with the settings and calibration of the PLUS XML `config`.
fn reconstruct(images: &Path, config: &Path) -> Reconstruction {
    let config = read_plus_config(config).unwrap();
    reconstruct_sequence(images, None, &config.settings, &config.calibration, None, &mut |_, _| {}).unwrap()
}

#[test]
fn spine_phantom_matches_plus_grid_and_voxels() {
    let Some(dir) = common::plus_data() else { return };
    let result = reconstruct(
        &dir.join("SpinePhantomFreehand.igs.mha"),
        &dir.join("PlusDeviceSet_VolumeReconstructionOnly_SpinePhantom_NN_MEAN.xml"),
    );
    let reference = read_mha(&dir.join("vtkVolumeReconstructorTestNNMEANvolumeRef.mha")).unwrap();
    let g = &reference.geometry;
    println!(
        "grid: ours {:?} at {:?}, PLUS {:?} at {:?}",
        result.grid.dims, result.grid.origin_mm, g.dims, g.origin_mm
    );
    assert_eq!(result.counts.inserted, 21, "{:?}", result.counts);
    assert_eq!(result.grid.dims, g.dims);
    assert_eq!(result.grid.spacing_mm, g.spacing_mm);
    // The reference's Offset is printed with six significant digits.
    for k in 0..3 {
        assert!(
            (result.grid.origin_mm[k] - g.origin_mm[k]).abs() < 1e-3,
            "origin {:?} vs {:?}",
            result.grid.origin_mm,
            g.origin_mm
        );
    }
    let OwnedVolumeData::U8(plus) = &reference.data else { panic!("the PLUS reference is 8-bit") };
    let a = agreement(&result.grey, plus);
    println!("agreement with PLUS: {a}");
    assert!(a.compared > 100_000, "{a}");
    assert!(a.within_2 >= 0.99, "{a}");
    assert!(a.filled_in_one_only <= 0.01, "{a}");
}

#[test]
fn bone_sweep_reconstructs_with_a_sane_extent() {
    let Some(dir) = common::plus_data() else { return };
    let result = reconstruct(&dir.join("BoneUltrasound_L14.igs.mha"), &dir.join("BoneUltrasound_L14_config.xml"));
    let extent_mm: Vec<f64> = (0..3).map(|k| result.grid.dims[k] as f64 * result.grid.spacing_mm[k]).collect();
    let filled = result.accumulation.iter().filter(|&&a| a > 0).count();
    println!("bone: {:?} voxels ({extent_mm:.1?} mm), {filled} filled, {:?}", result.grid.dims, result.counts);
    assert!(
        result.counts.inserted > 0 && result.counts.inserted + result.counts.skipped_untracked == result.counts.frames
    );
    // A hand-held linear-probe sweep: tens of mm on each side, not metres.
    assert!(extent_mm.iter().all(|&e| (5.0..400.0).contains(&e)), "{extent_mm:?}");
    assert!(filled as f64 > 0.05 * result.grid.voxels() as f64, "{filled}");
    assert!(result.grey.iter().any(|&v| v > 100));
}

fn sonoflow(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sonoflow")).args(args).output().unwrap()
}

#[test]
fn the_cli_writes_plus_volume_and_reports_what_it_did() {
    let Some(dir) = common::plus_data() else { return };
    let out = tempfile::tempdir().unwrap();
    let volume = out.path().join("spine.mha");
    let data = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let o = sonoflow(&[
        "reconstruct",
        "--input",
        &data("SpinePhantomFreehand.igs.mha"),
        "--plus-config",
        &data("PlusDeviceSet_VolumeReconstructionOnly_SpinePhantom_NN_MEAN.xml"),
        "--out",
        volume.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("21 of 21 frames inserted") && err.contains("147x106x105"), "{err}");
    let ours = read_mha(&volume).unwrap();
    let plus = read_mha(&dir.join("vtkVolumeReconstructorTestNNMEANvolumeRef.mha")).unwrap();
    let (OwnedVolumeData::U8(a), OwnedVolumeData::U8(b)) = (&ours.data, &plus.data) else { panic!("8-bit volumes") };
    assert_eq!(ours.geometry.dims, plus.geometry.dims);
    assert!(agreement(a, b).within_2 >= 0.99);
}

#[test]
fn the_cli_names_an_unimplemented_plus_attribute() {
    let out = tempfile::tempdir().unwrap();
    let xml = out.path().join("c.xml");
    std::fs::write(
        &xml,
        "<PlusConfiguration><VolumeReconstruction OutputSpacing=\"1 1 1\" PixelRejectionThreshold=\"5\"/></PlusConfiguration>",
    )
    .unwrap();
    let o = sonoflow(&["reconstruct", "--input", "x.mha", "--plus-config", xml.to_str().unwrap(), "--out", "v.mha"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("PixelRejectionThreshold") && err.contains("c.xml"), "{err}");
}
