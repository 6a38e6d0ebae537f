//! NRRD `.nrrd` volumes (NRRD0004): a text header of `field: value` lines up to a blank line, then
//! the voxels, raw or gzip. Written in `space: left-posterior-superior`, ITK's physical space, so
//! a `.nrrd` and a `.mha` of the same geometry sit at the same place in 3D Slicer; read in LPS or
//! RAS (converted to LPS).

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::payload::{Encoding, Payload, read_voxels, write_volume_file};
use super::{ElementType, FieldNames, OwnedVolume, VolumeData, VolumeGeometry, VolumeIoError, numbers};
use crate::io::plus::{Flavor, parse_vector, read_header};

const FIELDS: FieldNames =
    FieldNames { dims: "sizes", origin: "space origin", spacing: "space directions", direction: "space directions" };

/// Writes a NRRD volume with its data in the same file (`compress`: gzip).
pub fn write_nrrd(
    path: &Path,
    geometry: &VolumeGeometry,
    data: VolumeData,
    compress: bool,
) -> Result<(), VolumeIoError> {
    let encoding = if compress { Encoding::Gzip } else { Encoding::Raw };
    write_volume_file(path, geometry, &data, encoding, |_| header_text(geometry, data.element_type(), compress))
}

fn vector(v: [f64; 3]) -> String {
    format!("({},{},{})", v[0], v[1], v[2])
}

fn header_text(g: &VolumeGeometry, element: ElementType, gzip: bool) -> String {
    let type_name = match element {
        ElementType::U8 => "unsigned char",
        ElementType::U16 => "unsigned short",
        ElementType::F32 => "float",
    };
    // Each axis's step in LPS: its direction column times its spacing.
    let steps: Vec<String> =
        (0..3).map(|c| vector(std::array::from_fn(|r| g.direction[r][c] * g.spacing_mm[c]))).collect();
    let mut h = String::with_capacity(512);
    let _ = writeln!(h, "NRRD0004");
    let _ = writeln!(h, "type: {type_name}");
    let _ = writeln!(h, "dimension: 3");
    let _ = writeln!(h, "space: left-posterior-superior");
    let _ = writeln!(h, "sizes: {} {} {}", g.dims[0], g.dims[1], g.dims[2]);
    let _ = writeln!(h, "space directions: {}", steps.join(" "));
    let _ = writeln!(h, "kinds: domain domain domain");
    let _ = writeln!(h, "endian: little");
    let _ = writeln!(h, "encoding: {}", if gzip { "gzip" } else { "raw" });
    let _ = writeln!(h, "space origin: {}", vector(g.origin_mm));
    h.push('\n');
    h
}

/// `(1, 0,0) (0,1,0)` → the vectors' texts, allowing blanks inside the parentheses.
fn split_vectors(text: &str) -> Vec<String> {
    text.split(')')
        .map(|v| v.split_whitespace().collect::<String>())
        .filter(|v| !v.is_empty())
        .map(|v| v + ")")
        .collect()
}

