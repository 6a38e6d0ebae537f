//! The segmented anatomy as stages share it: the signed distance field of a label volume and its
//! exact distance transform, and the slot through which the newest field travels from the stage
//! that builds it (reconstruction) to the stages that query it (haptics). Neutral ground: it
//! depends on neither side, so an upstream stage never imports a downstream one.

pub mod edt;
pub mod field;

use std::sync::Arc;

use crate::pipeline::latest::Latest;

pub use field::{FieldError, FieldSample, PlaneGeometry, VolumeField, nearest_in_plane};

/// Where the newest label volume's distance field is published; a reader takes the newest at its
/// next frame. A shared handle: stages meet through it by type (`pipeline::outputs`).
pub type VolumeSlot = Latest<Arc<VolumeField>>;
