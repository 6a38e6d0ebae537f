//! Where each frame's pixels go: `ImageToReference`, resolved per frame through the frame's own
//! tracked transforms plus the fixed calibration (`ImageToProbe` from the PLUS XML), e.g.
//! inverse(ReferenceToTracker) · ProbeToTracker · ImageToProbe.
//!
//! When the tracker's clock is offset from the image clock (`pose_time_offset_s`), the pose of an
//! image is interpolated between the two tracked frames around its corrected time: rotation by
//! quaternion slerp, translation linearly, each tracked transform on its own (as PLUS does).

use std::sync::Arc;

use crate::frame::{Matrix4, NamedTransform, TransformSet, TransformStatus};
use crate::geometry::{ChainError, resolve};
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

/// Rigid transform at fraction `s` between `a` and `b`.
pub fn interpolate_rigid(a: &Matrix4, b: &Matrix4, s: f64) -> Matrix4 {
    let (qa, mut qb) = (quaternion(a), quaternion(b));
    let mut d: f64 = (0..4).map(|k| qa[k] * qb[k]).sum();
    if d < 0.0 {
        qb = qb.map(|v| -v);
        d = -d;
    }
    let q = if d > 0.9995 {
        // Nearly the same rotation: normalised linear blend avoids dividing by sin(≈0).
        let q: [f64; 4] = std::array::from_fn(|k| qa[k] + (qb[k] - qa[k]) * s);
        let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        q.map(|v| v / n)
    } else {
        let theta = d.acos();
        let (wa, wb) = (((1.0 - s) * theta).sin() / theta.sin(), (s * theta).sin() / theta.sin());
        std::array::from_fn(|k| qa[k] * wa + qb[k] * wb)
    };
    let mut m = rotation(q);
    for r in 0..3 {
        m[r * 4 + 3] = a[r * 4 + 3] + (b[r * 4 + 3] - a[r * 4 + 3]) * s;
    }
    m
}

/// Unit quaternion (w, x, y, z) of a rotation matrix's upper 3×3.
fn quaternion(m: &Matrix4) -> [f64; 4] {
    let e = |r: usize, c: usize| m[r * 4 + c];
    let trace = e(0, 0) + e(1, 1) + e(2, 2);
    let q = if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [0.25 * s, (e(2, 1) - e(1, 2)) / s, (e(0, 2) - e(2, 0)) / s, (e(1, 0) - e(0, 1)) / s]
    } else if e(0, 0) > e(1, 1) && e(0, 0) > e(2, 2) {
        let s = (1.0 + e(0, 0) - e(1, 1) - e(2, 2)).sqrt() * 2.0;
        [(e(2, 1) - e(1, 2)) / s, 0.25 * s, (e(0, 1) + e(1, 0)) / s, (e(0, 2) + e(2, 0)) / s]
    } else if e(1, 1) > e(2, 2) {
        let s = (1.0 + e(1, 1) - e(0, 0) - e(2, 2)).sqrt() * 2.0;
        [(e(0, 2) - e(2, 0)) / s, (e(0, 1) + e(1, 0)) / s, 0.25 * s, (e(1, 2) + e(2, 1)) / s]
    } else {
        let s = (1.0 + e(2, 2) - e(0, 0) - e(1, 1)).sqrt() * 2.0;
        [(e(1, 0) - e(0, 1)) / s, (e(0, 2) + e(2, 0)) / s, (e(1, 2) + e(2, 1)) / s, 0.25 * s]
    };
    let n = q.iter().map(|v| v * v).sum::<f64>().sqrt();
    q.map(|v| v / n)
}

fn rotation([w, x, y, z]: [f64; 4]) -> Matrix4 {
    [
        1.0 - 2.0 * (y * y + z * z),
        2.0 * (x * y - w * z),
        2.0 * (x * z + w * y),
        0.0,
        2.0 * (x * y + w * z),
        1.0 - 2.0 * (x * x + z * z),
        2.0 * (y * z - w * x),
        0.0,
        2.0 * (x * z - w * y),
        2.0 * (y * z + w * x),
        1.0 - 2.0 * (x * x + y * y),
        0.0,
        0.0,
        0.0,
        0.0,
        1.0,
    ]
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
        let probe = rigid(2, 0.3, [10.0, 0.0, 5.0]);
        let reference = rigid(0, -0.2, [1.0, 2.0, 3.0]);
        let mut calibration = rigid(1, 0.1, [4.0, 5.0, 6.0]);
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
            named("ProbeToTracker", rigid(0, 0.0, [0.0; 3]), TransformStatus::Invalid),
            named("ReferenceToTracker", rigid(0, 0.0, [0.0; 3]), TransformStatus::Ok),
            named("ImageToProbe", rigid(0, 0.0, [0.0; 3]), TransformStatus::Ok),
        ];
        let set = transform_set(&frame, &[]).unwrap();
        assert!(matches!(image_to_reference(&set, "Image", "Reference"), Err(PoseError::Chain(_))));
    }

    #[test]
    fn interpolation_halves_rotation_and_translation() {
        let a = rigid(2, 0.2, [0.0, 0.0, 0.0]);
        let b = rigid(2, 0.6, [10.0, -4.0, 2.0]);
        let m = interpolate_rigid(&a, &b, 0.5);
        let expected = rigid(2, 0.4, [5.0, -2.0, 1.0]);
        assert!(m.iter().zip(expected).all(|(x, y)| (x - y).abs() < 1e-12), "{m:?}");
        let p = apply(&interpolate_rigid(&a, &b, 0.0), [1.0, 2.0, 3.0]);
        let q = apply(&a, [1.0, 2.0, 3.0]);
        assert!((0..3).all(|k| (p[k] - q[k]).abs() < 1e-12));
    }

    #[test]
    fn offset_poses_come_from_the_neighbouring_frames() {
        let frame = |i: usize, x: f64| FrameMeta {
            index: i,
            timestamp_s: i as f64,
            image_ok: true,
            transforms: vec![named("ImageToReference", rigid(0, 0.0, [x, 0.0, 0.0]), TransformStatus::Ok)],
            fields: Vec::new(),
        };
        let frames = [frame(0, 0.0), frame(1, 10.0), frame(2, 20.0)];
        let poses = recording_poses(&frames, &[], "Image", "Reference", 0.25);
        assert!((poses[0].as_ref().unwrap()[3] - 2.5).abs() < 1e-12);
        assert!((poses[1].as_ref().unwrap()[3] - 12.5).abs() < 1e-12);
        assert_eq!(poses[2], Err(PoseError::OutsideTrackedTime));
    }
}
