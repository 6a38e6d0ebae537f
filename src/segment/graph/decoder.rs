//! SAM's mask decoder (LiteMedSAM's weights) as [`Ops`]: a two-way transformer between the
//! output tokens and the 64×64 image embedding, 4× upscaling by transposed convolutions, and the
//! hypernetwork that turns mask token 0 into 256×256 logits; the IoU head rates the mask.
//! Multimask output is off: mask token 0 and IoU output 0 (`tools/reference/README.md` §4).

use super::prompt::{DIM, MAX_SPARSE_TOKENS};
use super::{WeightSource, linear, norm};
use crate::model::WeightsError;
use crate::segment::ops::{ArenaPlan, AttentionWeights, Buf, Epilogue, Ops};

const SIDE: usize = 64;
const KEYS: usize = SIDE * SIDE;
const HEADS: usize = 8;
/// Cross-attention works at half width (attention downsample rate 2).
const CROSS_DIM: usize = DIM / 2;
const MLP_DIM: usize = 2048;
/// IoU token + 4 mask tokens.
const OUTPUT_TOKENS: usize = 5;
pub const MAX_TOKENS: usize = OUTPUT_TOKENS + MAX_SPARSE_TOKENS;
const LN_EPS: f32 = 1e-5;
const LN2D_EPS: f32 = 1e-6;
pub const MASK_SIDE: usize = 256;

struct Layer<O: Ops> {
    self_attn: O::Attention,
    norm1: (O::Vector, O::Vector),
    to_image: O::Attention,
    norm2: (O::Vector, O::Vector),
    lin1: O::Linear,
    lin2: O::Linear,
    norm3: (O::Vector, O::Vector),
    norm4: (O::Vector, O::Vector),
    to_tokens: O::Attention,
}

/// Activation buffers.
struct Buffers {
    /// Output + prompt tokens, and their initial values (the queries' positional encoding).
    tokens: Buf,
    token_pe: Buf,
    /// The image side (4096 × 256), its positional encoding, their sum, and an attention output.
    keys: Buf,
    key_pe: Buf,
    keys_pe: Buf,
    key_delta: Buf,
    /// Token-sized scratch.
    t: [Buf; 2],
    hidden: Buf,
    hyper: [Buf; 3],
    iou: [Buf; 3],
    pub logits: Buf,
}

pub struct Decoder<O: Ops> {
    output_tokens: Vec<f32>,
    no_mask: O::Vector,
    layers: Vec<Layer<O>>,
    final_attn: O::Attention,
    final_norm: (O::Vector, O::Vector),
    up1: O::Linear,
    up1_norm: (O::Vector, O::Vector),
    up2: O::Linear,
    hyper: [O::Linear; 3],
    iou: [O::Linear; 3],
    b: Buffers,
    /// Where the dense positional encoding is uploaded once.
    pub key_pe: Buf,
    pub logits: Buf,
    pub iou_out: Buf,
}

/// SAM's `Attention` (q, k, v to `inner` channels, 8 heads, and back) between up to
/// `max_queries` and `max_keys` rows.
fn attention<O: Ops>(
    ops: &mut O,
    w: &WeightSource,
    prefix: &str,
    inner: usize,
    max_queries: usize,
    max_keys: usize,
) -> Result<O::Attention, WeightsError> {
    let pair = |name: &str, out: usize, inputs: usize| -> Result<(&[f32], &[f32]), WeightsError> {
        let weight = w.get(&format!("{prefix}.{name}.weight"), &[out, inputs])?;
        Ok((weight, w.get(&format!("{prefix}.{name}.bias"), &[out])?))
    };
    let weights = AttentionWeights {
        q: pair("q_proj", inner, DIM)?,
        k: pair("k_proj", inner, DIM)?,
        v: pair("v_proj", inner, DIM)?,
        out: pair("out_proj", DIM, inner)?,
        dim: DIM,
        inner,
        heads: HEADS,
        max_queries,
        max_keys,
    };
    Ok(ops.attention_weight(&weights))
}

