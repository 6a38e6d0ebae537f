//! The haptics wire protocol, version 1 (`docs/haptics-protocol.md` is its specification).
//!
//! Each message is a little-endian record ending in a CRC-16/CCITT-FALSE of every byte before it,
//! COBS-encoded and followed by one 0x00 delimiter. The host sends a [`ForceFrame`] every period;
//! the device answers with [`StatusFrame`]s (its heartbeat). Encoding and decoding use caller-owned
//! fixed buffers: nothing allocates on the 1 kHz path.

use super::cobs;
use super::crc::crc16_ccitt_false;

pub const PROTOCOL_VERSION: u8 = 1;
pub const KIND_FORCE: u8 = 0x01;
pub const KIND_STATUS: u8 = 0x81;

/// Bytes of a force record, CRC included.
pub const FORCE_LEN: usize = 33;
/// Bytes of a status record, CRC included.
pub const STATUS_LEN: usize = 22;
/// Largest record of either kind.
pub const MAX_RECORD_LEN: usize = FORCE_LEN;
/// Largest message on the wire: COBS overhead plus the delimiter.
pub const MAX_WIRE_LEN: usize = cobs::max_encoded_len(MAX_RECORD_LEN) + 1;

/// Bits of [`ForceFrame::flags`].
pub mod flags {
    /// The host drives the device (a force may be non-zero).
    pub const ENABLED: u8 = 1 << 0;
    /// The host cannot vouch for its data: force is zero and must be held at zero.
    pub const SAFE_STATE: u8 = 1 << 1;
    /// The segmentation behind the force is below the confidence floor.
    pub const LOW_CONFIDENCE: u8 = 1 << 2;
    /// The host has seen a fault (device silent, upstream stage error, link trouble).
    pub const FAULT: u8 = 1 << 3;
}

/// Bits of [`StatusFrame::status`].
pub mod status {
    /// The device reports an internal fault.
    pub const FAULT: u16 = 1 << 0;
    /// The device's own emergency stop is engaged.
    pub const ESTOP: u16 = 1 << 1;
}

/// Host → device, once per period.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ForceFrame {
    /// Counts up by one per frame sent (wraps); gaps tell the device it missed frames.
    pub seq: u32,
    /// Host time of sending, µs since the link started.
    pub time_us: u64,
    /// Force to render, N, in the frame the fixture works in (the Reference frame).
    pub force_n: [f32; 3],
    pub flags: u8,
    /// Low 32 bits of the image frame's sequence number that produced the target (0: none yet).
    pub image_seq: u32,
}

/// Device → host: the heartbeat, with the device's state.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StatusFrame {
    pub seq: u32,
    /// Device clock, µs.
    pub device_time_us: u64,
    pub status: u16,
    /// The last force frame's `seq` the device received.
    pub last_force_seq: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error(transparent)]
    Cobs(#[from] cobs::CobsError),
    #[error("record of {0} bytes is too short")]
    TooShort(usize),
    #[error("CRC mismatch: record says {stated:#06x}, bytes give {computed:#06x}")]
    Crc { stated: u16, computed: u16 },
    #[error("protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    Version(u8),
    #[error("unknown message kind {0:#04x}")]
    Kind(u8),
    #[error("message kind {kind:#04x} must be {expected} bytes, got {got}")]
    Length { kind: u8, expected: usize, got: usize },
}

/// A decoded message of either kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Message {
    Force(ForceFrame),
    Status(StatusFrame),
}

/// Little-endian field writer over a fixed record.
struct Put<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Put<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    /// Appends the CRC of everything written so far and returns the record length.
    fn finish(mut self) -> usize {
        let crc = crc16_ccitt_false(&self.buf[..self.at]);
        self.bytes(&crc.to_le_bytes());
        self.at
    }
}

/// Little-endian field reader; lengths were checked before it is used.
struct Get<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Get<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let out: [u8; N] = self.buf[self.at..self.at + N].try_into().expect("length checked");
        self.at += N;
        out
    }
}

impl ForceFrame {
    fn record(&self, buf: &mut [u8; MAX_RECORD_LEN]) -> usize {
        let mut put = Put { buf, at: 0 };
        put.bytes(&[PROTOCOL_VERSION, KIND_FORCE]);
        put.bytes(&self.seq.to_le_bytes());
        put.bytes(&self.time_us.to_le_bytes());
        for f in self.force_n {
            put.bytes(&f.to_le_bytes());
        }
        put.bytes(&[self.flags]);
        put.bytes(&self.image_seq.to_le_bytes());
        put.finish()
    }
}

