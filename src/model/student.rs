//! The real-time student encoder's committed weights (`engines/student/`): its manifest and a
//! load that checks the file against it (SHA-256, then every tensor's name and shape, none
//! missing, none extra). The weights file has the same format as the teacher's converted file
//! (`weights.rs`); `tools/distill/export.py` writes both it and the manifest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{ManifestError, TensorSpec, read_manifest};
use super::weights::{Weights, WeightsError};

/// The student's folder name under `engines/`.
pub const STUDENT: &str = "student";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentManifest {
    pub name: String,
    pub description: String,
    pub license: String,
    /// The model whose prompt encoder and mask decoder it runs with.
    pub teacher: String,
    pub input_size: usize,
    /// The weights file, beside the manifest.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub params: usize,
    /// Multiply-adds per frame (the GFLOPs figure is twice this).
    pub macs: u64,
    pub tensors: Vec<TensorSpec>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StudentError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{}: {problem} (the file does not match engines/student/manifest.json)", path.display())]
    Mismatch { path: PathBuf, problem: String },
}

impl StudentManifest {
    /// Reads `<dir>/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        read_manifest(dir)
    }

    /// Loads the weights beside the manifest, checked against it.
    pub fn load_weights(&self, dir: &Path) -> Result<Weights, StudentError> {
        let path = dir.join(&self.file);
        let weights = Weights::load_verified(&path, &self.sha256)?;
        let mismatch = |problem: String| StudentError::Mismatch { path: path.clone(), problem };
        if weights.len() != self.tensors.len() {
            return Err(mismatch(format!("{} tensors, the manifest lists {}", weights.len(), self.tensors.len())));
        }
        for spec in &self.tensors {
            weights.expect_shape(&spec.name, &spec.shape)?;
        }
        Ok(weights)
    }
}
