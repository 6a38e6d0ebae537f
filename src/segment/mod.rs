//! Segmentation: LiteMedSAM (a distilled Segment-Anything student) on each frame, from a box or
//! point prompt, with tracking from frame to frame.
//!
//! Flow per frame: pre-processing (the official LiteMedSAM letterbox: resize the longest side to
//! 256, min-max normalise, pad) → image encoder → prompt encoder + mask decoder → post-processing
//! (crop the padding, resize the logits back to the frame, threshold).

pub mod attachment;
pub mod cpu;
pub mod graph;
pub mod letterbox;
pub mod model;
pub mod ops;
pub mod postprocess;
pub mod preprocess;
pub mod settings;
pub mod stage;
pub mod tracker;

pub use attachment::{Engine, PromptSource, Segmentation, SegmentationInfo};
pub use letterbox::Letterbox;
pub use postprocess::{PostprocessError, logits_to_frame, mask_bounding_box};
pub use preprocess::{PreprocessError, Preprocessor};
