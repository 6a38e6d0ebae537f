//! Fuzzing of every parser of outside data: PLUS sequence files (MetaImage and NRRD headers,
//! per-frame fields, pixel data), PLUS configuration XML, the checkpoint reader (zip and
//! pickle), DICOM cine files and the haptics stream decoder.
//!
//! Each parser gets two kinds of input: committed seeds (`tests/fixtures/fuzz/`, and the
//! checkpoint and DICOM fixtures) changed by random mutations (`fuzz/mutate.rs`), and structured
//! inputs built from the format's skeleton with random values (`fuzz/formats/`). The property
//! for every case: the parser returns Ok or an error that names the file, never panics,
//! finishes in time and never makes one allocation over a cap (`fuzz/mod.rs`, `fuzz/cap.rs`).
//! Every crash the fuzzer found is fixed and kept below as a named regression test with its
//! minimal input.
//!
//! CI runs the default case count with a fixed seed. The long run (figures and knobs in
//! `tests/fixtures/fuzz/README.md`): `SONOFLOW_FUZZ_SECONDS=300 SONOFLOW_FUZZ_CASES=5000
//! cargo test --release --test fuzz_parsers -- --nocapture`.

mod fuzz;

use std::path::{Path, PathBuf};

use fuzz::{Limits, formats, fuzz, fuzz_with, mutated, seeds};
use proptest::prelude::*;
use sonoflow::capture::dicom::looks_like_dicom;
use sonoflow::capture::{DicomCineSource, DicomOptions, Next, Pace, Source};
use sonoflow::frame::{Frame, PixelData, PixelPool};
use sonoflow::haptics::protocol::{MAX_WIRE_LEN, Message, StreamDecoder};
use sonoflow::io::sequence::SequenceReader;
use sonoflow::model::Checkpoint;
use sonoflow::model::pickle;
use sonoflow::pipeline::clock::Clock;
use sonoflow::recon::plus_config::{parse_plus_config, read_plus_config};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// A scratch folder for one property, holding the `split.raw` companion that `.mhd`/`.nhdr`
/// seeds name as their data file.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("fuzz/metaimage/split.raw"), dir.path().join("split.raw")).unwrap();
    dir
}

/// An error message must name the file at fault (the input, or the data file it points to).
fn must_name(message: String, dir: &Path) -> String {
    assert!(message.contains(&*dir.to_string_lossy()), "the error does not name the file: {message}");
    message
}

// ---------------------------------------------------------------------------------------------
// PLUS sequence files.

/// Opens a sequence and reads every frame, rewinds, and reads the first frame again.
fn read_sequence(path: &Path) -> Result<(), String> {
    let mut reader = SequenceReader::open(path).map_err(|e| e.to_string())?;
    let header = reader.header().clone();
    assert!(reader.frames().len() == header.frame_count, "frame metadata and DimSize disagree");
    let pixels = header.width * header.height;
    // The pipeline sizes its pools from the header; past 4 M pixels the harness spares itself
    // the buffer (the header's own caps are what is under test there).
    if pixels > 1 << 22 {
        return Ok(());
    }
    let mut frame = PixelData::zeroed(header.pixel_format, pixels);
    let mut count = 0;
    while reader.read_next(&mut frame).map_err(|e| e.to_string())?.is_some() {
        count += 1;
        if count >= 10_000 {
            break;
        }
    }
    reader.rewind().map_err(|e| e.to_string())?;
    reader.read_next(&mut frame).map_err(|e| e.to_string())?;
    Ok(())
}

fn sequence_target(dir: &Path, name: &str) -> impl Fn(&[u8]) -> Result<(), String> {
    let (dir, path) = (dir.to_path_buf(), dir.join(name));
    move |bytes| {
        std::fs::write(&path, bytes).unwrap();
        read_sequence(&path).map_err(|m| must_name(m, &dir))
    }
}

#[test]
fn metaimage_mutated() {
    let dir = scratch();
    let corpus = seeds("fuzz/metaimage", |n| n.ends_with(".mha") || n.ends_with(".mhd"));
    fuzz("metaimage_mutated", mutated(corpus, formats::SEQUENCE_WORDS), sequence_target(dir.path(), "case.mha"));
}

#[test]
fn metaimage_structured() {
    let dir = scratch();
    fuzz("metaimage_structured", formats::metaimage(), sequence_target(dir.path(), "case.mha"));
}

#[test]
fn nrrd_mutated() {
    let dir = scratch();
    let corpus = seeds("fuzz/nrrd", |n| n.ends_with(".nrrd") || n.ends_with(".nhdr"));
    fuzz("nrrd_mutated", mutated(corpus, formats::SEQUENCE_WORDS), sequence_target(dir.path(), "case.seq.nrrd"));
}

