//! Unit tests of the simulator on small sweeps with exact expectations.

use super::geometry::{Vec3, apply};
use super::*;

fn small(frames: usize) -> SimulationSpec {
    SimulationSpec { frames, width_px: 128, height_px: 128, spacing_mm: 0.4, ..SimulationSpec::default() }
}

/// Image and labels of one frame.
type Rendered = (Vec<u8>, Vec<u8>);

fn render_all(spec: &SimulationSpec) -> (Simulator, Vec<Rendered>) {
    let mut sim = Simulator::new(spec.clone()).unwrap();
    let n = spec.width_px * spec.height_px;
    let frames = (0..spec.frames)
        .map(|i| {
            let (mut img, mut lab) = (vec![0; n], vec![0; n]);
            sim.render(i, &mut img, &mut lab).unwrap();
            (img, lab)
        })
        .collect();
    (sim, frames)
}

#[test]
fn image_to_probe_maps_the_corners() {
    let spec = small(1);
    let m = poses::image_to_probe(&spec);
    let half = 127.0 / 2.0 * 0.4;
    assert_eq!(apply(&m, Vec3::zeros()), Vec3::new(-half, 0.0, 0.0));
    let far = apply(&m, Vec3::new(127.0, 127.0, 0.0));
    assert!((far[0] - half).abs() < 1e-12 && far[1] == 0.0 && (far[2] - 127.0 * 0.4).abs() < 1e-12);
}

#[test]
fn the_pose_chain_puts_the_lesion_centre_in_the_closest_frame_labelled() {
    let spec = small(41);
    let sim = Simulator::new(spec.clone()).unwrap();
    let centre = sim.phantom().lesion.center_mm;
    let inv_ref = crate::geometry::affine_inverse(&sim.pose(0).reference_to_tracker).unwrap();
    // The frame whose plane passes closest to the lesion centre, found through the tracker chain.
    let (best, pixel) = (0..spec.frames)
        .map(|i| {
            let image_to_ref =
                geometry::mat_mul(&geometry::mat_mul(&inv_ref, &sim.pose(i).probe_to_tracker), &sim.image_to_probe());
            assert!(image_to_ref.iter().zip(sim.image_to_reference(i)).all(|(a, b)| (a - b).abs() < 1e-9), "chain");
            // The general 4×4 inverse, independent of the affine one the chain uses.
            let to_image = crate::geometry::from_na(&crate::geometry::to_na(&image_to_ref).try_inverse().unwrap());
            (i, apply(&to_image, Vec3::from(centre)))
        })
        .min_by(|a, b| a.1[2].abs().total_cmp(&b.1[2].abs()))
        .unwrap();
    assert!(pixel[2].abs() < 2.0, "slice offset {pixel:?}");
    let (c, r) = (pixel[0].round() as usize, pixel[1].round() as usize);
    let mut sim = sim;
    let n = spec.width_px * spec.height_px;
    let (mut img, mut lab) = (vec![0; n], vec![0; n]);
    sim.render(best, &mut img, &mut lab).unwrap();
    assert_eq!(lab[r * spec.width_px + c], LABEL_LESION);
}

