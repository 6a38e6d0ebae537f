//! LiteMedSAM's image encoder (TinyViT at 256 × 256) as a sequence of [`Ops`]:
//! 256×256 input plane → 64×64×256 image embedding. `tools/reference/README.md` §2 is the
//! specification; the comments here name the places a reimplementation gets subtly wrong.
//!
//! Buffers (token layout, planned once): `x` holds the running activation, `y` a second token
//! buffer, `big1`/`big2` the wide intermediates (the 256×256×256 MBConv hidden layers), `embedding`
//! the output.

use super::{WeightSource, linear, norm};
use crate::model::WeightsError;
use crate::segment::ops::{ArenaPlan, Buf, Epilogue, ImageShape, Ops, WindowGeometry, expand_window_bias};

pub const INPUT_SIDE: usize = 256;
pub const EMBED_SIDE: usize = 64;
pub const EMBED_DIM: usize = 256;
const DIMS: [usize; 4] = [64, 128, 160, 320];
const DEPTHS: [usize; 4] = [2, 2, 6, 2];
const HEADS: [usize; 4] = [2, 4, 5, 10];
const WINDOWS: [usize; 4] = [7, 7, 14, 7];
/// Token-grid side of each stage: the patch embedding keeps 256; merges halve it twice, and the
/// merge into the last stage keeps 64 (stride 1 for 320 channels).
const SIDES: [usize; 4] = [256, 128, 64, 64];
const LN_EPS: f32 = 1e-5;
const LN2D_EPS: f32 = 1e-6;

/// TinyViT's MBConv (the student uses it too).
pub(super) struct MbConv<O: Ops> {
    pub conv1: O::Linear,
    pub conv2: O::Depthwise,
    pub conv3: O::Linear,
}

impl<O: Ops> MbConv<O> {
    /// `prefix.conv{1,2,3}` with `c` channels and 4c hidden.
    pub(super) fn load(ops: &mut O, w: &WeightSource, prefix: &str, c: usize) -> Result<Self, WeightsError> {
        Ok(MbConv {
            conv1: w.conv1x1(ops, &format!("{prefix}.conv1"), 4 * c, c)?,
            conv2: w.depthwise(ops, &format!("{prefix}.conv2"), 4 * c)?,
            conv3: w.conv1x1(ops, &format!("{prefix}.conv3"), c, 4 * c)?,
        })
    }
}

/// TinyViT's PatchMerging (the student uses it too).
pub(super) struct PatchMerging<O: Ops> {
    conv1: O::Linear,
    conv2: O::Depthwise,
    conv3: O::Linear,
    stride: usize,
    side_in: usize,
    dim_in: usize,
    dim_out: usize,
}

/// One TinyViT block (the student uses it too).
pub(super) struct Block<O: Ops> {
    norm: (O::Vector, O::Vector),
    qkv: O::Linear,
    /// The qkv row of a token that pads the grid to whole windows (see `block`).
    padding_qkv: O::Vector,
    biases: O::Vector,
    proj: O::Linear,
    local: O::Depthwise,
    mlp_norm: (O::Vector, O::Vector),
    fc1: O::Linear,
    fc2: O::Linear,
    geometry: WindowGeometry,
}

pub struct Encoder<O: Ops> {
    patch0: O::Linear,
    patch2: O::Linear,
    mbconv: Vec<MbConv<O>>,
    merges: Vec<PatchMerging<O>>,
    /// Blocks of stages 1, 2, 3.
    stages: Vec<Vec<Block<O>>>,
    neck0: O::Linear,
    neck1: (O::Vector, O::Vector),
    neck2: O::Linear,
    neck3: (O::Vector, O::Vector),
    pub input: Buf,
    x: Buf,
    y: Buf,
    big1: Buf,
    big2: Buf,
    pub embedding: Buf,
}

