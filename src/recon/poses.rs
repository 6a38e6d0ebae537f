//! Where each frame's pixels go: `ImageToReference`, resolved per frame through the frame's own
//! tracked transforms plus the fixed calibration (`ImageToProbe` from the PLUS XML), e.g.
//! inverse(ReferenceToTracker) · ProbeToTracker · ImageToProbe.
//!
//! When the tracker's clock is offset from the image clock (`pose_time_offset_s`), the pose of an
//! image is interpolated between the two tracked frames around its corrected time: rotation by
//! quaternion slerp, translation linearly, each tracked transform on its own (as PLUS does).

use std::sync::Arc;

use crate::frame::{Matrix4, NamedTransform, TransformSet, TransformStatus};
use nalgebra::{Isometry3, Rotation3, UnitQuaternion};

use crate::geometry::{ChainError, Vec3, from_na, resolve, to_na};
use crate::io::plus::FrameMeta;

/// Why a frame has no pose.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PoseError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the frame carries more transforms than a frame can hold")]
    TooManyTransforms,
    #[error("no tracked frames on both sides of the pose time")]
    OutsideTrackedTime,
    #[error("the image itself is flagged INVALID")]
    ImageInvalid,
}

/// A frame's transforms with the calibration added (a transform the frame carries itself wins).
pub fn transform_set(transforms: &[NamedTransform], calibration: &[NamedTransform]) -> Result<TransformSet, PoseError> {
    let mut set = TransformSet::default();
    for t in calibration.iter().filter(|c| !transforms.iter().any(|t| t.name == c.name)).chain(transforms) {
        set.set(&t.name, t.matrix, t.status).map_err(|_| PoseError::TooManyTransforms)?;
    }
    Ok(set)
}

/// `image`To`reference` of one frame.
pub fn image_to_reference(set: &TransformSet, image: &str, reference: &str) -> Result<Matrix4, PoseError> {
    Ok(resolve(set, image, reference)?)
}

/// The pose of every frame of a recording (None: skipped, with the reason), interpolated at
/// `timestamp + offset_s` when `offset_s` is not zero.
pub fn recording_poses(
    frames: &[FrameMeta],
    calibration: &[NamedTransform],
    image: &str,
    reference: &str,
    offset_s: f64,
) -> Vec<Result<Matrix4, PoseError>> {
    frames
        .iter()
        .map(|f| {
            if !f.image_ok {
                return Err(PoseError::ImageInvalid);
            }
            if offset_s == 0.0 {
                return image_to_reference(&transform_set(&f.transforms, calibration)?, image, reference);
            }
            let t = f.timestamp_s + offset_s;
            // Frames are in time order in a recording; find the pair around t.
            let after = frames.partition_point(|g| g.timestamp_s < t);
            let (a, b) = match after {
                0 if frames[0].timestamp_s == t => (&frames[0], &frames[0]),
                0 => return Err(PoseError::OutsideTrackedTime),
                i if i == frames.len() => return Err(PoseError::OutsideTrackedTime),
                i => (&frames[i - 1], &frames[i]),
            };
            let span = b.timestamp_s - a.timestamp_s;
            let s = if span > 0.0 { (t - a.timestamp_s) / span } else { 0.0 };
            let blended = interpolate_transforms(&a.transforms, &b.transforms, s);
            image_to_reference(&transform_set(&blended, calibration)?, image, reference)
        })
        .collect()
}

/// Each transform present in both lists, blended at fraction `s` from `a` to `b`; a transform
/// that is INVALID on either side is INVALID.
pub fn interpolate_transforms(a: &[NamedTransform], b: &[NamedTransform], s: f64) -> Vec<NamedTransform> {
    a.iter()
        .filter_map(|ta| {
            let tb = b.iter().find(|tb| tb.name == ta.name)?;
            let ok = ta.status == TransformStatus::Ok && tb.status == TransformStatus::Ok;
            Some(NamedTransform {
                name: Arc::clone(&ta.name),
                matrix: interpolate_rigid(&ta.matrix, &tb.matrix, s),
                status: if ok { TransformStatus::Ok } else { TransformStatus::Invalid },
            })
        })
        .collect()
}

/// Above this quaternion dot (rotations within about 3.6° of each other) slerp's `sin θ` divisor
/// is mostly rounding error, and a normalised linear blend is the better answer.
const NEARLY_SAME_ROTATION: f64 = 0.9995;

