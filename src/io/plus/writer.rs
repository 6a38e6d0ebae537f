//! Streaming writer. In `.mha` the header, which lists every frame's fields and the frame count,
//! comes before the pixel data, so pixels stream to a sibling `.partial-data` file as frames arrive
//! (zlib-compressed on the fly) and `finish` writes header + data to `<path>.partial`, then renames
//! it into place: a crash never leaves a truncated file under the final name, and the partial
//! files it leaves keep what was recorded. `.mhd` writes its `.raw`/`.zraw` data file directly;
//! `.seq.nrrd` works like `.mha`, with a NRRD header and gzip instead of zlib.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};

use super::error::SequenceError;
use super::nrrd::RENAMED_FIELDS;
use super::{SequenceSpec, SequenceSummary};
use crate::frame::{NamedTransform, PixelData, PixelFormat};

enum Sink {
    Raw(BufWriter<File>),
    // Fast compression: recording must keep up with the live stream on a busy machine.
    Zlib(ZlibEncoder<BufWriter<File>>),
    Gzip(GzEncoder<BufWriter<File>>),
}

/// The file layout, chosen by the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `.mha`: MetaImage header and data in one file.
    Mha,
    /// `.mhd`: MetaImage header, data in `.raw`/`.zraw` beside it.
    Mhd,
    /// `.nrrd` / `.seq.nrrd`: NRRD header (PLUS sequence fields as `key:=value`), then the data.
    Nrrd,
}

pub struct SequenceWriter {
    path: PathBuf,
    spec: SequenceSpec,
    layout: Layout,
    /// Where pixel data goes while recording, and where it ends up.
    data_partial: PathBuf,
    data_final: Option<PathBuf>,
    sink: Option<Sink>,
    frame_fields: String,
    frames: usize,
    scratch: Vec<u8>,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl SequenceWriter {
    /// Starts a sequence at `path` (`.mha`: one file; `.mhd`: header + `.raw`/`.zraw`).
    pub fn create(path: &Path, spec: SequenceSpec) -> Result<Self, SequenceError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let layout = match ext.as_deref() {
            Some("mha") => Layout::Mha,
            Some("mhd") => Layout::Mhd,
            Some("nrrd") => Layout::Nrrd,
            _ => {
                return Err(SequenceError::Unsupported {
                    path: path.to_path_buf(),
                    message: "writing needs a .mha, .mhd or .seq.nrrd file name".into(),
                });
            }
        };
        let data_final = match layout {
            Layout::Mhd => Some(path.with_extension(if spec.compress { "zraw" } else { "raw" })),
            Layout::Mha | Layout::Nrrd => None,
        };
        if spec.width == 0 || spec.height == 0 {
            return Err(SequenceError::Unsupported {
                path: path.to_path_buf(),
                message: "a frame size of zero".into(),
            });
        }
        let data_partial = match &data_final {
            Some(data) => with_suffix(data, ".partial"),
            None => with_suffix(path, ".partial-data"),
        };
        let file =
            File::create(&data_partial).map_err(|source| SequenceError::Io { path: data_partial.clone(), source })?;
        let out = BufWriter::with_capacity(1 << 20, file);
        let sink = match (spec.compress, layout) {
            (false, _) => Sink::Raw(out),
            (true, Layout::Nrrd) => Sink::Gzip(GzEncoder::new(out, Compression::fast())),
            (true, _) => Sink::Zlib(ZlibEncoder::new(out, Compression::fast())),
        };
        Ok(SequenceWriter {
            path: path.to_path_buf(),
            spec,
            layout,
            data_partial,
            data_final,
            sink: Some(sink),
            frame_fields: String::new(),
            frames: 0,
            scratch: Vec::new(),
        })
    }

