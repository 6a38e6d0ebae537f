//! The decision the 1 kHz loop makes every period: which force to send, or the safe state.
//!
//! Pure (time comes in as an argument), so the watchdog is tested with exact virtual times. The
//! image pipeline hands over [`ForceTarget`]s at 20–60 Hz; each tick takes the latest one and
//! sends its force through the slew limiter — unless the data cannot be vouched for, in which case
//! it sends zero force with the safe-state flag at once, and keeps doing so until fresh data
//! arrives. Reasons, in order of precedence, are the variants of [`SafeReason`].

use serde::Serialize;

use super::force::SlewLimiter;
use super::protocol::{ForceFrame, flags};
use crate::pipeline::metrics::{LatencyRecorder, LatencySummary};

/// Why the loop is in its safe state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SafeReason {
    /// The pipeline is stopping (end of input, Ctrl-C, safe-stop).
    PipelineStopped,
    /// The device reports a fault or its emergency stop.
    DeviceFault,
    /// The device's heartbeats stopped.
    DeviceSilent,
    /// A stage of the pipeline reported an error after this target was made.
    UpstreamFault,
    /// No force target yet.
    NoTarget,
    /// The latest target is older than the watchdog timeout (the pipeline stalled).
    Stale,
    /// The tool's transform is missing or flagged invalid (occluded).
    ToolNotTracked,
    /// No structure in the frame's mask (or no mask), or no placement of the image.
    SegmentationLost,
}

impl SafeReason {
    pub const ALL: [SafeReason; 8] = [
        SafeReason::PipelineStopped,
        SafeReason::DeviceFault,
        SafeReason::DeviceSilent,
        SafeReason::UpstreamFault,
        SafeReason::NoTarget,
        SafeReason::Stale,
        SafeReason::ToolNotTracked,
        SafeReason::SegmentationLost,
    ];

    /// Reasons that are faults (reported with the fault flag), not just missing data.
    fn is_fault(self) -> bool {
        matches!(self, SafeReason::DeviceFault | SafeReason::DeviceSilent | SafeReason::UpstreamFault)
    }
}

/// What the image pipeline asks the loop to render, made once per image frame.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ForceTarget {
    pub force_n: [f64; 3],
    pub low_confidence: bool,
    /// The stage already knows the data is unusable (tool occluded, segmentation lost).
    pub hold: Option<SafeReason>,
    pub image_seq: u64,
    /// Pipeline faults counted when the target was made; a later fault invalidates it.
    pub faults_seen: u64,
}

/// What the rest of the system says at this tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickInputs {
    pub now_ns: u64,
    pub pipeline_running: bool,
    pub faults: u64,
    pub device_silent: bool,
    pub device_fault: bool,
}

/// Counts kept by the loop, reported at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SafeStateReport {
    pub frames: u64,
    pub safe_frames: u64,
    pub low_confidence_frames: u64,
    /// Times the loop entered its safe state, by reason.
    pub entries: Vec<(SafeReason, u64)>,
    /// For each watchdog trip: time from the last fresh target to the first safe frame.
    pub stale_to_safe: LatencySummary,
}

pub struct RateLoop {
    period_ns: u64,
    period_s: f64,
    watchdog_ns: u64,
    slew: SlewLimiter,
    /// The latest target and when the loop received it.
    latest: Option<(ForceTarget, u64)>,
    seq: u32,
    start_ns: Option<u64>,
    safe: Option<SafeReason>,
    frames: u64,
    safe_frames: u64,
    low_confidence_frames: u64,
    entries: [u64; SafeReason::ALL.len()],
    stale_to_safe: LatencyRecorder,
}

impl RateLoop {
    pub fn new(period_ns: u64, watchdog_ns: u64, max_slew_n_per_s: f64) -> Self {
        RateLoop {
            period_ns,
            period_s: period_ns as f64 * 1e-9,
            watchdog_ns,
            slew: SlewLimiter::new(max_slew_n_per_s),
            latest: None,
            seq: 0,
            start_ns: None,
            safe: None,
            frames: 0,
            safe_frames: 0,
            low_confidence_frames: 0,
            entries: [0; SafeReason::ALL.len()],
            stale_to_safe: LatencyRecorder::new(),
        }
    }