#[test]
fn labels_follow_the_geometry_exactly() {
    let spec = small(9);
    let (sim, frames) = render_all(&spec);
    for (i, (_, labels)) in frames.iter().enumerate() {
        let m = sim.image_to_reference(i);
        for (r, c) in [(0, 0), (40, 30), (55, 50), (64, 64), (77, 100), (90, 95), (127, 127)] {
            let p = apply(&m, Vec3::new(c as f64, r as f64, 0.0));
            assert_eq!(labels[r * spec.width_px + c], sim.phantom().label(p), "frame {i} pixel ({c},{r})");
        }
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_speckle() {
    let spec = small(3);
    let (_, a) = render_all(&spec);
    let (_, b) = render_all(&spec);
    assert_eq!(a, b);
    let (_, c) = render_all(&SimulationSpec { seed: 2, ..spec.clone() });
    assert_ne!(a[0].0, c[0].0);
    // Random access: frame 2 alone equals frame 2 of the whole run.
    let mut sim = Simulator::new(spec.clone()).unwrap();
    let n = spec.width_px * spec.height_px;
    let (mut img, mut lab) = (vec![0; n], vec![0; n]);
    sim.render(2, &mut img, &mut lab).unwrap();
    assert_eq!((img, lab), a[2]);
}

#[test]
fn lesion_is_darker_than_tissue_and_the_vessel_darker_still() {
    let spec = SimulationSpec { frames: 21, ..SimulationSpec::default() };
    let (_, frames) = render_all(&spec);
    let w = spec.width_px;
    let (mut sums, mut counts) = ([0.0f64; 3], [0usize; 3]);
    for (img, lab) in &frames[8..13] {
        for r in 80..200 {
            for c in 0..w {
                let l = lab[r * w + c] as usize;
                sums[l] += img[r * w + c] as f64;
                counts[l] += 1;
            }
        }
    }
    assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    let mean = |k: usize| sums[k] / counts[k] as f64;
    assert!(mean(1) < 0.7 * mean(0), "lesion {} vs tissue {}", mean(1), mean(0));
    assert!(mean(2) < mean(1), "vessel {} vs lesion {}", mean(2), mean(1));
}

#[test]
fn a_dense_straight_sweep_measures_the_true_lesion_volume() {
    let spec = SimulationSpec { frames: 401, tilt_amplitude_deg: 0.0, ..SimulationSpec::default() };
    let mut sim = Simulator::new(spec.clone()).unwrap();
    let n = spec.width_px * spec.height_px;
    let (mut img, mut lab) = (vec![0; n], vec![0; n]);
    let mut lesion_pixels = 0usize;
    for i in 0..spec.frames {
        sim.render(i, &mut img, &mut lab).unwrap();
        lesion_pixels += lab.iter().filter(|&&l| l == LABEL_LESION).count();
    }
    let slice_mm = spec.sweep_length_mm / (spec.frames - 1) as f64;
    let measured_ml = lesion_pixels as f64 * spec.spacing_mm * spec.spacing_mm * slice_mm / 1000.0;
    let truth = sim.truth().lesion_volume_ml;
    assert!((measured_ml - truth).abs() < 0.05 * truth, "measured {measured_ml} mL, true {truth} mL");
}

#[test]
fn bad_settings_name_the_field() {
    for (spec, field) in [
        (SimulationSpec { frames: 0, ..Default::default() }, "frames"),
        (SimulationSpec { width_px: 4, ..Default::default() }, "width_px"),
        (SimulationSpec { spacing_mm: -0.1, ..Default::default() }, "spacing_mm"),
        (SimulationSpec { frame_rate_hz: f64::NAN, ..Default::default() }, "frame_rate_hz"),
    ] {
        match Simulator::new(spec) {
            Err(SimulationError::Setting { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a setting error for {field}, got {:?}", other.err()),
        }
    }
    let mut sim = Simulator::new(small(2)).unwrap();
    assert!(matches!(sim.render(2, &mut [0; 16384], &mut [0; 16384]), Err(SimulationError::Frame { index: 2, .. })));
    assert!(matches!(sim.render(0, &mut [0; 10], &mut [0; 16384]), Err(SimulationError::Frame { .. })));
}

#[test]
fn the_stylus_comes_within_a_millimetre_and_is_occluded_for_a_while() {
    let spec = small(101);
    let sim = Simulator::new(spec.clone()).unwrap();
    let inv_ref = crate::geometry::affine_inverse(&sim.pose(0).reference_to_tracker).unwrap();
    let lesion = &sim.phantom().lesion;
    let gaps: Vec<f64> = (0..spec.frames)
        .map(|i| {
            let tip_ref = apply(&inv_ref, apply(&sim.pose(i).stylus_to_tracker, Vec3::zeros()));
            let d = tip_ref - Vec3::from(lesion.center_mm);
            d.norm() - lesion.radius_along(d.normalize())
        })
        .collect();
    let closest = gaps.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!((closest - 1.0).abs() < 0.05, "closest approach {closest} mm");
    assert!(gaps[0] > 10.0 && gaps[100] > 10.0);
    let hidden = (0..spec.frames).filter(|&i| !sim.pose(i).stylus_ok).count();
    assert!((3..=8).contains(&hidden), "{hidden}");
}

#[test]
fn label_box_grows_and_clips() {
    // 4 x 3 labels: label 2 at (1, 0) and (3, 1).
    let labels = [0, 2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0];
    assert_eq!(super::label_box(&labels, 4, 2, 1.0), Some([0.0, 0.0, 3.0, 2.0]));
    assert_eq!(super::label_box(&labels, 4, 2, 0.0), Some([1.0, 0.0, 3.0, 1.0]));
    assert_eq!(super::label_box(&labels, 4, 1, 1.0), None);
}
