//! Volumes on a regular 3D grid and their files: MetaImage `.mha` and NRRD `.nrrd`, written so
//! that 3D Slicer (and ITK, PLUS) load them in place.
//!
//! # Coordinates
//! Physical space is ITK's: LPS (x towards the patient's left, y posterior, z superior), in mm.
//! The centre of voxel `(i, j, k)` lies at
//!
//! ```text
//! p = origin_mm + direction · (spacing_mm[0]·i, spacing_mm[1]·j, spacing_mm[2]·k)
//! ```
//!
//! with `direction[row][col]`: column `c` is the unit vector of grid axis `c` in LPS, row `r` its
//! `r`-th (x, y or z) component. This is ITK's direction matrix. A MetaImage `TransformMatrix`
//! lists the columns one after the other (axis 0's vector first, i.e. the matrix in column-major
//! order), and NRRD `space directions` gives each column times its spacing, in
//! `space: left-posterior-superior`, so both files put every voxel at the same place.
//!
//! Voxels are stored x fastest, then y, then z (`index = i + dims[0]·(j + dims[1]·k)`).

mod error;
mod metaimage;
mod nrrd;
mod payload;

use std::path::Path;

pub use error::VolumeIoError;
pub use metaimage::{read_mha, write_mha};
pub use nrrd::{read_nrrd, write_nrrd};
pub(crate) use payload::write_atomically;

/// Largest voxel data read from a file: a corrupt or hostile header must be refused before it
/// asks for memory, not discovered as an out-of-memory abort. 0.1 mm over 40 cm³ of float voxels
/// stays well below it.
pub const MAX_VOLUME_BYTES: u64 = 4 << 30;

/// Where a volume's voxels are in physical (LPS, mm) space; see the module doc for the convention.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeGeometry {
    /// Voxels along x, y, z (grid axes 0, 1, 2).
    pub dims: [usize; 3],
    /// Centre of voxel (0, 0, 0).
    pub origin_mm: [f64; 3],
    /// Distance between voxel centres along each grid axis.
    pub spacing_mm: [f64; 3],
    /// `direction[row][col]`: column `col` is grid axis `col`'s unit vector.
    pub direction: [[f64; 3]; 3],
}