    /// Appends one frame: its first width×height pixels, transforms, timestamp and status.
    pub fn write_frame<'a>(
        &mut self,
        timestamp_s: f64,
        image_ok: bool,
        transforms: impl IntoIterator<Item = &'a NamedTransform>,
        pixels: &PixelData,
    ) -> Result<(), SequenceError> {
        let n = self.spec.width * self.spec.height;
        if pixels.format() != self.spec.pixel_format || pixels.len() < n {
            return Err(SequenceError::Buffer {
                path: self.path.clone(),
                frame: self.frames,
                message: format!(
                    "{} {} pixels given for a {}x{} {} sequence",
                    pixels.len(),
                    pixels.format(),
                    self.spec.width,
                    self.spec.height,
                    self.spec.pixel_format
                ),
            });
        }
        let bytes = pixels.le_bytes(n, &mut self.scratch);
        let written = match self.sink.as_mut() {
            Some(Sink::Raw(w)) => w.write_all(bytes),
            Some(Sink::Zlib(z)) => z.write_all(bytes),
            Some(Sink::Gzip(g)) => g.write_all(bytes),
            None => Ok(()),
        };
        written.map_err(|source| SequenceError::Io { path: self.data_partial.clone(), source })?;

        let i = self.frames;
        // NRRD stores custom fields as `key:=value` pairs.
        let sep = if self.layout == Layout::Nrrd { ":=" } else { " = " };
        let f = &mut self.frame_fields;
        for t in transforms {
            let m: Vec<String> = t.matrix.iter().map(f64::to_string).collect();
            let _ = writeln!(f, "Seq_Frame{i:04}_{}Transform{sep}{}", t.name, m.join(" "));
            let _ = writeln!(f, "Seq_Frame{i:04}_{}TransformStatus{sep}{}", t.name, t.status.as_plus_str());
        }
        let _ = writeln!(f, "Seq_Frame{i:04}_Timestamp{sep}{timestamp_s}");
        let _ = writeln!(f, "Seq_Frame{i:04}_ImageStatus{sep}{}", if image_ok { "OK" } else { "INVALID" });
        self.frames += 1;
        Ok(())
    }

    /// Completes the file and moves it into place.
    pub fn finish(mut self) -> Result<SequenceSummary, SequenceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SequenceError::Io { path, source }
        };
        let data_file = match self.sink.take() {
            Some(Sink::Raw(w)) => w.into_inner().map_err(|e| e.into_error()),
            Some(Sink::Zlib(z)) => z.finish().and_then(|w| w.into_inner().map_err(|e| e.into_error())),
            Some(Sink::Gzip(g)) => g.finish().and_then(|w| w.into_inner().map_err(|e| e.into_error())),
            None => unreachable!("finish consumes the writer"),
        }
        .map_err(io(&self.data_partial))?;
        data_file.sync_all().map_err(io(&self.data_partial))?;
        let data_bytes = data_file.metadata().map_err(io(&self.data_partial))?.len();
        drop(data_file);

        let data_name = match &self.data_final {
            Some(data) => data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            None => "LOCAL".to_string(),
        };
        let header = match self.layout {
            Layout::Mha | Layout::Mhd => self.metaimage_header(data_bytes, &data_name),
            Layout::Nrrd => self.nrrd_header(),
        };
        let partial = with_suffix(&self.path, ".partial");
        let mut out = BufWriter::new(File::create(&partial).map_err(io(&partial))?);
        out.write_all(header.as_bytes()).map_err(io(&partial))?;
        if let Some(data) = &self.data_final {
            std::fs::rename(&self.data_partial, data).map_err(io(data))?;
        } else {
            let mut data = File::open(&self.data_partial).map_err(io(&self.data_partial))?;
            std::io::copy(&mut data, &mut out).map_err(io(&partial))?;
        }
        let file = out.into_inner().map_err(|e| e.into_error()).map_err(io(&partial))?;
        file.sync_all().map_err(io(&partial))?;
        std::fs::rename(&partial, &self.path).map_err(io(&self.path))?;
        if self.data_final.is_none() {
            let _ = std::fs::remove_file(&self.data_partial);
        }
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(SequenceSummary { path: self.path.clone(), frames: self.frames, bytes })
    }

    fn metaimage_header(&self, data_bytes: u64, data_name: &str) -> String {
        let s = &self.spec;
        let mut h = String::with_capacity(self.frame_fields.len() + 1024);
        let element = match s.pixel_format {
            PixelFormat::Gray8 => "MET_UCHAR",
            PixelFormat::Gray16 => "MET_USHORT",
        };
        let _ = writeln!(h, "ObjectType = Image");
        let _ = writeln!(h, "NDims = 3");
        if !s.fields.iter().any(|(k, _)| k == "AnatomicalOrientation") {
            let _ = writeln!(h, "AnatomicalOrientation = RAI");
        }
        let _ = writeln!(h, "BinaryData = True");
        let _ = writeln!(h, "BinaryDataByteOrderMSB = False");
        let _ = writeln!(h, "CompressedData = {}", if s.compress { "True" } else { "False" });
        if s.compress {
            let _ = writeln!(h, "CompressedDataSize = {data_bytes}");
        }
        let _ = writeln!(h, "DimSize = {} {} {}", s.width, s.height, self.frames);
        let _ = writeln!(h, "ElementSpacing = {} {} 1", s.spacing_mm[0], s.spacing_mm[1]);
        let _ = writeln!(h, "ElementType = {element}");
        if !s.fields.iter().any(|(k, _)| k == "Kinds") {
            let _ = writeln!(h, "Kinds = domain domain list");
        }
        for (k, v) in &s.fields {
            let _ = writeln!(h, "{k} = {v}");
        }
        h.push_str(&self.frame_fields);
        let _ = writeln!(h, "ElementDataFile = {data_name}");
        h
    }

    /// PLUS's NRRD sequence layout: 3 spatial axes (one slice) and a list axis of frames.
    fn nrrd_header(&self) -> String {
        let s = &self.spec;
        let mut h = String::with_capacity(self.frame_fields.len() + 1024);
        let element = match s.pixel_format {
            PixelFormat::Gray8 => "unsigned char",
            PixelFormat::Gray16 => "unsigned short",
        };
        let _ = writeln!(h, "NRRD0004");
        let _ = writeln!(h, "# PLUS tracked ultrasound sequence; per-frame fields are Seq_FrameNNNN_<Name>:=<value>");
        let _ = writeln!(h, "type: {element}");
        let _ = writeln!(h, "dimension: 4");
        let _ = writeln!(h, "space dimension: 3");
        let _ = writeln!(h, "sizes: {} {} 1 {}", s.width, s.height, self.frames);
        let _ = writeln!(h, "space directions: ({},0,0) (0,{},0) (0,0,1) none", s.spacing_mm[0], s.spacing_mm[1]);
        let _ = writeln!(h, "kinds: domain domain domain list");
        let _ = writeln!(h, "endian: little");
        let _ = writeln!(h, "encoding: {}", if s.compress { "gzip" } else { "raw" });
        let _ = writeln!(h, "space origin: (0,0,0)");
        for (k, v) in &s.fields {
            let k = RENAMED_FIELDS.iter().find(|(metaimage, _)| metaimage == k).map_or(k.as_str(), |(_, nrrd)| nrrd);
            let _ = writeln!(h, "{k}:={v}");
        }
        h.push_str(&self.frame_fields);
        h.push('\n');
        h
    }
}