impl StatusFrame {
    fn record(&self, buf: &mut [u8; MAX_RECORD_LEN]) -> usize {
        let mut put = Put { buf, at: 0 };
        put.bytes(&[PROTOCOL_VERSION, KIND_STATUS]);
        put.bytes(&self.seq.to_le_bytes());
        put.bytes(&self.device_time_us.to_le_bytes());
        put.bytes(&self.status.to_le_bytes());
        put.bytes(&self.last_force_seq.to_le_bytes());
        put.finish()
    }
}

impl Message {
    /// Writes the message as it goes on the wire (COBS block + 0x00) and returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_WIRE_LEN]) -> usize {
        let mut record = [0u8; MAX_RECORD_LEN];
        let len = match self {
            Message::Force(f) => f.record(&mut record),
            Message::Status(s) => s.record(&mut record),
        };
        let n = cobs::encode(&record[..len], &mut out[..MAX_WIRE_LEN - 1]);
        out[n] = 0;
        n + 1
    }

    /// Decodes one COBS block (the bytes between two delimiters).
    pub fn decode_block(block: &[u8]) -> Result<Message, ProtocolError> {
        let mut record = [0u8; MAX_RECORD_LEN];
        let len = cobs::decode(block, &mut record)?;
        Self::decode_record(&record[..len])
    }

    /// Decodes a record (COBS already undone), checking CRC, version, kind and length.
    pub fn decode_record(record: &[u8]) -> Result<Message, ProtocolError> {
        if record.len() < 4 {
            return Err(ProtocolError::TooShort(record.len()));
        }
        let (body, crc) = record.split_at(record.len() - 2);
        let stated = u16::from_le_bytes([crc[0], crc[1]]);
        let computed = crc16_ccitt_false(body);
        if stated != computed {
            return Err(ProtocolError::Crc { stated, computed });
        }
        if body[0] != PROTOCOL_VERSION {
            return Err(ProtocolError::Version(body[0]));
        }
        let kind = body[1];
        let expected = match kind {
            KIND_FORCE => FORCE_LEN,
            KIND_STATUS => STATUS_LEN,
            other => return Err(ProtocolError::Kind(other)),
        };
        if record.len() != expected {
            return Err(ProtocolError::Length { kind, expected, got: record.len() });
        }
        let mut get = Get { buf: body, at: 2 };
        Ok(match kind {
            KIND_FORCE => Message::Force(ForceFrame {
                seq: u32::from_le_bytes(get.take()),
                time_us: u64::from_le_bytes(get.take()),
                force_n: [(); 3].map(|_| f32::from_le_bytes(get.take())),
                flags: get.take::<1>()[0],
                image_seq: u32::from_le_bytes(get.take()),
            }),
            _ => Message::Status(StatusFrame {
                seq: u32::from_le_bytes(get.take()),
                device_time_us: u64::from_le_bytes(get.take()),
                status: u16::from_le_bytes(get.take()),
                last_force_seq: u32::from_le_bytes(get.take()),
            }),
        })
    }
}

/// Splits a byte stream into messages: feed bytes as they arrive, get each message (or the
/// reason a block was rejected) as its delimiter arrives. Corrupt or overlong blocks cost only
/// themselves: decoding resumes at the next delimiter.
#[derive(Default)]
pub struct StreamDecoder {
    blocks: cobs::BlockReader<{ MAX_WIRE_LEN }>,
}

