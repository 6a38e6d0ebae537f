//! How a stage kind plugs into the pipeline: one [`StageKind`] per kind, listed in a registry
//! the caller hands to the build (`sonoflow::stages::REGISTRY` for the product's own chain).
//!
//! A kind says its name (its config section), its default error policy and how to make its
//! factory from the validated config; its report section comes from [`Stage::report`] and what it
//! shares with other stages or the caller goes through [`Outputs`]. The runtime, the report and
//! the build code therefore never name a stage: adding one touches only its own module and the
//! registry list.
//!
//! [`Stage::report`]: crate::pipeline::stage::Stage::report

use crate::capture::SourceFormat;
use crate::config::Config;
use crate::pipeline::outputs::Outputs;
use crate::pipeline::stage::{BoxError, ErrorPolicy, StageFactory};
use crate::pipeline::supervisor::Supervisor;

/// What a stage kind's builder gets.
pub struct BuildContext<'a> {
    pub config: &'a Config,
    /// The source's frames (size, pixel format), known once it is open.
    pub format: SourceFormat,
    pub supervisor: &'a Supervisor,
    pub outputs: &'a mut Outputs,
}

/// One stage kind.
pub struct StageKind {
    /// The config section and the name in reports and traces.
    pub name: &'static str,
    /// The policy when the config leaves `on_error` unset.
    pub default_policy: ErrorPolicy,
    /// Frames the queue in front of the stage holds when the config leaves `queue_capacity` unset.
    pub default_queue_capacity: usize,
    /// Makes the stage's factory; runs once, before any thread starts, so whatever can fail on
    /// the environment fails here.
    pub build: fn(&mut BuildContext) -> Result<StageFactory, BoxError>,
}

impl std::fmt::Debug for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageKind")
            .field("name", &self.name)
            .field("default_policy", &self.default_policy)
            .field("default_queue_capacity", &self.default_queue_capacity)
            .finish()
    }
}

/// The kind called `name`.
pub fn find<'r>(registry: &'r [StageKind], name: &str) -> Option<&'r StageKind> {
    registry.iter().find(|k| k.name == name)
}
