//! `sonoflow haptics-sim`: the device side of the haptics link, for bench rigs and tests. Logs
//! every frame with its arrival time as CSV, answers with heartbeats, injects faults on request,
//! and prints a summary (JSON) on stderr at the end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use sonoflow::haptics::device_sim::{DevicePort, FaultPlan, SimEvent, SimSettings, run_device};
use sonoflow::haptics::settings::DEFAULT_BAUD_RATE;

use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct HapticsSimArgs {
    /// Serial device to serve, or with --pty the path to link to a new pseudo-terminal.
    #[arg(long)]
    pub port: PathBuf,
    /// Create a pseudo-terminal and make --port a symlink to it (what the host then opens).
    #[arg(long)]
    pub pty: bool,
    #[arg(long, default_value_t = DEFAULT_BAUD_RATE)]
    pub baud: u32,
    /// Heartbeat period.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat_ms: f64,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long)]
    pub duration_s: Option<f64>,
    /// Frame log (CSV); `-` is stdout.
    #[arg(long, default_value = "-")]
    pub log: PathBuf,
    /// Fault injection: stop sending heartbeats after this many seconds.
    #[arg(long)]
    pub stop_heartbeats_after_s: Option<f64>,
    /// ... and resume them this long after they stopped.
    #[arg(long)]
    pub resume_heartbeats_after_s: Option<f64>,
    /// Fault injection: send a burst of garbage bytes this often.
    #[arg(long)]
    pub garbage_every_s: Option<f64>,
    /// Fault injection: close the port after this many seconds (an unplugged device) ...
    #[arg(long)]
    pub close_after_s: Option<f64>,
    /// ... and reopen it this long after.
    #[arg(long, default_value_t = 1.0)]
    pub reopen_after_s: f64,
    /// Fault injection: report the device-fault status bit from this time on.
    #[arg(long)]
    pub device_fault_after_s: Option<f64>,
}

fn csv_line(event: &SimEvent) -> String {
    match event {
        SimEvent::Frame { arrival_us, frame, gap } => format!(
            "frame,{arrival_us},{},{},{:#04x},{},{},{},{},{gap},",
            frame.seq,
            frame.time_us,
            frame.flags,
            frame.force_n[0],
            frame.force_n[1],
            frame.force_n[2],
            frame.image_seq
        ),
        SimEvent::Rejected { arrival_us, error } => format!("rejected,{arrival_us},,,,,,,,,{error}"),
        SimEvent::Closed { at_us } => format!("closed,{at_us},,,,,,,,,"),
        SimEvent::Reopened { at_us, path } => format!("reopened,{at_us},,,,,,,,,{path}"),
    }
}

pub fn execute(args: HapticsSimArgs) -> Result<Exit, Failure> {
    let usage = |e: anyhow::Error| Failure::new(Exit::Usage, e);
    for (name, v) in [("--heartbeat-ms", Some(args.heartbeat_ms)), ("--duration-s", args.duration_s)] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Err(usage(anyhow::anyhow!("{name} must be a positive number")));
        }
    }
    let device = if args.pty {
        DevicePort::Pty { link: args.port.clone() }
    } else {
        DevicePort::Serial { path: args.port.display().to_string(), baud_rate: args.baud }
    };
    let settings = SimSettings {
        heartbeat_period: Duration::from_secs_f64(args.heartbeat_ms / 1e3),
        duration: args.duration_s.map(Duration::from_secs_f64),
        faults: FaultPlan {
            stop_heartbeats_after_s: args.stop_heartbeats_after_s,
            resume_heartbeats_after_s: args.resume_heartbeats_after_s,
            garbage_every_s: args.garbage_every_s,
            close_after_s: args.close_after_s,
            reopen_after_s: args.reopen_after_s,
            device_fault_after_s: args.device_fault_after_s,
        },
    };
    let mut log: Box<dyn Write> = if args.log.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.log)
            .with_context(|| format!("cannot create the frame log {}", args.log.display()))
            .map_err(usage)?;
        Box::new(std::io::BufWriter::new(file))
    };
    let stop = Arc::new(AtomicBool::new(false));
    let on_interrupt = stop.clone();
    let _ = ctrlc::set_handler(move || on_interrupt.store(true, Ordering::Release));
    let _ = writeln!(log, "event,arrival_us,seq,time_us,flags,fx_n,fy_n,fz_n,image_seq,gap,detail");
    eprintln!("sonoflow: haptic device simulator on {}", args.port.display());
    let report = run_device(&device, &settings, &stop, |event| {
        // A closed stdout (e.g. piped into `head`) must not stop the device.
        let _ = writeln!(log, "{}", csv_line(event));
    })
    .with_context(|| format!("haptic device simulator on {}", args.port.display()))
    .map_err(|e| Failure::new(Exit::Input, e))?;
    let _ = log.flush();
    if args.pty {
        let _ = std::fs::remove_file(&args.port);
    }
    eprintln!("{}", serde_json::to_string(&report).expect("report serialises"));
    Ok(Exit::Ok)
}
