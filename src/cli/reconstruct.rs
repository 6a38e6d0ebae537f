//! `sonoflow reconstruct`: a tracked recording (and its label masks) into a grey volume (and a
//! label volume), with the settings of a PLUS configuration XML, a progress bar on stderr, and a
//! summary of what was inserted, skipped and measured.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;

use sonoflow::recon::surface::marching_cubes;
use sonoflow::recon::volume::{VolumeData, VolumeGeometry, read_volume, write_volume};
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
    /// Where to write the grey volume (`.mha` or `.nrrd`).
    #[arg(long)]
    pub out: PathBuf,
    /// Label-mask sequence, frame for frame with `--input`; the label volume goes to
    /// `<out stem>.labels.<out extension>` and each label's volume is printed.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Surface of the labelled structure (`.stl` or `.ply`, in the volume's LPS millimetres; needs
    /// `--labels`). With several labels, one file per label: `<stem>.label<N>.<extension>`.
    #[arg(long)]
    pub surface: Option<PathBuf>,
    /// Use this volume's grid (`.mha` or `.nrrd`: dimensions, origin, spacing) instead of the frames' bounding box.
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
    // Refuse what cannot be written before the long run.
    check_volume_path("--out", &args.out)?;
    if let Some(surface) = &args.surface {
        if args.labels.is_none() {
            return Err(usage("--surface needs --labels (the surface is the labelled structure's)".into()));
        }
        if !matches!(extension_of(surface).as_str(), "stl" | "ply") {
            return Err(usage(format!("--surface {}: write a .stl or .ply surface", surface.display())));
        }
    }
    let grid = match &args.grid_like {
        Some(path) => {
            Some(OutputGrid::from_geometry(&read_volume(path).map_err(|e| Failure::new(Exit::Input, e))?.geometry))
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
    let c = &result.counts;
    let g = &result.grid;
    eprintln!(
        "sonoflow: {} of {} frames inserted ({} untracked, {} invalid images skipped) into {}x{}x{} voxels of {:?} mm at {:?}",
        c.inserted,
        c.frames,
        c.skipped_untracked,
        c.skipped_image,
        g.dims[0],
        g.dims[1],
        g.dims[2],
        g.spacing_mm,
        g.origin_mm,
    );
    if c.saturated_voxels > 0 {
        eprintln!(
            "sonoflow: {} voxels took over 255 pixels (compounded by recursive filtering from then on)",
            c.saturated_voxels
        );
    }
    write_outputs(&args.out, &geometry, &result.grey, result.labels.as_deref(), args.surface.as_deref())?;
    Ok(Exit::Ok)
}

/// Writes the grey volume to `out`, the label volume (if any) beside it as
/// `<stem>.labels.<extension>` with each label's volume printed, and the labels' surfaces.
pub fn write_outputs(
    out: &Path,
    geometry: &VolumeGeometry,
    grey: &[u8],
    labels: Option<&[u8]>,
    surface: Option<&Path>,
) -> Result<(), Failure> {
    let write = |path: &Path, data: VolumeData| {
        write_volume(path, geometry, data, true).map_err(|e| Failure::new(Exit::Internal, e))
    };
    write(out, VolumeData::U8(grey))?;
    eprintln!("sonoflow: wrote the volume to {}", out.display());
    let Some(labels) = labels else { return Ok(()) };
    let (stem, _) = sonoflow::io::plus::split_name(out);
    let path = out.with_file_name(format!("{stem}.labels.{}", extension_of(out)));
    write(&path, VolumeData::U8(labels))?;
    let mut voxels = [0usize; 256];
    for &l in labels {
        voxels[l as usize] += 1;
    }
    let present: Vec<u8> = (1..=u8::MAX).filter(|&l| voxels[l as usize] > 0).collect();
    for &label in &present {
        let n = voxels[label as usize];
        eprintln!("sonoflow: label {label}: {n} voxels, {:.3} mL", n as f64 * geometry.voxel_volume_mm3() / 1000.0);
    }
    eprintln!("sonoflow: wrote the label volume to {}", path.display());
    match surface {
        Some(surface) => write_surfaces(surface, labels, geometry, &present),
        None => Ok(()),
    }
}

/// One surface per label present: at `path` when there is one, else `<stem>.label<N>.<ext>`.
fn write_surfaces(path: &Path, labels: &[u8], geometry: &VolumeGeometry, present: &[u8]) -> Result<(), Failure> {
    if present.is_empty() {
        eprintln!("sonoflow: no labelled voxel: no surface written");
        return Ok(());
    }
    let ext = extension_of(path);
    for &label in present {
        let file = if present.len() == 1 {
            path.to_path_buf()
        } else {
            let stem = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            path.with_file_name(format!("{stem}.label{label}.{ext}"))
        };
        let mesh = marching_cubes(labels, geometry, label);
        let written = if ext == "ply" { mesh.write_ply(&file) } else { mesh.write_stl(&file) };
        written.map_err(|e| Failure::new(Exit::Internal, e))?;
        eprintln!(
            "sonoflow: label {label} surface: {} triangles, {:.1} mm², encloses {:.3} mL; wrote {}",
            mesh.triangles.len(),
            mesh.area_mm2(),
            mesh.enclosed_volume_ml(),
            file.display()
        );
    }
    Ok(())
}

/// Refuses, before any work, a volume path whose format sonoflow does not write.
pub fn check_volume_path(option: &str, path: &Path) -> Result<(), Failure> {
    match extension_of(path).as_str() {
        "mha" | "nrrd" => Ok(()),
        _ => Err(usage(format!("{option} {}: write a .mha or .nrrd volume", path.display()))),
    }
}

fn extension_of(path: &Path) -> String {
    path.extension().map_or_else(String::new, |e| e.to_string_lossy().to_ascii_lowercase())
}

fn usage(message: String) -> Failure {
    Failure::new(Exit::Usage, anyhow::anyhow!(message))
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
