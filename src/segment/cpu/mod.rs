//! The CPU engine: the model's ops on both cores, planned once, allocation-free per frame.

pub mod attention;
pub mod cross_attention;
pub mod depthwise;
pub mod features;
pub mod gemm;
mod gemm_pair;
pub mod kernels;
pub mod mbconv;
pub mod mlp;
pub mod ops;
pub mod pool;
pub mod upscale;
