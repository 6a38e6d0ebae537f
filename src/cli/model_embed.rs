//! `sonoflow model embed`: the teacher's image embeddings for distillation, computed by
//! sonoflow's own LiteMedSAM engine (parity-checked against PyTorch, about 3× faster than it on
//! two cores). `tools/distill/embed.py` drives it through a pipe: 256 × 256 float32 planes in,
//! 4096 × 256 float32 embeddings out, one after the other, until stdin ends.

use std::io::{BufWriter, ErrorKind, Read, Write};

use anyhow::{Context, anyhow};

use sonoflow::segment::settings::SegmentSettings;
use sonoflow::segment::stage::load_model;

use super::model::EmbedArgs;
use super::{Exit, Failure};

const PLANE: usize = 256 * 256;
const EMBEDDING: usize = 4096 * 256;

pub fn execute(args: EmbedArgs) -> Result<Exit, Failure> {
    let settings = SegmentSettings { threads: args.threads, model_dir: args.dir, ..Default::default() };
    let mut model = load_model(&settings).map_err(|e| Failure::new(Exit::Input, e))?;
    let (mut bytes, mut plane) = (vec![0u8; PLANE * 4], vec![0f32; PLANE]);
    let mut embedding = vec![0f32; EMBEDDING];
    let mut out_bytes = vec![0u8; EMBEDDING * 4];
    let (mut stdin, mut stdout) = (std::io::stdin().lock(), BufWriter::new(std::io::stdout().lock()));
    let io = |e: anyhow::Error| Failure::new(Exit::Input, e);
    for index in 0.. {
        if !read_plane(&mut stdin, &mut bytes).map_err(|e| io(e.context(format!("plane {index}"))))? {
            break;
        }
        for (v, b) in plane.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        model.encode(&plane);
        model.embedding(&mut embedding);
        for (b, v) in out_bytes.chunks_exact_mut(4).zip(&embedding) {
            b.copy_from_slice(&v.to_le_bytes());
        }
        stdout
            .write_all(&out_bytes)
            .and_then(|()| stdout.flush())
            .context("writing the embedding to stdout")
            .map_err(io)?;
    }
    Ok(Exit::Ok)
}

/// Fills `bytes` with the next plane; false at a clean end of input, an error for a partial plane.
fn read_plane(input: &mut impl Read, bytes: &mut [u8]) -> anyhow::Result<bool> {
    let mut filled = 0;
    while filled < bytes.len() {
        match input.read(&mut bytes[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(anyhow!("stdin ended {filled} bytes into a {}-byte plane", bytes.len())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading stdin"),
        }
    }
    Ok(true)
}
