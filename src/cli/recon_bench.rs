//! `sonoflow recon-bench`: frames per second of pixel insertion into a 0.5 mm grid, for 820×616
//! and 256×256 frames, nearest and linear, 1 and 2 threads. Synthetic frames sweep a grid sized
//! like the PLUS spine phantom's; only insertion is timed (no file reading, no hole filling).
//! Besides wall-clock frames/s it prints frames per CPU-second of the process, which stays
//! meaningful on a machine whose cores other work is using.

use std::time::Instant;

use clap::Args;

use sonoflow::geometry::{Vec3, rigid};
use sonoflow::recon::paste::GreyVolume;
use sonoflow::recon::{Interpolation, OutputGrid, ReconSettings};

use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct ReconBenchArgs {
    /// Frames inserted per case.
    #[arg(long, default_value_t = 300)]
    pub frames: usize,
}

pub fn execute(args: ReconBenchArgs) -> Result<Exit, Failure> {
    let frames = args.frames.max(1);
    println!(
        "{:>9} {:>8} {:>7} {:>10} {:>12} {:>14}",
        "frame", "interp", "threads", "frames/s", "Mpixel/s", "frames/cpu-s"
    );
    for (w, h, pixel_mm) in [(820usize, 616usize, 0.085), (256, 256, 0.2)] {
        for interpolation in [Interpolation::Nearest, Interpolation::Linear] {
            for threads in [1, 2] {
                let (fps, per_cpu) = run_case(w, h, pixel_mm, interpolation, threads, frames);
                println!(
                    "{:>9} {:>8} {:>7} {:>10.0} {:>12.1} {:>14.0}",
                    format!("{w}x{h}"),
                    format!("{interpolation:?}").to_lowercase(),
                    threads,
                    fps,
                    fps * (w * h) as f64 / 1e6,
                    per_cpu
                );
            }
        }
    }
    Ok(Exit::Ok)
}

/// CPU time of the whole process so far (all threads), in seconds.
fn process_cpu_s() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Frames per wall second and per CPU second for one case: a 40 mm sweep of slightly tilted
/// frames through a grid that holds them all.
fn run_case(
    w: usize,
    h: usize,
    pixel_mm: f64,
    interpolation: Interpolation,
    threads: usize,
    frames: usize,
) -> (f64, f64) {
    let (fw, fh) = (w as f64 * pixel_mm, h as f64 * pixel_mm);
    let grid = OutputGrid {
        dims: [(fw / 0.5) as usize + 8, (40.0 / 0.5) as usize + 8, (fh / 0.5) as usize + 8],
        origin_mm: [-2.0, -22.0, -2.0],
        spacing_mm: [0.5; 3],
    };
    let settings = ReconSettings { interpolation, threads, ..Default::default() };
    let mut volume = GreyVolume::new(grid, &settings, w, h);
    let pixels: Vec<u8> = (0..w * h).map(|i| (i * 31 % 251) as u8).collect();
    let pose = |i: usize| {
        // The image plane is x (columns) and z (rows, depth), swept along y with a slight tilt.
        let y = -20.0 + 40.0 * i as f64 / frames as f64;
        let mut m = rigid(2, 0.05 * (i as f64 * 0.1).sin(), Vec3::new(0.0, y, 0.0));
        let image = [pixel_mm, 0.0, 0.0, 0.0, 0.0, 0.0, pixel_mm, 0.0, 0.0, pixel_mm, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
        m = sonoflow::geometry::mat_mul(&m, &image);
        m
    };
    // Warm-up: page in the buffers.
    volume.insert(&pixels, w, h, &pose(0));
    let (start, cpu) = (Instant::now(), process_cpu_s());
    for i in 0..frames {
        volume.insert(&pixels, w, h, &pose(i));
    }
    (frames as f64 / start.elapsed().as_secs_f64(), frames as f64 / (process_cpu_s() - cpu))
}