/// A ConvTranspose2d with kernel 2, stride 2, as a product: weight (in, out, 2, 2) → columns
/// ordered (dy, dx, out), bias repeated per position; `pixel_shuffle2` then places the results.
pub(super) fn transposed_conv<O: Ops>(
    ops: &mut O,
    w: &WeightSource,
    prefix: &str,
    inputs: usize,
    out: usize,
) -> Result<O::Linear, WeightsError> {
    let t = w.get(&format!("{prefix}.weight"), &[inputs, out, 2, 2])?;
    let b = w.get(&format!("{prefix}.bias"), &[out])?;
    let mut m = vec![0.0; inputs * 4 * out];
    for i in 0..inputs {
        for o in 0..out {
            for q in 0..4 {
                m[i * 4 * out + q * out + o] = t[(i * out + o) * 4 + q];
            }
        }
    }
    let bias: Vec<f32> = (0..4).flat_map(|_| b.iter().copied()).collect();
    Ok(ops.matrix_weight(&m, inputs, 4 * out, Some(&bias)))
}

fn mlp3<O: Ops>(ops: &mut O, w: &WeightSource, prefix: &str, out: usize) -> Result<[O::Linear; 3], WeightsError> {
    Ok([
        linear(ops, w, &format!("{prefix}.layers.0"), DIM, DIM)?,
        linear(ops, w, &format!("{prefix}.layers.1"), DIM, DIM)?,
        linear(ops, w, &format!("{prefix}.layers.2"), out, DIM)?,
    ])
}

impl<O: Ops> Decoder<O> {
    pub fn plan(ops: &mut O, w: &WeightSource, no_mask: &[f32], arena: &mut ArenaPlan) -> Result<Self, WeightsError> {
        let p = "mask_decoder";
        let mut output_tokens = w.get(&format!("{p}.iou_token.weight"), &[1, DIM])?.to_vec();
        output_tokens.extend_from_slice(w.get(&format!("{p}.mask_tokens.weight"), &[4, DIM])?);
        let mut layers = Vec::new();
        for l in 0..2 {
            let q = format!("{p}.transformer.layers.{l}");
            layers.push(Layer {
                self_attn: attention(ops, w, &format!("{q}.self_attn"), DIM, MAX_TOKENS, MAX_TOKENS)?,
                norm1: norm(ops, w, &format!("{q}.norm1"), DIM)?,
                to_image: attention(ops, w, &format!("{q}.cross_attn_token_to_image"), CROSS_DIM, MAX_TOKENS, KEYS)?,
                norm2: norm(ops, w, &format!("{q}.norm2"), DIM)?,
                lin1: linear(ops, w, &format!("{q}.mlp.lin1"), MLP_DIM, DIM)?,
                lin2: linear(ops, w, &format!("{q}.mlp.lin2"), DIM, MLP_DIM)?,
                norm3: norm(ops, w, &format!("{q}.norm3"), DIM)?,
                norm4: norm(ops, w, &format!("{q}.norm4"), DIM)?,
                to_tokens: attention(ops, w, &format!("{q}.cross_attn_image_to_token"), CROSS_DIM, KEYS, MAX_TOKENS)?,
            });
        }
        let t = || MAX_TOKENS * DIM;
        let k = KEYS * DIM;
        let mut a = |n: usize| arena.alloc(n);
        let b = Buffers {
            tokens: a(t()),
            token_pe: a(t()),
            keys: a(k),
            key_pe: a(k),
            keys_pe: a(k),
            key_delta: a(k),
            t: [a(t()), a(t())],
            hidden: a(MAX_TOKENS * MLP_DIM),
            hyper: [a(DIM), a(DIM), a(32)],
            iou: [a(DIM), a(DIM), a(4)],
            logits: a(MASK_SIDE * MASK_SIDE),
        };
        Ok(Decoder {
            output_tokens,
            no_mask: ops.vector(no_mask),
            layers,
            final_attn: attention(
                ops,
                w,
                &format!("{p}.transformer.final_attn_token_to_image"),
                CROSS_DIM,
                MAX_TOKENS,
                KEYS,
            )?,
            final_norm: norm(ops, w, &format!("{p}.transformer.norm_final_attn"), DIM)?,
            up1: transposed_conv(ops, w, &format!("{p}.output_upscaling.0"), DIM, 64)?,
            up1_norm: norm(ops, w, &format!("{p}.output_upscaling.1"), 64)?,
            up2: transposed_conv(ops, w, &format!("{p}.output_upscaling.3"), 64, 32)?,
            hyper: mlp3(ops, w, &format!("{p}.output_hypernetworks_mlps.0"), 32)?,
            iou: mlp3(ops, w, &format!("{p}.iou_prediction_head"), 4)?,
            key_pe: b.key_pe,
            logits: b.logits,
            iou_out: b.iou[2],
            b,
        })
    }