impl StreamDecoder {
    /// Feeds `bytes`, calling `on_message` for every complete block (empty blocks, i.e. repeated
    /// delimiters, are skipped).
    pub fn feed(&mut self, bytes: &[u8], mut on_message: impl FnMut(Result<Message, ProtocolError>)) {
        for &b in bytes {
            match self.blocks.push(b) {
                cobs::Block::Pending | cobs::Block::Complete([]) => {}
                cobs::Block::Complete(block) => on_message(Message::decode_block(block)),
                cobs::Block::Overflow => on_message(Err(cobs::CobsError::TooLong(MAX_WIRE_LEN).into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn wire(m: &Message) -> Vec<u8> {
        let mut out = [0u8; MAX_WIRE_LEN];
        let n = m.encode(&mut out);
        out[..n].to_vec()
    }

    fn decode_all(bytes: &[u8]) -> Vec<Result<Message, ProtocolError>> {
        let mut out = Vec::new();
        StreamDecoder::default().feed(bytes, |m| out.push(m));
        out
    }

    fn force_frame() -> impl Strategy<Value = ForceFrame> {
        (any::<u32>(), any::<u64>(), prop::array::uniform3(-50.0f32..50.0), any::<u8>(), any::<u32>()).prop_map(
            |(seq, time_us, force_n, flags, image_seq)| ForceFrame { seq, time_us, force_n, flags, image_seq },
        )
    }

    fn status_frame() -> impl Strategy<Value = StatusFrame> {
        (any::<u32>(), any::<u64>(), any::<u16>(), any::<u32>()).prop_map(
            |(seq, device_time_us, status, last_force_seq)| StatusFrame { seq, device_time_us, status, last_force_seq },
        )
    }

    #[test]
    fn layout_is_as_documented() {
        let f = ForceFrame { seq: 1, time_us: 2, force_n: [1.0, 0.0, -1.0], flags: flags::ENABLED, image_seq: 9 };
        let mut record = [0u8; MAX_RECORD_LEN];
        assert_eq!(f.record(&mut record), FORCE_LEN);
        assert_eq!(&record[..6], &[1, 0x01, 1, 0, 0, 0]);
        assert_eq!(&record[14..18], &1.0f32.to_le_bytes());
        assert_eq!(record[26], flags::ENABLED);
        assert_eq!(&record[27..31], &9u32.to_le_bytes());
        assert_eq!(u16::from_le_bytes([record[31], record[32]]), crc16_ccitt_false(&record[..31]));
        let w = wire(&Message::Force(f));
        assert!(w.len() <= MAX_WIRE_LEN);
        assert_eq!(*w.last().unwrap(), 0);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc_and_the_next_message_still_decodes() {
        let a = Message::Status(StatusFrame { seq: 1, device_time_us: 5, status: 0, last_force_seq: 3 });
        let b = Message::Status(StatusFrame { seq: 2, device_time_us: 6, status: status::FAULT, last_force_seq: 4 });
        let mut bytes = wire(&a);
        bytes[5] ^= 0x10;
        bytes.extend(wire(&b));
        let got = decode_all(&bytes);
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Err(ProtocolError::Crc { .. }) | Err(ProtocolError::Cobs(_))), "{:?}", got[0]);
        assert_eq!(got[1], Ok(b));
    }

    #[test]
    fn truncated_and_unknown_messages_are_named() {
        let a = wire(&Message::Status(StatusFrame::default()));
        // Cut the message short but keep its delimiter: the CRC or COBS check catches it.
        let mut cut = a[..a.len() - 4].to_vec();
        cut.push(0);
        assert!(decode_all(&cut)[0].is_err());
        // A valid CRC over an unknown kind.
        let mut record = vec![PROTOCOL_VERSION, 0x42, 0, 0];
        let crc = crc16_ccitt_false(&record);
        record.extend(crc.to_le_bytes());
        assert_eq!(Message::decode_record(&record), Err(ProtocolError::Kind(0x42)));
        record[0] = 7;
        let crc = crc16_ccitt_false(&record[..4]);
        record.truncate(4);
        record.extend(crc.to_le_bytes());
        assert_eq!(Message::decode_record(&record), Err(ProtocolError::Version(7)));
    }

    proptest! {
        #[test]
        fn force_frames_round_trip(f in force_frame()) {
            prop_assert_eq!(decode_all(&wire(&Message::Force(f))), vec![Ok(Message::Force(f))]);
        }

        #[test]
        fn status_frames_round_trip(s in status_frame()) {
            prop_assert_eq!(decode_all(&wire(&Message::Status(s))), vec![Ok(Message::Status(s))]);
        }

        #[test]
        fn garbage_before_a_message_costs_only_itself(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            f in force_frame(),
        ) {
            let mut bytes = garbage;
            bytes.push(0);
            bytes.extend(wire(&Message::Force(f)));
            let got = decode_all(&bytes);
            prop_assert_eq!(got.last().cloned(), Some(Ok(Message::Force(f))));
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught_or_harmless() {
        let frames = [
            ForceFrame::default(),
            ForceFrame { seq: 77, time_us: 1 << 40, force_n: [0.5, -2.0, 3.25], flags: 0x0f, image_seq: 123456 },
        ];
        for f in frames {
            let clean = wire(&Message::Force(f));
            for at in 0..clean.len() - 1 {
                for bit in 0..8 {
                    let mut bytes = clean.clone();
                    bytes[at] ^= 1 << bit;
                    for m in decode_all(&bytes).into_iter().flatten() {
                        // A flip may split the block (a new zero) but must never yield another frame.
                        assert_eq!(m, Message::Force(f), "byte {at} bit {bit}");
                    }
                }
            }
        }
    }
}
