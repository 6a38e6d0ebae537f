//! The `[haptics]` settings beyond those every stage has, with their defaults and range checks.
//! Units are in the names: N, N/mm, N·s/mm, N/s, mm, ms, Hz, baud.

use serde::{Deserialize, Serialize};

use super::force::FixtureGains;
use super::protocol::MAX_WIRE_LEN;

pub const DEFAULT_BAUD_RATE: u32 = 921_600;
pub const DEFAULT_RATE_HZ: f64 = 1000.0;
pub const DEFAULT_WATCHDOG_MS: f64 = 20.0;
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: f64 = 100.0;
pub const DEFAULT_RECONNECT_MIN_MS: f64 = 50.0;
pub const DEFAULT_RECONNECT_MAX_MS: f64 = 2000.0;
pub const DEFAULT_SHUTDOWN_FRAMES: u32 = 20;
pub const DEFAULT_REALTIME_PRIORITY: u8 = 0;
pub const DEFAULT_TOOL_TRANSFORM: &str = "StylusToReference";
pub const DEFAULT_MARGIN_MM: f64 = 5.0;
pub const DEFAULT_STIFFNESS_N_PER_MM: f64 = 0.5;
pub const DEFAULT_DAMPING_N_S_PER_MM: f64 = 0.005;
pub const DEFAULT_MAX_FORCE_N: f64 = 3.0;
pub const DEFAULT_MAX_SLEW_N_PER_S: f64 = 200.0;
pub const DEFAULT_CONFIDENCE_FLOOR: f64 = 0.5;

/// The link must carry this many times the bytes the rate needs (start/stop bits included), so
/// a burst of retransmits or a slow USB frame does not back the loop up.
pub const BAUD_MARGIN: f64 = 1.5;
/// Serial bits per byte: start + 8 data + stop.
const BITS_PER_BYTE: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HapticsSettings {
    /// Serial device of the haptic interface (e.g. `/dev/ttyACM0`); unset: forces are computed
    /// and reported but nothing is sent.
    pub port: Option<String>,
    pub baud_rate: u32,
    /// Force frames per second, independent of the image rate.
    pub rate_hz: f64,
    /// No fresh force target for this long → zero force with the safe-state flag.
    pub watchdog_ms: f64,
    /// No device heartbeat for this long → fault, zero force; 0 disables the check.
    pub heartbeat_timeout_ms: f64,
    /// Reconnect attempts after the port disappears start this far apart and double up to the max.
    pub reconnect_min_ms: f64,
    pub reconnect_max_ms: f64,
    /// Zero-force frames sent before the port closes at shutdown.
    pub shutdown_frames: u32,
    /// SCHED_FIFO priority (1–99) for the force thread, so image work cannot delay a force
    /// frame; 0 keeps the normal scheduler. Needs CAP_SYS_NICE (or root); refused → a warning.
    pub realtime_priority: u8,
    /// The tracked tool, `<Tool>To<Frame>`; forces are expressed in `<Frame>`.
    pub tool_transform: String,
    /// Tip position in the tool's own frame.
    pub tip_offset_mm: [f64; 3],
    /// Label values that count as the protected structure; empty: every non-zero label.
    pub structure_labels: Vec<u8>,
    pub margin_mm: f64,
    pub stiffness_n_per_mm: f64,
    pub damping_n_s_per_mm: f64,
    pub max_force_n: f64,
    pub max_slew_n_per_s: f64,
    /// Segmentation confidence (0–1) under which the force is zero and flagged.
    pub confidence_floor: f64,
}

impl Default for HapticsSettings {
    fn default() -> Self {
        HapticsSettings {
            port: None,
            baud_rate: DEFAULT_BAUD_RATE,
            rate_hz: DEFAULT_RATE_HZ,
            watchdog_ms: DEFAULT_WATCHDOG_MS,
            heartbeat_timeout_ms: DEFAULT_HEARTBEAT_TIMEOUT_MS,
            reconnect_min_ms: DEFAULT_RECONNECT_MIN_MS,
            reconnect_max_ms: DEFAULT_RECONNECT_MAX_MS,
            shutdown_frames: DEFAULT_SHUTDOWN_FRAMES,
            realtime_priority: DEFAULT_REALTIME_PRIORITY,
            tool_transform: DEFAULT_TOOL_TRANSFORM.into(),
            tip_offset_mm: [0.0; 3],
            structure_labels: Vec::new(),
            margin_mm: DEFAULT_MARGIN_MM,
            stiffness_n_per_mm: DEFAULT_STIFFNESS_N_PER_MM,
            damping_n_s_per_mm: DEFAULT_DAMPING_N_S_PER_MM,
            max_force_n: DEFAULT_MAX_FORCE_N,
            max_slew_n_per_s: DEFAULT_MAX_SLEW_N_PER_S,
            confidence_floor: DEFAULT_CONFIDENCE_FLOOR,
        }
    }
}

/// A setting out of range: the key (within `[haptics]`) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    pub key: &'static str,
    pub message: String,
}

fn positive(key: &'static str, v: f64) -> Result<(), SettingError> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { Err(SettingError { key, message: format!("{v} must be > 0") }) }
}

fn non_negative(key: &'static str, v: f64) -> Result<(), SettingError> {
    if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(SettingError { key, message: format!("{v} must be >= 0") }) }
}

impl HapticsSettings {
    /// Highest frame rate `baud_rate` carries with [`BAUD_MARGIN`] to spare.
    pub fn max_rate_hz(&self) -> f64 {
        self.baud_rate as f64 / (MAX_WIRE_LEN as f64 * BITS_PER_BYTE * BAUD_MARGIN)
    }

    pub fn period_ns(&self) -> u64 {
        (1e9 / self.rate_hz) as u64
    }

