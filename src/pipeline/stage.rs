//! The stage contract.
//!
//! A stage is built once (its constructor allocates every buffer it will ever need), then called
//! once per frame on its own thread, then stopped. It never stamps time: the runtime does, before
//! and after `process`, so latency is measured in one place. Inside `process` a stage must not
//! allocate, lock, block on I/O or format strings once warmed up.

use serde::{Deserialize, Serialize};

use crate::frame::Frame;

/// A stage's failure on one frame. The stage's configured [`ErrorPolicy`] decides what follows.
/// Each variant prints its own words and keeps its cause as the error's `source()`, so a report
/// or a terminal shows the whole chain once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The frame cannot be processed (wrong size, missing transform, ...).
    #[error("frame {seq}: {reason}")]
    BadFrame { seq: u64, reason: String },
    /// The stage itself is in a bad state; a restart may cure it.
    #[error("{0}")]
    Failed(String),
    /// The stage could not do `what` because of `source`.
    #[error("{what}")]
    Caused {
        what: String,
        #[source]
        source: BoxError,
    },
    /// An external device the stage drives failed.
    #[error("device fault: {0}")]
    Device(String),
}

/// An error and its causes, outermost first, joined by ": " (each level prints only its own
/// words, so nothing repeats).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Any error, kept whole as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StageError {
    /// `what` failed because of `source` (kept as the cause, not flattened into the text).
    pub fn caused(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StageError::Caused { what: what.into(), source: source.into() }
    }
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
    /// Processes `input` and returns the frame to pass on, or `None` when this frame has no
    /// output (the frame is released and counted as skipped).
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError>;

    /// Releases devices and puts outputs in their safe state. Called once when the stage's
    /// thread ends and before a restart; must be safe to call again.
    fn stop(&mut self) {}

    /// The stage's own section of the run report (what it counted and measured), asked for
    /// after each `stop`; the runtime files it under the stage's name without knowing its shape.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Builds a stage; called once before the threads start and again on each restart.
pub type StageFactory = Box<dyn FnMut() -> Result<Box<dyn Stage>, StageError> + Send>;
