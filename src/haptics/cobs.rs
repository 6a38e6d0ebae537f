//! Consistent Overhead Byte Stuffing: frames on the wire contain no zero byte, so a single 0x00
//! delimits them and a receiver that joins mid-stream (or meets garbage) resynchronises at the
//! next delimiter. Encoding and decoding are the `cobs` crate's; the delimiting of a byte stream
//! into blocks with a fixed buffer ([`BlockReader`]) and the errors the haptics link reports are
//! ours.

/// Worst-case encoded size of `len` payload bytes (without the delimiter).
pub const fn max_encoded_len(len: usize) -> usize {
    ::cobs::max_encoding_length(len)
}

/// Encodes `input` into `out` and returns the encoded length. No delimiter is written.
///
/// # Panics
/// If `out` holds fewer than `max_encoded_len(input.len())` bytes (the callers size it so).
pub fn encode(input: &[u8], out: &mut [u8]) -> usize {
    assert!(out.len() >= max_encoded_len(input.len()), "COBS output buffer too small");
    ::cobs::encode(input, out)
}

/// Why a COBS block could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CobsError {
    #[error("zero byte inside a COBS block at offset {0}")]
    ZeroInside(usize),
    #[error("malformed COBS block (a code runs past its end) after {decoded} decoded bytes")]
    Malformed { decoded: usize },
    #[error("decoded frame longer than {0} bytes")]
    TooLong(usize),
}

/// Decodes one block (without its delimiter) into `out`, returning the decoded length.
pub fn decode(input: &[u8], out: &mut [u8]) -> Result<usize, CobsError> {
    // A block is what lies between two delimiters: a zero inside is corruption, not an end.
    if let Some(at) = input.iter().position(|&b| b == 0) {
        return Err(CobsError::ZeroInside(at));
    }
    if input.is_empty() {
        return Ok(0);
    }
    match ::cobs::decode(input, out) {
        Ok(report) => Ok(report.frame_size()),
        Err(::cobs::DecodeError::TargetBufTooSmall) => Err(CobsError::TooLong(out.len())),
        Err(::cobs::DecodeError::InvalidFrame { decoded_bytes }) => {
            Err(CobsError::Malformed { decoded: decoded_bytes })
        }
        Err(::cobs::DecodeError::EmptyFrame) => Ok(0),
    }
}

/// Gathers bytes from a stream into delimited blocks, with a fixed buffer: a block longer than
/// the buffer is discarded up to the next delimiter and reported once.
pub struct BlockReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

/// What one byte completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Block<'a> {
    /// Not at a delimiter yet.
    Pending,
    /// A whole encoded block (possibly empty: two delimiters in a row).
    Complete(&'a [u8]),
    /// A block overran the buffer and was discarded.
    Overflow,
}

impl<const N: usize> Default for BlockReader<N> {
    fn default() -> Self {
        BlockReader { buf: [0; N], len: 0, overflowed: false }
    }
}

impl<const N: usize> BlockReader<N> {
    pub fn push(&mut self, byte: u8) -> Block<'_> {
        if byte == 0 {
            let len = std::mem::take(&mut self.len);
            if std::mem::take(&mut self.overflowed) {
                return Block::Overflow;
            }
            return Block::Complete(&self.buf[..len]);
        }
        if self.len == N {
            self.overflowed = true;
            self.len = 0;
        }
        if !self.overflowed {
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Block::Pending
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let mut enc = vec![0u8; max_encoded_len(data.len())];
        let n = encode(data, &mut enc);
        assert!(!enc[..n].contains(&0), "encoded block holds a zero");
        let mut dec = vec![0u8; data.len() + 1];
        let m = decode(&enc[..n], &mut dec).unwrap();
        dec.truncate(m);
        dec
    }

    #[test]
    fn known_vectors() {
        let enc = |data: &[u8]| {
            let mut out = [0u8; 8];
            let n = encode(data, &mut out);
            out[..n].to_vec()
        };
        assert_eq!(enc(&[0x00]), [0x01, 0x01]);
        assert_eq!(enc(&[0x11, 0x22, 0x00, 0x33]), [0x03, 0x11, 0x22, 0x02, 0x33]);
        assert_eq!(enc(&[]), [0x01]);
    }

    #[test]
    fn long_runs_without_zero_split_at_254() {
        let data: Vec<u8> = (0..600).map(|i| (i % 255 + 1) as u8).collect();
        assert_eq!(round_trip(&data), data);
    }

    #[test]
    fn corrupt_blocks_are_errors() {
        let mut out = [0u8; 8];
        assert!(matches!(decode(&[0x05, 0x11], &mut out), Err(CobsError::Malformed { .. })));
        assert_eq!(decode(&[0x03, 0x00, 0x11], &mut out), Err(CobsError::ZeroInside(1)));
        assert_eq!(decode(&[0x09, 1, 2, 3, 4, 5, 6, 7, 8], &mut out[..4]), Err(CobsError::TooLong(4)));
    }

    #[test]
    fn block_reader_splits_and_discards_overflow() {
        let mut reader = BlockReader::<4>::default();
        let mut blocks = Vec::new();
        for &b in &[1u8, 2, 0, 9, 9, 9, 9, 9, 9, 0, 3, 0] {
            match reader.push(b) {
                Block::Pending => {}
                Block::Complete(block) => blocks.push(Some(block.to_vec())),
                Block::Overflow => blocks.push(None),
            }
        }
        assert_eq!(blocks, vec![Some(vec![1, 2]), None, Some(vec![3])]);
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            prop_assert_eq!(round_trip(&data), data);
        }

        #[test]
        fn decoding_garbage_never_panics(data in proptest::collection::vec(1u8.., 0..300)) {
            let mut out = [0u8; 64];
            let _ = decode(&data, &mut out);
        }
    }
}
