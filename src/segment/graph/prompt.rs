//! SAM's prompt encoder (LiteMedSAM's weights): box corners and points become tokens through a
//! random-Fourier positional encoding (the checkpoint's Gaussian matrix) plus learned embeddings.
//! A few hundred multiply-adds per prompt, so it runs on the host for every engine; the dense
//! positional encoding of the 64×64 grid is computed once at plan time.

use super::WeightSource;
use crate::model::WeightsError;

pub const DIM: usize = 256;
/// Points per prompt (positive and negative clicks together).
pub const MAX_POINTS: usize = 8;
/// Sparse tokens at most: the points, a padding point, two box corners.
pub const MAX_SPARSE_TOKENS: usize = MAX_POINTS + 3;
/// The model's input side, which prompt coordinates are normalised by (the padded size).
const INPUT_SIDE: f32 = 256.0;

/// A click: (x, y) in the model's 256 × 256 frame; positive marks the target, negative not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
    pub positive: bool,
}

/// A prompt in the model's 256 × 256 frame. Fixed capacity: building one never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prompt {
    /// `[x0, y0, x1, y1]`.
    pub bbox: Option<[f32; 4]>,
    pub points: [Option<Point>; MAX_POINTS],
}

impl Prompt {
    pub fn from_box(b: [f32; 4]) -> Self {
        Prompt { bbox: Some(b), ..Default::default() }
    }

    /// Adds a point; false when the prompt already holds [`MAX_POINTS`].
    pub fn push_point(&mut self, p: Point) -> bool {
        match self.points.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(p);
                true
            }
            None => false,
        }
    }

    pub fn point_count(&self) -> usize {
        self.points.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.bbox.is_none() && self.point_count() == 0
    }
}

pub struct PromptEncoder {
    /// 2 × 128.
    gaussian: Vec<f32>,
    /// Negative point, positive point, box corner 0, box corner 1.
    point_embeddings: [Vec<f32>; 4],
    not_a_point: Vec<f32>,
    pub no_mask: Vec<f32>,
}

impl PromptEncoder {
    pub fn load(w: &WeightSource) -> Result<Self, WeightsError> {
        let p = "prompt_encoder";
        let emb = |i: usize| w.get(&format!("{p}.point_embeddings.{i}.weight"), &[1, DIM]).map(<[f32]>::to_vec);
        Ok(PromptEncoder {
            gaussian: w.get(&format!("{p}.pe_layer.positional_encoding_gaussian_matrix"), &[2, 128])?.to_vec(),
            point_embeddings: [emb(0)?, emb(1)?, emb(2)?, emb(3)?],
            not_a_point: w.get(&format!("{p}.not_a_point_embed.weight"), &[1, DIM])?.to_vec(),
            no_mask: w.get(&format!("{p}.no_mask_embed.weight"), &[1, DIM])?.to_vec(),
        })
    }

    /// Positional encoding of (x, y) normalised to [0, 1]: sines of 128 projections, then cosines.
    fn encode(&self, x: f32, y: f32, out: &mut [f32]) {
        let (cx, cy) = (2.0 * x - 1.0, 2.0 * y - 1.0);
        for j in 0..128 {
            let p = (cx * self.gaussian[j] + cy * self.gaussian[128 + j]) * (2.0 * std::f32::consts::PI);
            out[j] = p.sin();
            out[128 + j] = p.cos();
        }
    }

    /// Writes the sparse tokens (rows of 256) for `prompt` into `out` and returns their number:
    /// points first (with a padding point when there is no box), then the two box corners.
    pub fn sparse(&self, prompt: &Prompt, out: &mut [f32]) -> usize {
        let mut n = 0;
        // The next token's row of `out`.
        let row = |n: &mut usize| -> std::ops::Range<usize> {
            *n += 1;
            (*n - 1) * DIM..*n * DIM
        };
        for p in prompt.points.iter().flatten() {
            let r = row(&mut n);
            // +0.5: the coordinate of a pixel's centre.
            self.encode((p.x + 0.5) / INPUT_SIDE, (p.y + 0.5) / INPUT_SIDE, &mut out[r.clone()]);
            let e = &self.point_embeddings[usize::from(p.positive)];
            out[r].iter_mut().zip(e).for_each(|(o, e)| *o += e);
        }
        if prompt.bbox.is_none() && n > 0 {
            // SAM pads point-only prompts with one "not a point" token.
            let r = row(&mut n);
            out[r].copy_from_slice(&self.not_a_point);
        }
        if let Some([x0, y0, x1, y1]) = prompt.bbox {
            for (corner, (x, y)) in [(x0, y0), (x1, y1)].into_iter().enumerate() {
                let r = row(&mut n);
                self.encode((x + 0.5) / INPUT_SIDE, (y + 0.5) / INPUT_SIDE, &mut out[r.clone()]);
                let e = &self.point_embeddings[2 + corner];
                out[r].iter_mut().zip(e).for_each(|(o, e)| *o += e);
            }
        }
        n
    }

    /// The dense positional encoding of the `side × side` embedding grid, token layout.
    pub fn dense_pe(&self, side: usize) -> Vec<f32> {
        let mut pe = vec![0.0; side * side * DIM];
        for i in 0..side {
            for j in 0..side {
                let (x, y) = ((j as f32 + 0.5) / side as f32, (i as f32 + 0.5) / side as f32);
                self.encode(x, y, &mut pe[(i * side + j) * DIM..(i * side + j + 1) * DIM]);
            }
        }
        pe
    }
}
