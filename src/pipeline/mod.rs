//! The stage runtime: stage contract, threads, bounded queues, supervisor, clock and metrics.

pub mod build;
pub mod clock;
pub mod latest;
pub mod metrics;
pub mod outputs;
pub mod passthrough;
pub mod queue;
pub mod recording;
pub mod registry;
pub mod report;
pub mod runtime;
pub mod stage;
pub mod supervisor;

pub use clock::Clock;
pub use outputs::Outputs;
pub use queue::QueuePolicy;
pub use registry::{BuildContext, StageKind};
pub use report::{Report, TraceEvent};
pub use runtime::{PipelineError, PipelineSpec, RunResult, StageSpec, run};
pub use stage::{BoxError, ErrorPolicy, Stage, StageError, StageFactory, error_chain};
pub use supervisor::{Fault, FaultAction, StopReason, Supervisor};