    pub fn split_tool_transform(&self) -> Option<(&str, &str)> {
        crate::geometry::split_transform_name(&self.tool_transform)
    }

    pub fn gains(&self) -> FixtureGains {
        FixtureGains {
            margin_mm: self.margin_mm,
            stiffness_n_per_mm: self.stiffness_n_per_mm,
            damping_n_s_per_mm: self.damping_n_s_per_mm,
            max_force_n: self.max_force_n,
            confidence_floor: self.confidence_floor,
        }
    }

    /// Which labels the fixture protects, as a lookup table.
    pub fn structure_table(&self) -> [bool; 256] {
        let mut table = [self.structure_labels.is_empty(); 256];
        table[0] = false;
        for &l in &self.structure_labels {
            table[l as usize] = true;
        }
        table
    }

    pub fn validate(&self) -> Result<(), SettingError> {
        positive("rate_hz", self.rate_hz)?;
        if self.rate_hz > 10_000.0 {
            return Err(SettingError { key: "rate_hz", message: format!("{} is over 10000 Hz", self.rate_hz) });
        }
        positive("watchdog_ms", self.watchdog_ms)?;
        let period_ms = 1e3 / self.rate_hz;
        if self.watchdog_ms < 2.0 * period_ms {
            return Err(SettingError {
                key: "watchdog_ms",
                message: format!(
                    "{} ms is shorter than two force periods ({:.3} ms)",
                    self.watchdog_ms,
                    2.0 * period_ms
                ),
            });
        }
        non_negative("heartbeat_timeout_ms", self.heartbeat_timeout_ms)?;
        positive("reconnect_min_ms", self.reconnect_min_ms)?;
        if !(self.reconnect_max_ms.is_finite() && self.reconnect_max_ms >= self.reconnect_min_ms) {
            return Err(SettingError {
                key: "reconnect_max_ms",
                message: format!(
                    "{} must be at least reconnect_min_ms ({})",
                    self.reconnect_max_ms, self.reconnect_min_ms
                ),
            });
        }
        if self.shutdown_frames == 0 || self.shutdown_frames > 10_000 {
            return Err(SettingError {
                key: "shutdown_frames",
                message: format!(
                    "{} must be 1..=10000: the device must see zero force before the port closes",
                    self.shutdown_frames
                ),
            });
        }
        if self.realtime_priority > 99 {
            return Err(SettingError {
                key: "realtime_priority",
                message: format!("{} is outside 0..=99", self.realtime_priority),
            });
        }
        if self.split_tool_transform().is_none() {
            return Err(SettingError {
                key: "tool_transform",
                message: format!("\"{}\" is not a <Tool>To<Frame> name such as StylusToReference", self.tool_transform),
            });
        }
        if self.tip_offset_mm.iter().any(|v| !v.is_finite()) {
            return Err(SettingError { key: "tip_offset_mm", message: "must be finite".into() });
        }
        if self.structure_labels.contains(&0) {
            return Err(SettingError { key: "structure_labels", message: "0 is background, not a structure".into() });
        }
        non_negative("margin_mm", self.margin_mm)?;
        non_negative("stiffness_n_per_mm", self.stiffness_n_per_mm)?;
        non_negative("damping_n_s_per_mm", self.damping_n_s_per_mm)?;
        non_negative("max_force_n", self.max_force_n)?;
        positive("max_slew_n_per_s", self.max_slew_n_per_s)?;
        if !(0.0..=1.0).contains(&self.confidence_floor) {
            return Err(SettingError {
                key: "confidence_floor",
                message: format!("{} is outside 0..=1", self.confidence_floor),
            });
        }
        if self.port.is_some() && self.rate_hz > self.max_rate_hz() {
            return Err(SettingError {
                key: "baud_rate",
                message: format!(
                    "{} baud carries at most {:.0} frames/s of {MAX_WIRE_LEN} bytes with a {BAUD_MARGIN}x margin; \
                     rate_hz is {}: raise the baud rate or lower the rate",
                    self.baud_rate,
                    self.max_rate_hz(),
                    self.rate_hz
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = HapticsSettings { port: Some("/dev/ttyACM0".into()), ..Default::default() };
        s.validate().unwrap();
    }

    #[test]
    fn a_baud_rate_too_slow_for_the_rate_is_refused() {
        let s = HapticsSettings { port: Some("/dev/ttyUSB0".into()), baud_rate: 115_200, ..Default::default() };
        let e = s.validate().unwrap_err();
        assert_eq!(e.key, "baud_rate");
        assert!(e.message.contains("at most 219 frames/s"), "{e}");
        // Without a port nothing is sent, so the baud rate does not matter.
        HapticsSettings { baud_rate: 115_200, ..Default::default() }.validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |s: HapticsSettings| s.validate().unwrap_err().key;
        assert_eq!(bad(HapticsSettings { watchdog_ms: 1.0, ..Default::default() }), "watchdog_ms");
        assert_eq!(bad(HapticsSettings { tool_transform: "Stylus".into(), ..Default::default() }), "tool_transform");
        assert_eq!(bad(HapticsSettings { structure_labels: vec![0], ..Default::default() }), "structure_labels");
        assert_eq!(bad(HapticsSettings { confidence_floor: 1.5, ..Default::default() }), "confidence_floor");
        assert_eq!(bad(HapticsSettings { reconnect_max_ms: 10.0, ..Default::default() }), "reconnect_max_ms");
    }

    #[test]
    fn structure_table_defaults_to_every_non_zero_label() {
        let t = HapticsSettings::default().structure_table();
        assert!(!t[0] && t[1] && t[255]);
        let t = HapticsSettings { structure_labels: vec![2], ..Default::default() }.structure_table();
        assert!(!t[1] && t[2]);
    }
}
