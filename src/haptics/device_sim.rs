//! The device side of the haptics link, for bench rigs and tests (`sonoflow haptics-sim`): reads
//! force frames, checks CRC and sequence gaps, timestamps every arrival, answers with heartbeats,
//! and injects faults on a schedule (heartbeats stop, garbage on the wire, the port closes and
//! comes back).
//!
//! With a pseudo-terminal it stands in for a USB device: the host opens a fixed path (a symlink
//! to the current pty); "unplugging" drops the pty, "replugging" makes a new one behind the same
//! path, which is what a host sees when a real device re-enumerates.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serialport::SerialPort;

use super::link::{Connector, Port, SerialConnector, SerialPortLink};
use super::protocol::{ForceFrame, MAX_WIRE_LEN, Message, ProtocolError, StatusFrame, StreamDecoder, flags, status};

/// Where the simulated device lives.
pub enum DevicePort {
    /// A real serial device (e.g. the far end of a null-modem cable).
    Serial { path: String, baud_rate: u32 },
    /// A new pseudo-terminal, reachable by the host at this path (a symlink, replaced atomically).
    Pty { link: PathBuf },
}

/// Faults to inject, in seconds since the simulator started.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    pub stop_heartbeats_after_s: Option<f64>,
    /// Also resume them after this long (None: stay silent).
    pub resume_heartbeats_after_s: Option<f64>,
    pub garbage_every_s: Option<f64>,
    pub close_after_s: Option<f64>,
    /// Reopen this long after closing.
    pub reopen_after_s: f64,
    /// Report the device-fault bit from this time on.
    pub device_fault_after_s: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct SimSettings {
    pub heartbeat_period: Duration,
    /// Stop after this long (None: until asked to stop).
    pub duration: Option<Duration>,
    pub faults: FaultPlan,
}

/// What the simulator saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A valid force frame; `gap` counts frames missing before it.
    Frame {
        arrival_us: u64,
        frame: ForceFrame,
        gap: u32,
    },
    /// A block that failed to decode.
    Rejected {
        arrival_us: u64,
        error: ProtocolError,
    },
    Closed {
        at_us: u64,
    },
    Reopened {
        at_us: u64,
        path: String,
    },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SimReport {
    pub frames: u64,
    pub rejected: u64,
    pub missed_frames: u64,
    pub safe_frames: u64,
    pub max_force_n: f32,
    /// Longest time between two consecutive frames, ms.
    pub max_interval_ms: f64,
    pub heartbeats_sent: u64,
    pub reopens: u64,
}

/// One open device end, with the pty's far end kept open so the pty lives until we drop it.
struct Open {
    port: Box<dyn Port>,
    _far_end: Option<serialport::TTYPort>,
}

fn open(device: &DevicePort) -> io::Result<(Open, String)> {
    match device {
        DevicePort::Serial { path, baud_rate } => {
            let mut c =
                SerialConnector { path: path.clone(), baud_rate: *baud_rate, write_timeout: Duration::from_millis(5) };
            Ok((Open { port: c.connect()?, _far_end: None }, path.clone()))
        }
        DevicePort::Pty { link } => {
            let (mut master, slave) = serialport::TTYPort::pair().map_err(io::Error::from)?;
            master.set_timeout(Duration::from_millis(5))?;
            let name = slave.name().ok_or_else(|| io::Error::other("pty without a name"))?;
            relink(link, Path::new(&name))?;
            Ok((Open { port: Box::new(SerialPortLink(master)), _far_end: Some(slave) }, name))
        }
    }
}

