//! Structured inputs: each format's skeleton (header lines, XML elements, pickle opcodes, zip
//! entries, DICOM elements, wire frames) filled with random and hostile values, so cases reach
//! the field interpretation behind the syntax checks that plain mutation rarely passes.

mod dicom;
mod haptics;
mod plus;
mod sequence;
mod torch;

use std::io::Write;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::NUMBERS;

pub use dicom::*;
pub use haptics::*;
pub use plus::*;
pub use sequence::*;
pub use torch::*;

// Values shared by the formats.

pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u32..10).prop_map(|v| v.to_string()),
        2 => (-1000.0f64..1000.0).prop_map(|v| format!("{v}")),
        3 => select(NUMBERS).prop_map(str::to_string),
    ]
}

pub fn numbers(count: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(number(), count).prop_map(|v| v.join(" "))
}

fn printable() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn dims() -> impl Strategy<Value = String> {
    vec(prop_oneof![8 => (1u32..6).prop_map(|v| v.to_string()), 1 => number()], 1..5).prop_map(|v| v.join(" "))
}

/// Random bytes cheaply: `len` bytes of a generator seeded by `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