/// The direction of a grid whose axes run along LPS x, y and z.
pub const IDENTITY: [[f64; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Voxel values, x fastest, then y, then z.
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

/// The voxel types the files carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElementType {
    U8,
    U16,
    F32,
}

impl ElementType {
    pub(crate) fn bytes(self) -> usize {
        match self {
            ElementType::U8 => 1,
            ElementType::U16 => 2,
            ElementType::F32 => 4,
        }
    }
}

impl VolumeData<'_> {
    pub fn len(&self) -> usize {
        match self {
            VolumeData::U8(v) => v.len(),
            VolumeData::U16(v) => v.len(),
            VolumeData::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn element_type(&self) -> ElementType {
        match self {
            VolumeData::U8(_) => ElementType::U8,
            VolumeData::U16(_) => ElementType::U16,
            VolumeData::F32(_) => ElementType::F32,
        }
    }
}

impl OwnedVolumeData {
    pub fn as_view(&self) -> VolumeData<'_> {
        match self {
            OwnedVolumeData::U8(v) => VolumeData::U8(v),
            OwnedVolumeData::U16(v) => VolumeData::U16(v),
            OwnedVolumeData::F32(v) => VolumeData::F32(v),
        }
    }
}

/// What each geometry field is called where it comes from, so errors name the culprit as the
/// user sees it (a header key when reading, a struct field when writing).
pub(crate) struct FieldNames {
    pub dims: &'static str,
    pub origin: &'static str,
    pub spacing: &'static str,
    pub direction: &'static str,
}

const STRUCT_FIELDS: FieldNames =
    FieldNames { dims: "dims", origin: "origin_mm", spacing: "spacing_mm", direction: "direction" };

impl VolumeGeometry {
    /// A grid along the LPS axes.
    pub fn axis_aligned(dims: [usize; 3], origin_mm: [f64; 3], spacing_mm: [f64; 3]) -> Self {
        VolumeGeometry { dims, origin_mm, spacing_mm, direction: IDENTITY }
    }

    /// Number of voxels, `None` when it does not fit in memory's address space.
    pub fn voxel_count(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Physical position (LPS, mm) of a continuous grid index.
    pub fn index_to_physical(&self, index: [f64; 3]) -> [f64; 3] {
        let scaled = [index[0] * self.spacing_mm[0], index[1] * self.spacing_mm[1], index[2] * self.spacing_mm[2]];
        let d = &self.direction;
        std::array::from_fn(|r| self.origin_mm[r] + d[r][0] * scaled[0] + d[r][1] * scaled[1] + d[r][2] * scaled[2])
    }

    /// Determinant of the direction matrix: ±1 for a rotation, negative when the grid is mirrored.
    pub fn direction_determinant(&self) -> f64 {
        determinant(&self.direction)
    }

    /// Volume of one voxel in mm³ (the grid cell's volume, also for a non-orthogonal direction).
    pub fn voxel_volume_mm3(&self) -> f64 {
        self.direction_determinant().abs() * self.spacing_mm.iter().product::<f64>()
    }

    /// Checks the geometry can place voxels; returns the voxel count.
    pub(crate) fn validate(&self, path: &Path, names: &FieldNames) -> Result<usize, VolumeIoError> {
        let err = |field: &str, message: String| VolumeIoError::field(path, field, message);
        let count = self.voxel_count().filter(|_| !self.dims.contains(&0));
        let Some(count) = count else {
            return Err(err(names.dims, format!("{:?}: expected three sizes above zero", self.dims)));
        };
        if self.spacing_mm.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(err(names.spacing, format!("{:?}: expected positive finite spacings", self.spacing_mm)));
        }
        if self.origin_mm.iter().any(|o| !o.is_finite()) {
            return Err(err(names.origin, format!("{:?}: expected finite coordinates", self.origin_mm)));
        }
        // A singular direction collapses the grid onto a plane: no viewer can place it.
        if self.direction.iter().flatten().any(|v| !v.is_finite()) || self.direction_determinant().abs() < 1e-6 {
            return Err(err(names.direction, format!("{:?}: expected three independent axes", self.direction)));
        }
        Ok(count)
    }

    /// Checks a caller's voxels fit this grid (before writing them).
    pub(crate) fn validate_data(&self, path: &Path, data: &VolumeData) -> Result<(), VolumeIoError> {
        let count = self.validate(path, &STRUCT_FIELDS)?;
        if data.len() != count {
            return Err(VolumeIoError::field(
                path,
                "data",
                format!("{} voxel values for a {:?} grid of {count} voxels", data.len(), self.dims),
            ));
        }
        Ok(())
    }
}

fn determinant(m: &[[f64; 3]; 3]) -> f64 {
    nalgebra::Matrix3::from_fn(|r, c| m[r][c]).determinant()
}

/// Parses exactly `N` whitespace-separated numbers of header field `field`.
pub(crate) fn numbers<const N: usize>(path: &Path, field: &str, text: &str) -> Result<[f64; N], VolumeIoError> {
    let values: Vec<f64> = text
        .split_whitespace()
        .map(|t| t.parse().map_err(|_| VolumeIoError::field(path, field, format!("`{t}` is not a number"))))
        .collect::<Result<_, _>>()?;
    values
        .try_into()
        .map_err(|v: Vec<f64>| VolumeIoError::field(path, field, format!("expected {N} numbers, found {}", v.len())))
}

/// The file's format, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    MetaImage,
    Nrrd,
}

fn format_of(path: &Path) -> Result<Format, VolumeIoError> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mha") => Ok(Format::MetaImage),
        Some("nrrd") => Ok(Format::Nrrd),
        _ => Err(VolumeIoError::unsupported(path, "a volume file name must end in .mha or .nrrd")),
    }
}

/// Writes a `.mha` or `.nrrd` volume, by the file name's extension.
pub fn write_volume(
    path: &Path,
    geometry: &VolumeGeometry,
    data: VolumeData,
    compress: bool,
) -> Result<(), VolumeIoError> {
    match format_of(path)? {
        Format::MetaImage => write_mha(path, geometry, data, compress),
        Format::Nrrd => write_nrrd(path, geometry, data, compress),
    }
}

/// Reads a `.mha` or `.nrrd` volume, by the file name's extension.
pub fn read_volume(path: &Path) -> Result<OwnedVolume, VolumeIoError> {
    match format_of(path)? {
        Format::MetaImage => read_mha(path),
        Format::Nrrd => read_nrrd(path),
    }
}

#[cfg(test)]
mod tests;
