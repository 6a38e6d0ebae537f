//! Subcommands, one file each, and the exit codes they share.

mod bench;
mod demo;
mod haptics_sim;
mod model;
mod model_embed;
mod recon_bench;
mod reconstruct;
mod record;
mod run;
mod segment;
mod simulate;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use sonoflow::pipeline::StopReason;

/// Documented exit codes (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run ended normally: end of input or frame limit.
    Ok = 0,
    /// Unexpected internal failure.
    Internal = 1,
    /// Bad command line or invalid configuration.
    Usage = 2,
    /// The input could not be read: missing, corrupt or truncated file, failed device.
    Input = 3,
    /// A stage fault put the pipeline in its safe state.
    SafeStop = 4,
    /// Stopped by Ctrl-C (after a clean shutdown).
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

impl Exit {
    pub fn for_stop(reason: StopReason) -> Self {
        match reason {
            StopReason::Running | StopReason::EndOfInput | StopReason::FrameLimit => Exit::Ok,
            StopReason::Interrupted => Exit::Interrupted,
            StopReason::SourceError => Exit::Input,
            StopReason::SafeStop => Exit::SafeStop,
        }
    }
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: Exit, error: impl Into<anyhow::Error>) -> Self {
        Failure { code, error: error.into() }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "sonoflow",
    version,
    about = "Real-time intraoperative ultrasound pipeline (research software, not a medical device)"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline from a config file.
    Run(run::RunArgs),
    /// Record any source (video, DICOM, grabber, sequence) to a PLUS sequence file.
    Record(record::RecordArgs),
    /// Write a simulated tracked sweep (images, label masks, ground truth).
    Simulate(simulate::SimulateArgs),
    /// Simulate a sweep if needed, run the whole pipeline on it, print per-stage latency.
    Demo(demo::DemoArgs),
    /// Segment one image or sequence frame from a box or points; write the mask as PNG.
    Segment(segment::SegmentArgs),
    /// Time the segmentation engine on one frame (and where its time goes).
    Bench(bench::BenchArgs),
    /// Play the haptic device: log force frames, send heartbeats, inject faults.
    HapticsSim(haptics_sim::HapticsSimArgs),
    /// Fetch, convert and describe the segmentation model's weights.
    Model(model::ModelArgs),
    /// Reconstruct a tracked recording (and its label masks) into a 3D volume, as PLUS does.
    Reconstruct(reconstruct::ReconstructArgs),
    /// Time pixel insertion into a 0.5 mm grid (frames/s; a benchmark, not a test).
    ReconBench(recon_bench::ReconBenchArgs),
}

pub fn dispatch(command: Command) -> Result<Exit, Failure> {
    match command {
        Command::Run(args) => run::execute(args),
        Command::Record(args) => record::execute(args),
        Command::Simulate(args) => simulate::execute(args),
        Command::Demo(args) => demo::execute(args),
        Command::Bench(args) => bench::execute(args),
        Command::Segment(args) => segment::execute(args),
        Command::HapticsSim(args) => haptics_sim::execute(args),
        Command::Model(args) => model::execute(args),
        Command::Reconstruct(args) => reconstruct::execute(args),
        Command::ReconBench(args) => recon_bench::execute(args),
    }
}

/// Comma-separated numbers of the option `what` (e.g. `--point 10,20,1`).
pub fn parse_numbers(text: &str, what: &str) -> anyhow::Result<Vec<f32>> {
    use anyhow::Context;
    text.split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{what} {text:?}: expected comma-separated numbers"))
}

/// A `--box x0,y0,x1,y1` option.
pub fn parse_box(text: &str) -> anyhow::Result<[f32; 4]> {
    let v = parse_numbers(text, "--box")?;
    <[f32; 4]>::try_from(v).map_err(|_| anyhow::anyhow!("--box {text:?}: expected four numbers x0,y0,x1,y1"))
}

pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
