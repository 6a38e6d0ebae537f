//! DICOM cine replay on the generated fixtures (tools/make_dicom_fixtures.py): frame count, pixels,
//! crop and spacing from the ultrasound region (clamped when it overshoots by a pixel), palette
//! colour, 12-bit grey windowed to 8 bits, pacing from Frame Time / Cine Rate on the mock
//! clock, loops, damaged files, undecodable transfer syntaxes, and the command line
//! (`run --input`, `record`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sonoflow::capture::{DicomCineSource, DicomOptions, Next, Pace, Source};
use sonoflow::frame::{Frame, PixelPool};
use sonoflow::pipeline::clock::Clock;

const ROWS: usize = 48;
const COLS: usize = 64;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom").join(name)
}

fn options(pace: Pace, looping: bool) -> DicomOptions {
    DicomOptions { pace, looping, roi_px: None, spacing_mm: None }
}

/// Plays `source` to its end (or `limit` frames), returning each frame's pixels, capture time,
/// and the clock's time when it was released.
/// One released frame: pixels, capture time, release time, spacing, width, height.
type Played = (Vec<u8>, f64, u64, [f64; 2], usize, usize);

fn play(source: &mut dyn Source, clock: &mut Clock, limit: usize) -> Vec<Played> {
    let f = source.format();
    let pool = PixelPool::new(f.pixel_format, f.width * f.height, 2);
    let mut out = Vec::new();
    while out.len() < limit && source.wait_next(clock, &|| true).unwrap() == Next::Ready {
        let released = clock.now_ns();
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        source.fill(&mut frame).unwrap();
        let img = &frame.image;
        out.push((
            img.as_u8().unwrap().to_vec(),
            frame.capture_time_s,
            released,
            img.spacing_mm,
            img.width,
            img.height,
        ));
    }
    out
}

#[test]
fn uncompressed_cine_replays_every_frame_exactly_cropped_to_its_ultrasound_region() {
    let original = std::fs::read(fixture("us_cine_raw.original.u8")).unwrap();
    let mut source = DicomCineSource::open(&fixture("us_cine_raw.dcm"), options(Pace::Fast, false)).unwrap();
    assert_eq!(source.frame_count(), 8);
    // Region x 8..=55, y 4..=43; 0.02 cm x 0.025 cm per pixel.
    let (x0, y0, w, h) = (8, 4, 48, 40);
    assert_eq!((source.format().width, source.format().height), (w, h));
    let frames = play(&mut source, &mut Clock::mock(), usize::MAX);
    assert_eq!(frames.len(), 8);
    for (i, (pixels, time, _, spacing, width, height)) in frames.iter().enumerate() {
        assert_eq!((*width, *height), (w, h));
        assert_eq!(*spacing, [0.2, 0.25]);
        assert!((time - i as f64 * 0.040).abs() < 1e-9, "frame {i} at {time}");
        let frame = &original[i * ROWS * COLS..(i + 1) * ROWS * COLS];
        let expected: Vec<u8> = (y0..y0 + h).flat_map(|y| frame[y * COLS + x0..y * COLS + x0 + w].to_vec()).collect();
        assert!(*pixels == expected, "frame {i} differs from the original");
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0f64.powi(2) / mse).log10()
}

/// JPEG decoders may differ by a grey level where IDCT rounding differs, so the check is against
/// libjpeg's decoding of the same file (recorded by the generator) within 2 levels, plus a PSNR
/// floor against the original frames (libjpeg itself reaches 36.4 dB on them at quality 90).
#[test]
fn jpeg_baseline_cine_decodes_like_libjpeg() {
    let reference = std::fs::read(fixture("us_cine_jpeg.libjpeg.u8")).unwrap();
    let original = std::fs::read(fixture("us_cine_jpeg.original.u8")).unwrap();
    let mut source = DicomCineSource::open(&fixture("us_cine_jpeg.dcm"), options(Pace::Fast, false)).unwrap();
    let frames = play(&mut source, &mut Clock::mock(), usize::MAX);
    assert_eq!(frames.len(), 6);
    for (i, (pixels, time, _, spacing, width, height)) in frames.iter().enumerate() {
        assert_eq!((*width, *height), (COLS, ROWS), "no region: the whole frame");
        assert_eq!(*spacing, [0.3, 0.3], "from Pixel Spacing");
        assert!((time - i as f64 / 25.0).abs() < 1e-9, "Cine Rate 25: frame {i} at {time}");
        let range = i * ROWS * COLS..(i + 1) * ROWS * COLS;
        let worst = pixels.iter().zip(&reference[range.clone()]).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(worst <= 2, "frame {i}: {worst} grey levels from libjpeg's decoding");
        let p = psnr(pixels, &original[range]);
        assert!(p > 34.0, "frame {i}: PSNR {p:.1} dB against the original");
    }
}

#[test]
fn recorded_pace_follows_the_frame_time_on_the_mock_clock_and_loops_keep_time_increasing() {
    let mut source = DicomCineSource::open(&fixture("us_cine_raw.dcm"), options(Pace::Recorded, true)).unwrap();
    let mut clock = Clock::mock();
    let frames = play(&mut source, &mut clock, 20);
    assert_eq!(frames.len(), 20, "a loop never ends by itself");
    let start = frames[0].2;
    for (i, (_, time, released, ..)) in frames.iter().enumerate() {
        // Each frame is released 40 ms of (virtual) time after the previous one; the mock clock
        // adds a microsecond per reading.
        let due = i as u64 * 40_000_000;
        assert!((released - start).abs_diff(due) < 20_000, "frame {i} released at {} ns", released - start);
        assert!((time - i as f64 * 0.040).abs() < 1e-9, "frame {i} at {time}: the second loop continues the first");
    }
    assert_eq!(frames[8].0, frames[0].0, "the loop starts again at the first frame");
}

