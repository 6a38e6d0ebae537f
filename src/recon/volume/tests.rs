//! Round trips, the header conventions Slicer relies on, PLUS's reference volume, and files that
//! are cut short, corrupt or unsupported.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

/// A grid turned 30° about z, then mirrored nowhere: axis 0 points along (cos, sin, 0).
fn oblique() -> VolumeGeometry {
    let (s, c) = 30f64.to_radians().sin_cos();
    VolumeGeometry {
        dims: [5, 4, 3],
        origin_mm: [-74.5217, 165.573, 29.072],
        spacing_mm: [0.5, 0.25, 1.5],
        direction: [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
    }
}

fn samples(n: usize) -> [OwnedVolumeData; 3] {
    [
        OwnedVolumeData::U8((0..n).map(|i| (i * 37 % 256) as u8).collect()),
        OwnedVolumeData::U16((0..n).map(|i| (i * 4099 % 65536) as u16).collect()),
        OwnedVolumeData::F32((0..n).map(|i| i as f32 * -0.37 + 1e-3).collect()),
    ]
}

fn assert_geometry_close(a: &VolumeGeometry, b: &VolumeGeometry) {
    assert_eq!(a.dims, b.dims);
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + x.abs());
    for i in 0..3 {
        assert!(close(a.origin_mm[i], b.origin_mm[i]), "origin {:?} vs {:?}", a.origin_mm, b.origin_mm);
        assert!(close(a.spacing_mm[i], b.spacing_mm[i]), "spacing {:?} vs {:?}", a.spacing_mm, b.spacing_mm);
        for j in 0..3 {
            assert!(close(a.direction[i][j], b.direction[i][j]), "direction {:?} vs {:?}", a.direction, b.direction);
        }
    }
}

#[test]
fn every_type_round_trips_in_both_formats_compressed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let g = oblique();
    for data in samples(g.voxel_count().unwrap()) {
        for compress in [false, true] {
            for ext in ["mha", "nrrd"] {
                let path = dir.path().join(format!("v.{ext}"));
                write_volume(&path, &g, data.as_view(), compress).unwrap();
                let back = read_volume(&path).unwrap();
                assert_eq!(back.data, data, "{ext} compress={compress}");
                if ext == "mha" {
                    // Shortest round-trip decimal text: the geometry comes back bit for bit.
                    assert_eq!(back.geometry, g);
                } else {
                    // NRRD stores direction × spacing, which is divided out again.
                    assert_geometry_close(&back.geometry, &g);
                }
            }
        }
    }
}

fn header_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let end = bytes.windows(2).position(|w| w == b"\n\n").map_or(bytes.len(), |i| i + 2);
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    match text.find("ElementDataFile = LOCAL\n") {
        Some(i) => text[..i + "ElementDataFile = LOCAL\n".len()].to_string(),
        None => text,
    }
}

#[test]
fn headers_put_axis_vectors_where_slicer_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    // Axis 0 runs along +y, axis 1 along -x, axis 2 along +z (a 90° turn about z).
    let g = VolumeGeometry {
        dims: [2, 1, 1],
        origin_mm: [1.5, -2.0, 3.0],
        spacing_mm: [0.5, 2.0, 1.0],
        direction: [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    };
    let mha = dir.path().join("v.mha");
    write_mha(&mha, &g, VolumeData::U8(&[1, 2]), false).unwrap();
    assert_eq!(
        header_of(&mha),
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = False\n\
         TransformMatrix = 0 1 0 -1 0 0 0 0 1\nOffset = 1.5 -2 3\nCenterOfRotation = 0 0 0\n\
         AnatomicalOrientation = ALI\nElementSpacing = 0.5 2 1\nDimSize = 2 1 1\nElementType = MET_UCHAR\n\
         ElementDataFile = LOCAL\n"
    );
    let nrrd = dir.path().join("v.nrrd");
    write_nrrd(&nrrd, &g, VolumeData::U8(&[1, 2]), false).unwrap();
    assert_eq!(
        header_of(&nrrd),
        "NRRD0004\ntype: unsigned char\ndimension: 3\nspace: left-posterior-superior\nsizes: 2 1 1\n\
         space directions: (0,0.5,0) (-2,0,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n\
         encoding: raw\nspace origin: (1.5,-2,3)\n\n"
    );
    // Voxel (1, 0, 0) is half a millimetre along +y from the origin.
    assert_eq!(g.index_to_physical([1.0, 0.0, 0.0]), [1.5, -1.5, 3.0]);
}

