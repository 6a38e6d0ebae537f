//! The forbidden-region virtual fixture: a spring that pushes the tool tip out of a safety margin
//! around the anatomy, a damper on approach, and the limits that keep the output gentle.
//!
//! Force (N) = (stiffness × (margin − distance) + damping × approach speed) along the field's
//! push-out direction, inside the margin only; clamped to `max_force_n`; scaled by the
//! segmentation's confidence, and zero (flagged) below the confidence floor. The rate loop then
//! limits how fast the rendered force may change ([`SlewLimiter`]); only a fall to zero (safe
//! state) is immediate.

use crate::geometry::Vec3;

use crate::anatomy::FieldSample;

/// The fixture's gains and limits, with units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixtureGains {
    pub margin_mm: f64,
    pub stiffness_n_per_mm: f64,
    pub damping_n_s_per_mm: f64,
    pub max_force_n: f64,
    /// Below this confidence (0–1) the force is zero and the frame flagged.
    pub confidence_floor: f64,
}

/// What the fixture asks the device to render.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FixtureForce {
    pub force_n: Vec3,
    pub low_confidence: bool,
}

/// The force for a tip at `sample`, moving at `velocity_mm_s`, segmented with `confidence`.
pub fn fixture_force(gains: &FixtureGains, sample: &FieldSample, velocity_mm_s: Vec3, confidence: f64) -> FixtureForce {
    if confidence < gains.confidence_floor {
        return FixtureForce { force_n: Vec3::zeros(), low_confidence: true };
    }
    let penetration_mm = gains.margin_mm - sample.distance_mm;
    if penetration_mm <= 0.0 {
        return FixtureForce::default();
    }
    // Damping resists approach only: pulling the tool back out is never opposed.
    let approach_mm_s = (-velocity_mm_s.dot(&sample.direction)).max(0.0);
    let magnitude = (gains.stiffness_n_per_mm * penetration_mm + gains.damping_n_s_per_mm * approach_mm_s)
        .min(gains.max_force_n)
        * confidence.clamp(0.0, 1.0);
    FixtureForce { force_n: sample.direction * magnitude, low_confidence: false }
}

/// Limits how fast the rendered force changes (N/s), so a new image that moves the target
/// abruptly does not kick the user's hand.
#[derive(Debug, Clone, Copy)]
pub struct SlewLimiter {
    pub max_n_per_s: f64,
    current: Vec3,
}

impl SlewLimiter {
    pub fn new(max_n_per_s: f64) -> Self {
        SlewLimiter { max_n_per_s, current: Vec3::zeros() }
    }

    /// Moves the output towards `target` by at most `max_n_per_s × dt_s` and returns it.
    pub fn step(&mut self, target: Vec3, dt_s: f64) -> Vec3 {
        let delta = target - self.current;
        let step_limit = self.max_n_per_s * dt_s.max(0.0);
        let len = delta.norm();
        let step = if len > step_limit { delta * (step_limit / len) } else { delta };
        self.current += step;
        self.current
    }

    /// Drops the output to zero at once (the safe state never waits for the slew limit).
    pub fn reset(&mut self) {
        self.current = Vec3::zeros();
    }

    pub fn current(&self) -> Vec3 {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAINS: FixtureGains = FixtureGains {
        margin_mm: 5.0,
        stiffness_n_per_mm: 0.4,
        damping_n_s_per_mm: 0.01,
        max_force_n: 1.5,
        confidence_floor: 0.5,
    };

    fn at(distance_mm: f64) -> FieldSample {
        FieldSample { distance_mm, direction: Vec3::z() }
    }

    #[test]
    fn spring_inside_the_margin_only() {
        assert_eq!(fixture_force(&GAINS, &at(6.0), Vec3::zeros(), 1.0).force_n, Vec3::zeros());
        assert_eq!(fixture_force(&GAINS, &at(5.0), Vec3::zeros(), 1.0).force_n, Vec3::zeros());
        let f = fixture_force(&GAINS, &at(3.0), Vec3::zeros(), 1.0);
        assert!((f.force_n[2] - 0.8).abs() < 1e-12, "{f:?}");
        assert_eq!([f.force_n[0], f.force_n[1]], [0.0, 0.0]);
    }

    #[test]
    fn damping_opposes_approach_not_retreat() {
        // Approaching at 20 mm/s (against the push-out direction): 0.4 + 0.2 N.
        let f = fixture_force(&GAINS, &at(4.0), Vec3::new(0.0, 0.0, -20.0), 1.0);
        assert!((f.force_n[2] - 0.6).abs() < 1e-12, "{f:?}");
        let f = fixture_force(&GAINS, &at(4.0), Vec3::new(0.0, 0.0, 20.0), 1.0);
        assert!((f.force_n[2] - 0.4).abs() < 1e-12, "{f:?}");
    }

    #[test]
    fn clamped_then_scaled_by_confidence() {
        // 0.4 × 10 = 4 N, clamped to 1.5 N, times 0.8.
        let f = fixture_force(&GAINS, &at(-5.0), Vec3::zeros(), 0.8);
        assert!((f.force_n[2] - 1.2).abs() < 1e-12, "{f:?}");
        let f = fixture_force(&GAINS, &at(-5.0), Vec3::zeros(), 0.49);
        assert_eq!(f, FixtureForce { force_n: Vec3::zeros(), low_confidence: true });
    }

    #[test]
    fn slew_limit_ramps_up_and_reset_is_immediate() {
        let mut s = SlewLimiter::new(100.0); // 0.1 N per ms
        let target = Vec3::new(0.0, 0.3, 0.4); // |0.5| N
        let first = s.step(target, 0.001);
        assert!((first.norm() - 0.1).abs() < 1e-12);
        assert!((first[1] / first[2] - 0.75).abs() < 1e-12, "keeps the direction");
        for _ in 0..3 {
            s.step(target, 0.001);
        }
        assert!((s.current().norm() - 0.4).abs() < 1e-12);
        assert_eq!(s.step(target, 0.001), target);
        s.reset();
        assert_eq!(s.current(), Vec3::zeros());
    }
}
