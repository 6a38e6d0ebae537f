//! `sonoflow reconstruct`: a tracked recording (and its label masks) into a grey volume (and a
//! label volume), with the settings of a PLUS configuration XML, a progress bar on stderr, and a
//! summary of what was inserted, skipped and measured.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;

use sonoflow::recon::labels::label_volume_ml;
use sonoflow::recon::volume::{VolumeData, read_mha, write_volume};
use sonoflow::recon::{OutputGrid, ReconError, ReconSettings, read_plus_config, reconstruct_sequence};

use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct ReconstructArgs {
    /// Tracked sequence file (`.mha`, `.mhd`, `.seq.nrrd`).
    #[arg(long)]
    pub input: PathBuf,
    /// PLUS configuration XML (calibration and VolumeReconstruction settings). Without it: 0.5 mm
    /// nearest-neighbour mean compounding, the frames' own ImageToReference chain.
    #[arg(long)]
    pub plus_config: Option<PathBuf>,
    /// Where to write the grey volume (`.mha`).
    #[arg(long)]
    pub out: PathBuf,
    /// Label-mask sequence, frame for frame with `--input`; the label volume goes to
    /// `<out stem>.labels.mha` and each label's volume is printed.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Surface of the labelled structure (STL).
    #[arg(long)]
    pub surface: Option<PathBuf>,
    /// Use this volume's grid (dimensions, origin, spacing) instead of the frames' bounding box.
    #[arg(long)]
    pub grid_like: Option<PathBuf>,
    /// Insertion threads (the volume is the same for any count).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn execute(args: ReconstructArgs) -> Result<Exit, Failure> {
    let (mut settings, calibration) = match &args.plus_config {
        Some(path) => {
            let c = read_plus_config(path).map_err(|e| Failure::new(Exit::Usage, e))?;
            (c.settings, c.calibration)
        }
        None => (ReconSettings::default(), Vec::new()),
    };
    if let Some(t) = args.threads {
        settings.threads = t;
    }
    if args.surface.is_some() {
        // The surface module lands with the volume-export work; refuse before the long run.
        return Err(Failure::new(Exit::Usage, anyhow::anyhow!("--surface: surface extraction is not built yet")));
    }
    if args.out.extension().and_then(|e| e.to_str()) != Some("mha") {
        return Err(Failure::new(Exit::Usage, anyhow::anyhow!("--out {}: write a .mha volume", args.out.display())));
    }
    let grid = match &args.grid_like {
        Some(path) => {
            Some(OutputGrid::from_geometry(&read_mha(path).map_err(|e| Failure::new(Exit::Input, e))?.geometry))
        }
        None => None,
    };
    let mut bar = ProgressBar::new();
    let result =
        reconstruct_sequence(&args.input, args.labels.as_deref(), &settings, &calibration, grid, &mut |d, t| {
            bar.update(d, t)
        })
        .map_err(|e| match e {
            ReconError::Settings(_) => Failure::new(Exit::Usage, e),
            e => Failure::new(Exit::Input, e),
        })?;
    let geometry = result.grid.geometry();
    let write = |path: &Path, data: VolumeData| {
        write_volume(path, &geometry, data, true).map_err(|e| Failure::new(Exit::Internal, e))
    };
    write(&args.out, VolumeData::U8(&result.grey))?;
    let c = &result.counts;
    let g = &result.grid;
    eprintln!(
        "sonoflow: {} of {} frames inserted ({} untracked, {} invalid images skipped) into {}x{}x{} voxels of {:?} mm at {:?}; wrote {}",
        c.inserted,
        c.frames,
        c.skipped_untracked,
        c.skipped_image,
        g.dims[0],
        g.dims[1],
        g.dims[2],
        g.spacing_mm,
        g.origin_mm,
        args.out.display()
    );
    if c.saturated_voxels > 0 {
        eprintln!(
            "sonoflow: {} voxels took over 255 pixels (compounded by recursive filtering from then on)",
            c.saturated_voxels
        );
    }
    if let Some(labels) = &result.labels {
        let (stem, _) = sonoflow::io::plus::split_name(&args.out);
        let path = args.out.with_file_name(format!("{stem}.labels.mha"));
        write(&path, VolumeData::U8(labels))?;
        for label in 1..=u8::MAX {
            let (n, ml) = label_volume_ml(labels, g.spacing_mm, label);
            if n > 0 {
                eprintln!("sonoflow: label {label}: {n} voxels, {ml:.3} mL");
            }
        }
        eprintln!("sonoflow: wrote the label volume to {}", path.display());
    }
    Ok(Exit::Ok)
}

/// A one-line bar on a terminal; a line per tenth in logs.
struct ProgressBar {
    terminal: bool,
    last: usize,
}

impl ProgressBar {
    fn new() -> Self {
        ProgressBar { terminal: std::io::stderr().is_terminal(), last: usize::MAX }
    }

    fn update(&mut self, done: usize, total: usize) {
        let total = total.max(1);
        let step = if self.terminal { done * 40 / total } else { done * 10 / total };
        if step == self.last {
            return;
        }
        self.last = step;
        if self.terminal {
            eprint!("\rsonoflow: reconstructing [{:<40}] {done}/{total}", "#".repeat(step));
            if done == total {
                eprintln!();
            }
        } else {
            eprintln!("sonoflow: reconstructing {done}/{total} frames");
        }
    }
}
