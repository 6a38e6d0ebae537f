//! The CPU engine: the model's ops on both cores, planned once, allocation-free per frame.

pub mod attention;
pub mod gemm;
pub mod kernels;
pub mod mbconv;
pub mod ops;
pub mod pool;
