//! Every ultrasound file of pydicom's public test corpus (pydicom's own test files and the
//! pydicom-data package), played through the DICOM source (every frame) and recorded with
//! `sonoflow record` (a fast recording may drop frames when the writer falls behind; those it
//! kept are checked), and compared with pydicom's decoding after the same colour-to-grey
//! conversion (tools/dicom_reference.py): equal for lossless
//! codecs, within 2 grey levels for lossy ones (JPEG baseline and JPEG 2000 decoders round
//! differently), cropped to the ultrasound region the file gives (the helper applies the
//! region rules independently), with that region's spacing.
//!
//! Needs the reference environment (tools/reference/setup installs pydicom, pydicom-data and
//! pylibjpeg into it). Without it the test is skipped with the reason printed, except under
//! CI=true, where it must run.

use std::path::{Path, PathBuf};
use std::process::Command;

use sonoflow::capture::{DicomCineSource, DicomOptions, Next, Pace, Source};
use sonoflow::frame::{Frame, PixelData, PixelPool};
use sonoflow::pipeline::clock::Clock;

/// Files expected to fail, with the error they give and why. None today: every ultrasound file
/// of the corpus records. A file listed here must fail with this text.
const EXPECTED_ERRORS: &[(&str, &str, &str)] = &[];

/// Largest difference from pydicom's decoding a lossy codec may show.
const LOSSY_TOLERANCE: u8 = 2;

fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("SONOFLOW_REF_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sonoflow/ref-venv")
    });
    let python = venv.join("bin/python");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let usable = python.is_file()
        && Command::new(&python)
            .args(["-c", "import pydicom, pylibjpeg, openjpeg, libjpeg, data_store"])
            .output()
            .is_ok_and(|o| o.status.success());
    if usable {
        return Some(python);
    }
    let why =
        format!("{} lacks pydicom, pydicom-data or pylibjpeg (tools/reference/setup installs them)", python.display());
    assert!(!ci, "CI=true, but the reference environment is not usable: {why}");
    println!("skipped: {why}");
    None
}

fn field<'a>(entry: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    &entry[key]
}

fn usize_of(entry: &serde_json::Value, key: &str) -> usize {
    field(entry, key).as_u64().unwrap_or_else(|| panic!("{key} in {entry}")) as usize
}

