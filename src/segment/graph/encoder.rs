//! LiteMedSAM's image encoder (TinyViT at 256 × 256) as a sequence of [`Ops`]:
//! 256×256 input plane → 64×64×256 image embedding. `tools/reference/README.md` §2 is the
//! specification; the comments here name the places a reimplementation gets subtly wrong.
//!
//! Buffers (token layout, planned once): `x` holds the running activation, `y` a second token
//! buffer, `big1`/`big2` the wide intermediates (the 256×256×256 MBConv hidden layers), `embedding`
//! the output.

use super::{WeightSource, linear, norm};
use crate::model::WeightsError;
use crate::segment::ops::{ArenaPlan, Buf, Epilogue, Ops, WindowGeometry, expand_window_bias};

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

struct MbConv<O: Ops> {
    conv1: O::Linear,
    conv2: O::Depthwise,
    conv3: O::Linear,
}

struct PatchMerging<O: Ops> {
    conv1: O::Linear,
    conv2: O::Depthwise,
    conv3: O::Linear,
    stride: usize,
    side_in: usize,
    dim_in: usize,
    dim_out: usize,
}

struct Block<O: Ops> {
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

fn geometry(stage: usize) -> WindowGeometry {
    let (side, ws) = (SIDES[stage], WINDOWS[stage]);
    let padded = side.next_multiple_of(ws);
    WindowGeometry {
        height: side,
        width: side,
        padded_height: padded,
        padded_width: padded,
        window: ws,
        heads: HEADS[stage],
        head_dim: DIMS[stage] / HEADS[stage],
    }
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
        let mut mbconv = Vec::new();
        for b in 0..DEPTHS[0] {
            let q = format!("{p}.layers.0.blocks.{b}");
            let (c, h) = (DIMS[0], 4 * DIMS[0]);
            mbconv.push(MbConv {
                conv1: w.conv1x1(ops, &format!("{q}.conv1"), h, c)?,
                conv2: w.depthwise(ops, &format!("{q}.conv2"), h)?,
                conv3: w.conv1x1(ops, &format!("{q}.conv3"), c, h)?,
            });
        }
        let mut merges = Vec::new();
        for s in 0..3 {
            let q = format!("{p}.layers.{s}.downsample");
            let (cin, cout) = (DIMS[s], DIMS[s + 1]);
            merges.push(PatchMerging {
                conv1: w.conv1x1(ops, &format!("{q}.conv1"), cout, cin)?,
                conv2: w.depthwise(ops, &format!("{q}.conv2"), cout)?,
                conv3: w.conv1x1(ops, &format!("{q}.conv3"), cout, cout)?,
                // Hard-coded in the reference: no downsampling into 320 channels.
                stride: if cout == 320 { 1 } else { 2 },
                side_in: SIDES[s],
                dim_in: cin,
                dim_out: cout,
            });
        }
        let mut stages = Vec::new();
        for s in 1..4 {
            let c = DIMS[s];
            let g = geometry(s);
            let mut blocks = Vec::new();
            for b in 0..DEPTHS[s] {
                let q = format!("{p}.layers.{s}.blocks.{b}");
                blocks.push(Block {
                    norm: norm(ops, w, &format!("{q}.attn.norm"), c)?,
                    qkv: linear(ops, w, &format!("{q}.attn.qkv"), 3 * c, c)?,
                    padding_qkv: ops.vector(&padding_qkv(w, &q, c)?),
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
                });
            }
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
        // MBConv blocks (GELU after the residual add), ping-ponging between x and y.
        let (x64, y64) = (x.prefix(pixels * 64), y.prefix(pixels * 64));
        for (i, m) in self.mbconv.iter().enumerate() {
            let (from, to) = if i % 2 == 0 { (x64, y64) } else { (y64, x64) };
            ops.mbconv(from, 256, 256, &m.conv1, &m.conv2, &m.conv3, to);
        }
        if self.mbconv.len() % 2 == 1 {
            ops.copy(y64, x64);
        }
        for (s, blocks) in self.stages.iter().enumerate() {
            self.merge(ops, &self.merges[s]);
            // Each block leaves its output in its second buffer: ping-pong between x and y.
            for (i, b) in blocks.iter().enumerate() {
                let (from, to) = if i % 2 == 0 { (x, y) } else { (y, x) };
                self.block(ops, b, from, to);
            }
            if blocks.len() % 2 == 1 {
                let n = b_tokens(blocks);
                ops.copy(y.prefix(n), x.prefix(n));
            }
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
        ops.im2col3x3(big2.prefix(tokens * 256), EMBED_SIDE, EMBED_SIDE, 256, big1.prefix(tokens * 9 * 256));
        ops.linear(big1.prefix(tokens * 9 * 256), tokens, &self.neck2, y.prefix(tokens * 256), Epilogue::None);
        ops.layer_norm(y.prefix(tokens * 256), tokens, &self.neck3.0, &self.neck3.1, LN2D_EPS, self.embedding);
    }

    fn merge(&self, ops: &mut O, m: &PatchMerging<O>) {
        let (x, big1, big2) = (self.x, self.big1, self.big2);
        let n_in = m.side_in * m.side_in;
        let side_out = (m.side_in + 2 - 3) / m.stride + 1;
        let n_out = side_out * side_out;
        let h1 = big1.prefix(n_in * m.dim_out);
        ops.linear(x.prefix(n_in * m.dim_in), n_in, &m.conv1, h1, Epilogue::Gelu);
        let h2 = big2.prefix(n_out * m.dim_out);
        ops.depthwise(h1, m.side_in, m.side_in, m.dim_out, m.stride, &m.conv2, true, h2);
        ops.linear(h2, n_out, &m.conv3, x.prefix(n_out * m.dim_out), Epilogue::None);
    }

    /// One TinyViT block from `x` into `y` (`x` is overwritten on the way).
    fn block(&self, ops: &mut O, b: &Block<O>, x: Buf, y: Buf) {
        let big1 = self.big1;
        let g = &b.geometry;
        let c = g.heads * g.head_dim;
        let n = g.height * g.width;
        let x = x.prefix(n * c);
        // The reference pads with zeros *before* the attention's LayerNorm, so padding tokens
        // take part as keys and values (there is no mask), all with one qkv row, computed at
        // plan time; only the image's own tokens go through the norm and the product.
        ops.layer_norm(x, n, &b.norm.0, &b.norm.1, LN_EPS, y.prefix(n * c));
        ops.linear(y.prefix(n * c), n, &b.qkv, big1.prefix(n * 3 * c), Epilogue::None);
        ops.window_attention(big1.prefix(n * 3 * c), &b.padding_qkv, g, &b.biases, y.prefix(n * c));
        ops.linear(y.prefix(n * c), n, &b.proj, x, Epilogue::AddToOutput);
        // The local depthwise conv has no residual and no activation.
        ops.depthwise(x, g.height, g.width, c, 1, &b.local, false, y.prefix(n * c));
        ops.mlp(y.prefix(n * c), n, &b.mlp_norm.0, &b.mlp_norm.1, LN_EPS, &b.fc1, &b.fc2);
    }
}

/// Floats of one block's activation in a stage.
fn b_tokens<O: Ops>(blocks: &[Block<O>]) -> usize {
    blocks.first().map_or(0, |b| b.geometry.height * b.geometry.width * b.geometry.heads * b.geometry.head_dim)
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
