//! Haptics wire streams: valid, damaged and re-signed frames between garbage.

use sonoflow::haptics::protocol::{ForceFrame, MAX_WIRE_LEN, Message, StatusFrame};
use sonoflow::haptics::{cobs, crc};

use super::*;

fn force_frame() -> impl Strategy<Value = ForceFrame> {
    (any::<u32>(), any::<u64>(), prop::array::uniform3(any::<f32>()), any::<u8>(), any::<u32>())
        .prop_map(|(seq, time_us, force_n, flags, image_seq)| ForceFrame { seq, time_us, force_n, flags, image_seq })
}

fn status_frame() -> impl Strategy<Value = StatusFrame> {
    (any::<u32>(), any::<u64>(), any::<u16>(), any::<u32>()).prop_map(
        |(seq, device_time_us, status, last_force_seq)| StatusFrame { seq, device_time_us, status, last_force_seq },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![force_frame().prop_map(Message::Force), status_frame().prop_map(Message::Status)]
}

pub fn wire(m: &Message) -> Vec<u8> {
    let mut out = [0u8; MAX_WIRE_LEN];
    let n = m.encode(&mut out);
    out[..n].to_vec()
}

/// A record of any bytes with a correct CRC, COBS-encoded and delimited: reaches the version,
/// kind and length checks.
fn signed_record(body: &[u8]) -> Vec<u8> {
    let mut record = body.to_vec();
    record.extend_from_slice(&crc::crc16_ccitt_false(body).to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoded_len(record.len()) + 1];
    let n = cobs::encode(&record, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

/// A device stream: valid frames, damaged frames, garbage, overlong runs and stray delimiters.
pub fn haptics_stream() -> impl Strategy<Value = Vec<u8>> {
    let chunk = prop_oneof![
        4 => message().prop_map(|m| wire(&m)),
        2 => (message(), vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)).prop_map(|(m, flips)| {
            let mut w = wire(&m);
            for (at, x) in flips {
                let i = at.index(w.len());
                w[i] ^= x;
            }
            w
        }),
        2 => vec(any::<u8>(), 0..40),
        1 => (200usize..400, any::<u64>()).prop_map(|(n, seed)| pattern(seed, n).into_iter().map(|b| b | 1).collect()),
        1 => Just(vec![0]),
        2 => (prop_oneof![Just(1u8), any::<u8>()], prop_oneof![Just(0x01u8), Just(0x81u8), any::<u8>()], vec(any::<u8>(), 0..40))
            .prop_map(|(version, kind, rest)| {
                let mut body = vec![version, kind];
                body.extend(rest);
                signed_record(&body)
            }),
    ];
    vec(chunk, 0..12).prop_map(|chunks| chunks.concat())
}
