//! MetaImage and NRRD sequence files: header lines with random keys, sizes and per-frame fields.

use super::*;

/// Words of the sequence formats, for mutations and values.
pub const SEQUENCE_WORDS: &[&str] = &[
    "MET_UCHAR",
    "MET_USHORT",
    "MET_FLOAT",
    "MET_SHORT",
    "True",
    "False",
    "LOCAL",
    "LIST",
    "OK",
    "INVALID",
    "MISSING",
    "split.raw",
    "NDims",
    "DimSize",
    "ElementType",
    "ElementSpacing",
    "ElementDataFile",
    "CompressedData",
    "CompressedDataSize",
    "ElementNumberOfChannels",
    "BinaryDataByteOrderMSB",
    "Seq_Frame",
    "Seq_Frame0000_",
    "Seq_Frame9999_Timestamp",
    "Transform",
    "TransformStatus",
    "Timestamp",
    "ImageStatus",
    "NRRD0004",
    "type",
    "sizes",
    "kinds",
    "list",
    "domain",
    "time",
    "encoding",
    "raw",
    "gzip",
    "bzip2",
    "endian",
    "big",
    "space directions",
    "data file",
    "none",
    "(0,0,0)",
    "(1,0)",
    "uchar",
    "ushort",
    "float",
];

const META_KEYS: &[&str] = &[
    "ObjectType",
    "NDims",
    "DimSize",
    "ElementType",
    "ElementSpacing",
    "ElementSize",
    "BinaryData",
    "BinaryDataByteOrderMSB",
    "ElementByteOrderMSB",
    "CompressedData",
    "CompressedDataSize",
    "ElementNumberOfChannels",
    "Offset",
    "TransformMatrix",
    "Kinds",
    "UltrasoundImageOrientation",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => numbers(1..4),
        1 => numbers(16..17),
        2 => select(SEQUENCE_WORDS).prop_map(str::to_string),
        1 => printable(),
    ]
}

/// One `Seq_FrameNNNN_<Name>` line with `sep` between key and value.
fn frame_line(sep: &'static str) -> impl Strategy<Value = String> {
    let index = prop_oneof![
        8 => (0usize..4).prop_map(|i| format!("{i:04}")),
        1 => select(NUMBERS).prop_map(str::to_string),
    ];
    let tool = select(&["Probe", "Stylus", "", "To"][..]);
    let field = prop_oneof![
        3 => (tool.clone(), prop_oneof![4 => numbers(16..17), 1 => numbers(0..20), 1 => printable()])
            .prop_map(|(t, v)| (format!("{t}ToTrackerTransform"), v)),
        2 => (tool, select(&["OK", "INVALID", "MISSING", "ok", ""][..]))
            .prop_map(|(t, v)| (format!("{t}ToTrackerTransformStatus"), v.to_string())),
        2 => number().prop_map(|v| ("Timestamp".to_string(), v)),
        1 => select(&["OK", "INVALID", "bad"][..]).prop_map(|v| ("ImageStatus".to_string(), v.to_string())),
        1 => ("[A-Za-z_]{0,8}", value()),
    ];
    (index, field).prop_map(move |(i, (name, v))| format!("Seq_Frame{i}_{name}{sep}{v}"))
}

