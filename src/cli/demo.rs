//! `sonoflow demo`: simulate a sweep (cached by seed and length), replay it through the whole
//! pipeline with `configs/demo.toml`, print per-stage latency and the summary.

use std::path::PathBuf;

use clap::Args;

use sonoflow::capture::simulator::{LABEL_LESION, SimulationSpec, Simulator, label_box};
use sonoflow::config::{Config, SourceKind};
use sonoflow::segment::settings::ModelChoice;

use super::run::{Outputs, PaceArg, run_config};
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
    /// Segment with LiteMedSAM instead of using the simulator's ground-truth masks: the lesion's
    /// box is given on the first frame that shows it (as a user would mark it), then tracked.
    #[arg(long)]
    pub segment: bool,
    /// The image encoder `--segment` uses: student (real time) or litemedsam (quality).
    #[arg(long, value_enum, default_value = "litemedsam")]
    pub model: ModelChoice,
}

/// The first frame showing at least `min_pixels` of the lesion, and its bounding box grown by
/// `margin` pixels (frame pixels).
fn lesion_prompt(spec: &SimulationSpec, min_pixels: usize, margin: f32) -> Option<(u64, [f32; 4])> {
    let mut sim = Simulator::new(spec.clone()).ok()?;
    let (w, h) = (spec.width_px, spec.height_px);
    let (mut image, mut labels) = (vec![0u8; w * h], vec![0u8; w * h]);
    for i in 0..spec.frames {
        sim.render(i, &mut image, &mut labels).ok()?;
        if labels.iter().filter(|&&l| l == LABEL_LESION).count() >= min_pixels {
            return Some((i as u64, label_box(&labels, w, LABEL_LESION, margin)?));
        }
    }
    None
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
    let spec = SimulationSpec { frames: args.frames, seed: args.seed, ..SimulationSpec::default() };
    if sweep.is_file() {
        eprintln!("sonoflow: using the simulated sweep {}", sweep.display());
    } else {
        simulate_with_progress(&spec, &sweep)?;
    }
    let mut config = Config::parse(DEMO_CONFIG)
        .map_err(|e| Failure::new(Exit::Internal, anyhow::anyhow!("built-in demo config: {e}")))?;
    config.capture.kind = SourceKind::Replay;
    // Until the segment stage lands, the simulator's ground-truth labels stand in for its masks.
    config.capture.labels_path = Some(sonoflow::io::plus::labels_path(&sweep));
    config.capture.path = Some(sweep);
    config.metrics.report_path = Some(dir.join("demo-report.json"));
    if args.segment {
        let (frame, bbox) = lesion_prompt(&spec, 200, 8.0).ok_or_else(|| {
            Failure::new(Exit::Internal, anyhow::anyhow!("the simulated sweep never shows the lesion"))
        })?;
        eprintln!(
            "sonoflow: segmenting with the {} encoder from frame {frame}, box {bbox:?} (then tracked)",
            args.model.name()
        );
        config.segment.settings.model = args.model;
        config.segment.settings.bbox = Some(bbox);
        config.segment.settings.prompt_from_frame = frame;
    }
    if let Some(pace) = args.pace {
        config.capture.pace = match pace {
            PaceArg::Recorded => sonoflow::capture::Pace::Recorded,
            PaceArg::Fast => sonoflow::capture::Pace::Fast,
        };
    }
    // The live reconstruction, to open in 3D Slicer (grey and label volumes, LPS millimetres).
    let volume = config.reconstruct.stage.enabled.then(|| dir.join("demo-volume.mha"));
    let exit = run_config(&config, &Outputs { table: true, volume: volume.as_deref() })?;
    eprintln!("sonoflow: report written to {}", dir.join("demo-report.json").display());
    Ok(exit)
}