#[test]
fn a_configured_crop_and_spacing_override_the_file() {
    let opts = DicomOptions { roi_px: Some([0, 0, 10, 5]), spacing_mm: Some([0.1, 0.1]), ..options(Pace::Fast, false) };
    let mut source = DicomCineSource::open(&fixture("us_cine_raw.dcm"), opts).unwrap();
    let frames = play(&mut source, &mut Clock::mock(), 1);
    assert_eq!((frames[0].4, frames[0].5, frames[0].3), (10, 5, [0.1, 0.1]));
    let opts = DicomOptions { roi_px: Some([60, 0, 10, 5]), ..options(Pace::Fast, false) };
    let err = DicomCineSource::open(&fixture("us_cine_raw.dcm"), opts).err().unwrap().to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn damaged_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cut) in [("truncated.dcm", 0.6), ("header_only.dcm", 0.05)] {
        let bytes = std::fs::read(fixture("us_cine_jpeg.dcm")).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..(bytes.len() as f64 * cut) as usize]).unwrap();
        let err = DicomCineSource::open(&path, options(Pace::Fast, false)).err().expect(name).to_string();
        assert!(err.contains(name), "{err}");
    }
    let not_dicom = dir.path().join("notes.dcm");
    std::fs::write(&not_dicom, b"not a dicom file at all").unwrap();
    let err = DicomCineSource::open(&not_dicom, options(Pace::Fast, false)).err().unwrap().to_string();
    assert!(err.contains("notes.dcm") && err.contains("DICOM"), "{err}");
}

/// The crop `[x0, y0, w, h]` of each `COLS`-wide frame of `frames`.
fn crop(frames: &[u8], f: usize, [x0, y0, w, h]: [usize; 4]) -> Vec<u8> {
    let frame = &frames[f * ROWS * COLS..(f + 1) * ROWS * COLS];
    (y0..y0 + h).flat_map(|y| frame[y * COLS + x0..y * COLS + x0 + w].to_vec()).collect()
}

#[test]
fn palette_colour_maps_through_its_16_bit_table_and_a_region_one_past_the_edge_is_clamped() {
    let expected = std::fs::read(fixture("us_palette16.grey.u8")).unwrap();
    let mut source = DicomCineSource::open(&fixture("us_palette16.dcm"), options(Pace::Fast, false)).unwrap();
    let frames = play(&mut source, &mut Clock::mock(), usize::MAX);
    assert_eq!(frames.len(), 2);
    // Region x 4..=64 in a 64-wide frame: clamped to 4..=63.
    for (i, (pixels, _, _, spacing, width, height)) in frames.iter().enumerate() {
        assert_eq!((*width, *height, *spacing), (60, 44, [0.3, 0.3]));
        assert!(*pixels == crop(&expected, i, [4, 2, 60, 44]), "frame {i}");
    }
}

#[test]
fn twelve_bit_grey_is_windowed_to_8_bits_by_the_files_first_window() {
    let expected = std::fs::read(fixture("us_mono12.grey.u8")).unwrap();
    let mut source = DicomCineSource::open(&fixture("us_mono12.dcm"), options(Pace::Fast, false)).unwrap();
    let frames = play(&mut source, &mut Clock::mock(), usize::MAX);
    assert_eq!(frames.len(), 3);
    for (i, (pixels, ..)) in frames.iter().enumerate() {
        assert!(*pixels == crop(&expected, i, [0, 0, COLS, ROWS]), "frame {i}");
    }
}

#[test]
fn a_configured_crop_that_does_not_fit_stays_an_error_where_the_files_region_is_clamped() {
    let opts = DicomOptions { roi_px: Some([4, 2, 61, 44]), ..options(Pace::Fast, false) };
    let err = DicomCineSource::open(&fixture("us_palette16.dcm"), opts).err().unwrap().to_string();
    assert!(
        err.contains("us_palette16.dcm") && err.contains("capture.roi_px") && err.contains("does not fit"),
        "{err}"
    );
}

#[test]
fn jpeg_ls_is_refused_naming_the_transfer_syntax_and_its_decoder() {
    // The JPEG cine relabelled JPEG-LS Lossless (a UID of the same length).
    let mut bytes = std::fs::read(fixture("us_cine_jpeg.dcm")).unwrap();
    let at = bytes.windows(22).position(|w| w == b"1.2.840.10008.1.2.4.50").unwrap();
    bytes[at..at + 22].copy_from_slice(b"1.2.840.10008.1.2.4.80");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jpeg_ls.dcm");
    std::fs::write(&path, bytes).unwrap();
    let err = DicomCineSource::open(&path, options(Pace::Fast, false)).err().unwrap().to_string();
    for part in ["jpeg_ls.dcm", "JPEG-LS Lossless (1.2.840.10008.1.2.4.80)", "charls"] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
}

fn sonoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonoflow")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn run_picks_the_dicom_source_and_record_writes_a_plus_sequence() {
    let input = fixture("us_cine_raw.dcm");
    let o = sonoflow(&["run", "--config", "configs/replay.toml", "--input", input.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("8 frames in, 8 out"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cine.mha");
    let o = sonoflow(&["record", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--pace", "fast"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let (header, frames) = sonoflow::io::sequence::read_all(&out).unwrap();
    assert_eq!((header.width, header.height, frames.len()), (48, 40, 8));
    assert_eq!(header.spacing_mm, [0.2, 0.25]);
    let times: Vec<f64> = frames.iter().map(|(meta, _)| meta.timestamp_s).collect();
    for (i, t) in times.iter().enumerate() {
        assert!((t - i as f64 * 0.040).abs() < 1e-6, "{times:?}");
    }
}
