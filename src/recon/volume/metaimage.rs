//! MetaImage `.mha` volumes: a `Key = Value` text header ending with `ElementDataFile = LOCAL`,
//! then the voxels, raw or zlib-compressed. Written as ITK writes them (so 3D Slicer places them
//! by `Offset` and `TransformMatrix`); read also as PLUS writes its reconstructed volumes.

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::payload::{Encoding, Payload, read_voxels, write_volume_file};
use super::{ElementType, FieldNames, OwnedVolume, VolumeData, VolumeGeometry, VolumeIoError, numbers};
use crate::io::plus::{Flavor, read_header};

const FIELDS: FieldNames =
    FieldNames { dims: "DimSize", origin: "Offset", spacing: "ElementSpacing", direction: "TransformMatrix" };

fn element_name(element: ElementType) -> &'static str {
    match element {
        ElementType::U8 => "MET_UCHAR",
        ElementType::U16 => "MET_USHORT",
        ElementType::F32 => "MET_FLOAT",
    }
}

/// Writes a MetaImage volume with its data in the same file (`compress`: zlib).
pub fn write_mha(
    path: &Path,
    geometry: &VolumeGeometry,
    data: VolumeData,
    compress: bool,
) -> Result<(), VolumeIoError> {
    let encoding = if compress { Encoding::Zlib } else { Encoding::Raw };
    write_volume_file(path, geometry, &data, encoding, |stored| {
        header_text(geometry, data.element_type(), compress.then_some(stored))
    })
}

fn header_text(g: &VolumeGeometry, element: ElementType, compressed_size: Option<usize>) -> String {
    let join = |v: &[f64]| v.iter().map(f64::to_string).collect::<Vec<_>>().join(" ");
    // Axis 0's direction first: the columns of `direction` one after the other.
    let columns: Vec<f64> = (0..3).flat_map(|c| (0..3).map(move |r| g.direction[r][c])).collect();
    let mut h = String::with_capacity(512);
    let _ = writeln!(h, "ObjectType = Image");
    let _ = writeln!(h, "NDims = 3");
    let _ = writeln!(h, "BinaryData = True");
    let _ = writeln!(h, "BinaryDataByteOrderMSB = False");
    let _ = writeln!(h, "CompressedData = {}", if compressed_size.is_some() { "True" } else { "False" });
    if let Some(size) = compressed_size {
        let _ = writeln!(h, "CompressedDataSize = {size}");
    }
    let _ = writeln!(h, "TransformMatrix = {}", join(&columns));
    let _ = writeln!(h, "Offset = {}", join(&g.origin_mm));
    let _ = writeln!(h, "CenterOfRotation = 0 0 0");
    let _ = writeln!(h, "AnatomicalOrientation = {}", anatomical_orientation(&g.direction));
    let _ = writeln!(h, "ElementSpacing = {}", join(&g.spacing_mm));
    let _ = writeln!(h, "DimSize = {} {} {}", g.dims[0], g.dims[1], g.dims[2]);
    let _ = writeln!(h, "ElementType = {}", element_name(element));
    let _ = writeln!(h, "ElementDataFile = LOCAL");
    h
}

/// ITK's three-letter code of the anatomical direction each axis comes *from* (`RAI` for the
/// identity: x runs right to left, y anterior to posterior, z inferior to superior). Oblique axes
/// take their closest anatomical axes, each used once, largest component first, as ITK does.
pub(crate) fn anatomical_orientation(direction: &[[f64; 3]; 3]) -> String {
    const FROM: [[char; 2]; 3] = [['R', 'L'], ['A', 'P'], ['I', 'S']];
    let mut letters = ['?'; 3];
    let (mut rows_used, mut cols_used) = ([false; 3], [false; 3]);
    for _ in 0..3 {
        let mut best: Option<(usize, usize)> = None;
        for r in (0..3).filter(|&r| !rows_used[r]) {
            for c in (0..3).filter(|&c| !cols_used[c]) {
                if best.is_none_or(|(br, bc)| direction[r][c].abs() > direction[br][bc].abs()) {
                    best = Some((r, c));
                }
            }
        }
        if let Some((r, c)) = best {
            letters[c] = FROM[r][usize::from(direction[r][c] < 0.0)];
            rows_used[r] = true;
            cols_used[c] = true;
        }
    }
    letters.iter().collect()
}

