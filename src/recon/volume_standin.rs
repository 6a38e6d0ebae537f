//! STAND-IN for `recon::volume` (3D volumes as MetaImage/NRRD), which lands from another branch
//! with the same names. Only what reconstruction needs meanwhile: MetaImage with LOCAL data, raw
//! or zlib, 8/16-bit unsigned or float voxels, identity-or-given direction. Replace this file
//! (and the `#[path]` line in `recon/mod.rs`) by the real module when merging.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeGeometry {
    pub dims: [usize; 3],
    pub origin_mm: [f64; 3],
    pub spacing_mm: [f64; 3],
    pub direction: [[f64; 3]; 3],
}

/// Voxels, x fastest, then y, then z.
#[derive(Debug, Clone, Copy)]
pub enum VolumeData<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    F32(&'a [f32]),
}

#[derive(Debug, Clone, PartialEq)]
pub enum OwnedVolumeData {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OwnedVolume {
    pub geometry: VolumeGeometry,
    pub data: OwnedVolumeData,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeIoError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// Writes `.mha` (or `.nrrd`, not in this stand-in) by the file's extension.
pub fn write_volume(
    path: &Path,
    geometry: &VolumeGeometry,
    data: VolumeData,
    compress: bool,
) -> Result<(), VolumeIoError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("mha") => write_mha(path, geometry, data, compress),
        _ => Err(VolumeIoError::Format { path: path.into(), message: "only .mha volumes are written for now".into() }),
    }
}

pub fn write_mha(
    path: &Path,
    geometry: &VolumeGeometry,
    data: VolumeData,
    compress: bool,
) -> Result<(), VolumeIoError> {
    let io = |source| VolumeIoError::Io { path: path.to_path_buf(), source };
    let (kind, bytes): (&str, Vec<u8>) = match data {
        VolumeData::U8(v) => ("MET_UCHAR", v.to_vec()),
        VolumeData::U16(v) => ("MET_USHORT", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        VolumeData::F32(v) => ("MET_FLOAT", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let body = if compress {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&bytes).map_err(io)?;
        z.finish().map_err(io)?
    } else {
        bytes
    };
    let g = geometry;
    let d = g.direction;
    let mut header = format!(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = {}\n",
        if compress { "True" } else { "False" }
    );
    if compress {
        header += &format!("CompressedDataSize = {}\n", body.len());
    }
    header += &format!(
        "TransformMatrix = {} {} {} {} {} {} {} {} {}\nOffset = {} {} {}\nElementSpacing = {} {} {}\n\
         DimSize = {} {} {}\nAnatomicalOrientation = RAI\nElementType = {kind}\nElementDataFile = LOCAL\n",
        d[0][0],
        d[1][0],
        d[2][0],
        d[0][1],
        d[1][1],
        d[2][1],
        d[0][2],
        d[1][2],
        d[2][2],
        g.origin_mm[0],
        g.origin_mm[1],
        g.origin_mm[2],
        g.spacing_mm[0],
        g.spacing_mm[1],
        g.spacing_mm[2],
        g.dims[0],
        g.dims[1],
        g.dims[2]
    );
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    file.write_all(header.as_bytes()).map_err(io)?;
    file.write_all(&body).map_err(io)?;
    file.flush().map_err(io)
}

pub fn read_mha(path: &Path) -> Result<OwnedVolume, VolumeIoError> {
    let io = |source| VolumeIoError::Io { path: path.to_path_buf(), source };
    let bad = |message: String| VolumeIoError::Format { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(io)?;
    let mut fields = Vec::new();
    let mut at = 0;
    loop {
        let end = bytes[at..].iter().position(|&b| b == b'\n').ok_or_else(|| bad("no ElementDataFile line".into()))?;
        let line = std::str::from_utf8(&bytes[at..at + end]).map_err(|_| bad("binary data in the header".into()))?;
        at += end + 1;
        if let Some((k, v)) = line.split_once('=') {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            let last = k == "ElementDataFile";
            fields.push((k, v));
            if last {
                break;
            }
        }
    }
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let nums = |k: &str| -> Result<Vec<f64>, VolumeIoError> {
        get(k)
            .ok_or_else(|| bad(format!("{k} is missing")))?
            .split_whitespace()
            .map(|t| t.parse::<f64>().map_err(|_| bad(format!("{k}: `{t}` is not a number"))))
            .collect()
    };
    if get("ElementDataFile") != Some("LOCAL") {
        return Err(bad("only ElementDataFile = LOCAL is read".into()));
    }
    let dims: Vec<f64> = nums("DimSize")?;
    let spacing = nums("ElementSpacing").or_else(|_| nums("ElementSize"))?;
    let origin = nums("Offset").or_else(|_| nums("Origin")).unwrap_or_else(|_| vec![0.0; 3]);
    let direction = nums("TransformMatrix").unwrap_or_else(|_| vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]);
    if dims.len() != 3 || spacing.len() != 3 || origin.len() != 3 || direction.len() != 9 {
        return Err(bad("expected a 3D volume (DimSize, ElementSpacing, Offset of 3 values)".into()));
    }
    let mut data = bytes[at..].to_vec();
    if get("CompressedData").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&data[..]).read_to_end(&mut out).map_err(io)?;
        data = out;
    }
    let n = dims.iter().product::<f64>() as usize;
    let need = |size: usize| {
        if data.len() < n * size {
            Err(bad(format!("{} bytes of data, expected {}", data.len(), n * size)))
        } else {
            Ok(())
        }
    };
    let data = match get("ElementType") {
        Some("MET_UCHAR") => {
            need(1)?;
            OwnedVolumeData::U8(data[..n].to_vec())
        }
        Some("MET_USHORT") => {
            need(2)?;
            OwnedVolumeData::U16(data[..2 * n].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
        }
        Some("MET_FLOAT") => {
            need(4)?;
            OwnedVolumeData::F32(
                data[..4 * n].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            )
        }
        other => return Err(bad(format!("ElementType {other:?} is not read"))),
    };
    let d = &direction;
    Ok(OwnedVolume {
        geometry: VolumeGeometry {
            dims: [dims[0] as usize, dims[1] as usize, dims[2] as usize],
            origin_mm: [origin[0], origin[1], origin[2]],
            spacing_mm: [spacing[0], spacing[1], spacing[2]],
            // MetaImage lists the direction column by column.
            direction: [[d[0], d[3], d[6]], [d[1], d[4], d[7]], [d[2], d[5], d[8]]],
        },
        data,
    })
}