impl<O: Ops> PatchMerging<O> {
    /// `prefix.conv{1,2,3}`: `dim_in` → `dim_out` channels on a `side_in`² grid.
    pub(super) fn load(
        ops: &mut O,
        w: &WeightSource,
        prefix: &str,
        (dim_in, dim_out): (usize, usize),
        side_in: usize,
        stride: usize,
    ) -> Result<Self, WeightsError> {
        Ok(PatchMerging {
            conv1: w.conv1x1(ops, &format!("{prefix}.conv1"), dim_out, dim_in)?,
            conv2: w.depthwise(ops, &format!("{prefix}.conv2"), dim_out)?,
            conv3: w.conv1x1(ops, &format!("{prefix}.conv3"), dim_out, dim_out)?,
            stride,
            side_in,
            dim_in,
            dim_out,
        })
    }

    /// Side of the output grid.
    pub(super) fn side_out(&self) -> usize {
        (self.side_in + 2 - 3) / self.stride + 1
    }

    /// `x` (side_in² × dim_in tokens) → `out` (side_out² × dim_out); `h1` and `h2` are scratch
    /// of at least side_in² · dim_out floats. `out` may be `x`.
    pub(super) fn run(&self, ops: &mut O, x: Buf, out: Buf, h1: Buf, h2: Buf) {
        let n_in = self.side_in * self.side_in;
        let n_out = self.side_out() * self.side_out();
        let h1 = h1.prefix(n_in * self.dim_out);
        ops.linear(x.prefix(n_in * self.dim_in), n_in, &self.conv1, h1, Epilogue::Gelu);
        let h2 = h2.prefix(n_out * self.dim_out);
        ops.depthwise(h1, ImageShape::square(self.side_in, self.dim_out), self.stride, &self.conv2, true, h2);
        ops.linear(h2, n_out, &self.conv3, out.prefix(n_out * self.dim_out), Epilogue::None);
    }
}

impl<O: Ops> Block<O> {
    /// `prefix.attn.*`, `prefix.local_conv`, `prefix.mlp.*` for the block geometry `g`.
    pub(super) fn load(ops: &mut O, w: &WeightSource, q: &str, g: WindowGeometry) -> Result<Self, WeightsError> {
        let c = g.heads * g.head_dim;
        Ok(Block {
            norm: norm(ops, w, &format!("{q}.attn.norm"), c)?,
            qkv: linear(ops, w, &format!("{q}.attn.qkv"), 3 * c, c)?,
            padding_qkv: ops.vector(&padding_qkv(w, q, c)?),
            biases: {
                let t = w.get(&format!("{q}.attn.attention_biases"), &[g.heads, g.window * g.window])?;
                ops.vector(&expand_window_bias(t, g.heads, g.window))
            },
            proj: linear(ops, w, &format!("{q}.attn.proj"), c, c)?,
            local: w.depthwise(ops, &format!("{q}.local_conv"), c)?,
            mlp_norm: norm(ops, w, &format!("{q}.mlp.norm"), c)?,
            fc1: linear(ops, w, &format!("{q}.mlp.fc1"), 4 * c, c)?,
            fc2: linear(ops, w, &format!("{q}.mlp.fc2"), c, 4 * c)?,
            geometry: g,
        })
    }

    /// Floats of the block's activation.
    pub(super) fn activation_len(&self) -> usize {
        let g = &self.geometry;
        g.height * g.width * g.heads * g.head_dim
    }

    /// The block from `x` into `y` (`x` is overwritten on the way); `qkv` is scratch of at least
    /// 3 × the activation.
    pub(super) fn run(&self, ops: &mut O, x: Buf, y: Buf, qkv: Buf) {
        let g = &self.geometry;
        let c = g.heads * g.head_dim;
        let n = g.height * g.width;
        let x = x.prefix(n * c);
        // The reference pads with zeros *before* the attention's LayerNorm, so padding tokens
        // take part as keys and values (there is no mask), all with one qkv row, computed at
        // plan time; only the image's own tokens go through the norm and the product.
        ops.layer_norm(x, n, &self.norm.0, &self.norm.1, LN_EPS, y.prefix(n * c));
        ops.linear(y.prefix(n * c), n, &self.qkv, qkv.prefix(n * 3 * c), Epilogue::None);
        ops.window_attention(qkv.prefix(n * 3 * c), &self.padding_qkv, g, &self.biases, y.prefix(n * c));
        ops.linear(y.prefix(n * c), n, &self.proj, x, Epilogue::AddToOutput);
        // The local depthwise conv has no residual and no activation.
        let shape = ImageShape { height: g.height, width: g.width, channels: c };
        ops.depthwise(x, shape, 1, &self.local, false, y.prefix(n * c));
        ops.mlp(y.prefix(n * c), n, &self.mlp_norm.0, &self.mlp_norm.1, LN_EPS, &self.fc1, &self.fc2);
    }
}