#[test]
fn anatomical_orientation_follows_the_axes() {
    use super::metaimage::anatomical_orientation;
    assert_eq!(anatomical_orientation(&IDENTITY), "RAI");
    let flipped = [[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
    assert_eq!(anatomical_orientation(&flipped), "LSA");
    let g = oblique();
    assert_eq!(anatomical_orientation(&g.direction), "RAI");
}

#[test]
fn compressed_size_is_the_stored_byte_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.mha");
    let g = VolumeGeometry::axis_aligned([64, 64, 8], [0.0; 3], [1.0; 3]);
    write_mha(&path, &g, VolumeData::U8(&vec![7u8; 64 * 64 * 8]), true).unwrap();
    let header = header_of(&path);
    let size: usize = header
        .lines()
        .find_map(|l| l.strip_prefix("CompressedDataSize = "))
        .and_then(|s| s.parse().ok())
        .expect("CompressedDataSize");
    let file_len = std::fs::metadata(&path).unwrap().len() as usize;
    assert_eq!(header.len() + size, file_len);
    assert!(size < 64 * 64 * 8 / 10, "a constant volume compresses well ({size} bytes)");
}

fn plus_reference() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/plus/vtkVolumeReconstructorTestNNMEANvolumeRef.mha");
    if path.exists() {
        Some(path)
    } else {
        println!("skipped: PLUS reference volume not found (../shared/data/plus is absent)");
        None
    }
}

#[test]
fn reads_plus_reference_volume() {
    let Some(path) = plus_reference() else { return };
    let v = read_mha(&path).unwrap();
    assert_eq!(v.geometry.dims, [147, 106, 105]);
    assert_eq!(v.geometry.spacing_mm, [0.5, 0.5, 0.5]);
    assert_eq!(v.geometry.origin_mm, [-74.5217, 165.573, 29.072]);
    assert_eq!(v.geometry.direction, IDENTITY);
    let OwnedVolumeData::U8(voxels) = &v.data else { panic!("PLUS's reference is MET_UCHAR") };
    assert_eq!(voxels.len(), 147 * 106 * 105);
    let filled = voxels.iter().filter(|&&x| x > 0).count();
    assert!(filled > voxels.len() / 20 && filled < voxels.len(), "{filled} filled voxels");
    // Written again and read back, it is the same volume.
    let dir = tempfile::tempdir().unwrap();
    for name in ["ref.mha", "ref.nrrd"] {
        let out = dir.path().join(name);
        write_volume(&out, &v.geometry, v.data.as_view(), true).unwrap();
        assert_eq!(read_volume(&out).unwrap(), v, "{name}");
    }
}

#[test]
fn writing_refuses_data_or_geometry_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mha");
    let g = VolumeGeometry::axis_aligned([2, 2, 2], [0.0; 3], [1.0; 3]);
    let err = write_mha(&path, &g, VolumeData::U8(&[0; 7]), false).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "data"), "{err}");
    let mut flat = g.clone();
    flat.direction[2] = [0.0; 3];
    let err = write_nrrd(&dir.path().join("v.nrrd"), &flat, VolumeData::U8(&[0; 8]), false).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "direction"), "{err}");
    let mut zero = g.clone();
    zero.spacing_mm[1] = 0.0;
    let err = write_mha(&path, &zero, VolumeData::U8(&[0; 8]), false).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "spacing_mm"), "{err}");
    let err = write_volume(&dir.path().join("v.vtk"), &g, VolumeData::U8(&[0; 8]), false).unwrap_err();
    assert!(matches!(err, VolumeIoError::Unsupported { .. }), "{err}");
    assert!(!path.exists() && !dir.path().join("v.mha.partial").exists());
}

fn write_text_volume(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, [header.as_bytes(), data].concat()).unwrap();
    path
}

#[test]
fn unsupported_headers_say_what_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let base = "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementSpacing = 1 1 1\n";
    let cases = [
        ("ElementType = MET_DOUBLE\n", "MET_DOUBLE"),
        ("ElementType = MET_UCHAR\nElementNumberOfChannels = 3\n", "ElementNumberOfChannels"),
        ("ElementType = MET_UCHAR\nBinaryData = False\n", "BinaryData"),
        ("ElementType = MET_UCHAR\nElementDataFile = LIST\n", "LIST"),
    ];
    for (extra, culprit) in cases {
        let header = format!("{base}{extra}ElementDataFile = LOCAL\n");
        let path = write_text_volume(dir.path(), "u.mha", &header, &[0; 64]);
        let err = read_mha(&path).unwrap_err();
        assert!(matches!(err, VolumeIoError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains(culprit) && err.to_string().contains("u.mha"), "{err}");
    }
    let header = "ObjectType = Image\nNDims = 2\nDimSize = 2 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n";
    let err = read_mha(&write_text_volume(dir.path(), "d.mha", header, &[0; 4])).unwrap_err();
    assert!(err.to_string().contains("NDims"), "{err}");
    let header = "NRRD0004\ntype: double\ndimension: 3\nsizes: 1 1 1\nencoding: raw\nendian: little\n\n";
    let err = read_nrrd(&write_text_volume(dir.path(), "d.nrrd", header, &[0; 8])).unwrap_err();
    assert!(err.to_string().contains("double"), "{err}");
}

#[test]
fn bad_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let header = "NDims = 3\nDimSize = 2 two 2\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n";
    let err = read_mha(&write_text_volume(dir.path(), "a.mha", header, &[0; 8])).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "DimSize"), "{err}");
    let header = "NDims = 3\nDimSize = 2 2 2\nTransformMatrix = 1 0 0 1 0 0 0 0 1\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n";
    let err = read_mha(&write_text_volume(dir.path(), "b.mha", header, &[0; 8])).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "TransformMatrix"), "{err}");
    let header =
        "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nspace directions: (1,0,0) (0,1,0)\n\n";
    let err = read_nrrd(&write_text_volume(dir.path(), "c.nrrd", header, &[0; 8])).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "space directions"), "{err}");
}