    /// A new target from the pipeline, received at `now_ns`.
    pub fn offer(&mut self, target: ForceTarget, now_ns: u64) {
        self.latest = Some((target, now_ns));
    }

    /// The safe-state reason at this tick, if any.
    fn reason(&self, inputs: &TickInputs) -> Option<SafeReason> {
        if !inputs.pipeline_running {
            return Some(SafeReason::PipelineStopped);
        }
        if inputs.device_fault {
            return Some(SafeReason::DeviceFault);
        }
        if inputs.device_silent {
            return Some(SafeReason::DeviceSilent);
        }
        let Some((target, received_ns)) = self.latest else {
            return Some(SafeReason::NoTarget);
        };
        if target.faults_seen < inputs.faults {
            return Some(SafeReason::UpstreamFault);
        }
        // Half a period of slack: the tick nearest the deadline trips it, even when scheduling
        // jitter has it land a few µs early, so the safe frame never comes a period late.
        if inputs.now_ns.saturating_sub(received_ns) + self.period_ns / 2 >= self.watchdog_ns {
            return Some(SafeReason::Stale);
        }
        target.hold
    }

    /// The frame to send at this tick.
    pub fn tick(&mut self, inputs: &TickInputs) -> ForceFrame {
        let start = *self.start_ns.get_or_insert(inputs.now_ns);
        let reason = self.reason(inputs);
        if let Some(r) = reason.filter(|_| reason != self.safe) {
            self.entries[SafeReason::ALL.iter().position(|&x| x == r).expect("every reason is listed")] += 1;
            if let (SafeReason::Stale, Some((_, received_ns))) = (r, self.latest) {
                self.stale_to_safe.record_ns(inputs.now_ns - received_ns);
            }
        }
        self.safe = reason;
        let (target, _) = self.latest.unwrap_or_default();
        let (force, frame_flags) = match reason {
            Some(r) => {
                self.slew.reset();
                self.safe_frames += 1;
                ([0.0; 3], flags::SAFE_STATE | if r.is_fault() { flags::FAULT } else { 0 })
            }
            None => {
                let f: [f64; 3] = self.slew.step(target.force_n.into(), self.period_s).into();
                self.low_confidence_frames += u64::from(target.low_confidence);
                (f, flags::ENABLED | if target.low_confidence { flags::LOW_CONFIDENCE } else { 0 })
            }
        };
        self.frames += 1;
        let frame = ForceFrame {
            seq: self.seq,
            time_us: (inputs.now_ns - start) / 1000,
            force_n: force.map(|v| v as f32),
            flags: frame_flags,
            image_seq: target.image_seq as u32,
        };
        self.seq = self.seq.wrapping_add(1);
        frame
    }

    pub fn safe_reason(&self) -> Option<SafeReason> {
        self.safe
    }

