//! The force thread: ticks at the configured rate (1 kHz by default) whatever the image rate,
//! takes the newest [`ForceTarget`] from a lock-free hand-over slot, lets the [`RateLoop`] decide,
//! sends the frame and reads the device. On stop it sends zero-force frames before closing.
//!
//! Timing: sleeps until shortly before each deadline, then spins the last stretch, because a
//! plain sleep overshoots by 50–100 µs on a stock kernel. A tick that comes more than a period
//! late is not made up for (no bursts to the device); it is counted as an overrun.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::link::{Link, LinkReport};
use super::protocol::Message;
use super::rate_loop::{ForceTarget, RateLoop, SafeStateReport, TickInputs};
use crate::pipeline::latest::Latest;
use crate::pipeline::metrics::{LatencyRecorder, LatencySummary};
use crate::pipeline::supervisor::Supervisor;

/// How long before a deadline the thread stops sleeping and spins.
const SPIN_NS: u64 = 150_000;

/// Where the pipeline leaves the newest target for the force thread (the newest image wins, as
/// everywhere in the pipeline).
pub type TargetSlot = Latest<ForceTarget>;

/// What the force thread measured, for the run report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriverReport {
    pub rate_hz: f64,
    /// Time between consecutive frames.
    pub period: LatencySummary,
    /// |period − nominal period|.
    pub period_deviation: LatencySummary,
    /// Ticks that came more than a whole period late.
    pub overruns: u64,
    /// The scheduling the force thread got: "SCHED_FIFO <priority>", or why not.
    pub scheduling: String,
    pub safe_state: SafeStateReport,
    pub link: LinkReport,
}

pub struct DriverSettings {
    pub period_ns: u64,
    pub watchdog_ns: u64,
    pub max_slew_n_per_s: f64,
    pub shutdown_frames: u32,
    /// SCHED_FIFO priority for the force thread (1–99); 0 leaves the normal scheduler.
    pub realtime_priority: u8,
}

/// A running force thread.
pub struct Driver {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<DriverReport>>,
}

impl Driver {
    /// Starts the thread; `link` must already be connected (so a wrong port fails the build).
    pub fn start(
        settings: DriverSettings,
        link: Link,
        targets: TargetSlot,
        supervisor: Supervisor,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("haptics-1khz".into())
            .spawn(move || run(settings, link, targets, supervisor, &stop_flag))?;
        Ok(Driver { stop, handle: Some(handle) })
    }

    /// Sends the shutdown zero-force frames, closes the port and returns the measurements.
    /// Idempotent: later calls return None.
    pub fn stop(&mut self) -> Option<DriverReport> {
        self.stop.store(true, Ordering::Release);
        let handle = self.handle.take()?;
        match handle.join() {
            Ok(report) => Some(report),
            Err(_) => {
                tracing::error!("the haptics force thread panicked");
                None
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sleep_until(epoch: Instant, deadline_ns: u64) {
    let now = epoch.elapsed().as_nanos() as u64;
    if deadline_ns > now + SPIN_NS {
        std::thread::sleep(Duration::from_nanos(deadline_ns - now - SPIN_NS));
    }
    while (epoch.elapsed().as_nanos() as u64) < deadline_ns {
        std::hint::spin_loop();
    }
}

/// Asks for real-time scheduling of the calling thread; says what it got.
fn request_realtime(priority: u8) -> String {
    if priority == 0 {
        return "normal (realtime_priority = 0)".into();
    }
    let param = libc::sched_param { sched_priority: i32::from(priority) };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        format!("SCHED_FIFO {priority}")
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!("the haptics force thread runs without real-time priority: {e}");
        format!("normal (SCHED_FIFO {priority} refused: {e})")
    }
}

fn run(
    settings: DriverSettings,
    mut link: Link,
    targets: TargetSlot,
    supervisor: Supervisor,
    stop: &AtomicBool,
) -> DriverReport {
    let scheduling = request_realtime(settings.realtime_priority);
    let epoch = Instant::now();
    let mut rate_loop = RateLoop::new(settings.period_ns, settings.watchdog_ns, settings.max_slew_n_per_s);
    let (mut period, mut deviation) = (LatencyRecorder::new(), LatencyRecorder::new());
    let mut overruns = 0;
    let mut previous_ns: Option<u64> = None;
    let mut deadline_ns = 0;
    let mut shutdown_left = None;
    loop {
        sleep_until(epoch, deadline_ns);
        let now_ns = epoch.elapsed().as_nanos() as u64;
        if let Some(p) = previous_ns {
            period.record_ns(now_ns - p);
            deviation.record_ns((now_ns - p).abs_diff(settings.period_ns));
        }
        previous_ns = Some(now_ns);
        while let Some(t) = targets.take() {
            rate_loop.offer(t, now_ns);
        }
        link.poll(now_ns);
        let stopping = stop.load(Ordering::Acquire);
        let inputs = TickInputs {
            now_ns,
            pipeline_running: supervisor.running() && !stopping,
            faults: supervisor.fault_count(),
            device_silent: link.device_silent(),
            device_fault: link.device_fault(),
        };
        let frame = rate_loop.tick(&inputs);
        link.send(&Message::Force(frame), now_ns);
        if stopping {
            // Zero-force frames (the stop made the loop safe) before the port closes.
            let left = shutdown_left.get_or_insert(settings.shutdown_frames);
            *left -= 1;
            if *left == 0 {
                break;
            }
        }
        deadline_ns += settings.period_ns;
        if now_ns > deadline_ns + settings.period_ns {
            overruns += 1;
            // Skip the missed ticks rather than sending a burst.
            deadline_ns = now_ns - (now_ns - deadline_ns) % settings.period_ns + settings.period_ns;
        }
    }
    link.close();
    DriverReport {
        rate_hz: 1e9 / settings.period_ns as f64,
        period: period.summary(),
        period_deviation: deviation.summary(),
        overruns,
        scheduling,
        safe_state: rate_loop.report(),
        link: link.report(),
    }
}