/// Records `input` to `out` with the command line; stderr on failure.
fn record(input: &Path, out: &Path) -> Result<(), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_sonoflow"))
        .args(["record", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--pace", "fast", "--no-compress"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if o.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&o.stderr).into_owned()) }
}

/// Every frame of `source`, cropped, with its capture time.
fn play(source: &mut DicomCineSource) -> Vec<(Vec<u8>, f64)> {
    let f = source.format();
    let pool = PixelPool::new(f.pixel_format, f.width * f.height, 1);
    let mut clock = Clock::mock();
    let mut out = Vec::new();
    while source.wait_next(&mut clock, &|| true).unwrap() == Next::Ready {
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        source.fill(&mut frame).unwrap();
        out.push((frame.image.as_u8().unwrap()[..f.width * f.height].to_vec(), frame.capture_time_s));
    }
    out
}

/// The largest difference between `pixels` (a `w`-wide crop) and the same crop of `frame`.
fn worst_difference(pixels: &[u8], frame: &[u8], columns: usize, [x0, y0, w, h]: [usize; 4]) -> u8 {
    (0..h)
        .map(|y| {
            let want = &frame[(y0 + y) * columns + x0..(y0 + y) * columns + x0 + w];
            want.iter().zip(&pixels[y * w..(y + 1) * w]).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn every_ultrasound_file_of_the_pydicom_corpus_records_like_pydicom_decodes_it() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/dicom_reference.py");
    let o = Command::new(&python).arg(&script).arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let index: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("index.json")).unwrap()).unwrap();
    // pydicom 3.0 and pydicom-data 1.0 hold 21 (tools/reference/requirements.txt pins them).
    assert!(index.len() >= 21, "{} ultrasound files found in the corpus", index.len());

    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for entry in &index {
        let name = field(entry, "name").as_str().unwrap();
        let input = PathBuf::from(field(entry, "path").as_str().unwrap());
        let ts = field(entry, "transfer_syntax_name").as_str().unwrap_or("?");
        let photometric = field(entry, "photometric").as_str().unwrap_or("?");
        let out = dir.path().join(format!("{name}.mha"));
        let expected_error = EXPECTED_ERRORS.iter().find(|(n, ..)| *n == name);
        let recorded = record(&input, &out);
        match (expected_error, recorded) {
            (Some((_, text, why)), Err(err)) => {
                assert!(err.contains(name), "{name}: the error does not name the file: {err}");
                if !err.contains(text) {
                    failures.push(format!("{name}: expected an error with `{text}` ({why}), got: {err}"));
                }
                lines.push(format!("{name} ({ts}, {photometric}): error as expected ({why})"));
                continue;
            }
            (Some((_, text, _)), Ok(())) => {
                failures.push(format!("{name}: recorded, but expected the error `{text}`"));
                continue;
            }
            (None, Err(err)) => {
                failures.push(format!("{name} ({ts}, {photometric}): {err}"));
                continue;
            }
            (None, Ok(())) => {}
        }
        let Some(reference) = field(entry, "reference").as_str() else {
            failures.push(format!("{name}: pydicom could not decode it: {}", field(entry, "error")));
            continue;
        };
        let reference = std::fs::read(dir.path().join(reference)).unwrap();
        let (frames, rows, columns) = (usize_of(entry, "frames"), usize_of(entry, "rows"), usize_of(entry, "columns"));
        let crop = match field(entry, "crop").as_array() {
            Some(c) => [0, 1, 2, 3].map(|i| c[i].as_u64().unwrap() as usize),
            None => [0, 0, columns, rows],
        };
        let [_, _, w, h] = crop;
        let frame_of = |f: usize| &reference[f * rows * columns..(f + 1) * rows * columns];
        let tolerance = if field(entry, "lossy").as_bool().unwrap() { LOSSY_TOLERANCE } else { 0 };

        // The source: every frame.
        let options = DicomOptions { pace: Pace::Fast, looping: false, roi_px: None, spacing_mm: None };
        let mut source = DicomCineSource::open(&input, options).unwrap();
        let (format, spacing) = (source.format(), source.spacing_mm());
        let played = play(&mut source);
        if (format.width, format.height, played.len()) != (w, h, frames) {
            failures.push(format!(
                "{name}: {} frames of {}x{}, expected {frames} of {w}x{h} (crop {crop:?} of {columns}x{rows})",
                played.len(),
                format.width,
                format.height
            ));
            continue;
        }
        if let Some(s) = field(entry, "spacing_mm").as_array() {
            let expected = [s[0].as_f64().unwrap(), s[1].as_f64().unwrap()];
            if (0..2).any(|i| (spacing[i] - expected[i]).abs() > 1e-6) {
                failures.push(format!("{name}: spacing {spacing:?} mm, the region says {expected:?}"));
            }
        }
        let worst =
            played.iter().enumerate().map(|(f, (px, _))| worst_difference(px, frame_of(f), columns, crop)).max();
        let worst = worst.unwrap_or(0);
        if worst > tolerance {
            failures.push(format!("{name}: {worst} grey levels from pydicom's decoding (at most {tolerance})"));
        }

        // The recording: what it kept, found by capture time.
        let (header, kept) = sonoflow::io::sequence::read_all(&out).unwrap();
        if (header.width, header.height, header.spacing_mm) != (w, h, spacing) || kept.is_empty() {
            failures.push(format!(
                "{name}: recorded {} frames of {}x{} at {:?} mm; the source gives {w}x{h} at {spacing:?} mm",
                kept.len(),
                header.width,
                header.height,
                header.spacing_mm
            ));
            continue;
        }
        for (meta, pixels) in &kept {
            let f = played.iter().position(|(_, t)| (t - meta.timestamp_s).abs() < 1e-6);
            let matches = match (f, pixels) {
                (Some(f), PixelData::Gray8(px)) => worst_difference(px, frame_of(f), columns, crop) <= tolerance,
                _ => false,
            };
            if !matches {
                failures.push(format!("{name}: the frame recorded at {} s is none of the file's", meta.timestamp_s));
                break;
            }
        }
        lines.push(format!(
            "{name} ({ts}, {photometric}): {frames} frames of {w}x{h} (crop {crop:?} of {columns}x{rows}), spacing {spacing:?} mm, max difference {worst}; {} recorded",
            kept.len()
        ));
    }
    println!("{}", lines.join("\n"));
    assert!(failures.is_empty(), "{} of {} files:\n{}", failures.len(), index.len(), failures.join("\n"));
}