#[test]
fn ras_nrrd_lands_where_its_lps_twin_does() {
    let dir = tempfile::tempdir().unwrap();
    let header = "NRRD0004\ntype: uchar\ndimension: 3\nspace: right-anterior-superior\nsizes: 2 1 1\n\
                  space directions: (-0.5, 0, 0) (0,-1,0) (0,0,2)\nencoding: raw\nspace origin: (10,20,30)\n\n";
    let v = read_nrrd(&write_text_volume(dir.path(), "ras.nrrd", header, &[1, 2])).unwrap();
    assert_eq!(v.geometry.origin_mm, [-10.0, -20.0, 30.0]);
    assert_eq!(v.geometry.spacing_mm, [0.5, 1.0, 2.0]);
    assert_eq!(v.geometry.direction, IDENTITY);
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let g = oblique();
    let [u8s, _, floats] = samples(g.voxel_count().unwrap());
    for (name, compress, data) in
        [("t.mha", false, &floats), ("t.mha", true, &u8s), ("t.nrrd", false, &u8s), ("t.nrrd", true, &floats)]
    {
        let path = dir.path().join(name);
        write_volume(&path, &g, data.as_view(), compress).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join(format!("cut-{name}"));
        for len in 0..bytes.len() {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            assert!(read_volume(&cut).is_err(), "{name} compress={compress} cut to {len} of {} bytes", bytes.len());
        }
    }
}

#[test]
fn compressed_data_longer_than_dim_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.mha");
    let g = VolumeGeometry::axis_aligned([4, 4, 4], [0.0; 3], [1.0; 3]);
    write_mha(&path, &g, VolumeData::U8(&[3; 64]), true).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(15).position(|w| w == b"DimSize = 4 4 4").unwrap();
    bytes[at + 14] = b'3';
    std::fs::write(&path, bytes).unwrap();
    let err = read_mha(&path).unwrap_err();
    assert!(matches!(&err, VolumeIoError::Field { field, .. } if field == "DimSize"), "{err}");
}

#[test]
fn other_writers_layouts_read() {
    let dir = tempfile::tempdir().unwrap();
    // zlib data without CompressedDataSize: read to the end of the stream.
    let path = dir.path().join("nosize.mha");
    let g = VolumeGeometry::axis_aligned([3, 2, 2], [0.0; 3], [1.0; 3]);
    let voxels: Vec<u16> = (0..12).map(|i| i * 1000).collect();
    write_mha(&path, &g, VolumeData::U16(&voxels), true).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(18).position(|w| w == b"CompressedDataSize").unwrap();
    let line_end = at + bytes[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&path, [&bytes[..at], &bytes[line_end..]].concat()).unwrap();
    assert_eq!(read_mha(&path).unwrap().data, OwnedVolumeData::U16(voxels));
    // Big-endian voxels, in both formats.
    let header = "NDims = 3\nDimSize = 2 1 1\nBinaryDataByteOrderMSB = True\nElementType = MET_USHORT\nElementDataFile = LOCAL\n";
    let v = read_mha(&write_text_volume(dir.path(), "be.mha", header, &[1, 2, 3, 4])).unwrap();
    assert_eq!(v.data, OwnedVolumeData::U16(vec![0x0102, 0x0304]));
    let header = "NRRD0004\ntype: float\ndimension: 3\nsizes: 1 1 1\nendian: big\nencoding: raw\n\n";
    let v = read_nrrd(&write_text_volume(dir.path(), "be.nrrd", header, &1.5f32.to_be_bytes())).unwrap();
    assert_eq!(v.data, OwnedVolumeData::F32(vec![1.5]));
    assert_eq!(v.geometry, VolumeGeometry::axis_aligned([1, 1, 1], [0.0; 3], [1.0; 3]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Bytes flipped anywhere in a volume file give an error or a volume, never a panic.
    #[test]
    fn corrupt_files_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                 nrrd in any::<bool>(), compress in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if nrrd { "p.nrrd" } else { "p.mha" });
        let g = oblique();
        let [_, u16s, _] = samples(g.voxel_count().unwrap());
        write_volume(&path, &g, u16s.as_view(), compress).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_volume(&path);
    }

    /// Arbitrary header text after a valid start never panics or allocates without bound.
    #[test]
    fn arbitrary_headers_never_panic(dims in "[0-9 ]{0,40}", matrix in "[-0-9. e]{0,40}", element in "MET_[A-Z]{4,6}") {
        let dir = tempfile::tempdir().unwrap();
        let header = format!("NDims = 3\nDimSize = {dims}\nTransformMatrix = {matrix}\nElementType = {element}\nElementDataFile = LOCAL\n");
        let _ = read_mha(&write_text_volume(dir.path(), "h.mha", &header, &[0; 100]));
    }
}
