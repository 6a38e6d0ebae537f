//! The pipeline clock: real monotonic time for live runs, virtual time for deterministic replays.
//!
//! Every thread owns its own [`Clock`] (made with [`Clock::fork`]). The real clock reads a shared
//! monotonic epoch. The mock clock is a per-thread virtual time that moves only when the thread
//! sleeps, observes a frame stamped by another thread (Lamport-style: time never runs backwards
//! along a frame's path), or reads the clock (a fixed 1 µs tick, so stamps stay strictly ordered).
//! Because each thread's reads happen in a fixed order for a given input, replays driven by the
//! mock clock give identical stamps run after run, whatever the OS scheduler does.

use std::time::{Duration, Instant};

/// Longest uninterrupted sleep: how soon a stop request is noticed while pacing.
const SLEEP_SLICE: Duration = Duration::from_millis(20);

/// Virtual time that one clock read costs under the mock clock.
pub const MOCK_TICK_NS: u64 = 1_000;

#[derive(Debug, Clone)]
pub enum Clock {
    /// Real time since a shared epoch.
    Monotonic { epoch: Instant },
    /// Virtual time of this thread.
    Mock { now_ns: u64 },
}

impl Clock {
    pub fn monotonic() -> Self {
        Clock::Monotonic { epoch: Instant::now() }
    }

    pub fn mock() -> Self {
        Clock::Mock { now_ns: 0 }
    }

    pub fn is_mock(&self) -> bool {
        matches!(self, Clock::Mock { .. })
    }

    /// A clock for another thread: same epoch (real) or same starting time (mock).
    pub fn fork(&self) -> Self {
        self.clone()
    }

    /// Current time in ns since the epoch.
    pub fn now_ns(&mut self) -> u64 {
        match self {
            Clock::Monotonic { epoch } => epoch.elapsed().as_nanos() as u64,
            Clock::Mock { now_ns } => {
                *now_ns += MOCK_TICK_NS;
                *now_ns
            }
        }
    }

    /// Tells the clock that an event stamped `t_ns` (by another thread) has happened, so that
    /// later readings on this thread come after it. A no-op on the real clock.
    pub fn observe(&mut self, t_ns: u64) {
        if let Clock::Mock { now_ns } = self {
            *now_ns = (*now_ns).max(t_ns);
        }
    }

    /// Waits until `t_ns`, or until `keep_waiting` says to stop (looked at every 20 ms, so a
    /// long gap in a recording never delays a Ctrl-C); false when cut short. The mock clock jumps
    /// to `t_ns` at once.
    pub fn sleep_until_ns(&mut self, t_ns: u64, keep_waiting: &dyn Fn() -> bool) -> bool {
        match self {
            Clock::Monotonic { epoch } => loop {
                let now = epoch.elapsed().as_nanos() as u64;
                if now >= t_ns {
                    return true;
                }
                if !keep_waiting() {
                    return false;
                }
                std::thread::sleep(Duration::from_nanos(t_ns - now).min(SLEEP_SLICE));
            },
            Clock::Mock { now_ns } => {
                *now_ns = (*now_ns).max(t_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_ticks_and_never_runs_backwards() {
        let mut clock = Clock::mock();
        assert_eq!(clock.now_ns(), MOCK_TICK_NS);
        assert!(clock.sleep_until_ns(50_000, &|| true));
        assert_eq!(clock.now_ns(), 51_000);
        clock.observe(10_000);
        assert_eq!(clock.now_ns(), 52_000);
        clock.observe(100_000);
        assert_eq!(clock.now_ns(), 101_000);
    }

    #[test]
    fn monotonic_clock_sleeps_until_deadline() {
        let mut clock = Clock::monotonic();
        let target = clock.now_ns() + 2_000_000;
        assert!(clock.sleep_until_ns(target, &|| true));
        assert!(clock.now_ns() >= target);
        // A stop request cuts a long wait short.
        let far = clock.now_ns() + 3_600_000_000_000;
        assert!(!clock.sleep_until_ns(far, &|| false));
        assert!(clock.now_ns() < far);
    }
}
