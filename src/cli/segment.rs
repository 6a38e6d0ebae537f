//! `sonoflow segment`: LiteMedSAM on one image (PNG) or one frame of a sequence file, from a box
//! and/or points; writes the mask as a PNG (0/255) and optionally the frame-size logits.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Args;

use sonoflow::frame::{PixelData, PixelFormat};
use sonoflow::io::plus::SequenceReader;
use sonoflow::segment::graph::prompt::{Point, Prompt};
use sonoflow::segment::settings::{ModelChoice, SegmentSettings};
use sonoflow::segment::stage::load_model;
use sonoflow::segment::{Preprocessor, logits_to_frame, mask_bounding_box};

use super::{Exit, Failure, parse_box, parse_numbers};

#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// A grey (or colour, converted to grey) PNG image.
    #[arg(long, conflicts_with = "input")]
    pub image: Option<PathBuf>,
    /// A sequence file (`.mha`, `.mhd`, `.seq.nrrd`); with --frame.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Frame index in --input.
    #[arg(long, default_value_t = 0)]
    pub frame: usize,
    /// Box prompt `x0,y0,x1,y1` in image pixels.
    #[arg(long = "box")]
    pub bbox: Option<String>,
    /// Point prompt `x,y` (target) or `x,y,0` (not target); repeat for more (at most 8).
    #[arg(long = "point")]
    pub points: Vec<String>,
    /// Mask PNG to write (0 background, 255 target).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the frame-size logits as little-endian f32, row-major.
    #[arg(long)]
    pub logits: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Folder of the model (default: the first engines/litemedsam found upwards).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// The image encoder: litemedsam (quality) or student (real time).
    #[arg(long, value_enum, default_value = "litemedsam")]
    pub model: ModelChoice,
}

/// A Gray8 image from a PNG (grey, grey+alpha, RGB or RGBA; 8 or 16 bits).
fn read_png(path: &Path) -> anyhow::Result<(Vec<u8>, usize, usize)> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().with_context(|| format!("{}: not a readable PNG", path.display()))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| anyhow!("{}: image too large", path.display()))?];
    let info = reader.next_frame(&mut buf).with_context(|| format!("{}: corrupt PNG data", path.display()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let grey = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|px| match channels {
            1 | 2 => px[0],
            _ => sonoflow::capture::luma(px[0], px[1], px[2]),
        })
        .collect();
    Ok((grey, w, h))
}

fn read_sequence_frame(path: &Path, index: usize) -> anyhow::Result<(Vec<u8>, usize, usize)> {
    let mut reader = SequenceReader::open(path)?;
    let (w, h, format) = (reader.header().width, reader.header().height, reader.header().pixel_format);
    if format != PixelFormat::Gray8 {
        bail!("{}: {format} frames; segmentation takes 8-bit frames", path.display());
    }
    let count = reader.frames().len();
    if index >= count {
        bail!("{}: no frame {index} (the file has {count})", path.display());
    }
    let mut data = PixelData::zeroed(PixelFormat::Gray8, w * h);
    for _ in 0..=index {
        reader.read_next(&mut data)?;
    }
    let PixelData::Gray8(v) = data else { unreachable!("made as Gray8") };
    Ok((v, w, h))
}

fn write_png(path: &Path, mask: &[u8], w: usize, h: usize) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = mask.iter().map(|&m| if m != 0 { 255 } else { 0 }).collect();
    encoder.write_header()?.write_image_data(&pixels).with_context(|| format!("writing {}", path.display()))
}

pub fn execute(args: SegmentArgs) -> Result<Exit, Failure> {
    let usage = |e: anyhow::Error| Failure::new(Exit::Usage, e);
    let (frame, w, h) = match (&args.image, &args.input) {
        (Some(png), _) => read_png(png).map_err(|e| Failure::new(Exit::Input, e))?,
        (None, Some(seq)) => read_sequence_frame(seq, args.frame).map_err(|e| Failure::new(Exit::Input, e))?,
        (None, None) => return Err(usage(anyhow!("give --image IN.png or --input SEQ.mha"))),
    };
    let bbox = match &args.bbox {
        Some(text) => Some(parse_box(text).map_err(usage)?),
        None => None,
    };
    if let Some([x0, y0, x1, y1]) = bbox {
        // A box that misses the image would prompt the model with nothing and write an empty mask.
        if x1 <= 0.0 || y1 <= 0.0 || x0 >= w as f32 || y0 >= h as f32 {
            return Err(usage(anyhow!(
                "--box {x0},{y0},{x1},{y1} lies entirely outside the {w}x{h} image (x in 0..{w}, y in 0..{h})"
            )));
        }
    }
    let settings = SegmentSettings {
        model: args.model,
        bbox,
        threads: args.threads,
        model_dir: args.model_dir.clone(),
        ..Default::default()
    };
    settings.validate().map_err(|e| usage(anyhow!("--{e}")))?;
    let mut pre = Preprocessor::new(w, h);
    let mut plane = vec![0.0; 256 * 256];
    let letterbox = pre.run(&frame, w, h, &mut plane).map_err(|e| Failure::new(Exit::Input, e))?;
    let mut prompt = Prompt { bbox: bbox.map(|b| letterbox.box_to_model(b)), ..Default::default() };
    for text in &args.points {
        let v = parse_numbers(text, "--point").map_err(usage)?;
        let (x, y, positive) = match v[..] {
            [x, y] => (x, y, true),
            [x, y, l] if l == 0.0 || l == 1.0 => (x, y, l == 1.0),
            _ => return Err(usage(anyhow!("--point {text:?}: expected x,y or x,y,0 or x,y,1"))),
        };
        let [x, y] = letterbox.point_to_model([x, y]);
        if !prompt.push_point(Point { x, y, positive }) {
            return Err(usage(anyhow!("at most 8 --point")));
        }
    }
    if prompt.is_empty() {
        return Err(usage(anyhow!("give a prompt: --box x0,y0,x1,y1 and/or --point x,y")));
    }
    let mut model = load_model(&settings).map_err(|e| Failure::new(Exit::Input, e))?;
    let mut low_res = vec![0.0; 256 * 256];
    model.encode(&plane);
    let iou = model.decode(&prompt, &mut low_res);
    let (mut logits, mut mask) = (vec![0.0; w * h], vec![0u8; w * h]);
    logits_to_frame(&low_res, &letterbox, &mut logits, &mut mask).map_err(|e| Failure::new(Exit::Internal, e))?;
    write_png(&args.out, &mask, w, h).map_err(|e| Failure::new(Exit::Internal, e))?;
    if let Some(path) = &args.logits {
        let bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, bytes)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(|e| Failure::new(Exit::Internal, e))?;
    }
    let area = mask.iter().filter(|&&m| m != 0).count();
    let bounds = mask_bounding_box(&mask, w, h).ok().flatten();
    eprintln!(
        "sonoflow: {w}x{h} frame: mask of {area} pixels{}, predicted IoU {iou:.3}; wrote {}",
        bounds.map_or(String::new(), |[x0, y0, x1, y1]| format!(" in [{x0}, {y0}, {x1}, {y1}]")),
        args.out.display()
    );
    Ok(Exit::Ok)
}
