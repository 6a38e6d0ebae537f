//! sonoflow's real-time student image encoder as a sequence of [`Ops`]: the same interface as
//! LiteMedSAM's (256×256 input plane → 64×64×256 image embedding), distilled from it on
//! ultrasound (`tools/distill/`, model card in `engines/student/README.md`), so the prompt
//! encoder, mask decoder and everything downstream are the teacher's.
//!
//! `tools/distill/student.py` is the specification (the PyTorch definition the weights were
//! trained in); its blocks are TinyViT's, run here by the same code as the teacher's:
//!
//! ```text
//! plane 256² ── patchify 4×4 ── 4096 × 16
//!   stem         1×1 16→64, GELU                          4096 × 64
//!   mbconv.0/1   MBConv(64)                               4096 × 64   (kept: the skip)
//!   merge        PatchMerging 64→128, stride 2            1024 × 128
//!   blocks.*     TinyViT blocks (128, 4 heads, window 16) 1024 × 128  (as many as the weights hold)
//!   up           ConvTranspose 2×2 s2 128→256             4096 × 256  (+ skip: 1×1 64→256)
//!   neck         LayerNorm2d, depthwise 3×3, 1×1 256→256 (no bias), LayerNorm2d
//! ```
//!
//! The shipped weights hold two blocks: 1.26 G multiply-adds per frame (the teacher's encoder:
//! 37.5 G), 0.72 M parameters.

use super::decoder::transposed_conv;
use super::encoder::{
    Block, EMBED_DIM, EMBED_SIDE, INPUT_SIDE, MbConv, PatchMerging, run_blocks, run_mbconvs, window_geometry,
};
use super::{WeightSource, norm};
use crate::model::WeightsError;
use crate::segment::ops::{ArenaPlan, Buf, Epilogue, ImageShape, Ops};

const PATCH: usize = 4;
/// Channels at 64×64 and at 32×32.
const C1: usize = 64;
const C2: usize = 128;
const HEADS: usize = 4;
const WINDOW: usize = 16;
const SIDE1: usize = INPUT_SIDE / PATCH;
const SIDE2: usize = SIDE1 / 2;
const LN2D_EPS: f32 = 1e-6;
/// The prefix of every student tensor.
pub const PREFIX: &str = "student_encoder";

pub struct StudentEncoder<O: Ops> {
    stem: O::Linear,
    mbconv: Vec<MbConv<O>>,
    merge: PatchMerging<O>,
    blocks: Vec<Block<O>>,
    up: O::Linear,
    skip: O::Linear,
    neck_norm1: (O::Vector, O::Vector),
    neck_dw: O::Depthwise,
    neck_pw: O::Linear,
    neck_norm2: (O::Vector, O::Vector),
    pub input: Buf,
    patches: Buf,
    /// 64×64 × C1, ping-pong pair; the MBConvs' output stays in `a` for the skip.
    a: Buf,
    b: Buf,
    /// 32×32 × C2 tokens, ping-pong pair, and the blocks' qkv rows.
    t1: Buf,
    t2: Buf,
    qkv: Buf,
    /// 4096 × 256 scratch pair.
    s1: Buf,
    s2: Buf,
    pub embedding: Buf,
}

