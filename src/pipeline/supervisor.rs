//! Shared run state: why the pipeline is stopping, and the faults that stages reported.
//!
//! Stage threads read the stop state with one atomic load per frame; faults are rare and go
//! through a mutex, which keeps the hot path free of locks.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

/// Why a run ended. Ordered by severity: a more severe reason replaces a milder one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Still running.
    Running = 0,
    /// The source reached its end.
    EndOfInput = 1,
    /// The configured frame count was reached.
    FrameLimit = 2,
    /// Ctrl-C or a stop request from the host.
    Interrupted = 3,
    /// The source failed (corrupt file, device gone); frames already captured are still processed.
    SourceError = 4,
    /// A stage fault put the pipeline in its safe state.
    SafeStop = 5,
}

impl StopReason {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => StopReason::Running,
            1 => StopReason::EndOfInput,
            2 => StopReason::FrameLimit,
            3 => StopReason::Interrupted,
            4 => StopReason::SourceError,
            _ => StopReason::SafeStop,
        }
    }
}

/// What the supervisor did about a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// The frame was dropped; the stage goes on.
    DropFrame,
    /// The stage was built afresh.
    RestartStage,
    /// The whole pipeline stopped and put its outputs in their safe state.
    SafeStop,
    /// The source failed: capture stops, the frames in flight are still processed.
    Stop,
}

impl FaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::DropFrame => "drop-frame",
            FaultAction::RestartStage => "restart-stage",
            FaultAction::SafeStop => "safe-stop",
            FaultAction::Stop => "stop",
        }
    }
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage error as recorded for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub stage: String,
    pub seq: u64,
    /// The error and its causes, outermost first, joined by ": ".
    pub error: String,
    pub action: FaultAction,
}

/// Faults kept in the report; later ones are counted only, so a stage failing on every frame
/// cannot grow memory without bound.
pub const MAX_RECORDED_FAULTS: usize = 256;

#[derive(Debug, Default)]
struct Shared {
    reason: AtomicU8,
    /// Faults so far, readable without the lock (a device loop may check it every tick).
    fault_count: AtomicU64,
    faults: Mutex<(Vec<Fault>, u64)>,
}

/// Cheap to clone; every thread holds one.
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the pipeline to stop for `reason`, unless it is already stopping for a graver one.
    pub fn request_stop(&self, reason: StopReason) {
        self.shared.reason.fetch_max(reason as u8, Ordering::SeqCst);
    }

    pub fn reason(&self) -> StopReason {
        StopReason::from_u8(self.shared.reason.load(Ordering::Acquire))
    }

    /// True while the source should keep producing frames.
    pub fn running(&self) -> bool {
        self.reason() == StopReason::Running
    }

    /// True once a safe-stop was requested: stages discard what is queued instead of processing it.
    pub fn safe_stopped(&self) -> bool {
        self.reason() == StopReason::SafeStop
    }

    pub fn record_fault(&self, fault: Fault) {
        tracing::warn!(stage = %fault.stage, seq = fault.seq, action = %fault.action, "stage error: {}", fault.error);
        self.shared.fault_count.fetch_add(1, Ordering::AcqRel);
        let mut faults = self.shared.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        faults.1 += 1;
        if faults.0.len() < MAX_RECORDED_FAULTS {
            faults.0.push(fault);
        }
    }

    /// Faults recorded so far; lock-free.
    pub fn fault_count(&self) -> u64 {
        self.shared.fault_count.load(Ordering::Acquire)
    }

    /// The recorded faults and the total count.
    pub fn faults(&self) -> (Vec<Fault>, u64) {
        self.shared.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graver_reason_wins() {
        let s = Supervisor::new();
        assert!(s.running());
        s.request_stop(StopReason::SafeStop);
        s.request_stop(StopReason::EndOfInput);
        assert_eq!(s.reason(), StopReason::SafeStop);
        assert!(s.safe_stopped());
    }
}
