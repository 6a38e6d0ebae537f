//! `sonoflow record`: capture any source into a PLUS sequence file, with no processing stages
//! in between (a grabber session, a video or DICOM loop turned into a replayable recording).

use std::path::PathBuf;

use clap::Args;

use sonoflow::capture::input::classify;
use sonoflow::config::Config;

use super::run::{Outputs, PaceArg, run_config};
use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// What to record: a PLUS sequence, a DICOM cine loop, a video file, or `v4l2:/dev/videoN`.
    /// Without it, the source configured by --config.
    #[arg(long)]
    pub input: Option<String>,
    /// The PLUS sequence file to write (.mha, .mhd or .seq.nrrd).
    #[arg(long)]
    pub out: PathBuf,
    /// Config whose [capture] section describes the source (crop, spacing, GStreamer settings);
    /// its processing stages are not run.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stop after N frames.
    #[arg(long)]
    pub frames: Option<u64>,
    /// Files: at their recorded pace (default) or as fast as they decode; a fast recording may
    /// drop frames when the disk falls behind (counted).
    #[arg(long, value_enum)]
    pub pace: Option<PaceArg>,
    /// Write raw pixels instead of zlib-compressed ones (faster, larger).
    #[arg(long)]
    pub no_compress: bool,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn execute(args: RecordArgs) -> Result<Exit, Failure> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| Failure::new(Exit::Usage, e))?,
        None => Config::default(),
    };
    if let Some(input) = &args.input {
        classify(input).apply(&mut config.capture);
    }
    for stage in [
        &mut config.preprocess,
        &mut config.segment.stage,
        &mut config.threshold,
        &mut config.reconstruct,
        &mut config.haptics.stage,
    ] {
        stage.enabled = false;
    }
    config.record.path = Some(args.out);
    config.record.include_masks = false;
    config.record.compress = !args.no_compress;
    if let Some(frames) = args.frames {
        config.pipeline.max_frames = frames;
    }
    if let Some(pace) = args.pace {
        config.capture.pace = pace.into();
    }
    if let Some(report) = args.report {
        config.metrics.report_path = Some(report);
    }
    run_config(&config, &Outputs::default())
}
