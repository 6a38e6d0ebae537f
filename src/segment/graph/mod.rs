//! The LiteMedSAM graph, written once against [`Ops`]: the image encoder, the prompt encoder
//! (tiny; evaluated on the host) and the mask decoder.

pub mod decoder;
pub mod encoder;
pub mod prompt;
pub mod student;

use crate::model::{Weights, WeightsError};
use crate::segment::ops::Ops;

/// Named weights with the shape checks and reshapes the graph needs.
pub struct WeightSource<'a> {
    pub weights: &'a Weights,
}

impl WeightSource<'_> {
    /// The tensor's values, after checking its shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], WeightsError> {
        Ok(self.weights.expect_shape(name, shape)?.data)
    }

    /// A 1×1 convolution (BatchNorm folded: `.weight` and `.bias`) as a product.
    pub fn conv1x1<O: Ops>(
        &self,
        ops: &mut O,
        prefix: &str,
        out: usize,
        inputs: usize,
    ) -> Result<O::Linear, WeightsError> {
        let w = self.get(&format!("{prefix}.weight"), &[out, inputs, 1, 1])?;
        let b = self.get(&format!("{prefix}.bias"), &[out])?;
        Ok(ops.linear_weight(w, out, inputs, Some(b)))
    }

    /// A depthwise 3×3 convolution (BatchNorm folded).
    pub fn depthwise<O: Ops>(&self, ops: &mut O, prefix: &str, channels: usize) -> Result<O::Depthwise, WeightsError> {
        let w = self.get(&format!("{prefix}.weight"), &[channels, 1, 3, 3])?;
        let b = self.get(&format!("{prefix}.bias"), &[channels])?;
        Ok(ops.depthwise_weight(w, b))
    }
}

/// A `Linear` layer: `.weight` (out × in) and `.bias`.
pub fn linear<O: Ops>(
    ops: &mut O,
    w: &WeightSource,
    prefix: &str,
    out: usize,
    inputs: usize,
) -> Result<O::Linear, WeightsError> {
    let weight = w.get(&format!("{prefix}.weight"), &[out, inputs])?;
    let bias = w.get(&format!("{prefix}.bias"), &[out])?;
    Ok(ops.linear_weight(weight, out, inputs, Some(bias)))
}

/// A LayerNorm's scale and shift.
pub fn norm<O: Ops>(
    ops: &mut O,
    w: &WeightSource,
    prefix: &str,
    channels: usize,
) -> Result<(O::Vector, O::Vector), WeightsError> {
    let gamma = w.get(&format!("{prefix}.weight"), &[channels])?;
    let beta = w.get(&format!("{prefix}.bias"), &[channels])?;
    Ok((ops.vector(gamma), ops.vector(beta)))
}
