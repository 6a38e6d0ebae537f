//! `--input` on the command line: one string naming a recording, a video, a DICOM cine loop or a
//! device, turned into the source kind that plays it.

use std::path::{Path, PathBuf};

use super::settings::{CaptureConfig, SourceKind};
use crate::capture::dicom::looks_like_dicom;

/// What `--input` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file, with the kind that plays it.
    File(SourceKind, PathBuf),
    /// A V4L2 device (`v4l2:/dev/videoN`).
    V4l2(String),
}

/// PLUS sequence files by extension; DICOM by extension or by its "DICM" magic (scanners often
/// export files without an extension); anything else is left to GStreamer's decoders.
pub fn classify(input: &str) -> Input {
    if let Some(device) = input.strip_prefix("v4l2:") {
        return Input::V4l2(device.to_string());
    }
    let path = PathBuf::from(input);
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let kind = if [".mha", ".mhd", ".nrrd"].iter().any(|e| name.ends_with(e)) {
        SourceKind::Replay
    } else if name.ends_with(".dcm") || name.ends_with(".dicom") || looks_like_dicom(Path::new(input)) {
        SourceKind::Dicom
    } else {
        SourceKind::File
    };
    Input::File(kind, path)
}

impl Input {
    /// Points `capture` at this input (keeping its other settings: pace, loop, crop).
    pub fn apply(self, capture: &mut CaptureConfig) {
        match self {
            Input::File(kind, path) => {
                capture.kind = kind;
                capture.path = Some(path);
            }
            Input::V4l2(device) => {
                capture.kind = SourceKind::V4l2;
                capture.path = None;
                capture.gstreamer.device = device;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_classified_by_prefix_extension_and_magic() {
        assert_eq!(classify("v4l2:/dev/video2"), Input::V4l2("/dev/video2".into()));
        assert_eq!(classify("a/b.igs.mha"), Input::File(SourceKind::Replay, "a/b.igs.mha".into()));
        assert_eq!(classify("x.seq.nrrd"), Input::File(SourceKind::Replay, "x.seq.nrrd".into()));
        assert_eq!(classify("loop.DCM"), Input::File(SourceKind::Dicom, "loop.DCM".into()));
        assert_eq!(classify("clip.mkv"), Input::File(SourceKind::File, "clip.mkv".into()));
        let dir = tempfile::tempdir().unwrap();
        let bare = dir.path().join("IM0001");
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        std::fs::write(&bare, bytes).unwrap();
        assert_eq!(classify(bare.to_str().unwrap()), Input::File(SourceKind::Dicom, bare));
    }
}
