//! Seed-corpus mutation: bit flips, byte edits, truncation, splicing, boundary integers, and
//! numbers and words of the text replaced by hostile ones.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;

/// Numbers a mutation may put where a number was: boundaries of the integer widths, float
/// specials, and text no number parser should accept.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "255",
    "256",
    "65535",
    "65536",
    "8192",
    "8193",
    "1000000",
    "1000001",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1e308",
    "1e309",
    "-1e309",
    "1e-320",
    "0.0",
    "-0.5",
    "0.5",
    "1.5e3",
    "0x10",
    "1,5",
    "",
    " ",
];

/// Binary integers a mutation may write (little-endian, 1 to 8 bytes).
const INTEGERS: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xfffe,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
];

/// Words any format may meet: separators, control and non-ASCII text, markup.
const GENERIC_WORDS: &[&str] = &[
    "",
    "=",
    " = ",
    ":=",
    ": ",
    ":",
    "\n",
    "\r\n",
    "\n\n",
    "\0",
    "\t",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    "\\",
    "%d",
    "..",
    "/",
    "<",
    ">",
    "\"",
    "'",
    "&amp;",
    "&#0;",
    "]]>",
    "<!--",
    "(",
    ")",
    ",",
    "#",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    InsertWord(Index, Index),
    Delete(Index, usize),
    Truncate(Index),
    Splice { seed: Index, from: Index, len: usize, to: Index },
    Repeat(Index, usize, u8),
    Integer(Index, u8, u64),
    Number(Index, Index),
    Word(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, w)| Mutation::InsertWord(i, w)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), 1usize..256, any::<Index>())
            .prop_map(|(seed, from, len, to)| Mutation::Splice { seed, from, len, to }),
        1 => (any::<Index>(), 1usize..32, 1u8..8).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        2 => (any::<Index>(), prop::sample::select(&[1u8, 2, 4, 8][..]), prop::sample::select(INTEGERS))
            .prop_map(|(i, w, v)| Mutation::Integer(i, w, v)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Number(i, n)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

/// Maximal runs of bytes for which `is_part` holds, as (start, end).
fn runs(data: &[u8], is_part: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if is_part(data[i]) {
            let start = i;
            while i < data.len() && is_part(data[i]) {
                i += 1;
            }
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

/// Spans of number-like text: a digit run with signs, dots and exponents around it.
fn number_spans(data: &[u8]) -> Vec<(usize, usize)> {
    let is_part = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E');
    runs(data, is_part).into_iter().filter(|&(s, e)| data[s..e].iter().any(u8::is_ascii_digit)).collect()
}

/// Spans of identifier-like text.
fn word_spans(data: &[u8]) -> Vec<(usize, usize)> {
    runs(data, |b| b.is_ascii_alphanumeric() || b == b'_')
}

fn word(words: &[&'static str], pick: &Index) -> &'static str {
    let n = words.len() + GENERIC_WORDS.len();
    let i = pick.index(n);
    if i < words.len() { words[i] } else { GENERIC_WORDS[i - words.len()] }
}

impl Mutation {
    fn apply(&self, data: &mut Vec<u8>, seeds: &[Vec<u8>], words: &[&'static str]) {
        let len = data.len();
        match self {
            Mutation::FlipBit(i, bit) if len > 0 => data[i.index(len)] ^= 1 << bit,
            Mutation::SetByte(i, b) if len > 0 => data[i.index(len)] = *b,
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::InsertWord(i, w) => {
                let at = i.index(len + 1);
                data.splice(at..at, word(words, w).bytes());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i.index(len);
                data.drain(at..(at + n).min(len));
            }
            Mutation::Truncate(i) if len > 0 => data.truncate(i.index(len)),
            Mutation::Splice { seed, from, len: n, to } => {
                let other = &seeds[seed.index(seeds.len())];
                if !other.is_empty() {
                    let start = from.index(other.len());
                    let chunk = other[start..(start + n).min(other.len())].to_vec();
                    let at = to.index(len + 1);
                    data.splice(at..at, chunk);
                }
            }
            Mutation::Repeat(i, n, times) if len > 0 => {
                let at = i.index(len);
                let chunk = data[at..(at + n).min(len)].to_vec();
                for _ in 0..*times {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
            Mutation::Integer(i, width, value) => {
                let width = usize::from(*width);
                if len >= width {
                    let at = i.index(len - width + 1);
                    data[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
                }
            }
            Mutation::Number(i, n) => {
                let spans = number_spans(data);
                if !spans.is_empty() {
                    let (start, end) = spans[i.index(spans.len())];
                    data.splice(start..end, NUMBERS[n.index(NUMBERS.len())].bytes());
                }
            }
            Mutation::Word(i, w) => {
                let spans = word_spans(data);
                if !spans.is_empty() {
                    let (start, end) = spans[i.index(spans.len())];
                    data.splice(start..end, word(words, w).bytes());
                }
            }
            _ => {}
        }
    }
}

/// Inputs made from `seeds` by one to seven mutations (bit flips, byte inserts and deletes,
/// truncation, splicing with another seed, boundary integers, numbers replaced by huge,
/// negative or NaN text, words replaced by `words` of the format).
pub fn mutated(seeds: Vec<Vec<u8>>, words: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "a mutation corpus needs at least one seed");
    let seeds = Arc::new(seeds);
    (any::<Index>(), prop::collection::vec(mutation(), 1..8)).prop_map(move |(pick, ops)| {
        let mut data = seeds[pick.index(seeds.len())].clone();
        for op in &ops {
            op.apply(&mut data, &seeds, words);
        }
        data
    })
}

/// Reads the seed files of `tests/fixtures/<dir>` whose names pass `keep`, sorted by name.
pub fn seeds(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).collect()
}
