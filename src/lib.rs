//! sonoflow: a real-time intraoperative ultrasound pipeline.
//!
//! Research software, not a medical device.

pub mod frame;
pub mod io;