/// Reads a NRRD volume: dimension 3, one value per voxel of unsigned char, unsigned short or
/// float, raw or gzip, data in the same file; a missing `space` is taken as LPS.
pub fn read_nrrd(path: &Path) -> Result<OwnedVolume, VolumeIoError> {
    let mut input = BufReader::new(File::open(path).map_err(VolumeIoError::io(path))?);
    let raw = read_header(path, &mut input)?;
    drop(input);
    if raw.flavor != Flavor::Nrrd {
        return Err(VolumeIoError::unsupported(path, "no NRRD magic line (read a MetaImage file as .mha)"));
    }
    // NRRD field names are case-insensitive; `key:=value` pairs are kept apart by their `:=`.
    let fields: Vec<(String, String)> = raw.fields.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let required = |key: &str| get(key).ok_or_else(|| VolumeIoError::field(path, key, "is missing (required)"));
    let unsupported = |message: String| Err(VolumeIoError::unsupported(path, message));

    let element = match required("type")? {
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => ElementType::U8,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => ElementType::U16,
        "float" => ElementType::F32,
        other => return unsupported(format!("NRRD type `{other}` (unsigned char, unsigned short and float only)")),
    };
    if required("dimension")? != "3" {
        return unsupported(format!("dimension {} (3D volumes only)", required("dimension")?));
    }
    if let Some(kinds) = get("kinds") {
        let spatial = ["domain", "space", "???", "none"];
        if kinds.split_whitespace().count() != 3 || kinds.split_whitespace().any(|k| !spatial.contains(&k)) {
            return unsupported(format!("kinds `{kinds}` (three spatial axes only)"));
        }
    }
    for key in ["data file", "datafile"] {
        if let Some(file) = get(key) {
            return unsupported(format!("{key} `{file}` (data in the same file only)"));
        }
    }
    for key in ["line skip", "byte skip"] {
        if let Some(skip) = get(key).filter(|s| s.trim() != "0") {
            return unsupported(format!("{key} {skip}"));
        }
    }
    let encoding = match required("encoding")? {
        "raw" => Encoding::Raw,
        "gzip" | "gz" => Encoding::Gzip,
        other => return unsupported(format!("encoding `{other}` (raw and gzip only)")),
    };
    let big_endian = match get("endian") {
        Some("big") => true,
        Some("little") => false,
        None if element == ElementType::U8 => false,
        None => return Err(VolumeIoError::field(path, "endian", "is missing (required for multi-byte types)")),
        Some(other) => {
            return Err(VolumeIoError::field(path, "endian", format!("`{other}` is neither little nor big")));
        }
    };
    // RAS coordinates become LPS by negating x and y.
    let flip = match get("space") {
        None | Some("left-posterior-superior" | "LPS") => [1.0, 1.0, 1.0],
        Some("right-anterior-superior" | "RAS") => [-1.0, -1.0, 1.0],
        Some(other) => {
            return unsupported(format!("space `{other}` (left-posterior-superior or right-anterior-superior)"));
        }
    };
    if let Some(dim) = get("space dimension").filter(|d| *d != "3") {
        return unsupported(format!("space dimension {dim} (3 only)"));
    }

    let dims = numbers::<3>(path, "sizes", required("sizes")?)?;
    if dims.iter().any(|d| d.fract() != 0.0 || !(1.0..=u32::MAX as f64).contains(d)) {
        return Err(VolumeIoError::field(path, "sizes", format!("{dims:?}: expected three whole numbers above zero")));
    }
    let (spacing_mm, direction) = match (get("space directions"), get("spacings")) {
        (Some(text), _) => directions(path, text, flip)?,
        (None, Some(text)) => (numbers::<3>(path, "spacings", text)?, super::IDENTITY),
        (None, None) => ([1.0; 3], super::IDENTITY),
    };
    let origin_mm = match get("space origin") {
        Some(text) => {
            let v = parse_vector(text)
                .filter(|v| v.len() == 3)
                .ok_or_else(|| VolumeIoError::field(path, "space origin", format!("`{text}` is not a 3D vector")))?;
            std::array::from_fn(|r| v[r] * flip[r])
        }
        None => [0.0; 3],
    };
    let geometry = VolumeGeometry { dims: dims.map(|d| d as usize), origin_mm, spacing_mm, direction };
    let voxels = geometry.validate(path, &FIELDS)?;
    let payload = Payload {
        file: path.to_path_buf(),
        offset: raw.data_offset,
        encoding,
        compressed_size: None,
        element,
        big_endian,
    };
    let data = read_voxels(path, &payload, voxels)?;
    Ok(OwnedVolume { geometry, data })
}

/// `space directions` → per-axis spacing (the vectors' lengths) and unit direction columns (LPS).
fn directions(path: &Path, text: &str, flip: [f64; 3]) -> Result<([f64; 3], [[f64; 3]; 3]), VolumeIoError> {
    let bad = |message: String| VolumeIoError::field(path, "space directions", message);
    let vectors = split_vectors(text);
    if vectors.len() != 3 {
        return Err(bad(format!("`{text}`: expected three vectors")));
    }
    let mut spacing = [0.0; 3];
    let mut direction = [[0.0; 3]; 3];
    for (c, v) in vectors.iter().enumerate() {
        let step = parse_vector(v).filter(|s| s.len() == 3).ok_or_else(|| bad(format!("`{v}` is not a 3D vector")))?;
        spacing[c] = step.iter().map(|s| s * s).sum::<f64>().sqrt();
        if !(spacing[c].is_finite() && spacing[c] > 0.0) {
            return Err(bad(format!("`{v}` has no length")));
        }
        for r in 0..3 {
            direction[r][c] = step[r] * flip[r] / spacing[c];
        }
    }
    Ok((spacing, direction))
}
