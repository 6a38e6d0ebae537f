//! Counter-based random numbers: the value for (seed, frame, pixel) is a pure function of those
//! three, so any frame renders identically on its own, in any order, on any machine.

/// SplitMix64 finaliser: a strong 64-bit mix (Steele et al., 2014).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stream of uniform numbers for one (seed, frame).
pub struct Stream {
    state: u64,
}

impl Stream {
    pub fn new(seed: u64, frame: u64) -> Self {
        Stream { state: mix(seed ^ mix(frame.wrapping_add(0x5eed))) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in (0, 1]: never 0, so its logarithm is finite.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Two independent standard normal numbers (Box–Muller).
    pub fn normal_pair(&mut self) -> (f64, f64) {
        let r = (-2.0 * self.unit().ln()).sqrt();
        let theta = std::f64::consts::TAU * self.unit();
        (r * theta.cos(), r * theta.sin())
    }
}

/// A uniform number in [lo, hi) fixed by (seed, salt): used to jitter the phantom per seed.
pub fn uniform(seed: u64, salt: u64, lo: f64, hi: f64) -> f64 {
    let u = (mix(seed ^ mix(salt)) >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_repeat_for_the_same_seed_and_frame_only() {
        let first4 = |seed, frame| {
            let mut s = Stream::new(seed, frame);
            (0..4).map(|_| s.next_u64()).collect::<Vec<u64>>()
        };
        let (a, b, c, d) = (first4(1, 5), first4(1, 5), first4(1, 6), first4(2, 5));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut s = Stream::new(3, 0);
        let n = 100_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n / 2 {
            let (a, b) = s.normal_pair();
            sum += a + b;
            sq += a * a + b * b;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "{mean} {var}");
    }

    #[test]
    fn uniform_stays_in_range() {
        for salt in 0..100 {
            let v = uniform(9, salt, -2.0, 3.0);
            assert!((-2.0..3.0).contains(&v));
        }
    }
}
