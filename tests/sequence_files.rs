//! PLUS sequence files: every real file in ../shared/data/plus reads; round trips are exact; bad
//! files give errors naming the file, field and frame, never a panic.

mod common;

use common::plus_data;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use sonoflow::frame::{NamedTransform, PixelData, PixelFormat, TransformStatus};
use sonoflow::io::sequence::{SequenceError, SequenceReader, SequenceSpec, SequenceWriter, read_all};

#[test]
fn every_shared_plus_file_reads() {
    let Some(dir) = plus_data() else { return };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mha"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        let (header, frames) = read_all(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(frames.len(), header.frame_count, "{}", path.display());
        assert!(
            frames.windows(2).all(|w| w[0].0.timestamp_s < w[1].0.timestamp_s),
            "{}: timestamps increase",
            path.display()
        );
    }
}

#[test]
fn spine_phantom_matches_its_header() {
    let Some(dir) = plus_data() else { return };
    let reader = SequenceReader::open(&dir.join("SpinePhantomFreehand.igs.mha")).unwrap();
    let h = reader.header();
    assert_eq!((h.width, h.height, h.frame_count, h.pixel_format), (820, 616, 21, PixelFormat::Gray8));
    assert!(h.fields.contains(&("UltrasoundImageOrientation".into(), "MFA".into())));
    let f0 = &reader.frames()[0];
    assert_eq!(f0.timestamp_s, 215.102186);
    let names: Vec<&str> = f0.transforms.iter().map(|t| &*t.name).collect();
    assert_eq!(names, ["ProbeToTracker", "ReferenceToTracker", "StylusToTracker"]);
    assert_eq!(&f0.transforms[0].matrix[..4], &[0.231245, 0.951424, -0.203269, 172.641]);
    assert_eq!(f0.transforms[0].matrix[15], 1.0);
    // Names are interned: every frame shares one allocation per name.
    assert!(Arc::ptr_eq(&reader.frames()[0].transforms[0].name, &reader.frames()[20].transforms[0].name));
}

#[test]
fn nwire_phantom_keeps_invalid_statuses_and_the_volume_reads_as_slices() {
    let Some(dir) = plus_data() else { return };
    let nwire = SequenceReader::open(&dir.join("NwirePhantomFreehand.igs.mha")).unwrap();
    assert_eq!(nwire.frames().len(), 97);
    let stylus = nwire.frames()[0].transforms.iter().find(|t| &*t.name == "StylusToTracker").unwrap();
    assert_eq!(stylus.status, TransformStatus::Invalid);
    let volume = SequenceReader::open(&dir.join("vtkVolumeReconstructorTestNNMEANvolumeRef.mha")).unwrap();
    let h = volume.header();
    assert_eq!((h.width, h.height, h.frame_count, h.spacing_mm), (147, 106, 105, [0.5, 0.5]));
    assert_eq!(volume.frames()[3].timestamp_s, 3.0);
}

