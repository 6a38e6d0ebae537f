//! The segment stage on simulated frames, called directly (no threads): it segments the lesion
//! from a box on the first frame, then tracks it; masks agree with the simulator's ground truth.

mod common;

use sonoflow::capture::simulator::{SimulationSpec, Simulator, label_box};
use sonoflow::frame::{Frame, PixelData, PixelFormat, PixelPool};
use sonoflow::pipeline::Stage;
use sonoflow::segment::settings::SegmentSettings;
use sonoflow::segment::stage::{PromptInbox, SegmentStage};
use sonoflow::segment::tracker::FramePrompt;
use sonoflow::segment::{PromptSource, Segmentation};

const LESION: u8 = 1;

fn dice(mask: &[u8], labels: &[u8]) -> f64 {
    let (mut both, mut a, mut b) = (0usize, 0usize, 0usize);
    for (m, l) in mask.iter().zip(labels) {
        let (m, l) = (*m != 0, *l == LESION);
        both += usize::from(m && l);
        a += usize::from(m);
        b += usize::from(l);
    }
    2.0 * both as f64 / (a + b).max(1) as f64
}

#[test]
fn segments_the_lesion_and_tracks_it_across_frames() {
    if common::model_weights().is_none() {
        return;
    }
    let spec = SimulationSpec { frames: 40, ..SimulationSpec::default() };
    let (w, h) = (spec.width_px, spec.height_px);
    let mut sim = Simulator::new(spec).unwrap();
    let pool = PixelPool::new(PixelFormat::Gray8, w * h, 8);
    let mut labels = vec![0u8; w * h];
    let frames: Vec<(Frame, Vec<u8>)> = (16..21)
        .map(|i| {
            let mut f = Frame::new(pool.try_acquire().unwrap());
            let PixelData::Gray8(px) = f.image.pixels.data_mut() else { unreachable!() };
            sim.render(i, px, &mut labels).unwrap();
            (f.image.width, f.image.height, f.seq) = (w, h, i as u64);
            (f, labels.clone())
        })
        .collect();
    let settings = SegmentSettings { bbox: label_box(&frames[0].1, w, LESION, 5.0), ..Default::default() };
    let inbox = PromptInbox::default();
    let mut stage = SegmentStage::new(&settings, w, h, 4, inbox.clone()).unwrap();
    let mut sources = Vec::new();
    for (frame, truth) in frames {
        let f = stage.process(frame).unwrap().expect("the frame is passed on");
        let segmentation = f.attachments.get::<Segmentation>().expect("the segmentation attached");
        let (info, logits) = (segmentation.info, segmentation.logits());
        assert_eq!(logits.len(), w * h);
        let PixelData::Gray8(mask) = f.mask.as_ref().expect("a mask").data() else { panic!("gray8 mask") };
        // Mask and logits agree: the mask is where the logits are positive.
        assert!(mask[..w * h].iter().zip(logits).all(|(m, l)| (*m == 1) == (*l > 0.0)));
        let d = dice(&mask[..w * h], &truth);
        eprintln!("frame {}: IoU {:.3}, dice vs truth {d:.3}, {:?}", f.seq, info.predicted_iou, info.prompt_source);
        assert!(d > 0.6, "frame {}: dice {d:.3} with the simulator's lesion", f.seq);
        assert!(!info.flagged);
        assert_eq!(f.mask_confidence, Some(info.predicted_iou));
        sources.push(info.prompt_source);
    }
    assert_eq!(sources[0], PromptSource::Given);
    assert!(sources[1..].iter().all(|s| *s == PromptSource::Tracked), "{sources:?}");
    // Far past the lesion: the model still outlines something, but the mask is flagged (not
    // trusted, zero confidence) and the tracker holds its last good box.
    let mut f = Frame::new(pool.try_acquire().unwrap());
    let PixelData::Gray8(px) = f.image.pixels.data_mut() else { unreachable!() };
    sim.render(36, px, &mut labels).unwrap();
    assert!(!labels.contains(&LESION), "frame 36 is past the lesion");
    (f.image.width, f.image.height, f.seq) = (w, h, 36);
    let f = stage.process(f).unwrap().unwrap();
    let info = f.attachments.get::<Segmentation>().unwrap().info;
    eprintln!("frame 36: IoU {:.3}, stability {:.3}, flagged {}", info.predicted_iou, info.stability, info.flagged);
    assert!(info.flagged, "{info:?}");
    assert_eq!(f.mask_confidence, Some(0.0));
    stage.stop();
    let r = stage.report().expect("a report");
    assert_eq!((&r["frames_segmented"], &r["frames_flagged"], &r["prompts_given"]), (&6.into(), &1.into(), &1.into()));
    // A new prompt from outside takes over on the next frame.
    inbox.put(FramePrompt::from_box([10.0, 10.0, 60.0, 60.0]));
    let mut f = Frame::new(pool.try_acquire().unwrap());
    let PixelData::Gray8(px) = f.image.pixels.data_mut() else { unreachable!() };
    sim.render(21, px, &mut labels).unwrap();
    (f.image.width, f.image.height) = (w, h);
    let info = stage.process(f).unwrap().unwrap().attachments.get::<Segmentation>().unwrap().info;
    assert_eq!((info.prompt_source, info.prompt_box), (PromptSource::Given, Some([10.0, 10.0, 60.0, 60.0])));
}