/// Points `link` at `target`, replacing any old link in one rename so the host never sees a gap.
fn relink(link: &Path, target: &Path) -> io::Result<()> {
    let tmp = link.with_extension("relink");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// Runs the device until `stop` is set or the duration is over, calling `on_event` for every
/// frame and incident.
pub fn run_device(
    device: &DevicePort,
    settings: &SimSettings,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&SimEvent),
) -> io::Result<SimReport> {
    let start = Instant::now();
    let us = |t: Instant| t.duration_since(start).as_micros() as u64;
    let elapsed_s = || start.elapsed().as_secs_f64();
    let (first, _) = open(device)?;
    let mut current = Some(first);
    let mut closed_at: Option<f64> = None;
    let mut decoder = StreamDecoder::default();
    let mut report = SimReport::default();
    let mut last: Option<(u32, u64)> = None;
    let mut next_heartbeat = Instant::now();
    let mut next_garbage = settings.faults.garbage_every_s;
    let mut closed_once = false;
    let mut heartbeat_seq = 0u32;
    let mut buf = [0u8; 4096];
    let mut events = Vec::new();
    while !stop.load(Ordering::Acquire) && settings.duration.is_none_or(|d| start.elapsed() < d) {
        let now_s = elapsed_s();
        if let Some(open_now) = current.as_mut() {
            // The host closing its end shows up as EIO on a pty: nothing to read.
            let n = open_now.port.read_available(&mut buf).unwrap_or_default();
            let arrival_us = us(Instant::now());
            decoder.feed(&buf[..n], |m| {
                events.push(match m {
                    Ok(Message::Force(frame)) => {
                        let gap = last.map_or(0, |(seq, _)| frame.seq.wrapping_sub(seq).wrapping_sub(1));
                        if let Some((_, at)) = last {
                            report.max_interval_ms = report.max_interval_ms.max((arrival_us - at) as f64 / 1e3);
                        }
                        last = Some((frame.seq, arrival_us));
                        report.frames += 1;
                        report.missed_frames += u64::from(gap);
                        report.safe_frames += u64::from(frame.flags & flags::SAFE_STATE != 0);
                        report.max_force_n = report.max_force_n.max(nalgebra::Vector3::from(frame.force_n).norm());
                        SimEvent::Frame { arrival_us, frame, gap }
                    }
                    Ok(Message::Status(_)) => {
                        report.rejected += 1;
                        SimEvent::Rejected { arrival_us, error: ProtocolError::Kind(super::protocol::KIND_STATUS) }
                    }
                    Err(error) => {
                        report.rejected += 1;
                        SimEvent::Rejected { arrival_us, error }
                    }
                });
            });
            let f = &settings.faults;
            let heartbeats_on = f.stop_heartbeats_after_s.is_none_or(|t| now_s < t)
                || f.resume_heartbeats_after_s.is_some_and(|r| now_s >= f.stop_heartbeats_after_s.unwrap_or(0.0) + r);
            if heartbeats_on && Instant::now() >= next_heartbeat {
                next_heartbeat += settings.heartbeat_period;
                let fault = f.device_fault_after_s.is_some_and(|t| now_s >= t);
                let status_frame = StatusFrame {
                    seq: heartbeat_seq,
                    device_time_us: us(Instant::now()),
                    status: if fault { status::FAULT } else { 0 },
                    last_force_seq: last.map_or(0, |(seq, _)| seq),
                };
                heartbeat_seq = heartbeat_seq.wrapping_add(1);
                let mut wire = [0u8; MAX_WIRE_LEN];
                let len = Message::Status(status_frame).encode(&mut wire);
                if open_now.port.write_all_now(&wire[..len]).is_ok() {
                    report.heartbeats_sent += 1;
                }
            }
            if next_garbage.is_some_and(|t| now_s >= t) {
                next_garbage = next_garbage.zip(f.garbage_every_s).map(|(t, every)| t + every);
                // Bytes that are neither a valid block nor aligned to one, then a delimiter.
                let _ = open_now.port.write_all_now(&[0x07, 0xff, 0x13, 0x37, 0x00, 0x42, 0x42, 0x00]);
            }
            if !closed_once && f.close_after_s.is_some_and(|t| now_s >= t) {
                closed_once = true;
                current = None;
                closed_at = Some(now_s);
                events.push(SimEvent::Closed { at_us: us(Instant::now()) });
            }
        } else if closed_at.is_some_and(|t| now_s >= t + settings.faults.reopen_after_s) {
            let (reopened, path) = open(device)?;
            current = Some(reopened);
            closed_at = None;
            report.reopens += 1;
            decoder = StreamDecoder::default();
            events.push(SimEvent::Reopened { at_us: us(Instant::now()), path });
        }
        for e in events.drain(..) {
            on_event(&e);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(report)
}