#[test]
fn nrrd_structured() {
    let dir = scratch();
    fuzz("nrrd_structured", formats::nrrd(), sequence_target(dir.path(), "case.seq.nrrd"));
}

// ---------------------------------------------------------------------------------------------
// PLUS configuration XML.

fn plus_config_target(dir: &Path) -> impl Fn(&[u8]) -> Result<(), String> {
    let (dir, path) = (dir.to_path_buf(), dir.join("case.xml"));
    move |bytes| {
        let result = match std::str::from_utf8(bytes) {
            Ok(text) => parse_plus_config(&path, text).map(drop),
            // Not UTF-8: through the file, where reading it fails.
            Err(_) => {
                std::fs::write(&path, bytes).unwrap();
                read_plus_config(&path).map(drop)
            }
        };
        result.map_err(|e| must_name(e.to_string(), &dir))
    }
}

#[test]
fn plus_config_mutated() {
    let dir = scratch();
    let corpus = seeds("fuzz/plus_config", |n| n.ends_with(".xml"));
    fuzz("plus_config_mutated", mutated(corpus, formats::PLUS_WORDS), plus_config_target(dir.path()));
}

#[test]
fn plus_config_structured() {
    let dir = scratch();
    fuzz("plus_config_structured", formats::plus_config(), plus_config_target(dir.path()));
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: the pickle machine alone, then whole zip files.

fn pickle_target(bytes: &[u8]) -> Result<(), String> {
    match pickle::load(bytes) {
        Ok(_) => Ok(()),
        Err(e) => {
            assert!(e.offset <= bytes.len(), "error offset {} past the {}-byte input: {e}", e.offset, bytes.len());
            Err(e.to_string())
        }
    }
}

#[test]
fn pickle_mutated() {
    let corpus = seeds("fuzz/pickle", |n| n.ends_with(".pkl"));
    fuzz("pickle_mutated", mutated(corpus, formats::PICKLE_WORDS), pickle_target);
}

#[test]
fn pickle_structured() {
    let inputs = prop_oneof![3 => formats::pickle_ops(), 1 => formats::state_dict_pickles()];
    fuzz("pickle_structured", inputs, pickle_target);
}

const CHECKPOINT_LABEL: &str = "fuzz-checkpoint.pth";

fn checkpoint_target(bytes: &[u8]) -> Result<(), String> {
    match Checkpoint::from_bytes(bytes, Path::new(CHECKPOINT_LABEL)) {
        Ok(c) => {
            assert!(c.tensors.iter().all(|t| t.data.len() == t.shape.iter().product::<usize>()));
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(CHECKPOINT_LABEL), "the error does not name the file: {message}");
            Err(message)
        }
    }
}

#[test]
fn checkpoint_mutated() {
    let corpus = seeds("checkpoint", |n| n.ends_with(".pth"));
    fuzz("checkpoint_mutated", mutated(corpus, formats::PICKLE_WORDS), checkpoint_target);
}

/// The storages of `tiny.pth`, to wrap mutated pickles in a zip whose CRCs hold.
fn tiny_storages() -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let bytes = std::fs::read(fixture("checkpoint/tiny.pth")).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_string();
        if name.ends_with("/data.pkl") {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    entries
}

#[test]
fn checkpoint_pickle_mutated() {
    let storages = tiny_storages();
    let corpus = seeds("fuzz/pickle", |n| n.ends_with(".pkl"));
    let zipped = mutated(corpus, formats::PICKLE_WORDS).prop_map(move |pkl| {
        let mut entries = vec![("tiny/data.pkl".to_string(), pkl)];
        entries.extend(storages.iter().cloned());
        formats::zip(&entries, false)
    });
    fuzz("checkpoint_pickle_mutated", zipped, checkpoint_target);
}

#[test]
fn checkpoint_structured() {
    fuzz("checkpoint_structured", formats::checkpoint(), checkpoint_target);
}

// ---------------------------------------------------------------------------------------------
// DICOM cine.

/// Decoded DICOM frames live in memory by design: compressed pixel data may take up to 4096
/// times its size once decoded (the reader's own bound), and decoding that much takes a while.
fn dicom_limits() -> Limits {
    let limits = Limits::from_env();
    Limits { alloc_per_input_byte: 4096, case_time: limits.case_time.max(std::time::Duration::from_secs(5)), ..limits }
}

