//! LiteMedSAM on an engine, with its own image encoder or the real-time student's: plan once
//! (weights prepared, activation arena sized), then per frame `encode` the image plane and
//! `decode` any number of prompts against its embedding.

use crate::model::{Weights, WeightsError};
use crate::segment::graph::WeightSource;
use crate::segment::graph::decoder::{Decoder, MASK_SIDE};
use crate::segment::graph::encoder::{EMBED_DIM, EMBED_SIDE, Encoder, INPUT_SIDE};
use crate::segment::graph::prompt::{DIM, MAX_SPARSE_TOKENS, Prompt, PromptEncoder};
use crate::segment::graph::student::StudentEncoder;
use crate::segment::ops::{ArenaPlan, Buf, Ops};

/// The image encoder in use: both give the same 64×64×256 embedding interface.
enum ImageEncoder<O: Ops> {
    LiteMedSam(Encoder<O>),
    Student(StudentEncoder<O>),
}

impl<O: Ops> ImageEncoder<O> {
    fn input(&self) -> Buf {
        match self {
            ImageEncoder::LiteMedSam(e) => e.input,
            ImageEncoder::Student(e) => e.input,
        }
    }

    fn embedding(&self) -> Buf {
        match self {
            ImageEncoder::LiteMedSam(e) => e.embedding,
            ImageEncoder::Student(e) => e.embedding,
        }
    }

    fn run(&self, ops: &mut O) {
        match self {
            ImageEncoder::LiteMedSam(e) => e.run(ops),
            ImageEncoder::Student(e) => e.run(ops),
        }
    }
}

pub struct LiteMedSam<O: Ops> {
    ops: O,
    encoder: ImageEncoder<O>,
    decoder: Decoder<O>,
    prompt: PromptEncoder,
    sparse: Vec<f32>,
    iou: [f32; 4],
}

impl<O: Ops> LiteMedSam<O> {
    /// Prepares every weight of LiteMedSAM for `ops` and sizes its arena.
    pub fn plan(ops: O, weights: &Weights) -> Result<Self, WeightsError> {
        Self::plan_with(ops, weights, None)
    }

    /// LiteMedSAM's prompt encoder and mask decoder (`weights`) on the student's image encoder
    /// (`student`).
    pub fn plan_student(ops: O, weights: &Weights, student: &Weights) -> Result<Self, WeightsError> {
        Self::plan_with(ops, weights, Some(student))
    }

    fn plan_with(mut ops: O, weights: &Weights, student: Option<&Weights>) -> Result<Self, WeightsError> {
        let w = WeightSource { weights };
        let mut arena = ArenaPlan::default();
        let prompt = PromptEncoder::load(&w)?;
        let encoder = match student {
            None => ImageEncoder::LiteMedSam(Encoder::plan(&mut ops, &w, &mut arena)?),
            Some(student) => {
                ImageEncoder::Student(StudentEncoder::plan(&mut ops, &WeightSource { weights: student }, &mut arena)?)
            }
        };
        let decoder = Decoder::plan(&mut ops, &w, &prompt.no_mask, &mut arena)?;
        ops.allocate_arena(arena.len());
        ops.upload(decoder.key_pe, &prompt.dense_pe(EMBED_SIDE));
        Ok(LiteMedSam { ops, encoder, decoder, prompt, sparse: vec![0.0; MAX_SPARSE_TOKENS * DIM], iou: [0.0; 4] })
    }

    /// Runs the image encoder on a 256 × 256 input plane (the pre-processed frame).
    pub fn encode(&mut self, plane: &[f32]) {
        assert_eq!(plane.len(), INPUT_SIDE * INPUT_SIDE, "the encoder takes a 256 x 256 plane");
        self.ops.upload(self.encoder.input(), plane);
        self.encoder.run(&mut self.ops);
    }

    /// Decodes `prompt` against the last encoded image: 256 × 256 low-res logits into `logits`;
    /// returns the predicted IoU.
    pub fn decode(&mut self, prompt: &Prompt, logits: &mut [f32]) -> f32 {
        assert_eq!(logits.len(), MASK_SIDE * MASK_SIDE, "logits are 256 x 256");
        let n = self.prompt.sparse(prompt, &mut self.sparse);
        self.decoder.run(&mut self.ops, self.encoder.embedding(), &self.sparse[..n * DIM]);
        self.ops.download(self.decoder.logits, logits);
        self.ops.download(self.decoder.iou_out, &mut self.iou);
        self.iou[0]
    }

    /// Which image encoder runs: "litemedsam" or "student".
    pub fn encoder_name(&self) -> &'static str {
        match self.encoder {
            ImageEncoder::LiteMedSam(_) => "litemedsam",
            ImageEncoder::Student(_) => "student",
        }
    }

    /// The engine's ops (for profiling and diagnostics).
    pub fn ops_mut(&mut self) -> &mut O {
        &mut self.ops
    }

    /// The last image embedding, token layout (4096 × 256).
    pub fn embedding(&mut self, out: &mut [f32]) {
        assert_eq!(out.len(), EMBED_SIDE * EMBED_SIDE * EMBED_DIM);
        self.ops.download(self.encoder.embedding(), out);
    }
}
