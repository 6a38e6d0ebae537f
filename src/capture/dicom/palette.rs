//! PALETTE COLOR (PS3.3 C.7.6.3.1.5, C.7.9): the red, green and blue lookup tables, plain or
//! segmented, folded with the luma into one table from stored value to grey.
//!
//! Each channel's descriptor gives the entry count (0 meaning 65536), the first mapped stored
//! value and the bits per entry (8 or 16). Stored values below the first mapped one take entry 0,
//! values past the last entry take the last. 16-bit entries become 8 bits by their high byte
//! (scanners write 8-bit colours shifted up by 8, which this gives back exactly); then the same
//! luma as for RGB frames.

use dicom_object::{InMemDicomObject, Tag};

use crate::capture::luma;

/// (descriptor, data, segmented data) of red, green and blue.
const CHANNELS: [(Tag, Tag, Tag); 3] = [
    (Tag(0x0028, 0x1101), Tag(0x0028, 0x1201), Tag(0x0028, 0x1221)),
    (Tag(0x0028, 0x1102), Tag(0x0028, 0x1202), Tag(0x0028, 0x1222)),
    (Tag(0x0028, 0x1103), Tag(0x0028, 0x1203), Tag(0x0028, 0x1223)),
];
/// Most entries a table can have (the descriptor's count is 16 bits, 0 meaning this).
const MAX_ENTRIES: usize = 1 << 16;
/// How deep indirect segments may refer to other indirect segments.
const MAX_INDIRECT_DEPTH: usize = 4;

/// One channel's table: entries already at 8 bits.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Lut {
    pub first: i64,
    pub entries: Vec<u8>,
}

impl Lut {
    /// The entry for stored value `v`.
    pub fn map(&self, v: i64) -> u8 {
        let i = (v.saturating_sub(self.first)).clamp(0, self.entries.len() as i64 - 1);
        self.entries[i as usize]
    }
}

/// The grey level of every stored value `0..1 << bits` (8 or 16 bits allocated).
pub(super) fn grey_table(obj: &InMemDicomObject, bits: u16) -> Result<Vec<u8>, String> {
    let [r, g, b] = [0, 1, 2].map(|c| channel(obj, c));
    let (r, g, b) = (r?, g?, b?);
    Ok((0..1i64 << bits).map(|v| luma(r.map(v), g.map(v), b.map(v))).collect())
}

fn channel(obj: &InMemDicomObject, c: usize) -> Result<Lut, String> {
    let name = ["red", "green", "blue"][c];
    let (descriptor_tag, data_tag, segmented_tag) = CHANNELS[c];
    let descriptor = obj
        .element_opt(descriptor_tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_int::<i64>().ok())
        .filter(|d| d.len() == 3)
        .ok_or_else(|| format!("PALETTE COLOR without a {name} lookup table descriptor of three numbers"))?;
    let entries = match descriptor[0] {
        0 => MAX_ENTRIES,
        n @ 1..=65535 => n as usize,
        n => return Err(format!("{name} lookup table descriptor: {n} entries")),
    };
    let bits = descriptor[2];
    if !(bits == 8 || bits == 16) {
        return Err(format!("{name} lookup table descriptor: {bits} bits per entry (8 or 16)"));
    }
    let (plain, segmented) = (words(obj, data_tag), words(obj, segmented_tag));
    let values = match (plain, segmented) {
        (Some(w), _) => plain_entries(&w, entries, bits == 16)
            .ok_or_else(|| format!("{name} lookup table data: {} words for {entries} entries", w.len()))?,
        (None, Some(w)) => {
            let data = if bits == 16 { w } else { unpack_bytes(&w) };
            let mut out = Vec::with_capacity(entries);
            expand_segments(&data, 0, None, 0, &mut out).map_err(|m| format!("segmented {name} lookup table: {m}"))?;
            if out.is_empty() {
                return Err(format!("segmented {name} lookup table holds no entries"));
            }
            out
        }
        (None, None) => return Err(format!("PALETTE COLOR without {name} lookup table data")),
    };
    let entries = values.iter().map(|&v| if bits == 16 { (v >> 8) as u8 } else { v.min(255) as u8 }).collect();
    Ok(Lut { first: descriptor[1], entries })
}

