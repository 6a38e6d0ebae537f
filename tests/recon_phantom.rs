//! The simulator's phantom, swept and reconstructed from its label masks: the inclusion volumes
//! measured on the 0.5 mm label volume must match the true volumes within 3%.

use sonoflow::capture::simulator::{LABEL_LESION, LABEL_VESSEL, SimulationSpec, Simulator, write_simulation};
use sonoflow::recon::surface::label_volume_ml;
use sonoflow::recon::{LabelCompounding, ReconSettings, reconstruct_sequence};

fn sweep_volumes(label_compounding: LabelCompounding) -> (f64, f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let spec = SimulationSpec::default();
    let out = write_simulation(&spec, &dir.path().join("sweep.mha"), &mut |_, _| {}).unwrap();
    let truth = Simulator::new(spec).unwrap().truth();
    let settings = ReconSettings { output_spacing_mm: [0.5; 3], threads: 2, label_compounding, ..Default::default() };
    let r = reconstruct_sequence(&out.images, Some(&out.labels), &settings, &[], None, &mut |_, _| {}).unwrap();
    assert_eq!(r.counts.inserted, truth.frames);
    let labels = r.labels.unwrap();
    let geometry = r.grid.geometry();
    let (lesion, vessel) =
        (label_volume_ml(&labels, &geometry, LABEL_LESION), label_volume_ml(&labels, &geometry, LABEL_VESSEL));
    (lesion, truth.lesion_volume_ml, vessel, truth.vessel_volume_ml)
}

#[test]
fn voted_label_volume_measures_the_true_inclusion_volumes() {
    let (lesion, true_lesion, vessel, true_vessel) = sweep_volumes(LabelCompounding::Vote);
    let err = |got: f64, truth: f64| (got - truth) / truth;
    println!(
        "lesion {lesion:.3} mL (true {true_lesion:.3}, {:+.2}%), vessel {vessel:.3} mL (true {true_vessel:.3}, {:+.2}%)",
        100.0 * err(lesion, true_lesion),
        100.0 * err(vessel, true_vessel)
    );
    assert!(err(lesion, true_lesion).abs() < 0.03);
    assert!(err(vessel, true_vessel).abs() < 0.03);
}

#[test]
fn maximum_compounding_grows_the_structure() {
    let (voted, _, _, _) = sweep_volumes(LabelCompounding::Vote);
    let (max, truth, _, _) = sweep_volumes(LabelCompounding::Maximum);
    println!("lesion: vote {voted:.3} mL, maximum {max:.3} mL, true {truth:.3} mL");
    assert!(max > voted && max > truth);
}