    pub fn report(&self) -> SafeStateReport {
        SafeStateReport {
            frames: self.frames,
            safe_frames: self.safe_frames,
            low_confidence_frames: self.low_confidence_frames,
            entries: SafeReason::ALL.iter().copied().zip(self.entries).filter(|(_, n)| *n > 0).collect(),
            stale_to_safe: self.stale_to_safe.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn running(now_ns: u64) -> TickInputs {
        TickInputs { now_ns, pipeline_running: true, faults: 0, device_silent: false, device_fault: false }
    }

    fn target(force_z: f64, image_seq: u64) -> ForceTarget {
        ForceTarget { force_n: [0.0, 0.0, force_z], image_seq, ..Default::default() }
    }

    fn is_safe(f: &ForceFrame) -> bool {
        f.flags & flags::SAFE_STATE != 0 && f.force_n == [0.0; 3]
    }

    #[test]
    fn safe_until_the_first_target_then_slew_limited() {
        let mut l = RateLoop::new(MS, 20 * MS, 100.0);
        assert!(is_safe(&l.tick(&running(0))));
        l.offer(target(0.25, 7), MS);
        let f = l.tick(&running(MS));
        assert_eq!(f.flags, flags::ENABLED);
        assert!((f.force_n[2] - 0.1).abs() < 1e-6, "{f:?}");
        assert_eq!(f.image_seq, 7);
        assert_eq!(f.seq, 1);
        assert_eq!(f.time_us, 1000);
        l.tick(&running(2 * MS));
        let f = l.tick(&running(3 * MS));
        assert!((f.force_n[2] - 0.25).abs() < 1e-6, "{f:?}");
    }

    #[test]
    fn a_stall_gives_zero_force_within_the_timeout_and_fresh_data_recovers() {
        let mut l = RateLoop::new(MS, 20 * MS, 1e9);
        l.offer(target(1.0, 1), 0);
        // Ticks every 1 ms; the pipeline stalls after the target at t = 0.
        let mut first_safe = None;
        for k in 0..40u64 {
            let f = l.tick(&running(k * MS));
            if is_safe(&f) && first_safe.is_none() {
                first_safe = Some(k * MS);
            }
            if first_safe.is_some() {
                assert!(is_safe(&f), "stays safe until fresh data (tick {k})");
            }
        }
        // The tick 20 ms after the last data is already safe; the one before is not.
        assert_eq!(first_safe, Some(20 * MS));
        assert_eq!(l.report().entries, vec![(SafeReason::Stale, 1)]);
        assert_eq!(l.report().stale_to_safe.count, 1);
        l.offer(target(1.0, 2), 40 * MS);
        let f = l.tick(&running(40 * MS));
        assert_eq!(f.flags, flags::ENABLED);
        assert_eq!(f.force_n[2], 1.0);
    }

    #[test]
    fn a_tick_landing_just_before_the_deadline_trips_it() {
        let mut l = RateLoop::new(MS, 20 * MS, 1e9);
        l.offer(target(1.0, 1), 0);
        assert!(!is_safe(&l.tick(&running(19 * MS))));
        // Scheduling jitter: the 20 ms tick runs 3 µs early; it must not wait for the 21 ms one.
        assert!(is_safe(&l.tick(&running(20 * MS - 3_000))));
    }

    #[test]
    fn faults_and_stops_take_precedence() {
        let mut l = RateLoop::new(MS, 20 * MS, 1e9);
        l.offer(target(1.0, 1), 0);
        let f = l.tick(&TickInputs { faults: 1, ..running(MS) });
        assert!(is_safe(&f) && f.flags & flags::FAULT != 0);
        assert_eq!(l.safe_reason(), Some(SafeReason::UpstreamFault));
        // A target made after the fault clears it.
        l.offer(ForceTarget { faults_seen: 1, ..target(1.0, 2) }, 2 * MS);
        assert!(!is_safe(&l.tick(&TickInputs { faults: 1, ..running(2 * MS) })));
        assert!(is_safe(&l.tick(&TickInputs { device_silent: true, faults: 1, ..running(3 * MS) })));
        assert_eq!(l.safe_reason(), Some(SafeReason::DeviceSilent));
        assert!(is_safe(&l.tick(&TickInputs { pipeline_running: false, faults: 1, ..running(4 * MS) })));
        assert_eq!(l.safe_reason(), Some(SafeReason::PipelineStopped));
    }

    #[test]
    fn a_held_target_is_safe_and_low_confidence_is_flagged() {
        let mut l = RateLoop::new(MS, 20 * MS, 1e9);
        l.offer(ForceTarget { hold: Some(SafeReason::ToolNotTracked), ..target(1.0, 1) }, 0);
        assert!(is_safe(&l.tick(&running(0))));
        l.offer(ForceTarget { low_confidence: true, ..target(0.0, 2) }, MS);
        let f = l.tick(&running(MS));
        assert_eq!(f.flags, flags::ENABLED | flags::LOW_CONFIDENCE);
    }
}