/// Runs MBConv blocks (GELU after the residual add) on a `side`² × `c` image in turn,
/// ping-ponging between `x` and `y`; the result ends in `x`.
pub(super) fn run_mbconvs<O: Ops>(ops: &mut O, blocks: &[MbConv<O>], side: usize, c: usize, x: Buf, y: Buf) {
    let (x, y) = (x.prefix(side * side * c), y.prefix(side * side * c));
    for (i, m) in blocks.iter().enumerate() {
        let (from, to) = if i % 2 == 0 { (x, y) } else { (y, x) };
        ops.mbconv(from, ImageShape::square(side, c), &m.conv1, &m.conv2, &m.conv3, to);
    }
    if blocks.len() % 2 == 1 {
        ops.copy(y, x);
    }
}

/// Runs `blocks` in turn, ping-ponging between `x` and `y`; the result ends in `x`.
pub(super) fn run_blocks<O: Ops>(ops: &mut O, blocks: &[Block<O>], x: Buf, y: Buf, qkv: Buf) {
    for (i, b) in blocks.iter().enumerate() {
        let (from, to) = if i % 2 == 0 { (x, y) } else { (y, x) };
        b.run(ops, from, to, qkv);
    }
    if blocks.len() % 2 == 1 {
        let n = blocks[0].activation_len();
        ops.copy(y.prefix(n), x.prefix(n));
    }
}

/// Window geometry of a square `side`² token grid.
pub(super) fn window_geometry(side: usize, window: usize, heads: usize, channels: usize) -> WindowGeometry {
    let padded = side.next_multiple_of(window);
    WindowGeometry {
        height: side,
        width: side,
        padded_height: padded,
        padded_width: padded,
        window,
        heads,
        head_dim: channels / heads,
    }
}

fn geometry(stage: usize) -> WindowGeometry {
    window_geometry(SIDES[stage], WINDOWS[stage], HEADS[stage], DIMS[stage])
}