/// A MetaImage sequence (`.mha`, LOCAL data or the `split.raw` companion) with random fields.
pub fn metaimage() -> impl Strategy<Value = Vec<u8>> {
    let required = (
        prop_oneof![6 => Just("3".to_string()), 2 => Just("2".to_string()), 1 => number()],
        dims(),
        prop_oneof![
            4 => Just("MET_UCHAR".to_string()),
            3 => Just("MET_USHORT".to_string()),
            1 => select(&["MET_FLOAT", "MET_SHORT", ""][..]).prop_map(str::to_string),
        ],
        vec(prop::bool::weighted(0.06), 3),
    );
    let compression =
        (0u8..4, prop_oneof![2 => Just(None), 2 => Just(Some(String::new())), 1 => number().prop_map(Some)]);
    let lines = (vec((select(META_KEYS), value()), 0..5), vec(frame_line(" = "), 0..14), vec(any::<u16>(), 64));
    let data_file = prop_oneof![
        10 => Just("LOCAL"),
        1 => Just("split.raw"),
        1 => select(&["LIST", "f%03d.raw", "missing.raw", "", ".", "../split.raw", "split.raw "][..]),
    ];
    let data = (any::<u64>(), 0usize..160);
    (required, compression, lines, data_file, data).prop_map(
        |((ndims, dims, etype, omit), (compressed, size), (extras, frames, order), data_file, (seed, len))| {
            let raw = pattern(seed, len);
            let payload = match compressed {
                2 => zlib(&raw),
                _ => raw,
            };
            let mut lines: Vec<String> = Vec::new();
            for (i, (key, value)) in
                [("NDims", ndims), ("DimSize", dims), ("ElementType", etype)].into_iter().enumerate()
            {
                if !omit[i] {
                    lines.push(format!("{key} = {value}"));
                }
            }
            if compressed >= 2 {
                lines.push("CompressedData = True".into());
                match size {
                    Some(s) if s.is_empty() => lines.push(format!("CompressedDataSize = {}", payload.len())),
                    Some(s) => lines.push(format!("CompressedDataSize = {s}")),
                    None => {}
                }
            } else if compressed == 1 {
                lines.push("CompressedData = False".into());
            }
            lines.extend(extras.into_iter().map(|(k, v)| format!("{k} = {v}")));
            lines.extend(frames);
            let mut keyed: Vec<(u16, String)> =
                lines.into_iter().enumerate().map(|(i, l)| (order[i % 64], l)).collect();
            keyed.sort_by_key(|(k, _)| *k);
            let mut out = String::new();
            for (_, line) in keyed {
                out.push_str(&line);
                out.push('\n');
            }
            out.push_str(&format!("ElementDataFile = {data_file}\n"));
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&payload);
            bytes
        },
    )
}

const NRRD_KEYS: &[&str] = &[
    "type",
    "dimension",
    "sizes",
    "kinds",
    "encoding",
    "endian",
    "space",
    "space directions",
    "space origin",
    "data file",
    "ultrasound image orientation",
    "labels",
];

fn nrrd_vector() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (number(), number(), number()).prop_map(|(a, b, c)| format!("({a},{b},{c})")),
        1 => Just("none".to_string()),
        1 => (number(), number()).prop_map(|(a, b)| format!("({a},{b})")),
        1 => printable(),
    ]
}

/// A NRRD sequence (`.seq.nrrd`, data after the blank line, raw or gzip) with random fields.
pub fn nrrd() -> impl Strategy<Value = Vec<u8>> {
    let layout = (
        prop_oneof![8 => Just("NRRD0004"), 1 => Just("NRRD0001"), 1 => Just("NRRD")],
        prop_oneof![
            4 => select(&["unsigned char", "uchar", "uint8"][..]),
            3 => select(&["ushort", "unsigned short", "uint16_t"][..]),
            1 => select(&["float", "short", "", "int"][..]),
        ],
        dims(),
        prop::option::weighted(0.8, vec(select(&["domain", "domain", "list", "time", "space", "none"][..]), 1..6)),
        prop_oneof![
            5 => Just("raw"),
            3 => Just("gzip"),
            1 => select(&["gz", "bzip2", "ascii", ""][..]),
        ],
        prop::option::of(select(&["little", "big", "x"][..])),
        prop::option::weighted(0.7, vec(nrrd_vector(), 1..5)),
        prop::option::weighted(0.1, select(&["split.raw", "missing.raw", "LIST", "", ".."][..])),
    );
    let extra = vec(
        prop_oneof![
            4 => frame_line(":="),
            2 => (select(NRRD_KEYS), value()).prop_map(|(k, v)| format!("{k}: {v}")),
            1 => "#[ -~]{0,10}",
            1 => printable(),
        ],
        0..12,
    );
    let data = (any::<u64>(), 0usize..160, prop::bool::weighted(0.7));
    (layout, extra, data).prop_map(
        |((magic, ty, sizes, kinds, encoding, endian, directions, data_file), extra, (seed, len, honest))| {
            let mut text = format!("{magic}\ntype: {ty}\nsizes: {sizes}\n");
            if let Some(kinds) = kinds {
                text.push_str(&format!("kinds: {}\n", kinds.join(" ")));
            }
            text.push_str(&format!("encoding: {encoding}\n"));
            if let Some(e) = endian {
                text.push_str(&format!("endian: {e}\n"));
            }
            if let Some(d) = directions {
                text.push_str(&format!("space directions: {}\n", d.join(" ")));
            }
            if let Some(f) = data_file {
                text.push_str(&format!("data file: {f}\n"));
            }
            for line in extra {
                text.push_str(&line);
                text.push('\n');
            }
            text.push('\n');
            let raw = pattern(seed, len);
            let mut bytes = text.into_bytes();
            if honest && encoding.starts_with("gz") {
                bytes.extend_from_slice(&gzip(&raw));
            } else {
                bytes.extend_from_slice(&raw);
            }
            bytes
        },
    )
}
