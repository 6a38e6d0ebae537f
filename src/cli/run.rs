//! `sonoflow run`: load a config, apply command-line overrides, run, report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use sonoflow::capture::Pace;
use sonoflow::capture::input::{Input, classify};
use sonoflow::config::Config;
use sonoflow::pipeline::build::{BuildError, pipeline_from_config};
use sonoflow::pipeline::report::write_chrome_trace;
use sonoflow::pipeline::runtime::PipelineError;
use sonoflow::pipeline::stage::StageError;
use sonoflow::pipeline::{StopReason, Supervisor, run};
use sonoflow::recon::SnapshotSlot;
use sonoflow::segment::settings::ModelChoice;
use sonoflow::stages::REGISTRY;

use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config (see configs/README.md). Without it, `--input` plays with the defaults for
    /// its kind: a recording or a file is replayed as fast as the chain goes, every frame
    /// processed (configs/replay.toml); a grabber runs live (newest frame wins).
    #[arg(long, required_unless_present = "input")]
    pub config: Option<PathBuf>,
    /// Play this instead of the configured source: a PLUS sequence (.mha, .mhd, .seq.nrrd), a
    /// DICOM cine loop, a video file, or a frame grabber as `v4l2:/dev/videoN`.
    #[arg(long)]
    pub input: Option<String>,
    /// Stop after N frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace here.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Override the replay pace.
    #[arg(long, value_enum)]
    pub pace: Option<PaceArg>,
    /// Print the per-stage latency table at the end.
    #[arg(long)]
    pub table: bool,
    /// Drive the haptic device on this serial port (overrides haptics.port).
    #[arg(long)]
    pub haptics_port: Option<String>,
    /// Write the reconstruct stage's volumes here at the end (`.mha` or `.nrrd`; the label volume
    /// beside it as `<stem>.labels.<extension>`).
    #[arg(long)]
    pub volume_out: Option<PathBuf>,
    /// The segmentation's image encoder (overrides segment.model).
    #[arg(long, value_enum)]
    pub model: Option<ModelChoice>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PaceArg {
    Recorded,
    Fast,
}

impl From<PaceArg> for Pace {
    fn from(pace: PaceArg) -> Pace {
        match pace {
            PaceArg::Recorded => Pace::Recorded,
            PaceArg::Fast => Pace::Fast,
        }
    }
}

/// The built-in replay config: `sonoflow run --input FILE` without `--config`.
const REPLAY_CONFIG: &str = include_str!("../../configs/replay.toml");

pub fn execute(args: RunArgs) -> Result<Exit, Failure> {
    let input = args.input.as_deref().map(classify);
    let mut config = match (&args.config, &input) {
        (Some(path), _) => Config::load(path).map_err(|e| Failure::new(Exit::Usage, e))?,
        (None, Some(Input::File(..))) => {
            eprintln!("sonoflow: no --config: replaying every frame as fast as the chain goes (configs/replay.toml)");
            Config::parse(REPLAY_CONFIG)
                .map_err(|e| Failure::new(Exit::Internal, anyhow::anyhow!("built-in replay config: {e}")))?
        }
        (None, Some(Input::V4l2(_))) => {
            eprintln!("sonoflow: no --config: running live with the defaults (newest frame wins)");
            Config::default()
        }
        (None, None) => return Err(Failure::new(Exit::Usage, anyhow::anyhow!("give --config FILE or --input"))),
    };
    if let Some(input) = input {
        input.apply(&mut config.capture);
    }
    if let Some(model) = args.model {
        config.segment.settings.model = model;
    }
    if let Some(frames) = args.frames {
        config.pipeline.max_frames = frames;
    }
    if let Some(port) = args.haptics_port {
        config.haptics.settings.port = Some(port);
    }
    if let Some(report) = args.report {
        config.metrics.report_path = Some(report);
    }
    if let Some(trace) = args.trace {
        config.metrics.trace_path = Some(trace);
    }
    if let Some(pace) = args.pace {
        config.capture.pace = pace.into();
    }
    run_config(&config, &Outputs { table: args.table, volume: args.volume_out.as_deref() })
}

/// What a run writes besides its report and trace.
#[derive(Default)]
pub struct Outputs<'a> {
    /// Print the per-stage latency table.
    pub table: bool,
    /// Where the live reconstruction's volumes go.
    pub volume: Option<&'a Path>,
}

/// Runs a config to its end, writes the report and trace, prints the summary.
pub fn run_config(config: &Config, outputs: &Outputs) -> Result<Exit, Failure> {
    if let Some(path) = outputs.volume {
        if !config.reconstruct.stage.enabled {
            return Err(Failure::new(Exit::Usage, anyhow::anyhow!("--volume-out: the reconstruct stage is disabled")));
        }
        super::reconstruct::check_volume_path("--volume-out", path)?;
    }
    let supervisor = Supervisor::new();
    let spec = pipeline_from_config(config, supervisor.clone(), REGISTRY).map_err(|e| {
        let code = match e {
            BuildError::Config(_) => Exit::Usage,
            BuildError::Capture(_) => Exit::Input,
            _ => Exit::Internal,
        };
        Failure::new(code, e)
    })?;
    let snapshots = spec.outputs.get::<SnapshotSlot>();
    let on_interrupt = supervisor.clone();
    // Only one handler per process; a second run in the same process keeps the first.
    let _ = ctrlc::set_handler(move || on_interrupt.request_stop(StopReason::Interrupted));

    let result = run(spec).map_err(|e| {
        // A device that cannot be opened is a failed device, like an unreadable input.
        let code = match &e {
            PipelineError::StageBuild { source: StageError::Device(_), .. } => Exit::Input,
            _ => Exit::Internal,
        };
        Failure::new(code, e)
    })?;
    let report = &result.report;
    if let Some(path) = &config.metrics.report_path {
        report
            .write_json(path)
            .with_context(|| format!("writing report {}", path.display()))
            .map_err(|e| Failure::new(Exit::Internal, e))?;
    }
    if let Some(path) = &config.metrics.trace_path {
        let names: Vec<String> = report.stages.iter().map(|s| s.name.clone()).collect();
        write_chrome_trace(path, &names, &result.trace)
            .with_context(|| format!("writing trace {}", path.display()))
            .map_err(|e| Failure::new(Exit::Internal, e))?;
    }
    if outputs.table {
        eprint!("{}", report.stage_table());
    }
    if let Some(path) = outputs.volume {
        match snapshots.and_then(|s| s.latest()) {
            Some(v) => super::reconstruct::write_outputs(path, &v.grid.geometry(), &v.grey, Some(&v.labels), None)?,
            None => eprintln!("sonoflow: no frame was reconstructed: no volume written to {}", path.display()),
        }
    }
    for fault in report.faults.iter().take(5) {
        eprintln!("sonoflow: fault in {} at frame {}: {} ({})", fault.stage, fault.seq, fault.error, fault.action);
    }
    for rec in &report.recordings {
        match &rec.error {
            Some(error) => eprintln!("sonoflow: recording {} failed: {error}", rec.path.display()),
            None => eprintln!(
                "sonoflow: recorded {} of {} frames to {} ({} dropped: the writer fell behind)",
                rec.written,
                rec.offered,
                rec.path.display(),
                rec.dropped
            ),
        }
    }
    eprintln!("{}", report.summary_line());
    Ok(Exit::for_stop(report.stop_reason))
}