fn dicom_target(dir: &Path) -> impl Fn(&[u8]) -> Result<(), String> {
    let (dir, path) = (dir.to_path_buf(), dir.join("case.dcm"));
    move |bytes| {
        std::fs::write(&path, bytes).unwrap();
        let _ = looks_like_dicom(&path);
        // Paced playback exercises the frame times; which one depends on the input only.
        let pace = if bytes.len() % 2 == 0 { Pace::Recorded } else { Pace::Fast };
        let options = DicomOptions { pace, looping: true, roi_px: None, spacing_mm: None };
        let mut source = DicomCineSource::open(&path, options).map_err(|e| must_name(e.to_string(), &dir))?;
        let format = source.format();
        let pixels = format.width * format.height;
        if pixels > 1 << 22 {
            return Ok(());
        }
        let pool = PixelPool::new(format.pixel_format, pixels, 1);
        let mut clock = Clock::mock();
        // One frame past the end: the loop wraps around.
        for _ in 0..(source.frame_count() + 1).min(6) {
            if source.wait_next(&mut clock, &|| true).map_err(|e| e.to_string())? != Next::Ready {
                break;
            }
            let mut frame = Frame::new(pool.try_acquire().unwrap());
            source.fill(&mut frame).map_err(|e| must_name(e.to_string(), &dir))?;
        }
        Ok(())
    }
}

#[test]
fn dicom_mutated() {
    let dir = scratch();
    let corpus = seeds("dicom", |n| n.ends_with(".dcm"));
    fuzz_with("dicom_mutated", dicom_limits(), mutated(corpus, formats::DICOM_WORDS), dicom_target(dir.path()));
}

#[test]
fn dicom_structured() {
    let dir = scratch();
    fuzz_with("dicom_structured", dicom_limits(), formats::dicom(), dicom_target(dir.path()));
}

#[test]
fn dicom_palette_and_window() {
    let dir = scratch();
    fuzz_with(
        "dicom_palette_and_window",
        dicom_limits(),
        formats::dicom_palette_and_window(),
        dicom_target(dir.path()),
    );
}

// ---------------------------------------------------------------------------------------------
// Haptics stream decoder.

fn decode_stream(bytes: &[u8], chunked: bool) -> Vec<String> {
    let mut decoder = StreamDecoder::default();
    let mut out = Vec::new();
    if chunked {
        // Arrival in pieces of 1 to 7 bytes, as a serial port delivers them.
        let (mut at, mut k) = (0, bytes.len());
        while at < bytes.len() {
            let end = (at + 1 + k % 7).min(bytes.len());
            decoder.feed(&bytes[at..end], |m| out.push(format!("{m:?}")));
            at = end;
            k = k.wrapping_mul(31).wrapping_add(7);
        }
    } else {
        decoder.feed(bytes, |m| out.push(format!("{m:?}")));
    }
    out
}

fn haptics_target(bytes: &[u8]) -> Result<(), String> {
    let whole = decode_stream(bytes, false);
    let pieces = decode_stream(bytes, true);
    assert_eq!(whole, pieces, "the messages depend on how the bytes arrived");
    let delimiters = bytes.iter().filter(|&&b| b == 0).count();
    assert!(whole.len() <= delimiters + bytes.len() / MAX_WIRE_LEN + 1, "more messages than blocks");
    for block in bytes.split(|&b| b == 0) {
        let _ = Message::decode_block(block);
    }
    let _ = Message::decode_record(bytes);
    match whole.iter().filter(|m| m.starts_with("Err")).count() {
        0 => Ok(()),
        n => Err(format!(
            "{n} of {} blocks rejected, first: {}",
            whole.len(),
            whole.iter().find(|m| m.starts_with("Err")).unwrap()
        )),
    }
}

#[test]
fn haptics_mutated() {
    let corpus = seeds("fuzz/haptics", |n| n.ends_with(".bin"));
    fuzz("haptics_mutated", mutated(corpus, &[]), haptics_target);
}

#[test]
fn haptics_structured() {
    fuzz("haptics_structured", formats::haptics_stream(), haptics_target);
}

// ---------------------------------------------------------------------------------------------
// The seeds themselves are valid inputs: mutation starts from files that parse.

