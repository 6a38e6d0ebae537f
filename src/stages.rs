//! The product's stage kinds, in one list: the registry `sonoflow run` builds its chain from.
//! Each kind lives in its own module (its name, default error policy and builder); adding a
//! stage adds a line here and touches no runtime, report or build code.
//!
//! `preprocess` and `threshold` are pass-throughs for now (segmentation does its own
//! pre-processing; masks come from the model's logit-0 cut until the threshold stage lands):
//! they are registered explicitly, so an unknown section is an error, never a silent pass-through.

use crate::pipeline::passthrough::PassThroughStage;
use crate::pipeline::registry::{BuildContext, StageKind};
use crate::pipeline::stage::{BoxError, ErrorPolicy, Stage, StageFactory};

pub const REGISTRY: &[StageKind] = &[
    StageKind {
        name: "preprocess",
        default_policy: ErrorPolicy::DropFrame,
        default_queue_capacity: 4,
        build: pass_through,
    },
    crate::segment::stage::KIND,
    StageKind {
        name: "threshold",
        default_policy: ErrorPolicy::DropFrame,
        default_queue_capacity: 4,
        build: pass_through,
    },
    crate::recon::stage::KIND,
    crate::haptics::stage::KIND,
];

fn pass_through(_: &mut BuildContext) -> Result<StageFactory, BoxError> {
    Ok(Box::new(|| Ok(Box::new(PassThroughStage) as Box<dyn Stage>)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_config_section_has_a_kind_and_haptics_safe_stops() {
        for (name, _) in Config::default().stages() {
            assert!(crate::pipeline::registry::find(REGISTRY, name).is_some(), "no kind for [{name}]");
        }
        let haptics = crate::pipeline::registry::find(REGISTRY, "haptics").unwrap();
        assert_eq!(haptics.default_policy, ErrorPolicy::SafeStop);
    }
}
