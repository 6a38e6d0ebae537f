//! The stage contract.
//!
//! A stage is built once (its constructor allocates every buffer it will ever need), then called
//! once per frame on its own thread, then stopped. It never stamps time: the runtime does, before
//! and after `process`, so latency is measured in one place. Inside `process` a stage must not
//! allocate, lock, block on I/O or format strings once warmed up.

use serde::{Deserialize, Serialize};

use crate::frame::Frame;

/// What a stage did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The output slot holds a frame for the next stage.
    Emitted,
    /// No output for this frame (e.g. the stage is still gathering frames); the frame is
    /// released and counted as skipped.
    Skipped,
}

/// A stage's failure on one frame. The stage's configured [`ErrorPolicy`] decides what follows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The frame cannot be processed (wrong size, missing transform, ...).
    #[error("frame {seq}: {reason}")]
    BadFrame { seq: u64, reason: String },
    /// The stage itself is in a bad state; a restart may cure it.
    #[error("{0}")]
    Failed(String),
    /// An external device the stage drives failed.
    #[error("device fault: {0}")]
    Device(String),
}

/// What the supervisor does when a stage returns an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Drop the frame, count it, go on with the next one.
    #[default]
    DropFrame,
    /// Drop the frame, stop the stage and build it afresh (up to `pipeline.max_restarts` times,
    /// then safe-stop).
    RestartStage,
    /// Stop the whole pipeline and put every output in its safe state.
    SafeStop,
}

/// One processing stage.
pub trait Stage: Send {
    /// Processes `input`; on success, puts the frame to pass on into `output` and says so.
    fn process(&mut self, input: Frame, output: &mut Option<Frame>) -> Result<Outcome, StageError>;

    /// Releases devices and puts outputs in their safe state. Called once when the stage's
    /// thread ends and before a restart; must be safe to call again.
    fn stop(&mut self) {}
}

/// Builds a stage; called once before the threads start and again on each restart.
pub type StageFactory = Box<dyn FnMut() -> Result<Box<dyn Stage>, StageError> + Send>;
