//! sonoflow: a real-time intraoperative ultrasound pipeline.
//!
//! Research software, not a medical device.

pub mod anatomy;
pub mod capture;
pub mod config;
pub mod frame;
pub mod geometry;
pub mod haptics;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod recon;
pub mod segment;
pub mod stages;
