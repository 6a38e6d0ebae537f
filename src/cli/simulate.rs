//! `sonoflow simulate`: write a tracked sweep over the synthetic phantom, with ground truth.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;

use sonoflow::capture::simulator::{SimulationSpec, write_simulation};

use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Sequence file to write (`.mha`, `.mhd` or `.seq.nrrd`); labels and truth land beside it.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of frames.
    #[arg(long, default_value_t = SimulationSpec::default().frames)]
    pub frames: usize,
    /// Random seed: the same seed gives the same files, byte for byte.
    #[arg(long, default_value_t = SimulationSpec::default().seed)]
    pub seed: u64,
}

pub fn execute(args: SimulateArgs) -> Result<Exit, Failure> {
    let spec = SimulationSpec { frames: args.frames, seed: args.seed, ..SimulationSpec::default() };
    let outputs = simulate_with_progress(&spec, &args.out)?;
    eprintln!(
        "sonoflow: wrote {} frames to {} (labels {}, ground truth {})",
        outputs.frames,
        outputs.images.display(),
        outputs.labels.display(),
        outputs.truth.display()
    );
    Ok(Exit::Ok)
}

/// Writes the simulation, reporting progress on stderr every tenth of the way.
pub fn simulate_with_progress(
    spec: &SimulationSpec,
    out: &std::path::Path,
) -> Result<sonoflow::capture::simulator::SimulationOutputs, Failure> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::new(Exit::Usage, anyhow::anyhow!("cannot create {}: {e}", parent.display())))?;
    }
    // One line per tenth in logs; one self-overwriting line on a terminal.
    let terminal = std::io::stderr().is_terminal();
    let mut last_tenth = 0;
    let mut progress = |done: usize, total: usize| {
        let tenth = done * 10 / total.max(1);
        if tenth > last_tenth {
            last_tenth = tenth;
            if terminal {
                eprint!("\rsonoflow: simulating {done}/{total} frames");
                if done == total {
                    eprintln!();
                }
            } else {
                eprintln!("sonoflow: simulating {done}/{total} frames");
            }
        }
    };
    write_simulation(spec, out, &mut progress).map_err(|e| Failure::new(Exit::Internal, e))
}