#[test]
fn spine_phantom_rewrites_identically() {
    let Some(dir) = plus_data() else { return };
    let (header, frames) = read_all(&dir.join("SpinePhantomFreehand.igs.mha")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("copy.mha");
    let spec = SequenceSpec {
        width: header.width,
        height: header.height,
        pixel_format: header.pixel_format,
        spacing_mm: header.spacing_mm,
        compress: true,
        fields: header.fields.clone(),
    };
    let mut w = SequenceWriter::create(&out, spec).unwrap();
    for (meta, pixels) in &frames {
        w.write_frame(meta.timestamp_s, meta.image_ok, &meta.transforms, pixels).unwrap();
    }
    assert_eq!(w.finish().unwrap().frames, 21);
    let (header2, frames2) = read_all(&out).unwrap();
    assert_eq!(header2, header);
    assert_eq!(frames2, frames);
}

/// Writes a small Gray8 sequence of `n` frames and returns its bytes.
fn small_sequence(dir: &Path, n: usize, compress: bool) -> PathBuf {
    let path = dir.join(if compress { "small.mha" } else { "small_raw.mha" });
    let spec = SequenceSpec {
        width: 16,
        height: 8,
        pixel_format: PixelFormat::Gray8,
        spacing_mm: [0.25, 0.5],
        compress,
        fields: vec![],
    };
    let mut w = SequenceWriter::create(&path, spec).unwrap();
    let name: Arc<str> = Arc::from("ProbeToTracker");
    for i in 0..n {
        let pixels = PixelData::Gray8((0..128).map(|p| ((p * 7 + i * 13) % 256) as u8).collect());
        let mut m = sonoflow::frame::IDENTITY;
        m[3] = i as f64 * 0.1;
        let t = NamedTransform { name: name.clone(), matrix: m, status: TransformStatus::Ok };
        w.write_frame(10.0 + i as f64 / 30.0, true, [&t], &pixels).unwrap();
    }
    w.finish().unwrap();
    path
}

fn read_error(path: &Path) -> SequenceError {
    match read_all(path) {
        Ok(_) => panic!("{} read without error", path.display()),
        Err(e) => e,
    }
}

#[test]
fn truncated_files_name_the_frame() {
    let tmp = tempfile::tempdir().unwrap();
    for compress in [false, true] {
        let path = small_sequence(tmp.path(), 10, compress);
        let bytes = std::fs::read(&path).unwrap();
        let cut = tmp.path().join("cut.mha");
        std::fs::write(&cut, &bytes[..bytes.len() - 200]).unwrap();
        let e = read_error(&cut);
        let text = e.to_string();
        assert!(text.contains("cut.mha") && text.contains("frame"), "{text}");
        assert!(matches!(e, SequenceError::Truncated { .. } | SequenceError::Zlib { .. }), "{e:?}");
    }
    // Cut inside the header.
    let path = small_sequence(tmp.path(), 3, true);
    let bytes = std::fs::read(&path).unwrap();
    let cut = tmp.path().join("cut_header.mha");
    std::fs::write(&cut, &bytes[..60]).unwrap();
    assert!(matches!(read_error(&cut), SequenceError::Header { .. }));
}

#[test]
fn a_corrupt_zlib_stream_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sequence(tmp.path(), 10, true);
    let mut bytes = std::fs::read(&path).unwrap();
    let data_start = bytes.windows(23).position(|w| w == b"ElementDataFile = LOCAL").unwrap() + 24;
    // Garble the zlib header and the start of the stream.
    for b in &mut bytes[data_start..data_start + 8] {
        *b ^= 0x5a;
    }
    let bad = tmp.path().join("bad_zlib.mha");
    std::fs::write(&bad, &bytes).unwrap();
    let e = read_error(&bad);
    assert!(matches!(e, SequenceError::Zlib { frame: 0, .. }), "{e:?}");
    assert!(e.to_string().contains("bad_zlib.mha"));
}

fn with_header_edit(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let path = small_sequence(dir, 4, false);
    let bytes = std::fs::read(&path).unwrap();
    let at =
        bytes.windows(from.len()).position(|w| w == from.as_bytes()).unwrap_or_else(|| panic!("{from} not in header"));
    let mut edited = bytes[..at].to_vec();
    edited.extend_from_slice(to.as_bytes());
    edited.extend_from_slice(&bytes[at + from.len()..]);
    let out = dir.join(name);
    std::fs::write(&out, edited).unwrap();
    out
}

#[test]
fn bad_fields_name_field_and_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases: [(&str, &str, &str, &str, Option<usize>); 9] = [
        ("dims.mha", "DimSize = 16 8 4", "DimSize = 16 8", "DimSize", None),
        ("dims2.mha", "DimSize = 16 8 4", "DimSize = 16 x 4", "DimSize", None),
        ("dims0.mha", "DimSize = 16 8 4", "DimSize = 16 0 4", "DimSize", None),
        ("huge.mha", "DimSize = 16 8 4", "DimSize = 100000 100000 4", "DimSize", None),
        (
            "matrix.mha",
            "Seq_Frame0002_ProbeToTrackerTransform = 1 0 0 0.2",
            "Seq_Frame0002_ProbeToTrackerTransform = 1 0 0 abc",
            "Seq_Frame0002_ProbeToTrackerTransform",
            Some(2),
        ),
        (
            "count.mha",
            "Seq_Frame0001_ProbeToTrackerTransform = 1 0 0 0.1 0 1 0 0 0 0 1 0 0 0 0 1",
            "Seq_Frame0001_ProbeToTrackerTransform = 1 0 0 0.1 0 1 0 0 0 0 1 0 0 0 0",
            "Seq_Frame0001_ProbeToTrackerTransform",
            Some(1),
        ),
        (
            "time.mha",
            "Seq_Frame0003_Timestamp = ",
            "Seq_Frame0003_Timestamp = soon",
            "Seq_Frame0003_Timestamp",
            Some(3),
        ),
        ("notime.mha", "Seq_Frame0001_Timestamp = ", "Seq_Frame0001_Nothing = ", "Seq_Frame0001_Timestamp", Some(1)),
        ("beyond.mha", "Seq_Frame0003_ImageStatus", "Seq_Frame0009_ImageStatus", "Seq_Frame0009_ImageStatus", Some(9)),
    ];
    for (name, from, to, field_expected, frame_expected) in cases {
        let e = read_error(&with_header_edit(d, name, from, to));
        match &e {
            SequenceError::Field { path, field, frame, .. } => {
                assert!(path.ends_with(name), "{e}");
                assert_eq!((field.as_str(), *frame), (field_expected, frame_expected), "{e}");
            }
            other => panic!("{name}: expected a field error, got {other:?}"),
        }
        assert!(e.to_string().contains(name), "{e}");
    }
    for (name, from) in
        [("no_ndims.mha", "NDims = 3"), ("no_type.mha", "ElementType = MET_UCHAR"), ("no_dims.mha", "DimSize = 16 8 4")]
    {
        let e = read_error(&with_header_edit(d, name, from, "Comment = removed"));
        assert!(matches!(e, SequenceError::Field { .. }), "{name}: {e:?}");
        assert!(e.to_string().contains("missing"), "{e}");
    }
    let e = read_error(&with_header_edit(d, "type.mha", "MET_UCHAR", "MET_FLOAT"));
    assert!(matches!(e, SequenceError::Unsupported { .. }), "{e:?}");
    let e = read_error(&with_header_edit(d, "nodata.mha", "ElementDataFile = LOCAL", "ElementDataFile = missing.raw"));
    assert!(e.to_string().contains("missing.raw"), "{e}");
    let e = read_error(&with_header_edit(d, "nomarker.mha", "ElementDataFile = LOCAL", "Comment = LOCAL"));
    assert!(matches!(e, SequenceError::Header { .. }), "{e:?}");
}

