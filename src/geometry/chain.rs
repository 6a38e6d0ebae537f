//! Finds the transform between two coordinate frames from the named transforms a frame carries.
//!
//! Tracked frames carry transforms named PLUS-style, `<From>To<To>` (e.g. `ProbeToTracker`,
//! `ReferenceToTracker`, `ImageToProbe`). A consumer asks for `StylusToReference` and gets the
//! product along the chain `Stylus → Tracker → Reference`, inverting links as needed. The search
//! is a breadth-first walk over at most [`MAX_TRANSFORMS`] links held in fixed arrays, so it
//! never allocates and can run on the hot path.

use std::sync::Arc;

use crate::frame::{IDENTITY, MAX_TRANSFORMS, Matrix4, TransformSet, TransformStatus};

use super::{affine_inverse, mat_mul};

/// Why a transform could not be had. Carries no owned strings (names are the frame's shared
/// `Arc<str>`s) so that an occluded tool, frame after frame, costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The frame's transforms do not connect the two frames (or a name is not `<From>To<To>`).
    #[error("no chain of the frame's transforms connects the two frames")]
    NoPath,
    /// A link on the way is flagged INVALID by the tracker (e.g. the tool is occluded).
    #[error("{0} is not tracked on this frame")]
    NotTracked(Arc<str>),
    /// A link cannot be inverted (a degenerate calibration).
    #[error("{0} cannot be inverted")]
    Singular(Arc<str>),
}

/// Splits `ProbeToTracker` into (`Probe`, `Tracker`): at the first `To` that follows at least one
/// character and is followed by an upper-case letter, so `ToolToReference` splits after `Tool`.
pub fn split_transform_name(name: &str) -> Option<(&str, &str)> {
    let bytes = name.as_bytes();
    (1..bytes.len().saturating_sub(2))
        .find(|&i| &bytes[i..i + 2] == b"To" && bytes[i + 2].is_ascii_uppercase())
        .map(|i| (&name[..i], &name[i + 2..]))
}

/// The transform that maps `from` coordinates into `to` coordinates, e.g.
/// `resolve(set, "Stylus", "Reference")` for `StylusToReference`.
pub fn resolve(set: &TransformSet, from: &str, to: &str) -> Result<Matrix4, ChainError> {
    if from == to {
        return Ok(IDENTITY);
    }
    // Breadth-first search from `to` backwards would work as well; walking from `from` keeps the
    // product easy to read: each step left-multiplies the link that leaves the current frame.
    const MAX_NODES: usize = 2 * MAX_TRANSFORMS + 1;
    let mut nodes: [&str; MAX_NODES] = [""; MAX_NODES];
    // For each node: the node it was reached from and the link used (index, inverted).
    let mut came_from: [(usize, usize, bool); MAX_NODES] = [(0, 0, false); MAX_NODES];
    nodes[0] = from;
    let mut count = 1;
    let mut head = 0;
    let links = || set.iter().enumerate().filter_map(|(i, t)| split_transform_name(&t.name).map(|(a, b)| (i, a, b)));
    let mut found = None;
    while head < count && found.is_none() {
        let here = nodes[head];
        for (index, a, b) in links() {
            let (next, inverted) = match (a == here, b == here) {
                (true, _) => (b, false),
                (_, true) => (a, true),
                _ => continue,
            };
            if nodes[..count].contains(&next) || count == MAX_NODES {
                continue;
            }
            nodes[count] = next;
            came_from[count] = (head, index, inverted);
            count += 1;
            if next == to {
                found = Some(count - 1);
                break;
            }
        }
        head += 1;
    }
    let Some(mut node) = found else {
        return Err(ChainError::NoPath);
    };
    // Walk back from `to`: result = link_n · … · link_1.
    let mut result = IDENTITY;
    while node != 0 {
        let (previous, index, inverted) = came_from[node];
        let link = set.iter().nth(index).expect("index came from iterating the set");
        if link.status != TransformStatus::Ok {
            return Err(ChainError::NotTracked(link.name.clone()));
        }
        let step = if inverted {
            affine_inverse(&link.matrix).ok_or_else(|| ChainError::Singular(link.name.clone()))?
        } else {
            link.matrix
        };
        result = mat_mul(&result, &step);
        node = previous;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{Vec3, apply, rigid};

    fn set_of(items: &[(&str, Matrix4, TransformStatus)]) -> TransformSet {
        let mut set = TransformSet::default();
        for (name, m, status) in items {
            set.set(&Arc::from(*name), *m, *status).unwrap();
        }
        set
    }

    #[test]
    fn splits_plus_names() {
        assert_eq!(split_transform_name("ProbeToTracker"), Some(("Probe", "Tracker")));
        assert_eq!(split_transform_name("ToolToReference"), Some(("Tool", "Reference")));
        assert_eq!(split_transform_name("StylusTipToStylus"), Some(("StylusTip", "Stylus")));
        assert_eq!(split_transform_name("Probe"), None);
        assert_eq!(split_transform_name("Toaster"), None);
    }

    #[test]
    fn composes_and_inverts_along_the_chain() {
        let stylus_to_tracker = rigid(0, 0.3, Vec3::new(10.0, 20.0, 30.0));
        let reference_to_tracker = rigid(2, 1.2, Vec3::new(-5.0, 4.0, 100.0));
        let set = set_of(&[
            ("ReferenceToTracker", reference_to_tracker, TransformStatus::Ok),
            ("StylusToTracker", stylus_to_tracker, TransformStatus::Ok),
        ]);
        let m = resolve(&set, "Stylus", "Reference").unwrap();
        let tip = Vec3::new(1.0, 2.0, 3.0);
        let via_tracker = apply(&affine_inverse(&reference_to_tracker).unwrap(), apply(&stylus_to_tracker, tip));
        assert!((apply(&m, tip) - via_tracker).norm() < 1e-12);
        assert_eq!(resolve(&set, "Tracker", "Tracker").unwrap(), IDENTITY);
    }

    #[test]
    fn an_occluded_link_or_a_missing_one_is_an_error() {
        let set = set_of(&[
            ("ReferenceToTracker", IDENTITY, TransformStatus::Ok),
            ("StylusToTracker", IDENTITY, TransformStatus::Invalid),
        ]);
        assert_eq!(resolve(&set, "Stylus", "Reference"), Err(ChainError::NotTracked("StylusToTracker".into())));
        assert_eq!(resolve(&set, "Probe", "Reference"), Err(ChainError::NoPath));
    }
}
