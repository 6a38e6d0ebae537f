//! `sonoflow demo`: simulate a sweep (cached by seed and length), replay it through the whole
//! pipeline with `configs/demo.toml`, print per-stage latency and the summary.

use std::path::PathBuf;

use clap::Args;

use sonoflow::capture::simulator::SimulationSpec;
use sonoflow::config::{Config, SourceKind};

use super::run::{PaceArg, run_config};
use super::simulate::simulate_with_progress;
use super::{Exit, Failure};

/// The demo config, built into the binary so `sonoflow demo` works from any folder.
const DEMO_CONFIG: &str = include_str!("../../configs/demo.toml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Frames in the simulated sweep.
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the sweep and the report go (default: $XDG_CACHE_HOME/sonoflow or ~/.cache/sonoflow).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Replay pace (the demo config plays at the recorded 30 fps).
    #[arg(long, value_enum)]
    pub pace: Option<PaceArg>,
}

fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sonoflow")
}

pub fn execute(args: DemoArgs) -> Result<Exit, Failure> {
    let dir = args.dir.unwrap_or_else(cache_dir);
    // The name carries the simulator's file version: sweeps of older builds are not reused.
    let sweep = dir.join(format!("demo-v2-seed{}-{}frames.mha", args.seed, args.frames));
    if sweep.is_file() {
        eprintln!("sonoflow: using the simulated sweep {}", sweep.display());
    } else {
        let spec = SimulationSpec { frames: args.frames, seed: args.seed, ..SimulationSpec::default() };
        simulate_with_progress(&spec, &sweep)?;
    }
    let mut config = Config::parse(DEMO_CONFIG)
        .map_err(|e| Failure::new(Exit::Internal, anyhow::anyhow!("built-in demo config: {e}")))?;
    config.capture.kind = SourceKind::Replay;
    // Until the segment stage lands, the simulator's ground-truth labels stand in for its masks.
    config.capture.labels_path = Some(sonoflow::io::plus::labels_path(&sweep));
    config.capture.path = Some(sweep);
    config.metrics.report_path = Some(dir.join("demo-report.json"));
    if let Some(pace) = args.pace {
        config.capture.pace = match pace {
            PaceArg::Recorded => sonoflow::capture::Pace::Recorded,
            PaceArg::Fast => sonoflow::capture::Pace::Fast,
        };
    }
    let exit = run_config(&config, true)?;
    eprintln!("sonoflow: report written to {}", dir.join("demo-report.json").display());
    Ok(exit)
}
