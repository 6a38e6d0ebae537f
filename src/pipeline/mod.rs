//! The stage runtime: stage contract, threads, bounded queues, supervisor, clock and metrics.

pub mod build;
pub mod clock;
pub mod latest;
pub mod metrics;
pub mod passthrough;
pub mod queue;
pub mod recording;
pub mod report;
pub mod runtime;
pub mod stage;
pub mod supervisor;

pub use clock::Clock;
pub use queue::QueuePolicy;
pub use report::{Report, TraceEvent};
pub use runtime::{PipelineError, PipelineSpec, RunResult, StageSpec, run};
pub use stage::{ErrorPolicy, Outcome, Stage, StageError, StageFactory};
pub use supervisor::{StopReason, Supervisor};
