//! Freehand 3D reconstruction: tracked 2D frames (and their label masks) compounded into a voxel
//! grid, reproducing the PLUS toolkit's volume reconstructor (same grid, same pixel placement,
//! same integer compounding and hole filling), in batch (`sonoflow reconstruct`) or live as a
//! pipeline stage.
//!
//! Flow: settings ([`settings`], or a PLUS XML via [`plus_config`]) → per-frame pose
//! ([`poses`]) → output grid ([`grid`]) → allowed pixels per row ([`rows`]) → pixel-to-voxel walk
//! ([`raster`]) → compounding into the grey volume ([`paste`]) and the label volume ([`labels`])
//! → hole filling ([`holes`]). [`batch`] runs it over a recording. [`volume`] reads and writes
//! MetaImage/NRRD volumes; [`surface`] extracts and measures label surfaces.

pub mod batch;
pub mod compare;
pub mod grid;
pub mod holes;
pub mod labels;
pub mod paste;
pub mod plus_config;
pub mod poses;
pub mod raster;
pub mod rows;
pub mod settings;
pub mod stage;

pub mod surface;
pub mod volume;

pub use batch::{FrameCounts, ReconError, Reconstruction, reconstruct_sequence};
pub use grid::{GridError, OutputGrid};
pub use plus_config::{PlusConfig, PlusConfigError, read_plus_config};
pub use settings::{Compounding, HoleFilling, Interpolation, LabelCompounding, ReconSettings};
pub use stage::{ReconSnapshot, ReconstructStage, SnapshotSlot};
