//! CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor; the CRC
//! catalogue's CRC-16/IBM-3740), the checksum every haptics wire frame ends with. From the `crc`
//! crate: its table-driven form is one lookup per byte, as the 1 kHz path needs.

const CCITT_FALSE: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

pub fn crc16_ccitt_false(bytes: &[u8]) -> u16 {
    CCITT_FALSE.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_catalogue_check_value() {
        // The CRC catalogue's check value for CRC-16/CCITT-FALSE.
        assert_eq!(crc16_ccitt_false(b"123456789"), 0x29B1);
        assert_eq!(crc16_ccitt_false(b""), 0xFFFF);
    }

    #[test]
    fn matches_the_bitwise_definition() {
        let bitwise = |bytes: &[u8]| {
            let mut crc: u16 = 0xFFFF;
            for &b in bytes {
                crc ^= (b as u16) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
                }
            }
            crc
        };
        let data: Vec<u8> = (0..=255u8).chain([0, 0, 7]).collect();
        assert_eq!(crc16_ccitt_false(&data), bitwise(&data));
    }
}

#[cfg(test)]
mod speed {
    /// Not a test: the checksum of a force record (the 1 kHz path).
    /// `cargo test --release --lib crc_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn crc_speed() {
        let record = [0x5au8; super::super::protocol::FORCE_LEN - 2];
        let n = 1_000_000u32;
        let t = std::time::Instant::now();
        let mut acc = 0u16;
        for i in 0..n {
            let mut r = record;
            r[0] = i as u8;
            acc ^= super::crc16_ccitt_false(std::hint::black_box(&r));
        }
        let ns = t.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        eprintln!("CRC of a {}-byte force record: {ns:.1} ns (checksum {acc:#06x})", record.len());
    }
}
