//! Transfer syntaxes this build cannot decode, with what would: the error says so before any
//! codec is tried. Everything else (uncompressed in either byte order, deflated, RLE, JPEG
//! baseline, extended and lossless, JPEG 2000 lossless and lossy) is decoded.

/// Why `uid`'s pixel data cannot be decoded here, or `None` when it can (or is unknown, left to
/// the codecs' own error).
pub(super) fn undecodable(uid: &str) -> Option<String> {
    let convert = "or convert the file first (dcmtk: `dcmdjpls`/`dcmdjpeg`, GDCM: `gdcmconv --raw in.dcm out.dcm`)";
    let (name, decoder) = match uid {
        "1.2.840.10008.1.2.4.80" => ("JPEG-LS Lossless", JPEG_LS),
        "1.2.840.10008.1.2.4.81" => ("JPEG-LS Near-Lossless", JPEG_LS),
        "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => (
            "High-Throughput JPEG 2000",
            "a decoder with HTJ2K support (OpenJPEG 2.5 or newer, through dicom-pixeldata's `openjpeg-sys` feature)",
        ),
        "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
            ("JPEG XL", "dicom-pixeldata's `jpegxl` feature (pure Rust)")
        }
        "1.2.840.10008.1.2.4.100"
        | "1.2.840.10008.1.2.4.100.1"
        | "1.2.840.10008.1.2.4.101"
        | "1.2.840.10008.1.2.4.101.1" => ("MPEG-2 video", VIDEO),
        "1.2.840.10008.1.2.4.102"
        | "1.2.840.10008.1.2.4.102.1"
        | "1.2.840.10008.1.2.4.103"
        | "1.2.840.10008.1.2.4.103.1"
        | "1.2.840.10008.1.2.4.104"
        | "1.2.840.10008.1.2.4.104.1"
        | "1.2.840.10008.1.2.4.105"
        | "1.2.840.10008.1.2.4.105.1"
        | "1.2.840.10008.1.2.4.106"
        | "1.2.840.10008.1.2.4.106.1" => ("MPEG-4 AVC/H.264 video", VIDEO),
        "1.2.840.10008.1.2.4.107" | "1.2.840.10008.1.2.4.108" => ("HEVC/H.265 video", VIDEO),
        _ => return None,
    };
    Some(format!("{name} ({uid}) is not decodable by this build; {decoder} would decode it, {convert}"))
}

const JPEG_LS: &str = "dicom-pixeldata's `charls` feature (it links the CharLS C library, Debian libcharls-dev)";
const VIDEO: &str =
    "a video decoder (extract the stream, e.g. with dcmtk's `dcmdump +W`, and replay it through the GStreamer source)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_ls_names_its_decoder_and_known_ones_are_not_refused() {
        let why = undecodable("1.2.840.10008.1.2.4.80").unwrap();
        assert!(why.contains("JPEG-LS Lossless (1.2.840.10008.1.2.4.80)") && why.contains("charls"), "{why}");
        for decodable in
            ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"]
        {
            assert_eq!(undecodable(decodable), None);
        }
    }
}