/// Rigid transform at fraction `s` between `a` and `b`: rotation by slerp along the shorter
/// arc, translation linearly.
pub fn interpolate_rigid(a: &Matrix4, b: &Matrix4, s: f64) -> Matrix4 {
    let (qa, mut qb) = (rotation_of(a), rotation_of(b));
    // q and −q are the same rotation: take the `qb` on `qa`'s side, so the blend turns the
    // shorter way round (`try_slerp` would flip it too; the linear blend would not).
    if qa.dot(&qb) < 0.0 {
        qb = UnitQuaternion::new_unchecked(-qb.into_inner());
    }
    // Nearly equal rotations blend linearly. They must be caught here: `try_slerp` returns `qa`
    // unblended once the dot rounds to 1, and declines (None) only just short of that. Rotations
    // 180° apart are 90° apart as quaternions, which slerp handles (either way round is as short).
    let slerp = if qa.dot(&qb) > NEARLY_SAME_ROTATION { None } else { qa.try_slerp(&qb, s, f64::EPSILON) };
    // try_slerp divides by sin θ taken as √(1 − cos²θ), which near the threshold is off by up to
    // 1e-13 of its size: renormalising takes that common factor out again.
    let q = slerp.map_or_else(|| qa.nlerp(&qb, s), |q| UnitQuaternion::new_normalize(q.into_inner()));
    let (ta, tb) = (translation_of(a), translation_of(b));
    let t = ta + (tb - ta) * s;
    from_na(&Isometry3::from_parts(t.into(), q).to_homogeneous())
}

/// The rotation of a transform's upper 3×3, renormalised: a tracker's matrix, printed to a few
/// digits in a recording, is orthonormal only nearly.
fn rotation_of(m: &Matrix4) -> UnitQuaternion<f64> {
    let r = Rotation3::from_matrix_unchecked(to_na(m).fixed_view::<3, 3>(0, 0).into_owned());
    UnitQuaternion::new_normalize(UnitQuaternion::from_rotation_matrix(&r).into_inner())
}

