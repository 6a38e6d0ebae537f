//! The haptics link end to end over a pseudo-terminal: the real force thread at 1 kHz, the real
//! serial code, and the device simulator on the far end with faults injected. Assertions are on
//! what the device received (order, CRC, flags, forces), never on how fast.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sonoflow::haptics::device_sim::{DevicePort, FaultPlan, SimEvent, SimReport, SimSettings, run_device};
use sonoflow::haptics::driver::{Driver, DriverReport, DriverSettings, TargetSlot};
use sonoflow::haptics::link::{Link, SerialConnector};
use sonoflow::haptics::protocol::{ForceFrame, flags};
use sonoflow::haptics::rate_loop::{ForceTarget, SafeReason};
use sonoflow::pipeline::Supervisor;

const MS: u64 = 1_000_000;
const SHUTDOWN_FRAMES: u32 = 20;

struct Device {
    events: Arc<Mutex<Vec<SimEvent>>>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<std::io::Result<SimReport>>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_device(faults: FaultPlan) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haptic-device");
    let (events, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
    let (e, s, link) = (events.clone(), stop.clone(), path.clone());
    let handle = std::thread::spawn(move || {
        let settings = SimSettings { heartbeat_period: Duration::from_millis(10), duration: None, faults };
        run_device(&DevicePort::Pty { link }, &settings, &s, |event| e.lock().unwrap().push(event.clone()))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "the device simulator never made its pty");
        std::thread::sleep(Duration::from_millis(5));
    }
    Device { events, stop, handle, path, _dir: dir }
}

fn start_driver(path: &Path, targets: &TargetSlot, heartbeat_timeout_ns: u64) -> Driver {
    // Generous write timeout: CI machines are shared and the pty must not look unplugged
    // because a write waited a few ms.
    let connector = SerialConnector {
        path: path.display().to_string(),
        baud_rate: 921_600,
        write_timeout: Duration::from_millis(5),
    };
    let mut link = Link::new(Box::new(connector), heartbeat_timeout_ns, (20 * MS, 200 * MS));
    link.connect_now(0).unwrap();
    let settings = DriverSettings {
        period_ns: MS,
        watchdog_ns: 20 * MS,
        max_slew_n_per_s: 1e6,
        shutdown_frames: SHUTDOWN_FRAMES,
        realtime_priority: 0,
    };
    Driver::start(settings, link, targets.clone(), Supervisor::new()).unwrap()
}

/// Puts a fresh 0.5 N target every 5 ms for `duration`, numbering images from `first`.
fn feed(targets: &TargetSlot, first: u64, duration: Duration) -> u64 {
    let end = Instant::now() + duration;
    let mut seq = first;
    while Instant::now() < end {
        targets.put(ForceTarget { force_n: [0.0, 0.0, 0.5], image_seq: seq, ..Default::default() });
        seq += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    seq - 1
}

fn finish(mut driver: Driver, device: Device) -> (DriverReport, Vec<SimEvent>) {
    let report = driver.stop().expect("the force thread reports");
    // Let the device read the shutdown frames before it stops.
    std::thread::sleep(Duration::from_millis(100));
    device.stop.store(true, Ordering::Release);
    device.handle.join().unwrap().unwrap();
    let events = device.events.lock().unwrap().clone();
    (report, events)
}

fn frames(events: &[SimEvent]) -> Vec<(ForceFrame, u32)> {
    events
        .iter()
        .filter_map(|e| if let SimEvent::Frame { frame, gap, .. } = e { Some((*frame, *gap)) } else { None })
        .collect()
}

fn is_safe(f: &ForceFrame) -> bool {
    f.flags & flags::SAFE_STATE != 0 && f.force_n == [0.0; 3]
}

fn pushes(f: &ForceFrame) -> bool {
    f.flags & flags::ENABLED != 0 && f.force_n[2] > 0.0
}

#[test]
fn frames_arrive_in_order_and_a_stall_gives_zero_force_until_fresh_data() {
    let device = start_device(FaultPlan::default());
    let targets = TargetSlot::default();
    let driver = start_driver(&device.path, &targets, 0);
    let last_before_stall = feed(&targets, 1, Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(300)); // the pipeline stalls
    let last = feed(&targets, last_before_stall + 1, Duration::from_millis(300));
    let (report, events) = finish(driver, device);

    assert!(!events.iter().any(|e| matches!(e, SimEvent::Rejected { .. })), "every frame passed its CRC");
    let got = frames(&events);
    assert!(got.len() > 100, "{} frames", got.len());
    assert!(got.iter().all(|(_, gap)| *gap == 0), "no frame lost or reordered");
    for pair in got.windows(2) {
        assert_eq!(pair[1].0.seq, pair[0].0.seq.wrapping_add(1));
    }
    let stalled: Vec<_> = got.iter().filter(|(f, _)| f.image_seq as u64 == last_before_stall).collect();
    let before: Vec<_> = got.iter().filter(|(f, _)| f.image_seq as u64 <= last_before_stall).collect();
    assert!(before.iter().any(|(f, _)| pushes(f)), "force rendered before the stall");
    assert!(stalled.iter().any(|(f, _)| is_safe(f)), "zero force with the safe-state flag during the stall");
    // Once safe during the stall, it stays safe until a fresh target arrives.
    let first_safe = stalled.iter().position(|(f, _)| is_safe(f)).unwrap();
    assert!(stalled[first_safe..].iter().all(|(f, _)| is_safe(f)));
    let after: Vec<_> = got.iter().filter(|(f, _)| f.image_seq as u64 > last_before_stall).collect();
    assert!(after.iter().any(|(f, _)| pushes(f)), "force again after fresh data");
    assert!(got.iter().any(|(f, _)| f.image_seq as u64 == last));
    // Shutdown: the last frames the device saw are zero force.
    let tail = &got[got.len() - SHUTDOWN_FRAMES as usize..];
    assert!(tail.iter().all(|(f, _)| is_safe(f)), "zero-force frames before the port closed");
    assert!(
        report.safe_state.entries.iter().any(|(r, n)| *r == SafeReason::Stale && *n >= 1),
        "{:?}",
        report.safe_state
    );
    assert_eq!(report.link.disconnects, 0);
}

#[test]
fn the_link_survives_the_device_closing_and_reopening_its_port() {
    let faults = FaultPlan { close_after_s: Some(0.3), reopen_after_s: 0.2, ..Default::default() };
    let device = start_device(faults);
    let targets = TargetSlot::default();
    let driver = start_driver(&device.path, &targets, 0);
    feed(&targets, 1, Duration::from_millis(1500));
    let (report, events) = finish(driver, device);

    let closed = events.iter().position(|e| matches!(e, SimEvent::Closed { .. })).expect("the device closed");
    let reopened = events.iter().position(|e| matches!(e, SimEvent::Reopened { .. })).expect("and reopened");
    assert!(closed < reopened);
    let after = frames(&events[reopened..]);
    assert!(after.iter().any(|(f, _)| pushes(f)), "force frames flow again after the reconnect");
    assert!(report.link.disconnects >= 1 && report.link.reconnects >= 1, "{:?}", report.link);
    assert!(report.link.frames_unsent > 0, "frames due while unplugged are counted, not queued");
}

#[test]
fn silent_heartbeats_and_garbage_are_faults_that_hold_the_safe_state() {
    let faults = FaultPlan {
        stop_heartbeats_after_s: Some(0.3),
        resume_heartbeats_after_s: Some(0.4),
        garbage_every_s: Some(0.25),
        ..Default::default()
    };
    let device = start_device(faults);
    let targets = TargetSlot::default();
    let driver = start_driver(&device.path, &targets, 100 * MS);
    feed(&targets, 1, Duration::from_millis(1500));
    let (report, events) = finish(driver, device);

    let got = frames(&events);
    let last_fault = got.iter().rposition(|(f, _)| is_safe(f) && f.flags & flags::FAULT != 0).expect("a fault frame");
    assert!(got[last_fault..].iter().any(|(f, _)| pushes(f)), "force again once heartbeats resumed");
    assert!(report.link.heartbeat_losses >= 1, "{:?}", report.link);
    assert!(report.link.bad_messages >= 1, "the garbage was rejected, not taken for a message");
    let entries = &report.safe_state.entries;
    assert!(entries.iter().any(|(r, _)| *r == SafeReason::DeviceSilent), "{entries:?}");
}