#[test]
fn without_a_prompt_frames_pass_untouched_and_no_model_is_loaded() {
    let settings = SegmentSettings { model_dir: Some("/nonexistent".into()), ..Default::default() };
    let mut stage = SegmentStage::new(&settings, 8, 8, 2, PromptInbox::default()).unwrap();
    let pool = PixelPool::new(PixelFormat::Gray8, 64, 1);
    let out = stage.process(Frame::new(pool.try_acquire().unwrap())).unwrap();
    assert!(out.unwrap().attachments.is_empty());
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let settings = SegmentSettings {
        model_dir: Some("/nonexistent/litemedsam".into()),
        bbox: Some([1.0, 1.0, 5.0, 5.0]),
        ..Default::default()
    };
    let err = SegmentStage::new(&settings, 8, 8, 2, PromptInbox::default()).err().expect("an error");
    let text = sonoflow::pipeline::error_chain(&err);
    assert!(text.contains("/nonexistent/litemedsam") && text.contains("sonoflow model fetch"), "{text}");
}

#[test]
fn the_configured_prompt_waits_for_its_frame() {
    if common::model_weights().is_none() {
        return;
    }
    let spec = SimulationSpec { frames: 40, ..SimulationSpec::default() };
    let (w, h) = (spec.width_px, spec.height_px);
    let mut sim = Simulator::new(spec).unwrap();
    let pool = PixelPool::new(PixelFormat::Gray8, w * h, 2);
    let mut labels = vec![0u8; w * h];
    let settings =
        SegmentSettings { bbox: Some([40.0, 60.0, 150.0, 160.0]), prompt_from_frame: 17, ..Default::default() };
    let mut stage = SegmentStage::new(&settings, w, h, 2, PromptInbox::default()).unwrap();
    let mut sources = Vec::new();
    for i in 16..18 {
        let mut f = Frame::new(pool.try_acquire().unwrap());
        let PixelData::Gray8(px) = f.image.pixels.data_mut() else { unreachable!() };
        sim.render(i, px, &mut labels).unwrap();
        (f.image.width, f.image.height, f.seq) = (w, h, i as u64);
        let out = stage.process(f).unwrap();
        sources.push(out.unwrap().attachments.get::<Segmentation>().map(|s| s.info.prompt_source));
    }
    assert_eq!(sources, [None, Some(PromptSource::Given)]);
}