#[test]
fn garbage_is_not_a_sequence() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("garbage.mha");
    std::fs::write(&path, [0xffu8, 0xfe, 0x00, 0x10, b'\n', 0x80, 0x81]).unwrap();
    let e = read_error(&path);
    assert!(matches!(e, SequenceError::Header { offset: 0, .. }), "{e:?}");
    assert!(matches!(read_error(&tmp.path().join("absent.mha")), SequenceError::Io { .. }));
}

#[test]
fn a_wrong_buffer_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_sequence(tmp.path(), 2, true);
    let mut r = SequenceReader::open(&path).unwrap();
    assert!(matches!(
        r.read_next(&mut PixelData::zeroed(PixelFormat::Gray8, 10)),
        Err(SequenceError::Buffer { frame: 0, .. })
    ));
    assert!(matches!(r.read_next(&mut PixelData::zeroed(PixelFormat::Gray16, 128)), Err(SequenceError::Buffer { .. })));
    // A bigger (pooled) buffer is fine: only the first width×height pixels are written.
    let mut big = PixelData::zeroed(PixelFormat::Gray8, 1000);
    assert_eq!(r.read_next(&mut big).unwrap(), Some(0));
    assert_eq!(r.read_next(&mut big).unwrap(), Some(1));
    assert_eq!(r.read_next(&mut big).unwrap(), None);
    r.rewind().unwrap();
    assert_eq!(r.read_next(&mut big).unwrap(), Some(0));
}

fn round_trip(
    dir: &Path,
    ext: &str,
    format: PixelFormat,
    compress: bool,
    frames: &[(f64, bool, Vec<NamedTransform>, PixelData)],
    w: usize,
    h: usize,
) {
    let path = dir.join(format!("rt.{ext}"));
    let spec = SequenceSpec {
        width: w,
        height: h,
        pixel_format: format,
        spacing_mm: [0.1, 0.3],
        compress,
        fields: vec![("UltrasoundImageOrientation".into(), "MF".into())],
    };
    let mut writer = SequenceWriter::create(&path, spec).unwrap();
    for (t, ok, transforms, pixels) in frames {
        writer.write_frame(*t, *ok, transforms, pixels).unwrap();
    }
    writer.finish().unwrap();
    let (header, back) = read_all(&path).unwrap();
    assert_eq!((header.width, header.height, header.frame_count, header.pixel_format), (w, h, frames.len(), format));
    assert_eq!(header.spacing_mm, [0.1, 0.3]);
    assert_eq!(header.fields.iter().find(|(k, _)| k == "UltrasoundImageOrientation").unwrap().1, "MF");
    for ((meta, pixels), (t, ok, transforms, original)) in back.iter().zip(frames) {
        assert_eq!(meta.timestamp_s.to_bits(), t.to_bits());
        assert_eq!(meta.image_ok, *ok);
        assert_eq!(&meta.transforms, transforms);
        assert_eq!(pixels, original);
    }
    assert!(!dir.join(format!("rt.{ext}.partial")).exists());
}

/// Timestamp, image status, transforms and pixels of one generated frame.
type ArbFrame = (f64, bool, Vec<NamedTransform>, Vec<u16>);

