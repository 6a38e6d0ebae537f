//! `sonoflow bench`: times the segmentation engine on one frame, the way `tools/bench/run` times
//! PyTorch and ONNX Runtime (encoder: model input plane → embedding; decoder: prompt +
//! embedding → low-res logits and IoU; pre- and post-processing untimed), and optionally prints
//! where the time goes per op kind. Settings come from flags or, for `tools/bench/run
//! --sonoflow`, from its `SONOFLOW_BENCH_*` variables.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use clap::Args;

use sonoflow::capture::simulator::{LABEL_LESION, SimulationSpec, Simulator, label_box};
use sonoflow::segment::cpu::ops::{CpuOps, OpKind, OpProfile};
use sonoflow::segment::graph::prompt::Prompt;
use sonoflow::segment::model::LiteMedSam;
use sonoflow::segment::settings::{ModelChoice, SegmentSettings};
use sonoflow::segment::stage::load_model;
use sonoflow::segment::{Letterbox, Preprocessor};

use super::{Exit, Failure, parse_box};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Gray8 frame, raw row-major bytes (default: a simulated 256 x 256 frame and its lesion box).
    #[arg(long, env = "SONOFLOW_BENCH_INPUT")]
    pub input: Option<PathBuf>,
    #[arg(long, env = "SONOFLOW_BENCH_WIDTH")]
    pub width: Option<usize>,
    #[arg(long, env = "SONOFLOW_BENCH_HEIGHT")]
    pub height: Option<usize>,
    /// Box prompt `x0,y0,x1,y1` in frame pixels.
    #[arg(long = "box", env = "SONOFLOW_BENCH_BOX")]
    pub bbox: Option<String>,
    #[arg(long, env = "SONOFLOW_BENCH_FRAMES", default_value_t = 30)]
    pub frames: usize,
    #[arg(long, env = "SONOFLOW_BENCH_WARMUP", default_value_t = 5)]
    pub warmup: usize,
    #[arg(long, env = "SONOFLOW_BENCH_THREADS", default_value_t = 2)]
    pub threads: usize,
    /// Print the per-frame times as one JSON object on stdout (the `tools/bench` protocol).
    #[arg(long)]
    pub json: bool,
    /// Also print where the time goes, per op kind (timing each op costs a little).
    #[arg(long)]
    pub profile: bool,
    /// Folder of the model (default: the first engines/litemedsam found upwards).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// The image encoder to time.
    #[arg(long, value_enum, env = "SONOFLOW_BENCH_MODEL", default_value = "litemedsam")]
    pub model: ModelChoice,
}

/// A simulated frame through the lesion, with the lesion's bounding box grown by 5 px.
fn simulated_frame() -> anyhow::Result<(Vec<u8>, usize, usize, [f32; 4])> {
    let spec = SimulationSpec { frames: 40, ..SimulationSpec::default() };
    let (w, h) = (spec.width_px, spec.height_px);
    let mut sim = Simulator::new(spec)?;
    let (mut image, mut labels) = (vec![0u8; w * h], vec![0u8; w * h]);
    sim.render(18, &mut image, &mut labels)?;
    let bbox =
        label_box(&labels, w, LABEL_LESION, 5.0).ok_or_else(|| anyhow!("the simulated frame shows no lesion"))?;
    Ok((image, w, h, bbox))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn execute(args: BenchArgs) -> Result<Exit, Failure> {
    run(args).map(|()| Exit::Ok).map_err(|e| Failure::new(Exit::Usage, e))
}

fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.frames == 0 || args.threads == 0 {
        bail!("--frames and --threads must be at least 1");
    }
    let (frame, width, height, bbox) = match &args.input {
        Some(path) => {
            let (Some(w), Some(h)) = (args.width, args.height) else { bail!("--input needs --width and --height") };
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if bytes.len() != w * h {
                bail!("{}: {} bytes, a {w} x {h} Gray8 frame has {}", path.display(), bytes.len(), w * h);
            }
            let b = args.bbox.as_deref().ok_or_else(|| anyhow!("--input needs --box"))?;
            (bytes, w, h, parse_box(b)?)
        }
        None => simulated_frame()?,
    };
    let settings = SegmentSettings {
        model: args.model,
        threads: args.threads,
        model_dir: args.model_dir.clone(),
        ..Default::default()
    };
    let load_started = Instant::now();
    let mut model = load_model(&settings)?;
    let load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    let mut pre = Preprocessor::new(width, height);
    let mut plane = vec![0.0; 256 * 256];
    let letterbox: Letterbox = pre.run(&frame, width, height, &mut plane)?;
    let prompt = Prompt::from_box(letterbox.box_to_model(bbox));
    let mut logits = vec![0.0; 256 * 256];
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    // Per op kind, the encoder's and the decoder's, over the timed frames.
    let mut profiles = [OpProfile::default(), OpProfile::default()];
    for i in 0..args.warmup + args.frames {
        let profiled = args.profile && i >= args.warmup;
        let mut part = |model: &mut LiteMedSam<CpuOps>, which: usize, run: &mut dyn FnMut(&mut LiteMedSam<CpuOps>)| {
            if profiled {
                model.ops_mut().start_profile();
            }
            let t = Instant::now();
            run(model);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if let Some(p) = model.ops_mut().take_profile() {
                profiles[which].add(&p);
            }
            ms
        };
        let e = part(&mut model, 0, &mut |m| m.encode(&plane));
        let d = part(&mut model, 1, &mut |m| {
            m.decode(&prompt, &mut logits);
        });
        if i >= args.warmup {
            enc.push(e);
            dec.push(d);
        }
    }
    let engine =
        format!("sonoflow {} cpu ({} threads), {} encoder", env!("CARGO_PKG_VERSION"), args.threads, args.model.name());
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": engine, "model": args.model.name(), "encoder_ms": enc, "decoder_ms": dec, "load_ms": load_ms
            })
        );
    } else {
        let stats = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            (percentile(&s, 0.5), percentile(&s, 0.9))
        };
        let total: Vec<f64> = enc.iter().zip(&dec).map(|(a, b)| a + b).collect();
        let ((e50, e90), (d50, d90), (t50, t90)) = (stats(&enc), stats(&dec), stats(&total));
        println!("{engine}: model load {load_ms:.0} ms; {} frames", args.frames);
        println!(
            "  encoder p50 {e50:.1} ms p90 {e90:.1} ms; decoder p50 {d50:.1} ms p90 {d90:.1} ms; total p50 {t50:.1} ms p90 {t90:.1} ms"
        );
    }
    if args.profile {
        let per_frame = |ns: u64| ns as f64 / 1e6 / args.frames as f64;
        let [e, d] = &profiles;
        eprintln!("where the time goes ({} frames; ms per frame, calls per frame):", args.frames);
        eprintln!("  {:42} {:>16} {:>16}", "", "encoder", "decoder");
        for (i, kind) in OpKind::ALL.iter().enumerate() {
            eprintln!(
                "  {:42} {:8.1} ms {:4}  {:8.1} ms {:4}",
                kind.name(),
                per_frame(e.ns[i]),
                e.calls[i] / args.frames as u64,
                per_frame(d.ns[i]),
                d.calls[i] / args.frames as u64
            );
        }
        let total = |p: &OpProfile| per_frame(p.ns.iter().sum());
        eprintln!("  {:42} {:8.1} ms       {:8.1} ms", "all ops", total(e), total(d));
    }
    Ok(())
}
