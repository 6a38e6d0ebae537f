//! The live reconstruct stage, driven frame by frame without threads: it builds the same grey and
//! label volumes as inserting the same frames directly, skips (and counts) frames it cannot place,
//! leaves out masks their segmenter flagged, and publishes a distance field to the haptics slot.

use sonoflow::anatomy::VolumeSlot;
use sonoflow::capture::simulator::SimulationSpec;
use sonoflow::capture::{Pace, SimulatedSource, Source};
use sonoflow::frame::{Frame, PixelData, PixelFormat, PixelPool};
use sonoflow::pipeline::Stage;
use sonoflow::recon::labels::LabelVolume;
use sonoflow::recon::paste::GreyVolume;
use sonoflow::recon::poses::{image_to_reference, transform_set};
use sonoflow::recon::{OutputGrid, ReconSettings, ReconstructStage, SnapshotSlot};

#[test]
fn live_stage_matches_direct_insertion_and_publishes_a_field() {
    let spec = SimulationSpec { frames: 60, sweep_length_mm: 12.0, ..Default::default() };
    let settings = ReconSettings {
        output_origin_mm: Some([-30.0, -10.0, -2.0]),
        output_extent: Some([0, 119, 0, 39, 0, 109]),
        publish_every_frames: 20,
        ..Default::default()
    };
    let grid = OutputGrid::explicit(&settings).unwrap().unwrap();
    let (w, h) = (spec.width_px, spec.height_px);
    let slot = VolumeSlot::default();
    let snapshots = SnapshotSlot::default();
    let mut structure = [true; 256];
    structure[0] = false;
    let mut stage =
        ReconstructStage::new(&settings, Vec::new(), w, h, Some(slot.clone()), structure, snapshots.clone()).unwrap();
    let mut source = SimulatedSource::new(spec.clone(), Pace::Fast, 4).unwrap();
    let pool = PixelPool::new(PixelFormat::Gray8, w * h, 4);
    let (mut grey, mut labels) = (GreyVolume::new(grid, &settings, w, h), LabelVolume::new(grid, &settings, w, h));
    for i in 0..spec.frames {
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        source.fill(&mut frame).unwrap();
        if i == 40 {
            // A mask its segmenter flagged (confidence 0), outlining a guess: the grey frame goes
            // in, the mask must not.
            frame.mask_confidence = Some(0.0);
            let PixelData::Gray8(mask) = frame.mask.as_mut().unwrap().data_mut() else { unreachable!() };
            mask.fill(1);
        }
        if i == 30 {
            // An untracked frame: no transforms at all (the stage must skip it, so it is not
            // inserted directly either).
            frame.transforms.clear();
        } else {
            // The same frame inserted directly, for comparison.
            let set = transform_set(&frame.transforms.iter().cloned().collect::<Vec<_>>(), &[]).unwrap();
            let pose = image_to_reference(&set, "Image", "Reference").unwrap();
            let PixelData::Gray8(px) = frame.image.pixels.data() else { unreachable!() };
            grey.insert(px, w, h, &pose);
            let PixelData::Gray8(mask) = frame.mask.as_ref().unwrap().data() else { unreachable!() };
            if i != 40 {
                labels.insert(mask, w, h, &pose);
            }
        }
        assert!(stage.process(frame).unwrap().is_some());
    }
    stage.stop();
    let report = stage.report().expect("a report section");
    assert_eq!(report["masks_inserted"], 58);
    assert_eq!(report["masks_untrusted"], 1);
    let snap = snapshots.latest().expect("a snapshot at stop");
    assert_eq!((snap.frames_inserted, snap.frames_skipped), (59, 1));
    assert_eq!(snap.grid, grid);
    assert!(snap.accumulation.iter().filter(|&&a| a > 0).count() > 100_000);
    assert!(snap.grey == grey.values && snap.accumulation == grey.acc, "grey volume differs from direct insertion");
    let direct_labels = labels.labels();
    assert!(direct_labels.iter().filter(|&&l| l == 1).count() > 1000);
    assert_eq!(snap.labels, direct_labels);
    let field = slot.take().expect("a distance field was published");
    assert!(field.version >= 2, "version {}", field.version);
}

#[test]
fn live_stage_without_a_grid_makes_one_around_the_first_frame() {
    let spec = SimulationSpec { frames: 3, ..Default::default() };
    let (w, h) = (spec.width_px, spec.height_px);
    let snapshots = SnapshotSlot::default();
    let settings = ReconSettings { live_margin_mm: 5.0, ..Default::default() };
    let mut stage = ReconstructStage::new(&settings, Vec::new(), w, h, None, [false; 256], snapshots.clone()).unwrap();
    let mut source = SimulatedSource::new(spec.clone(), Pace::Fast, 4).unwrap();
    let pool = PixelPool::new(PixelFormat::Gray8, w * h, 4);
    for _ in 0..spec.frames {
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        source.fill(&mut frame).unwrap();
        stage.process(frame).unwrap();
    }
    snapshots.request();
    let mut frame = Frame::new(pool.try_acquire().unwrap());
    frame.image.width = w;
    frame.image.height = h;
    stage.process(frame).unwrap();
    let snap = snapshots.latest().unwrap();
    assert_eq!((snap.frames_inserted, snap.frames_skipped), (3, 1));
    // 51.2 mm wide and deep frames plus 5 mm on each side, at 0.5 mm.
    let extent: Vec<f64> = (0..3).map(|k| snap.grid.dims[k] as f64 * 0.5).collect();
    assert!(extent[0] > 60.0 && extent[0] < 65.0 && extent[2] > 60.0 && extent[2] < 65.0, "{extent:?}");
    stage.stop();
}
