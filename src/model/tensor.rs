//! Named float32 tensors: owned while a checkpoint is converted, borrowed from a loaded weights
//! file by the model graph.

/// A named tensor that owns its values (row-major, contiguous).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl OwnedTensor {
    pub fn view(&self) -> Tensor<'_> {
        Tensor { name: &self.name, shape: &self.shape, data: &self.data }
    }
}

/// A named tensor borrowed from loaded weights (row-major, contiguous).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl Tensor<'_> {
    /// Number of values (the product of the shape; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Elements in a tensor of this shape, or None when the product overflows.
pub fn shape_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// `[64, 3, 1, 1]` as text for messages.
pub fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}