/// An OW (or OB) value as 16-bit words in the file's byte order, read as numbers.
fn words(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<u16>> {
    use dicom_core::{PrimitiveValue, value::Value};
    use dicom_object::mem::InMemElement;
    let e: &InMemElement = obj.element_opt(tag).ok().flatten()?;
    match e.value() {
        Value::Primitive(PrimitiveValue::U16(w)) => Some(w.to_vec()),
        Value::Primitive(PrimitiveValue::U8(b)) => {
            Some(b.chunks(2).map(|p| u16::from_le_bytes([p[0], *p.get(1).unwrap_or(&0)])).collect())
        }
        _ => e.to_multi_int::<u16>().ok(),
    }
}

/// 8-bit entries packed two to a word, first entry in the low byte.
fn unpack_bytes(words: &[u16]) -> Vec<u16> {
    words.iter().flat_map(|w| w.to_le_bytes()).map(u16::from).collect()
}

/// The entries of a plain table: 16-bit entries one to a word; 8-bit entries two to a word, or
/// one to a word as some writers store them.
fn plain_entries(words: &[u16], entries: usize, sixteen: bool) -> Option<Vec<u16>> {
    if sixteen || words.len() >= entries {
        let table = words.get(..entries)?;
        if sixteen || table.iter().all(|&v| v <= 255) {
            return Some(table.to_vec());
        }
        // One 8-bit entry to a word, shifted up as 16-bit tables are.
        return Some(table.iter().map(|v| v >> 8).collect());
    }
    let bytes = unpack_bytes(words);
    bytes.get(..entries).map(<[u16]>::to_vec)
}

/// Expands the segments (discrete, linear, indirect) of `data` from word `start` into `out`, at
/// most `limit` of them (an indirect segment copies that many from its offset, counted from the
/// start of the data), and never past [`MAX_ENTRIES`] entries.
fn expand_segments(
    data: &[u16],
    start: usize,
    limit: Option<usize>,
    depth: usize,
    out: &mut Vec<u16>,
) -> Result<(), String> {
    let mut at = start;
    let mut done = 0;
    // A trailing pad word is not a segment.
    while at + 1 < data.len() && limit.is_none_or(|l| done < l) {
        let (opcode, length) = (data[at], usize::from(data[at + 1]));
        at += 2;
        match opcode {
            0 => {
                let values = data
                    .get(at..at + length)
                    .ok_or_else(|| format!("discrete segment at word {} runs past the data", at - 2))?;
                check_room(out, length)?;
                out.extend_from_slice(values);
                at += length;
            }
            1 => {
                let &y0 = out.last().ok_or("the first segment is a linear one (it has no start)")?;
                let &y1 =
                    data.get(at).ok_or_else(|| format!("linear segment at word {} runs past the data", at - 2))?;
                check_room(out, length)?;
                let step = (f64::from(y1) - f64::from(y0)) / length as f64;
                out.extend((1..=length).map(|i| (f64::from(y0) + step * i as f64).round_ties_even() as u16));
                at += 1;
            }
            2 => {
                if out.is_empty() {
                    return Err("the first segment is an indirect one".into());
                }
                if depth >= MAX_INDIRECT_DEPTH {
                    return Err(format!("indirect segments nested more than {MAX_INDIRECT_DEPTH} deep"));
                }
                let (Some(&lo), Some(&hi)) = (data.get(at), data.get(at + 1)) else {
                    return Err(format!("indirect segment at word {} runs past the data", at - 2));
                };
                let offset = (usize::from(hi) << 16) | usize::from(lo);
                if offset >= data.len() {
                    return Err(format!("indirect segment at word {} points to word {offset}, past the data", at - 2));
                }
                expand_segments(data, offset, Some(length), depth + 1, out)?;
                at += 2;
            }
            _ => return Err(format!("unknown segment type {opcode} at word {}", at - 2)),
        }
        done += 1;
    }
    Ok(())
}

fn check_room(out: &[u16], more: usize) -> Result<(), String> {
    if out.len() + more > MAX_ENTRIES {
        return Err(format!("expands past {MAX_ENTRIES} entries"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{PrimitiveValue, VR};
    use dicom_object::mem::InMemElement;

    fn palette(descriptor: [u16; 3], data: [Vec<u16>; 3], segmented: bool) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        for (c, values) in data.into_iter().enumerate() {
            let (d, plain, seg) = CHANNELS[c];
            obj.put(InMemElement::new(d, VR::US, PrimitiveValue::U16(descriptor.to_vec().into())));
            let tag = if segmented { seg } else { plain };
            obj.put(InMemElement::new(tag, VR::OW, PrimitiveValue::U16(values.into())));
        }
        obj
    }

    #[test]
    fn eight_bit_entries_packed_two_to_a_word() {
        // 4 entries from stored value 0: red 10, 20, 30, 40 (low byte first); green and blue 0.
        let red = vec![u16::from_le_bytes([10, 20]), u16::from_le_bytes([30, 40])];
        let obj = palette([4, 0, 8], [red, vec![0, 0], vec![0, 0]], false);
        let t = grey_table(&obj, 8).unwrap();
        let red_luma = |r: u8| luma(r, 0, 0);
        assert_eq!(t[..5], [red_luma(10), red_luma(20), red_luma(30), red_luma(40), red_luma(40)]);
        assert_eq!(t[255], red_luma(40), "past the last entry: the last");
    }

    #[test]
    fn sixteen_bit_entries_take_their_high_byte_and_the_first_mapped_value_offsets_the_index() {
        // 3 entries from stored value 100: grey 0x1000, 0x80FF, 0xFF00 in all three channels.
        let lut = vec![0x1000, 0x80FF, 0xFF00];
        let obj = palette([3, 100, 16], [lut.clone(), lut.clone(), lut], false);
        let t = grey_table(&obj, 16).unwrap();
        assert_eq!(t.len(), 65536);
        assert_eq!((t[0], t[99], t[100], t[101], t[102], t[103], t[65535]), (0x10, 0x10, 0x10, 0x80, 0xFF, 0xFF, 0xFF));
    }

    #[test]
    fn colours_become_the_luma_of_rgb() {
        let obj = palette([1, 0, 16], [vec![0xFF00], vec![0x8000], vec![0x4000]], false);
        assert_eq!(grey_table(&obj, 8).unwrap()[7], luma(255, 128, 64));
    }

    #[test]
    fn one_eight_bit_entry_to_a_word() {
        let obj = palette([2, 0, 8], [vec![7, 9], vec![7, 9], vec![7, 9]], false);
        assert_eq!(grey_table(&obj, 8).unwrap()[..3], [7, 9, 9]);
    }

    #[test]
    fn segmented_tables_expand_discrete_linear_and_indirect_segments() {
        // Discrete 0, 0x1000; linear to 0x4000 over 3; indirect: the first segment again.
        let data = vec![0, 2, 0, 0x1000, 1, 3, 0x4000, 2, 1, 0, 0];
        let mut out = Vec::new();
        expand_segments(&data, 0, None, 0, &mut out).unwrap();
        assert_eq!(out, [0, 0x1000, 0x2000, 0x3000, 0x4000, 0, 0x1000]);
        let obj = palette([0, 0, 16], [data.clone(), data.clone(), data], true);
        let t = grey_table(&obj, 16).unwrap();
        assert_eq!(t[..8], [0, 0x10, 0x20, 0x30, 0x40, 0, 0x10, 0x10]);
    }

    #[test]
    fn damaged_tables_are_errors() {
        let mut out = Vec::new();
        assert!(expand_segments(&[1, 3, 9], 0, None, 0, &mut out).unwrap_err().contains("first segment"));
        assert!(expand_segments(&[0, 9, 1], 0, None, 0, &mut out).unwrap_err().contains("past the data"));
        assert!(
            expand_segments(&[0, 1, 5, 7, 0], 0, None, 0, &mut out).unwrap_err().contains("unknown segment type 7")
        );
        // An indirect segment pointing at itself.
        let mut out = Vec::new();
        let err = expand_segments(&[0, 1, 5, 2, 1, 3, 0], 0, None, 0, &mut out).unwrap_err();
        assert!(err.contains("nested"), "{err}");
        // Linear segments of 65535 entries, over and over.
        let many: Vec<u16> = [vec![0, 1, 0], [1, 65535, 9].repeat(3)].concat();
        assert!(expand_segments(&many, 0, None, 0, &mut Vec::new()).unwrap_err().contains("65536"));
        let obj = palette([4, 0, 16], [vec![1, 2], vec![1, 2], vec![1, 2]], false);
        assert!(grey_table(&obj, 8).unwrap_err().contains("2 words for 4 entries"));
        let obj = palette([4, 0, 12], [vec![1; 4], vec![1; 4], vec![1; 4]], false);
        assert!(grey_table(&obj, 8).unwrap_err().contains("12 bits per entry"));
    }
}