    /// Runs the decoder on `embedding` with `sparse` prompt tokens (host rows of 256);
    /// the logits land in `self.logits` (256 × 256) and the IoU estimate in `self.iou_out[0]`.
    pub fn run(&self, ops: &mut O, embedding: Buf, sparse: &[f32]) {
        let b = &self.b;
        let n = OUTPUT_TOKENS + sparse.len() / DIM;
        let (tokens, tpe) = (b.tokens.prefix(n * DIM), b.token_pe.prefix(n * DIM));
        let [t0, t1] = b.t.map(|t| t.prefix(n * DIM));
        // `keys_pe` is `keys + key_pe`, recomputed whenever the keys change.
        let (keys, kpe, keys_pe, delta) = (b.keys, b.key_pe, b.keys_pe, b.key_delta);
        ops.upload(tokens, &self.output_tokens);
        ops.upload(tokens.slice(OUTPUT_TOKENS * DIM, sparse.len()), sparse);
        ops.copy(tokens, tpe);
        ops.add_row_pe(embedding, KEYS, &self.no_mask, kpe, keys, keys_pe);
        for (i, l) in self.layers.iter().enumerate() {
            // Self-attention; the first layer's has no positional encoding and no residual.
            if i == 0 {
                ops.attend(&l.self_attn, tokens, n, tokens, tokens, n, t1);
                ops.layer_norm(t1, n, &l.norm1.0, &l.norm1.1, LN_EPS, tokens);
            } else {
                ops.add_into(tokens, tpe, t0);
                ops.attend(&l.self_attn, t0, n, t0, tokens, n, t1);
                ops.add_layer_norm(tokens, t1, n, &l.norm1.0, &l.norm1.1, LN_EPS);
            }
            // Tokens attend to the image.
            self.token_to_image(ops, &l.to_image, &l.norm2, n);
            // MLP (ReLU).
            ops.linear(tokens, n, &l.lin1, b.hidden.prefix(n * MLP_DIM), Epilogue::Relu);
            ops.linear(b.hidden.prefix(n * MLP_DIM), n, &l.lin2, t1, Epilogue::None);
            ops.add_layer_norm(tokens, t1, n, &l.norm3.0, &l.norm3.1, LN_EPS);
            // The image attends to the tokens (with the tokens just updated).
            ops.add_into(tokens, tpe, t0);
            ops.attend(&l.to_tokens, keys_pe, KEYS, t0, tokens, n, delta);
            ops.add_layer_norm_pe(keys, delta, KEYS, (&l.norm4.0, &l.norm4.1), LN_EPS, kpe, keys_pe);
        }
        // Only the IoU token (row 0) and mask token 0 (row 1) are read after the last attention,
        // and its queries are independent: the other tokens need not ask.
        self.token_to_image(ops, &self.final_attn, &self.final_norm, 2);
        // Mask token 0 through its hypernetwork, then the upscaling (64² × 256 → 128² × 64 →
        // 256² × 32) and the features' products with it, the logits.
        let mask_token = tokens.slice(DIM, DIM);
        ops.linear(mask_token, 1, &self.hyper[0], b.hyper[0], Epilogue::Relu);
        ops.linear(b.hyper[0], 1, &self.hyper[1], b.hyper[1], Epilogue::Relu);
        ops.linear(b.hyper[1], 1, &self.hyper[2], b.hyper[2], Epilogue::None);
        let norm = (&self.up1_norm.0, &self.up1_norm.1);
        ops.upscaled_logits(keys, SIDE, &self.up1, norm, LN2D_EPS, &self.up2, b.hyper[2], b.logits);
        // The IoU token through the IoU head.
        ops.linear(tokens.prefix(DIM), 1, &self.iou[0], b.iou[0], Epilogue::Relu);
        ops.linear(b.iou[0], 1, &self.iou[1], b.iou[1], Epilogue::Relu);
        ops.linear(b.iou[1], 1, &self.iou[2], b.iou[2], Epilogue::None);
    }

    /// `tokens = norm(tokens + attn(q = tokens + pe, k = keys + key_pe, v = keys))` for the first
    /// `n` tokens.
    fn token_to_image(&self, ops: &mut O, a: &O::Attention, norm: &(O::Vector, O::Vector), n: usize) {
        let b = &self.b;
        let tokens = b.tokens.prefix(n * DIM);
        let [t0, t1] = b.t.map(|t| t.prefix(n * DIM));
        ops.add_into(tokens, b.token_pe.prefix(n * DIM), t0);
        ops.attend(a, t0, n, b.keys_pe, b.keys, KEYS, t1);
        ops.add_layer_norm(tokens, t1, n, &norm.0, &norm.1, LN_EPS);
    }
}
