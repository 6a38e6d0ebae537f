//! Pickle opcode streams, state_dict pickles and torch zip checkpoints.

use super::*;

/// The pickle opcodes, as the reader under test names them.
pub use sonoflow::model::opcodes as op;

pub const PICKLE_WORDS: &[&str] = &[
    "storage",
    "cpu",
    "torch",
    "FloatStorage",
    "LongStorage",
    "HalfStorage",
    "collections",
    "OrderedDict",
    "torch._utils",
    "_rebuild_tensor_v2",
    "_rebuild_parameter",
    "num_batches_tracked",
    "model",
    "state_dict",
    "os",
    "system",
];

const PICKLE_INTS: &[i64] = &[
    0,
    1,
    2,
    3,
    6,
    -1,
    255,
    256,
    65535,
    65536,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 32,
    1 << 40,
    1 << 62,
    i64::MAX,
    i64::MIN,
];

/// The shortest opcode `pickle` writes for `v`.
pub fn pickle_int(out: &mut Vec<u8>, v: i64) {
    if (0..256).contains(&v) {
        out.extend_from_slice(&[op::BININT1, v as u8]);
    } else if (0..65536).contains(&v) {
        out.push(op::BININT2);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if i32::try_from(v).is_ok() {
        out.push(op::BININT);
        out.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        out.extend_from_slice(&[op::LONG1, 8]);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

pub fn pickle_str(out: &mut Vec<u8>, s: &str) {
    out.push(op::BINUNICODE);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pickle_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(op::GLOBAL);
    out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
}

fn pickle_value_int() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0i64..8, 2 => select(PICKLE_INTS), 1 => any::<i64>()]
}

/// One opcode with its argument.
fn pickle_op() -> impl Strategy<Value = Vec<u8>> {
    use op::*;
    let plain = [
        MARK,
        EMPTY_DICT,
        EMPTY_LIST,
        EMPTY_TUPLE,
        TUPLE,
        TUPLE1,
        TUPLE2,
        TUPLE3,
        NEWTRUE,
        NEWFALSE,
        NONE,
        REDUCE,
        BINPERSID,
        BUILD,
        SETITEM,
        SETITEMS,
        APPEND,
        APPENDS,
        STACK_GLOBAL,
        MEMOIZE,
        STOP,
    ];
    let globals = [
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch", "FloatStorage"),
        ("torch", "LongStorage"),
        ("torch", "HalfStorage"),
        ("os", "system"),
        ("torch", "Tensor"),
    ];
    prop_oneof![
        8 => select(plain.to_vec()).prop_map(|b| vec![b]),
        4 => pickle_value_int().prop_map(|v| {
            let mut out = Vec::new();
            pickle_int(&mut out, v);
            out
        }),
        3 => (select(PICKLE_WORDS), 0u8..3).prop_map(|(s, form)| {
            let mut out = Vec::new();
            match form {
                0 => pickle_str(&mut out, s),
                1 => {
                    out.extend_from_slice(&[SHORT_BINUNICODE, s.len() as u8]);
                    out.extend_from_slice(s.as_bytes());
                }
                _ => {
                    out.push(BINUNICODE8);
                    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
            out
        }),
        3 => select(globals.to_vec()).prop_map(|(m, n)| {
            let mut out = Vec::new();
            pickle_global(&mut out, m, n);
            out
        }),
        3 => (select(&[BINPUT, BINGET][..]), 0u8..4).prop_map(|(o, i)| vec![o, i]),
        1 => (select(&[LONG_BINPUT, LONG_BINGET][..]), prop_oneof![0u32..4, Just(u32::MAX)]).prop_map(|(o, i)| {
            let mut out = vec![o];
            out.extend_from_slice(&i.to_le_bytes());
            out
        }),
        1 => any::<u8>().prop_map(|v| vec![PROTO, v]),
        1 => select(&[0u64, 8, 1 << 40, u64::MAX][..]).prop_map(|n| {
            let mut out = vec![FRAME];
            out.extend_from_slice(&n.to_le_bytes());
            out
        }),
        1 => any::<f64>().prop_map(|v| {
            let mut out = vec![BINFLOAT];
            out.extend_from_slice(&v.to_be_bytes());
            out
        }),
        1 => (0u8..12, vec(any::<u8>(), 0..12)).prop_map(|(n, digits)| {
            let mut out = vec![LONG1, n];
            out.extend_from_slice(&digits);
            out
        }),
        1 => (select(&[BINUNICODE, BINUNICODE8][..]), select(&[0u64, 1, 3, 0xffff_ffff, u64::MAX][..]), vec(any::<u8>(), 0..6))
            .prop_map(|(o, len, bytes)| {
                let mut out = vec![o];
                if o == BINUNICODE {
                    out.extend_from_slice(&(len as u32).to_le_bytes());
                } else {
                    out.extend_from_slice(&len.to_le_bytes());
                }
                out.extend_from_slice(&bytes);
                out
            }),
        1 => any::<u8>().prop_map(|b| vec![b]),
        1 => vec(any::<u8>(), 0..8).prop_map(|mut v| {
            v.insert(0, GLOBAL);
            v
        }),
    ]
}

/// A stream of random opcodes, usually framed as torch frames it.
pub fn pickle_ops() -> impl Strategy<Value = Vec<u8>> {
    (prop::bool::weighted(0.7), vec(pickle_op(), 0..48), prop::bool::weighted(0.9)).prop_map(|(proto, ops, stop)| {
        let mut out = if proto { vec![op::PROTO, 2] } else { Vec::new() };
        for o in ops {
            out.extend(o);
        }
        if stop {
            out.push(op::STOP);
        }
        out
    })
}

/// What `_rebuild_tensor_v2` is given for one state_dict entry.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: &'static str,
    pub class: &'static str,
    pub key: &'static str,
    pub numel: i64,
    pub offset: i64,
    pub shape: Vec<i64>,
    pub stride: Vec<i64>,
    pub parameter: bool,
    pub metadata: bool,
}

fn dimension() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 0i64..5, 1 => select(PICKLE_INTS)]
}