fn translation_of(m: &Matrix4) -> Vec3 {
    Vec3::new(m[3], m[7], m[11])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{affine_inverse, apply, mat_mul, rigid};

    fn named(name: &str, matrix: Matrix4, status: TransformStatus) -> NamedTransform {
        NamedTransform { name: Arc::from(name), matrix, status }
    }

    #[test]
    fn chain_uses_calibration_and_inverts_reference() {
        let probe = rigid(2, 0.3, Vec3::new(10.0, 0.0, 5.0));
        let reference = rigid(0, -0.2, Vec3::new(1.0, 2.0, 3.0));
        let mut calibration = rigid(1, 0.1, Vec3::new(4.0, 5.0, 6.0));
        for r in 0..3 {
            calibration[r * 4] *= 0.2;
            calibration[r * 4 + 1] *= 0.3;
        }
        let frame = [
            named("ProbeToTracker", probe, TransformStatus::Ok),
            named("ReferenceToTracker", reference, TransformStatus::Ok),
        ];
        let set = transform_set(&frame, &[named("ImageToProbe", calibration, TransformStatus::Ok)]).unwrap();
        let m = image_to_reference(&set, "Image", "Reference").unwrap();
        let expected = mat_mul(&affine_inverse(&reference).unwrap(), &mat_mul(&probe, &calibration));
        assert!(m.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn invalid_tracking_is_an_error() {
        let frame = [
            named("ProbeToTracker", rigid(0, 0.0, Vec3::zeros()), TransformStatus::Invalid),
            named("ReferenceToTracker", rigid(0, 0.0, Vec3::zeros()), TransformStatus::Ok),
            named("ImageToProbe", rigid(0, 0.0, Vec3::zeros()), TransformStatus::Ok),
        ];
        let set = transform_set(&frame, &[]).unwrap();
        assert!(matches!(image_to_reference(&set, "Image", "Reference"), Err(PoseError::Chain(_))));
    }

    #[test]
    fn interpolation_halves_rotation_and_translation() {
        let a = rigid(2, 0.2, Vec3::new(0.0, 0.0, 0.0));
        let b = rigid(2, 0.6, Vec3::new(10.0, -4.0, 2.0));
        let m = interpolate_rigid(&a, &b, 0.5);
        let expected = rigid(2, 0.4, Vec3::new(5.0, -2.0, 1.0));
        assert!(m.iter().zip(expected).all(|(x, y)| (x - y).abs() < 1e-12), "{m:?}");
        let p = apply(&interpolate_rigid(&a, &b, 0.0), Vec3::new(1.0, 2.0, 3.0));
        let q = apply(&a, Vec3::new(1.0, 2.0, 3.0));
        assert!((0..3).all(|k| (p[k] - q[k]).abs() < 1e-12));
    }

    #[test]
    fn interpolation_takes_the_shorter_arc_and_hits_both_ends() {
        let close = |m: &Matrix4, e: &Matrix4| m.iter().zip(e).all(|(x, y)| (x - y).abs() < 1e-12);
        // -2 and +2 rad about z are 4 rad apart one way round and 2π − 4 ≈ 2.28 rad the other
        // (more than 90° either way): the shorter arc passes through π, not through 0.
        let a = rigid(2, -2.0, Vec3::new(1.0, 2.0, 3.0));
        let b = rigid(2, 2.0, Vec3::new(-3.0, 0.0, 5.0));
        assert!(close(&interpolate_rigid(&a, &b, 0.0), &a));
        assert!(close(&interpolate_rigid(&a, &b, 1.0), &b));
        let half = interpolate_rigid(&a, &b, 0.5);
        assert!(close(&half, &rigid(2, std::f64::consts::PI, Vec3::new(-1.0, 1.0, 4.0))), "{half:?}");
        // Along the way the turn from `a` grows evenly, backwards through −π.
        for k in 1..10 {
            let s = k as f64 / 10.0;
            let expected = rigid(
                2,
                -2.0 - s * (std::f64::consts::TAU - 4.0),
                Vec3::new(1.0 - 4.0 * s, 2.0 - 2.0 * s, 3.0 + 2.0 * s),
            );
            assert!(close(&interpolate_rigid(&a, &b, s), &expected), "s = {s}");
        }
        // A turn of 120° about x, less than the half turn: straight along it.
        let c = rigid(0, 0.1, Vec3::zeros());
        let d = rigid(0, 0.1 + 2.0 * std::f64::consts::FRAC_PI_3, Vec3::zeros());
        assert!(close(&interpolate_rigid(&c, &d, 0.25), &rigid(0, 0.1 + std::f64::consts::FRAC_PI_6, Vec3::zeros())));
        assert!(close(&interpolate_rigid(&c, &d, 1.0), &d));
    }

    #[test]
    fn nearly_equal_rotations_blend_without_dividing_by_zero() {
        let a = rigid(1, 0.3, Vec3::zeros());
        let b = rigid(1, 0.3 + 1e-9, Vec3::new(2.0, 0.0, 0.0));
        let m = interpolate_rigid(&a, &b, 0.5);
        assert!(m.iter().all(|v| v.is_finite()));
        let e = rigid(1, 0.3 + 5e-10, Vec3::new(1.0, 0.0, 0.0));
        assert!(m.iter().zip(e).all(|(x, y)| (x - y).abs() < 1e-12), "{m:?} {e:?}");
        assert!(interpolate_rigid(&a, &a, 0.7).iter().zip(a).all(|(x, y)| (x - y).abs() < 1e-15));
    }

    #[test]
    fn offset_poses_come_from_the_neighbouring_frames() {
        let frame = |i: usize, x: f64| FrameMeta {
            index: i,
            timestamp_s: i as f64,
            image_ok: true,
            transforms: vec![named("ImageToReference", rigid(0, 0.0, Vec3::new(x, 0.0, 0.0)), TransformStatus::Ok)],
            fields: Vec::new(),
        };
        let frames = [frame(0, 0.0), frame(1, 10.0), frame(2, 20.0)];
        let poses = recording_poses(&frames, &[], "Image", "Reference", 0.25);
        assert!((poses[0].as_ref().unwrap()[3] - 2.5).abs() < 1e-12);
        assert!((poses[1].as_ref().unwrap()[3] - 12.5).abs() < 1e-12);
        assert_eq!(poses[2], Err(PoseError::OutsideTrackedTime));
    }
}
