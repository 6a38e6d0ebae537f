//! Freehand 3D reconstruction: volumes, their files, and the surfaces and measures of label volumes.

pub mod surface;
pub mod volume;
