//! Force feedback: a forbidden-region virtual fixture around the segmented anatomy, rendered by a
//! haptic device over a serial link at 1 kHz, with a watchdog that falls to zero force whenever
//! the pipeline cannot vouch for its data.
//!
//! - [`stage`]: the pipeline stage; per image frame, tool pose + distance field → force target.
//! - distance from the tip to the structure (label volume or frame mask): `crate::anatomy`.
//! - [`force`]: the fixture's spring, damper, clamps and slew limit.
//! - [`rate_loop`], [`driver`]: the 1 kHz loop, its safe state, and the thread that runs it.
//! - [`protocol`], [`cobs`], [`crc`], [`link`]: the wire format (`docs/haptics-protocol.md`) and
//!   the serial link with reconnects.
//! - [`device_sim`]: the device side, for rigs and tests (`sonoflow haptics-sim`).

pub mod cobs;
pub mod crc;
pub mod device_sim;
pub mod driver;
pub mod force;
pub mod link;
pub mod protocol;
pub mod rate_loop;
pub mod settings;
pub mod stage;

pub use settings::HapticsSettings;
pub use stage::{HapticsReport, HapticsStage};