#[test]
fn seeds_parse() {
    let dir = scratch();
    for (sub, name) in [("fuzz/metaimage", "case.mha"), ("fuzz/nrrd", "case.seq.nrrd")] {
        let target = sequence_target(dir.path(), name);
        for seed in seeds(sub, |n| !n.ends_with(".raw")) {
            target(&seed).unwrap_or_else(|e| panic!("{sub} seed: {e}"));
        }
    }
    for seed in seeds("fuzz/plus_config", |n| n.ends_with(".xml")) {
        plus_config_target(dir.path())(&seed).unwrap();
    }
    for seed in seeds("fuzz/pickle", |_| true) {
        pickle_target(&seed).unwrap();
    }
    for seed in seeds("checkpoint", |n| n.ends_with(".pth")) {
        checkpoint_target(&seed).unwrap();
    }
    for seed in seeds("dicom", |n| n.ends_with(".dcm")) {
        dicom_target(dir.path())(&seed).unwrap();
    }
    let stream = seeds("fuzz/haptics", |_| true).remove(0);
    haptics_target(&stream).unwrap();
    assert_eq!(decode_stream(&stream, false).len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Regressions: each crash the fuzzer found, with its minimal input.

fn default_limits() -> Limits {
    Limits::from_env()
}

/// Sets the sizes of zip entry `name` in its local header and the central directory (a lie
/// the data does not back).
fn patch_zip_sizes(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for at in 0..zip.len().saturating_sub(46) {
        let (sizes_at, name_len_at, name_at) = match &zip[at..at + 4] {
            [0x50, 0x4b, 0x03, 0x04] => (at + 18, at + 26, at + 30),
            [0x50, 0x4b, 0x01, 0x02] => (at + 20, at + 28, at + 46),
            _ => continue,
        };
        let name_len = usize::from(u16::from_le_bytes([zip[name_len_at], zip[name_len_at + 1]]));
        if zip.get(name_at..name_at + name_len) == Some(name.as_bytes()) {
            zip[sizes_at..sizes_at + 4].copy_from_slice(&size.to_le_bytes());
            zip[sizes_at + 4..sizes_at + 8].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "entry {name} in the local header and the central directory");
}

fn tensor(shape: &[i64], stride: &[i64], numel: i64) -> formats::TensorSpec {
    formats::TensorSpec {
        name: "a.weight",
        class: "FloatStorage",
        key: "0",
        numel,
        offset: 0,
        shape: shape.to_vec(),
        stride: stride.to_vec(),
        parameter: false,
        metadata: false,
    }
}

fn checkpoint_zip(tensors: &[formats::TensorSpec], storage: Vec<u8>) -> Vec<u8> {
    formats::zip(
        &[
            ("archive/data.pkl".to_string(), formats::state_dict_pickle(tensors, None)),
            ("archive/byteorder".to_string(), b"little".to_vec()),
            ("archive/data/0".to_string(), storage),
        ],
        false,
    )
}

/// Found by `checkpoint_structured`: a stride-0 view of shape (1, 2^32) over 44 floats made the
/// reader reserve 16 GiB for the gathered values (allocation failure, the process aborted).
#[test]
fn checkpoint_view_larger_than_its_storage_is_an_error() {
    let zip = checkpoint_zip(&[tensor(&[1, 1 << 32], &[2, 0], 44)], vec![0; 176]);
    let err = fuzz::check_one("checkpoint", default_limits(), &zip, checkpoint_target).unwrap_err();
    assert!(err.contains("tensor `a.weight`") && err.contains("more than the storage's 44"), "{err}");
    // A view within its storage still reads, strided or not.
    let zip =
        checkpoint_zip(&[tensor(&[2, 2], &[1, 2], 4)], (0..4).flat_map(|v: u32| (v as f32).to_le_bytes()).collect());
    let c = Checkpoint::from_bytes(&zip, Path::new("ok.pth")).unwrap();
    assert_eq!(c.tensors[0].data, [0.0, 2.0, 1.0, 3.0]);
}

/// Found in review while fuzzing the checkpoint reader: an entry's declared size (the zip's
/// word, up to what the pickle allows) was reserved before any byte was read.
#[test]
fn checkpoint_entry_declaring_more_than_it_holds_reserves_nothing_from_it() {
    let mut zip = checkpoint_zip(&[tensor(&[1 << 29], &[1], 1 << 29)], vec![0; 64]);
    patch_zip_sizes(&mut zip, "archive/data/0", 0x7fff_fff0);
    let err = fuzz::check_one("checkpoint", default_limits(), &zip, checkpoint_target).unwrap_err();
    assert!(err.contains("entry `archive/data/0`"), "{err}");
}

fn rle_file(rows: u16, columns: u16, frames: usize, bits: u16, samples: u16, fragments: Vec<Vec<u8>>) -> Vec<u8> {
    let mut spec = formats::DicomSpec::grey8(rows, columns, frames, Vec::new());
    spec.transfer_syntax = formats::RLE_LOSSLESS;
    spec.bits = bits;
    spec.samples = samples;
    if samples == 3 {
        spec.photometric = "RGB";
    }
    spec.fragments = fragments;
    formats::dicom_bytes(&spec)
}

fn open_dicom(dir: &Path, bytes: &[u8]) -> Result<(), String> {
    fuzz::check_one("dicom", dicom_limits(), bytes, dicom_target(dir))
}

/// Found by `dicom_structured`: dicom-pixeldata's RLE decoder sliced, indexed and allocated
/// from the fragment header unchecked (a segment offset of 81 in a 64-byte fragment panicked;
/// a segment count of 2^32 − 1 would have allocated 16 GiB). RLE is now decoded by the reader,
/// every offset checked; each flaw is an error naming the frame and segment.
#[test]
fn dicom_corrupt_rle_fragments_are_errors_naming_frame_and_segment() {
    let dir = scratch();
    let header = |segments: u32, offsets: &[u32], data: &[u8]| formats::rle_header_and(segments, offsets, data);
    let cases: [(Vec<u8>, &str); 7] = [
        // The fuzzer's minimal input: 1 × 1 grey, one segment said to start at byte 81.
        (header(1, &[81], &[]), "segment 0 at bytes 81..64 is not within the 64-byte fragment"),
        (vec![1, 0, 0, 0, 64, 0], "a fragment of 6 bytes cannot hold the 64-byte RLE header"),
        (header(u32::MAX, &[64], &[0, 7]), "4294967295 segments, 1 expected"),
        (header(2, &[64, 66], &[0, 7, 0, 7]), "2 segments, 1 expected"),
        (header(1, &[0], &[0, 7]), "segment 0 at bytes 0..66"),
        // A literal run of 5 bytes with 1 left.
        (header(1, &[64], &[4, 7]), "runs past the end of the segment"),
        // Decodes to 2 of the 4 bytes of a 2 × 2 frame.
        (header(1, &[64], &[0, 7, 0, 7]), "decodes to 2 bytes, 4 expected"),
    ];
    for (i, (fragment, expected)) in cases.into_iter().enumerate() {
        let (rows, columns) = if i == 6 { (2, 2) } else { (1, 1) };
        let err = open_dicom(dir.path(), &rle_file(rows, columns, 1, 8, 1, vec![fragment])).unwrap_err();
        assert!(err.contains("RLE frame 0") && err.contains(expected), "case {i}: {err}");
    }
    // A segment too short to fill its frame is refused before the frame is allocated.
    let planes = [vec![0x81; 16384], vec![0x81, 7], vec![0x81; 16384]].concat();
    let fragment = header(3, &[64, 64 + 16384, 64 + 16386], &planes);
    let err = open_dicom(dir.path(), &rle_file(1024, 1024, 1, 8, 3, vec![fragment])).unwrap_err();
    assert!(err.contains("segment 1 of 2 bytes cannot decode to the 1048576 bytes of a 1024x1024 frame"), "{err}");
}

/// The reader's own RLE decoder (which replaced dicom-pixeldata's for the crash above) gives
/// back the pixels: 8-bit grey over two frames, 16-bit grey (without a window, its whole range
/// spread over 8 bits), RGB as luma.
#[test]
fn dicom_rle_decodes_grey_16_bit_and_rgb() {
    let dir = scratch();
    let play = |bytes: &[u8]| -> Vec<PixelData> {
        let path = dir.path().join("rle.dcm");
        std::fs::write(&path, bytes).unwrap();
        let options = DicomOptions { pace: Pace::Fast, looping: false, roi_px: None, spacing_mm: None };
        let mut source = DicomCineSource::open(&path, options).unwrap();
        let f = source.format();
        let pool = PixelPool::new(f.pixel_format, f.width * f.height, 1);
        let mut out = Vec::new();
        while source.wait_next(&mut Clock::mock(), &|| true).unwrap() == Next::Ready {
            let mut frame = Frame::new(pool.try_acquire().unwrap());
            source.fill(&mut frame).unwrap();
            out.push(match frame.image.pixels.data_mut() {
                PixelData::Gray8(v) => PixelData::Gray8(v[..f.width * f.height].to_vec()),
                PixelData::Gray16(v) => PixelData::Gray16(v[..f.width * f.height].to_vec()),
            });
        }
        out
    };
    // Runs and literals both: a flat row, then a ramp.
    let grey: Vec<u8> = (0..2 * 3 * 200).map(|i| if i % 200 < 90 { 7 } else { (i * 13 % 251) as u8 }).collect();
    let fragments = grey.chunks(600).map(|f| formats::rle_encode(f, 1, 1)).collect();
    let frames = play(&rle_file(3, 200, 2, 8, 1, fragments));
    assert_eq!(frames, vec![PixelData::Gray8(grey[..600].to_vec()), PixelData::Gray8(grey[600..].to_vec())]);

    let values: Vec<u16> = (0..12u16).map(|v| v * 4099).collect();
    let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let frames = play(&rle_file(3, 4, 1, 16, 1, vec![formats::rle_encode(&le, 1, 2)]));
    let grey = values.iter().map(|&v| (f64::from(v) * 255.0 / 65535.0).round() as u8).collect();
    assert_eq!(frames, vec![PixelData::Gray8(grey)]);

    let rgb = [255u8, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
    let frames = play(&rle_file(2, 2, 1, 8, 3, vec![formats::rle_encode(&rgb, 3, 1)]));
    assert_eq!(frames, vec![PixelData::Gray8(vec![76, 150, 29, 18])]);
}

/// Sets the value of a US element `(group, element)` of an explicit-VR file.
fn patch_us(file: &mut [u8], group: u16, element: u16, value: u16) {
    let mut tag = Vec::new();
    tag.extend_from_slice(&group.to_le_bytes());
    tag.extend_from_slice(&element.to_le_bytes());
    tag.extend_from_slice(b"US\x02\x00");
    let at = file.windows(8).position(|w| w == tag).expect("the element is in the file") + 8;
    file[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

/// Found by `dicom_mutated`: Rows and Columns set to 65535 in the JPEG cine made the decoder
/// fill a 4 GiB buffer (over 2 s) before anything was checked, and `dicom_structured` reached
/// 6 GiB through Number of Frames (and 256 MiB through 43863 samples per pixel); the size check
/// ran only after decoding. Sizes are now checked from the header first: frame sides, sample
/// layout, frames against the fragments that must hold them, and the decoded size against what
/// the compressed bytes can give.
#[test]
fn dicom_declared_sizes_are_refused_before_decoding() {
    let dir = scratch();
    let jpeg = std::fs::read(fixture("dicom/us_cine_jpeg.dcm")).unwrap();
    let mut huge = jpeg.clone();
    patch_us(&mut huge, 0x0028, 0x0010, 65535);
    patch_us(&mut huge, 0x0028, 0x0011, 65535);
    let err = open_dicom(dir.path(), &huge).unwrap_err();
    assert!(err.contains("Rows 65535 × Columns 65535: frames are at most 8192 pixels a side"), "{err}");
    // Within the side cap, a size no compressed data of this length can hold.
    patch_us(&mut huge, 0x0028, 0x0010, 8192);
    patch_us(&mut huge, 0x0028, 0x0011, 8192);
    let err = open_dicom(dir.path(), &huge).unwrap_err();
    assert!(err.contains("frames of 8192x8192") && err.contains("cannot come from"), "{err}");
    // Sample layouts no grey frame is made of are refused before decoding.
    let mut odd = formats::DicomSpec::grey8(2, 2, 1, vec![0; 28]);
    odd.samples = 7;
    let err = open_dicom(dir.path(), &formats::dicom_bytes(&odd)).unwrap_err();
    assert!(err.contains("unsupported pixels: 8 bits, 7 samples per pixel"), "{err}");

    let many = formats::dicom_bytes(&formats::DicomSpec::grey8(64, 64, 4_000_000, vec![0; 64]));
    let err = open_dicom(dir.path(), &many).unwrap_err();
    assert!(err.contains("4000000 frames of 64x64") && err.contains("too large to hold in memory"), "{err}");

    let fragments = vec![formats::rle_encode(&[0; 16], 1, 1)];
    let err = open_dicom(dir.path(), &rle_file(4, 4, 3, 8, 1, fragments)).unwrap_err();
    assert!(err.contains("Number of Frames is 3 but the pixel data holds 1 fragments"), "{err}");
}

/// Found by `dicom_mutated` (16 to 29 times per 5-minute run): the JPEG codec copies each
/// decoded frame into a buffer sized from Rows and Columns without checking, so frames larger
/// than the header says made it panic (`adapters/jpeg.rs:77`). The reader first caught the panic
/// (it still does, for any other codec panic); the frame-header check now refuses such a file
/// before decoding.
#[test]
fn dicom_jpeg_frames_larger_than_the_header_are_an_error() {
    let dir = scratch();
    let mut short = std::fs::read(fixture("dicom/us_cine_jpeg.dcm")).unwrap();
    patch_us(&mut short, 0x0028, 0x0010, 10);
    let err = open_dicom(dir.path(), &short).unwrap_err();
    assert!(err.contains("JPEG frame header 0 says 64x48 with 1 components; the DICOM header says 64x10"), "{err}");
}

/// Found in review (an overflow the release fuzz runs cannot see): a Frame Time of 1e300 ms
/// made the paced release time overflow u64 (a panic where overflow is checked). Implausible
/// times now fall back to the next timing source; release times saturate.
#[test]
fn dicom_absurd_frame_times_fall_back() {
    let dir = scratch();
    for (time, vector) in [(Some("1e300"), None), (None, Some("0\\1e300\\5")), (Some("inf"), Some("0\\nan\\1"))] {
        let mut spec = formats::DicomSpec::grey8(2, 2, 3, vec![9; 12]);
        spec.frame_time_ms = time.map(str::to_string);
        spec.frame_time_vector = vector.map(str::to_string);
        let bytes = formats::dicom_bytes(&spec);
        assert!(open_dicom(dir.path(), &bytes).is_ok());
        let path = dir.path().join("times.dcm");
        std::fs::write(&path, &bytes).unwrap();
        let options = DicomOptions { pace: Pace::Recorded, looping: true, roi_px: None, spacing_mm: None };
        let source = DicomCineSource::open(&path, options).unwrap();
        assert!((source.frame_time_s(1) - 1.0 / 30.0).abs() < 1e-12, "{time:?} {vector:?}");
    }
}

/// Found in review (an overflow): an ultrasound region whose Max X1 is the largest i64 (sent as
/// IS text) overflowed computing the crop width. Such a region is now ignored.
#[test]
fn dicom_region_bounds_past_i64_are_ignored() {
    let dir = scratch();
    let mut spec = formats::DicomSpec::grey8(4, 6, 1, vec![1; 24]);
    spec.regions.push(formats::RegionSpec {
        bounds: [0, 0, i64::MAX, 3],
        bounds_vr: "IS",
        units: [3, 3],
        delta: [0.01, 0.01],
        kind: None,
    });
    let path = dir.path().join("region.dcm");
    std::fs::write(&path, formats::dicom_bytes(&spec)).unwrap();
    let options = DicomOptions { pace: Pace::Fast, looping: false, roi_px: None, spacing_mm: None };
    let source = DicomCineSource::open(&path, options).unwrap();
    assert_eq!((source.format().width, source.format().height), (6, 4));
}

/// Sets the 4-byte length of the explicit-VR long element `(group, element)` with VR `vr`.
fn patch_long_length(file: &mut [u8], group: u16, element: u16, vr: &[u8; 2], len: u32) -> usize {
    let mut tag = Vec::new();
    tag.extend_from_slice(&group.to_le_bytes());
    tag.extend_from_slice(&element.to_le_bytes());
    tag.extend_from_slice(vr);
    tag.extend_from_slice(&[0, 0]);
    let at = file.windows(8).position(|w| w == tag).expect("the element is in the file");
    file[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
    at
}

/// Found by `dicom_mutated` (a case of 12 s): a length of nearly 4 GiB in the file meta group
/// made dicom-object reserve and zero-fill that much before failing to read it. Every length
/// is now checked against the bytes the file has left, first; the error names element and byte.
#[test]
fn dicom_lengths_past_the_end_of_the_file_are_refused_before_reading() {
    let dir = scratch();
    let clean = formats::dicom_bytes(&formats::DicomSpec::grey8(2, 2, 1, vec![5; 4]));
    let mut meta = clean.clone();
    let at = patch_long_length(&mut meta, 0x0002, 0x0001, b"OB", 0xFFFE_0000);
    let err = fuzz::check_one("dicom", default_limits(), &meta, dicom_target(dir.path())).unwrap_err();
    let left = clean.len() - at - 12;
    assert!(
        err.contains(&format!(
            "element (0002,0001) at byte {at} declares 4294836224 bytes of value, but the file has {left} left"
        )),
        "{err}"
    );

    let mut pixels = clean.clone();
    let at = patch_long_length(&mut pixels, 0x7FE0, 0x0010, b"OB", 0xFFFF_FF00);
    let err = fuzz::check_one("dicom", default_limits(), &pixels, dicom_target(dir.path())).unwrap_err();
    assert!(err.contains(&format!("element (7FE0,0010) at byte {at} declares 4294967040 bytes")), "{err}");
    assert!(fuzz::check_one("dicom", default_limits(), &clean, dicom_target(dir.path())).is_ok());
}

fn read_sequence_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    fuzz::check_one("sequence", default_limits(), bytes, sequence_target(dir, name))
}

/// Found by `nrrd_structured` and `nrrd_mutated` (an overflow, seen with overflow checks on): a
/// plain volume's slice count, the product of its sizes past the second, overflowed.
#[test]
fn nrrd_slice_count_overflow_is_an_error() {
    let dir = scratch();
    let header = "NRRD0004\ntype: unsigned char\nsizes: 1 1 18446744073709551615 2\nencoding: raw\n\n";
    let err = read_sequence_bytes(dir.path(), "case.seq.nrrd", header.as_bytes()).unwrap_err();
    assert!(err.contains("field `sizes`") && err.contains("too many slices"), "{err}");
    // Within range it is still a volume of slices, refused by the frame cap when too many.
    let header = "NRRD0004\ntype: unsigned char\nsizes: 1 1 4294967296 2\nencoding: raw\n\n";
    let err = read_sequence_bytes(dir.path(), "case.seq.nrrd", header.as_bytes()).unwrap_err();
    assert!(err.contains("field `DimSize`") && err.contains("implausibly large"), "{err}");
}

/// Found by `metaimage_mutated`, twice: a data file that cannot be opened
/// (`ElementDataFile =/LOCAL`) or read (`ElementDataFile = /`, a folder) gave an error naming
/// only that path, not the header that points to it.
#[test]
fn metaimage_unreadable_data_file_names_the_header_and_field() {
    let dir = scratch();
    let header = "NDims = 2\nDimSize = 4 3\nElementType = MET_UCHAR\nElementDataFile =/LOCAL\n";
    let err = read_sequence_bytes(dir.path(), "case.mha", header.as_bytes()).unwrap_err();
    assert!(err.contains("case.mha: field `ElementDataFile`: data file /LOCAL:"), "{err}");
    let header = "NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = /\n";
    let err = read_sequence_bytes(dir.path(), "case.mha", header.as_bytes()).unwrap_err();
    assert!(err.contains("case.mha: field `ElementDataFile` (frame 0): data file /:"), "{err}");
}

/// Found by the final long run of `dicom_mutated`: (0028,0103) turned from US into UL with its
/// 2-byte value. dicom-parser reads a UL value as whole 4-byte numbers, none here, and reads
/// the next header from the value's own bytes, where the pixel data's length (0x6000) becomes
/// 0x60000000: it reserved 1.5 GiB. The length check now follows the parser there.
#[test]
fn dicom_numeric_value_of_partial_length_is_followed_as_the_parser_reads_it() {
    let dir = scratch();
    let mut bytes = formats::dicom_bytes(&formats::DicomSpec::grey8(96, 256, 1, vec![5; 0x6000]));
    let mut tag = vec![0x28, 0x00, 0x03, 0x01];
    tag.extend_from_slice(b"US");
    let at = bytes.windows(6).position(|w| w == tag).unwrap();
    bytes[at + 5] = b'L';
    let err = fuzz::check_one("dicom", default_limits(), &bytes, dicom_target(dir.path())).unwrap_err();
    assert!(err.contains("element (0000,7FE0)") && err.contains("declares 1610612736 bytes"), "{err}");
}

/// Found by the final long run of `dicom_mutated` (a hang, aborted after 60 s): the second JPEG
/// stream's frame header said 65535 x 65535 in a 48 x 64 cine, and the JPEG decoder went on
/// decoding 4 G pixels out of padding. Frame headers are now checked against the DICOM header.
#[test]
fn dicom_jpeg_frame_header_larger_than_the_dicom_header_is_refused() {
    let dir = scratch();
    let mut jpeg = std::fs::read(fixture("dicom/us_cine_jpeg.dcm")).unwrap();
    let sof = [0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x30, 0x00, 0x40];
    let second = jpeg.windows(9).enumerate().filter(|(_, w)| *w == sof).nth(1).unwrap().0;
    jpeg[second + 5..second + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let err = open_dicom(dir.path(), &jpeg).unwrap_err();
    assert!(
        err.contains("JPEG frame header 1 says 65535x65535 with 1 components; the DICOM header says 64x48"),
        "{err}"
    );
}

/// Found by the final long run of `dicom_mutated`: the pixel data's tag turned into (7FE1,0010),
/// an OB of undefined length that is no pixel data. dicom-parser reads such an element as a
/// sequence of data-set items (the JPEG bytes read as element headers, one declaring 4 GiB),
/// where the length check had stopped following it. It now walks in as the parser does.
#[test]
fn dicom_undefined_length_element_is_followed_as_a_sequence() {
    let dir = scratch();
    let mut jpeg = std::fs::read(fixture("dicom/us_cine_jpeg.dcm")).unwrap();
    let at = jpeg.windows(6).position(|w| w == b"\xe0\x7f\x10\x00OB").unwrap();
    jpeg[at] = 0xe1;
    let err = fuzz::check_one("dicom", default_limits(), &jpeg, dicom_target(dir.path())).unwrap_err();
    assert!(err.contains("bytes of value, but the file has"), "{err}");
}