fn tensor_spec() -> impl Strategy<Value = TensorSpec> {
    (
        select(&["a.weight", "a.bias", "bn.num_batches_tracked", "b.weight"][..]),
        prop_oneof![6 => Just("FloatStorage"), 1 => select(&["LongStorage", "HalfStorage", "DoubleStorage"][..])],
        select(&["0", "1", "2", "missing"][..]),
        (0usize..5).prop_flat_map(|n| (vec(dimension(), n), vec(dimension(), n), prop::bool::weighted(0.1))),
        prop_oneof![4 => Just(None), 4 => (0i64..70).prop_map(Some), 1 => select(PICKLE_INTS).prop_map(Some)],
        prop_oneof![8 => Just(0i64), 2 => 0i64..4, 1 => select(PICKLE_INTS)],
        (prop::bool::ANY, prop::bool::ANY),
    )
        .prop_map(|(name, class, key, (shape, stride, extra_dim), numel, offset, (parameter, metadata))| {
            let mut stride = stride;
            if extra_dim {
                stride.push(1);
            }
            // Without an explicit size: exactly what a contiguous view needs.
            let numel = numel
                .unwrap_or_else(|| offset.saturating_add(shape.iter().fold(1i64, |acc, d| acc.saturating_mul(*d))));
            TensorSpec { name, class, key, numel, offset, shape, stride, parameter, metadata }
        })
}

fn pickle_tuple_of_ints(out: &mut Vec<u8>, values: &[i64]) {
    out.push(op::MARK);
    for v in values {
        pickle_int(out, *v);
    }
    out.push(op::TUPLE);
}