impl<O: Ops> StudentEncoder<O> {
    pub fn plan(ops: &mut O, w: &WeightSource, arena: &mut ArenaPlan) -> Result<Self, WeightsError> {
        let p = PREFIX;
        // As many TinyViT blocks as the weights hold (at least one: a file without any fails on
        // the first block's tensors, naming them).
        let holds_block = |i: usize| w.weights.names().any(|n| n.starts_with(&format!("{p}.blocks.{i}.")));
        let depth = (0..).take_while(|&i| holds_block(i)).count().max(1);
        let blocks = (0..depth)
            .map(|i| Block::load(ops, w, &format!("{p}.blocks.{i}"), window_geometry(SIDE2, WINDOW, HEADS, C2)))
            .collect::<Result<Vec<_>, _>>()?;
        let neck_pw = {
            let t = w.get(&format!("{p}.neck_pw.weight"), &[EMBED_DIM, EMBED_DIM, 1, 1])?;
            ops.linear_weight(t, EMBED_DIM, EMBED_DIM, None)
        };
        let n1 = SIDE1 * SIDE1;
        let n2 = SIDE2 * SIDE2;
        Ok(StudentEncoder {
            stem: w.conv1x1(ops, &format!("{p}.stem"), C1, PATCH * PATCH)?,
            mbconv: (0..2).map(|i| MbConv::load(ops, w, &format!("{p}.mbconv.{i}"), C1)).collect::<Result<_, _>>()?,
            merge: PatchMerging::load(ops, w, &format!("{p}.merge"), (C1, C2), SIDE1, 2)?,
            blocks,
            up: transposed_conv(ops, w, &format!("{p}.up"), C2, EMBED_DIM)?,
            skip: w.conv1x1(ops, &format!("{p}.skip"), EMBED_DIM, C1)?,
            neck_norm1: norm(ops, w, &format!("{p}.neck_norm1"), EMBED_DIM)?,
            neck_dw: w.depthwise(ops, &format!("{p}.neck_dw"), EMBED_DIM)?,
            neck_pw,
            neck_norm2: norm(ops, w, &format!("{p}.neck_norm2"), EMBED_DIM)?,
            input: arena.alloc(INPUT_SIDE * INPUT_SIDE),
            patches: arena.alloc(n1 * PATCH * PATCH),
            a: arena.alloc(n1 * C1),
            b: arena.alloc(n1 * C1),
            t1: arena.alloc(n2 * C2),
            t2: arena.alloc(n2 * C2),
            qkv: arena.alloc(n2 * 3 * C2),
            // Also the merge's hidden layers (4096 × 128 and 1024 × 128) and the up
            // projection's rows (1024 × 4 · 256).
            s1: arena.alloc(n1 * EMBED_DIM),
            s2: arena.alloc(n1 * EMBED_DIM),
            embedding: arena.alloc(EMBED_SIDE * EMBED_SIDE * EMBED_DIM),
        })
    }

    /// Runs the encoder on the plane in `self.input`; the embedding lands in `self.embedding`
    /// (4096 tokens × 256 channels, token `y · 64 + x`), as the teacher's does.
    pub fn run(&self, ops: &mut O) {
        let (a, s1, s2) = (self.a, self.s1, self.s2);
        let (n1, n2) = (SIDE1 * SIDE1, SIDE2 * SIDE2);
        ops.patchify(self.input, INPUT_SIDE, PATCH, self.patches);
        ops.linear(self.patches, n1, &self.stem, a, Epilogue::Gelu);
        run_mbconvs(ops, &self.mbconv, SIDE1, C1, a, self.b);
        self.merge.run(ops, a, self.t1, s1, s2);
        run_blocks(ops, &self.blocks, self.t1, self.t2, self.qkv);
        // Back to 64×64: the transposed conv's four positions per token, then the skip from the
        // 64×64 stage added on top.
        ops.linear(self.t1, n2, &self.up, s2.prefix(n2 * 4 * EMBED_DIM), Epilogue::None);
        ops.pixel_shuffle2(s2.prefix(n2 * 4 * EMBED_DIM), ImageShape::square(SIDE2, EMBED_DIM), s1);
        ops.linear(a, n1, &self.skip, s1, Epilogue::AddToOutput);
        ops.layer_norm(s1, n1, &self.neck_norm1.0, &self.neck_norm1.1, LN2D_EPS, s2);
        ops.depthwise(s2, ImageShape::square(SIDE1, EMBED_DIM), 1, &self.neck_dw, false, s1);
        ops.linear(s1, n1, &self.neck_pw, s2, Epilogue::None);
        ops.layer_norm(s2, n1, &self.neck_norm2.0, &self.neck_norm2.1, LN2D_EPS, self.embedding);
    }
}