/// Width, height, 16-bit or not, and the frames.
fn arb_frames() -> impl Strategy<Value = (usize, usize, bool, Vec<ArbFrame>)> {
    (1usize..6, 1usize..5, any::<bool>()).prop_flat_map(|(w, h, wide)| {
        let frame = (
            -1e6f64..1e6,
            any::<bool>(),
            proptest::collection::vec((0usize..3, proptest::array::uniform16(-1e4f64..1e4), any::<bool>()), 0..3),
            proptest::collection::vec(any::<u16>(), w * h),
        )
            .prop_map(|(t, ok, ts, px)| {
                let mut seen = Vec::new();
                let transforms = ts
                    .into_iter()
                    .filter(|(n, _, _)| {
                        if seen.contains(n) {
                            false
                        } else {
                            seen.push(*n);
                            true
                        }
                    })
                    .map(|(n, m, valid)| NamedTransform {
                        name: Arc::from(["ProbeToTracker", "StylusToReference", "ImageToProbe"][n]),
                        matrix: m,
                        status: if valid { TransformStatus::Ok } else { TransformStatus::Invalid },
                    })
                    .collect();
                (t, ok, transforms, px)
            });
        (Just(w), Just(h), Just(wide), proptest::collection::vec(frame, 1..5))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn write_then_read_is_exact((w, h, wide, frames) in arb_frames(), compress in any::<bool>(), layout in 0usize..3) {
        let tmp = tempfile::tempdir().unwrap();
        let format = if wide { PixelFormat::Gray16 } else { PixelFormat::Gray8 };
        let frames: Vec<_> = frames.into_iter().map(|(t, ok, tr, px)| {
            let data = if wide { PixelData::Gray16(px) } else { PixelData::Gray8(px.iter().map(|p| *p as u8).collect()) };
            (t, ok, tr, data)
        }).collect();
        round_trip(tmp.path(), ["mha", "mhd", "seq.nrrd"][layout], format, compress, &frames, w, h);
    }
}

#[test]
fn mhd_writes_its_data_beside_the_header() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = vec![(1.5, true, vec![], PixelData::Gray16(vec![1, 2, 65535, 4]))];
    round_trip(tmp.path(), "mhd", PixelFormat::Gray16, true, &frames, 2, 2);
    assert!(tmp.path().join("rt.zraw").is_file());
    let header = std::fs::read_to_string(tmp.path().join("rt.mhd")).unwrap();
    assert!(header.trim_end().ends_with("ElementDataFile = rt.zraw"), "{header}");
}

#[test]
fn a_plus_style_nrrd_sequence_reads() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plus.seq.nrrd");
    let mut header = String::from(
        "NRRD0004\n# Complete NRRD file format specification at:\n# http://teem.sourceforge.net/nrrd/format.html\n\
         dimension: 4\nencoding: gzip\nendian: little\nkinds: domain domain domain list\nsizes: 3 2 1 2\n\
         space dimension: 3\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,1) none\nspace origin: (0,0,0)\n\
         type: unsigned char\nultrasound image orientation:=MF\nultrasound image type:=BRIGHTNESS\n",
    );
    for i in 0..2 {
        header.push_str(&format!("Seq_Frame{i:04}_ProbeToTrackerTransform:=1 0 0 {i} 0 1 0 0 0 0 1 0 0 0 0 1\n"));
        header.push_str(&format!("Seq_Frame{i:04}_ProbeToTrackerTransformStatus:=OK\n"));
        header.push_str(&format!("Seq_Frame{i:04}_Timestamp:={}\n", 10.5 + i as f64));
        header.push_str(&format!("Seq_Frame{i:04}_ImageStatus:=OK\n"));
    }
    header.push('\n');
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).unwrap();
    let mut bytes = header.into_bytes();
    bytes.extend(gz.finish().unwrap());
    std::fs::write(&path, &bytes).unwrap();

    let (h, frames) = read_all(&path).unwrap();
    assert_eq!((h.width, h.height, h.frame_count, h.spacing_mm), (3, 2, 2, [0.5, 0.5]));
    assert!(h.fields.contains(&("UltrasoundImageOrientation".into(), "MF".into())));
    assert_eq!(frames[1].0.timestamp_s, 11.5);
    assert_eq!(frames[1].0.transforms[0].matrix[3], 1.0);
    assert_eq!(frames[0].1, PixelData::Gray8(vec![1, 2, 3, 4, 5, 6]));
    assert_eq!(frames[1].1, PixelData::Gray8(vec![7, 8, 9, 10, 11, 12]));

    // Cut short: a clear error naming the frame, not a panic.
    let cut = tmp.path().join("cut.seq.nrrd");
    std::fs::write(&cut, &bytes[..bytes.len() - 12]).unwrap();
    let e = read_error(&cut);
    assert!(
        matches!(e, SequenceError::Truncated { .. } | SequenceError::Zlib { .. } | SequenceError::Io { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("cut.seq.nrrd"), "{e}");
}