/// Reads a MetaImage volume: 3 dimensions, one channel of MET_UCHAR, MET_USHORT or MET_FLOAT,
/// raw or zlib, in the file (`LOCAL`) or in one data file beside it.
pub fn read_mha(path: &Path) -> Result<OwnedVolume, VolumeIoError> {
    let mut input = BufReader::new(File::open(path).map_err(VolumeIoError::io(path))?);
    let raw = read_header(path, &mut input)?;
    drop(input);
    if raw.flavor == Flavor::Nrrd {
        return Err(VolumeIoError::unsupported(path, "this is a NRRD file (read it as .nrrd)"));
    }
    let fields = raw.fields;
    let get =
        |keys: &[&str]| keys.iter().find_map(|key| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()));
    let required = |key: &str| get(&[key]).ok_or_else(|| VolumeIoError::field(path, key, "is missing (required)"));
    let boolean = |key: &str, default: bool| match get(&[key]).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(VolumeIoError::field(path, key, format!("`{other}` is neither True nor False"))),
    };
    let unsupported = |message: String| Err(VolumeIoError::unsupported(path, message));

    if let Some(object) = get(&["ObjectType"]).filter(|o| *o != "Image") {
        return unsupported(format!("ObjectType `{object}` (images only)"));
    }
    if required("NDims")? != "3" {
        return unsupported(format!("NDims {} (3D volumes only)", required("NDims")?));
    }
    let element = match required("ElementType")? {
        "MET_UCHAR" => ElementType::U8,
        "MET_USHORT" => ElementType::U16,
        "MET_FLOAT" => ElementType::F32,
        other => return unsupported(format!("ElementType {other} (MET_UCHAR, MET_USHORT and MET_FLOAT only)")),
    };
    if let Some(channels) = get(&["ElementNumberOfChannels"]).filter(|c| c.trim() != "1") {
        return unsupported(format!("ElementNumberOfChannels {channels} (one value per voxel only)"));
    }
    if !boolean("BinaryData", true)? {
        return unsupported("BinaryData False (text voxel data)".into());
    }
    if let Some(size) = get(&["HeaderSize"]).filter(|s| s.trim() != "0") {
        return unsupported(format!("HeaderSize {size} (skipped bytes before the data)"));
    }
    let big_endian = boolean("BinaryDataByteOrderMSB", false)? || boolean("ElementByteOrderMSB", false)?;
    let compressed = boolean("CompressedData", false)?;
    let compressed_size =
        match get(&["CompressedDataSize"]) {
            Some(text) => Some(text.trim().parse::<u64>().map_err(|_| {
                VolumeIoError::field(path, "CompressedDataSize", format!("`{text}` is not a byte count"))
            })?),
            None => None,
        };

    let dims = numbers::<3>(path, "DimSize", required("DimSize")?)?;
    if dims.iter().any(|d| d.fract() != 0.0 || !(1.0..=u32::MAX as f64).contains(d)) {
        return Err(VolumeIoError::field(
            path,
            "DimSize",
            format!("{dims:?}: expected three whole numbers above zero"),
        ));
    }
    let matrix = match get(&["TransformMatrix", "Rotation", "Orientation"]) {
        Some(text) => numbers::<9>(path, "TransformMatrix", text)?,
        None => [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
    };
    let geometry = VolumeGeometry {
        dims: dims.map(|d| d as usize),
        origin_mm: match get(&["Offset", "Position", "Origin"]) {
            Some(text) => numbers::<3>(path, "Offset", text)?,
            None => [0.0; 3],
        },
        spacing_mm: match get(&["ElementSpacing", "ElementSize"]) {
            Some(text) => numbers::<3>(path, "ElementSpacing", text)?,
            None => [1.0; 3],
        },
        // TransformMatrix holds axis 0's vector first: element 3c + r is direction[r][c].
        direction: std::array::from_fn(|r| std::array::from_fn(|c| matrix[3 * c + r])),
    };
    let voxels = geometry.validate(path, &FIELDS)?;

    let data_file = required("ElementDataFile")?;
    let (file, offset) = if data_file == "LOCAL" {
        (path.to_path_buf(), raw.data_offset)
    } else if data_file.contains(['%', ' ']) || data_file.starts_with("LIST") {
        return unsupported(format!("ElementDataFile `{data_file}` (LOCAL or one data file only)"));
    } else {
        (path.parent().unwrap_or(Path::new(".")).join(data_file), 0)
    };
    let encoding = if compressed { Encoding::Zlib } else { Encoding::Raw };
    let payload = Payload { file, offset, encoding, compressed_size, element, big_endian };
    let data = read_voxels(path, &payload, voxels)?;
    Ok(OwnedVolume { geometry, data })
}