/// A state_dict pickle as `torch.save` writes it, optionally wrapped under `wrap`.
pub fn state_dict_pickle(tensors: &[TensorSpec], wrap: Option<&str>) -> Vec<u8> {
    use op::*;
    let mut p = vec![PROTO, 2];
    let ordered_dict = |p: &mut Vec<u8>| {
        pickle_global(p, "collections", "OrderedDict");
        p.extend_from_slice(&[EMPTY_TUPLE, REDUCE]);
    };
    if let Some(w) = wrap {
        p.push(EMPTY_DICT);
        pickle_str(&mut p, w);
    }
    ordered_dict(&mut p);
    for t in tensors {
        pickle_str(&mut p, t.name);
        if t.parameter {
            pickle_global(&mut p, "torch._utils", "_rebuild_parameter");
            p.push(MARK);
        }
        pickle_global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.extend_from_slice(&[MARK, MARK]);
        pickle_str(&mut p, "storage");
        pickle_global(&mut p, "torch", t.class);
        pickle_str(&mut p, t.key);
        pickle_str(&mut p, "cpu");
        pickle_int(&mut p, t.numel);
        p.extend_from_slice(&[TUPLE, BINPERSID]);
        pickle_int(&mut p, t.offset);
        pickle_tuple_of_ints(&mut p, &t.shape);
        pickle_tuple_of_ints(&mut p, &t.stride);
        p.push(NEWFALSE);
        ordered_dict(&mut p);
        if t.metadata {
            p.push(NONE);
        }
        p.extend_from_slice(&[TUPLE, REDUCE]);
        if t.parameter {
            p.push(NEWFALSE);
            ordered_dict(&mut p);
            p.extend_from_slice(&[TUPLE, REDUCE]);
        }
        p.push(SETITEM);
    }
    if wrap.is_some() {
        p.push(SETITEM);
    }
    p.push(STOP);
    p
}

/// State_dict pickles of one to three tensors with random views, as `torch.save` lays them out.
pub fn state_dict_pickles() -> impl Strategy<Value = Vec<u8>> {
    (vec(tensor_spec(), 0..4), prop_oneof![4 => Just(None), 1 => Just(Some("model"))])
        .prop_map(|(tensors, wrap)| state_dict_pickle(&tensors, wrap))
}

/// A zip holding `entries` (stored or deflated).
pub fn zip(entries: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        out.start_file(name.as_str(), options).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn dtype_size(class: &str) -> usize {
    match class {
        "DoubleStorage" | "LongStorage" => 8,
        "HalfStorage" => 2,
        _ => 4,
    }
}

/// A torch zip checkpoint around a generated state_dict, its storages sized right or wrong.
pub fn checkpoint() -> impl Strategy<Value = Vec<u8>> {
    (
        select(&["archive", "archive", "tiny", "a/b", ""][..]),
        vec(tensor_spec(), 0..4),
        prop_oneof![6 => Just(None), 1 => Just(Some("model")), 1 => Just(Some("state_dict"))],
        prop_oneof![3 => Just(Some("little")), 1 => Just(None), 1 => select(&["big", "little\n", "x"][..]).prop_map(Some)],
        vec(0u8..5, 4),
        prop::bool::weighted(0.2),
        any::<u64>(),
    )
        .prop_map(|(folder, tensors, wrap, byteorder, sizing, deflate, seed)| {
            let mut entries = vec![(format!("{folder}/data.pkl"), state_dict_pickle(&tensors, wrap))];
            if let Some(order) = byteorder {
                entries.push((format!("{folder}/byteorder"), order.as_bytes().to_vec()));
            }
            for (i, key) in ["0", "1", "2"].iter().enumerate() {
                let Some(t) = tensors.iter().find(|t| t.key == *key) else { continue };
                let exact = usize::try_from(t.numel).unwrap_or(0).saturating_mul(dtype_size(t.class));
                let len = match sizing[i] {
                    0 | 1 => exact.min(4096),
                    2 => exact.saturating_sub(4).min(4096),
                    3 => exact.saturating_add(4).min(4096),
                    _ => continue,
                };
                entries.push((format!("{folder}/data/{key}"), pattern(seed ^ i as u64, len)));
            }
            entries.push((format!("{folder}/version"), b"3\n".to_vec()));
            zip(&entries, deflate)
        })
}