impl<O: Ops> Encoder<O> {
    pub fn plan(ops: &mut O, w: &WeightSource, arena: &mut ArenaPlan) -> Result<Self, WeightsError> {
        let p = "image_encoder";
        // The first 1×1 conv sees three identical channels (grey repeated): fold them into one.
        let seq0 = w.get(&format!("{p}.patch_embed.seq.0.weight"), &[32, 3, 1, 1])?;
        let summed: Vec<f32> = seq0.chunks(3).map(|c| c[0] + c[1] + c[2]).collect();
        let seq0_bias = w.get(&format!("{p}.patch_embed.seq.0.bias"), &[32])?;
        let patch0 = ops.linear_weight(&summed, 32, 1, Some(seq0_bias));
        let patch2 = w.conv1x1(ops, &format!("{p}.patch_embed.seq.2"), 64, 32)?;
        let mbconv = (0..DEPTHS[0])
            .map(|b| MbConv::load(ops, w, &format!("{p}.layers.0.blocks.{b}"), DIMS[0]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut merges = Vec::new();
        for s in 0..3 {
            let (cin, cout) = (DIMS[s], DIMS[s + 1]);
            // Hard-coded in the reference: no downsampling into 320 channels.
            let stride = if cout == 320 { 1 } else { 2 };
            merges.push(PatchMerging::load(
                ops,
                w,
                &format!("{p}.layers.{s}.downsample"),
                (cin, cout),
                SIDES[s],
                stride,
            )?);
        }
        let mut stages = Vec::new();
        for s in 1..4 {
            let blocks = (0..DEPTHS[s])
                .map(|b| Block::load(ops, w, &format!("{p}.layers.{s}.blocks.{b}"), geometry(s)))
                .collect::<Result<Vec<_>, _>>()?;
            stages.push(blocks);
        }
        let neck0 = {
            let t = w.get(&format!("{p}.neck.0.weight"), &[256, 320, 1, 1])?;
            ops.linear_weight(t, 256, 320, None)
        };
        let neck1 = norm(ops, w, &format!("{p}.neck.1"), 256)?;
        let neck2 = {
            // (out, in, 3, 3) → rows (tap · in + in_channel), columns out, to match im2col3x3.
            let t = w.get(&format!("{p}.neck.2.weight"), &[256, 256, 3, 3])?;
            let mut m = vec![0.0; 9 * 256 * 256];
            for o in 0..256 {
                for i in 0..256 {
                    for tap in 0..9 {
                        m[(tap * 256 + i) * 256 + o] = t[(o * 256 + i) * 9 + tap];
                    }
                }
            }
            ops.matrix_weight(&m, 9 * 256, 256, None)
        };
        let neck3 = norm(ops, w, &format!("{p}.neck.3"), 256)?;
        let pixels = INPUT_SIDE * INPUT_SIDE;
        Ok(Encoder {
            patch0,
            patch2,
            mbconv,
            merges,
            stages,
            neck0,
            neck1,
            neck2,
            neck3,
            input: arena.alloc(pixels),
            x: arena.alloc(pixels * DIMS[0]),
            y: arena.alloc(pixels * DIMS[0]),
            big1: arena.alloc(pixels * 4 * DIMS[0]),
            big2: arena.alloc(pixels * 4 * DIMS[0]),
            embedding: arena.alloc(EMBED_SIDE * EMBED_SIDE * EMBED_DIM),
        })
    }

    /// Runs the encoder on the plane in `self.input`; the embedding lands in `self.embedding`
    /// (4096 tokens × 256 channels, token `y · 64 + x`).
    pub fn run(&self, ops: &mut O) {
        let (x, y, big1, big2) = (self.x, self.y, self.big1, self.big2);
        let pixels = INPUT_SIDE * INPUT_SIDE;
        // Patch embedding: two 1×1 convolutions at full resolution (no downsampling here).
        ops.linear(self.input, pixels, &self.patch0, big1.prefix(pixels * 32), Epilogue::Gelu);
        ops.linear(big1.prefix(pixels * 32), pixels, &self.patch2, x.prefix(pixels * 64), Epilogue::None);
        run_mbconvs(ops, &self.mbconv, INPUT_SIDE, DIMS[0], x, y);
        for (s, blocks) in self.stages.iter().enumerate() {
            self.merges[s].run(ops, x, x, big1, big2);
            run_blocks(ops, blocks, x, y, big1);
        }
        // Neck: 1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d (eps 1e-6, over channels).
        let tokens = EMBED_SIDE * EMBED_SIDE;
        ops.linear(x.prefix(tokens * 320), tokens, &self.neck0, y.prefix(tokens * 256), Epilogue::None);
        ops.layer_norm(
            y.prefix(tokens * 256),
            tokens,
            &self.neck1.0,
            &self.neck1.1,
            LN2D_EPS,
            big2.prefix(tokens * 256),
        );
        ops.im2col3x3(big2.prefix(tokens * 256), ImageShape::square(EMBED_SIDE, 256), big1.prefix(tokens * 9 * 256));
        ops.linear(big1.prefix(tokens * 9 * 256), tokens, &self.neck2, y.prefix(tokens * 256), Epilogue::None);
        ops.layer_norm(y.prefix(tokens * 256), tokens, &self.neck3.0, &self.neck3.1, LN2D_EPS, self.embedding);
    }
}

/// The qkv row of a zero token after the attention's LayerNorm: the norm maps zeros to its shift
/// β exactly, so the row is `W·β + b` (accumulated in f64, then rounded once).
fn padding_qkv(w: &WeightSource, block: &str, c: usize) -> Result<Vec<f32>, WeightsError> {
    let beta = w.get(&format!("{block}.attn.norm.bias"), &[c])?;
    let weight = w.get(&format!("{block}.attn.qkv.weight"), &[3 * c, c])?;
    let bias = w.get(&format!("{block}.attn.qkv.bias"), &[3 * c])?;
    Ok((0..3 * c)
        .map(|o| {
            let row = &weight[o * c..(o + 1) * c];
            (bias[o] as f64 + row.iter().zip(beta).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()) as f32
        })
        .collect())
}
