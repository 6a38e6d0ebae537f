//! The gst-launch description sonoflow builds for each GStreamer source kind. Every pipeline ends
//! in the same tail: convert to the configured grey format, then the appsink sonoflow pulls from.
//! File paths and device names are not written into the text (quoting would break on odd names);
//! they are set as properties on the element named `src` after parsing.

use crate::capture::settings::GstSettings;
use crate::capture::settings::SourceKind;
use crate::frame::PixelFormat;

/// Name of the appsink at the end of every pipeline (and of a custom one that brings its own).
pub const SINK_NAME: &str = "sonoflow";
/// Name of the element whose `location` or `device` property sonoflow sets.
pub const SOURCE_NAME: &str = "src";

/// The GStreamer raw-video format of a grey pixel format.
pub fn gst_format(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::Gray8 => "GRAY8",
        PixelFormat::Gray16 => "GRAY16_LE",
    }
}

/// A frame rate as the exact fraction GStreamer caps want (to a thousandth of a hertz).
pub fn rate_fraction(rate_hz: f64) -> (i64, i64) {
    let num = (rate_hz * 1000.0).round() as i64;
    let g = gcd(num, 1000);
    (num / g, 1000 / g)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs().max(1) } else { gcd(b, a % b) }
}

/// The pipeline description for `kind`; `live` picks a live test pattern (paced by its own
/// clock) over an as-fast-as-possible one.
pub fn launch_line(kind: SourceKind, s: &GstSettings, live: bool) -> Result<String, String> {
    let tail = format!("videoconvert ! video/x-raw,format={} ! appsink name={SINK_NAME}", gst_format(s.pixel_format));
    let caps = s.caps.as_deref().map(|c| format!(" ! {c}")).unwrap_or_default();
    Ok(match kind {
        SourceKind::Test => {
            if s.pattern.is_empty() || !s.pattern.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("capture.gstreamer.pattern {:?} is not a videotestsrc pattern name", s.pattern));
            }
            let (num, den) = rate_fraction(s.frame_rate_hz);
            let frames = if s.frames == 0 { -1 } else { s.frames as i64 };
            format!(
                "videotestsrc name={SOURCE_NAME} is-live={live} pattern={} num-buffers={frames} ! \
                 video/x-raw,width={},height={},framerate={num}/{den} ! {tail}",
                s.pattern, s.width_px, s.height_px
            )
        }
        SourceKind::File => format!("filesrc name={SOURCE_NAME} ! decodebin ! {tail}"),
        SourceKind::V4l2 => format!("v4l2src name={SOURCE_NAME}{caps} ! {tail}"),
        SourceKind::Custom => {
            let Some(text) = s.pipeline.as_deref() else {
                return Err("capture.gstreamer.pipeline is not set".into());
            };
            if text.contains(&format!("appsink name={SINK_NAME}")) {
                text.to_string()
            } else {
                format!("{text}{caps} ! {tail}")
            }
        }
        other => return Err(format!("kind \"{}\" is not a GStreamer source", other.name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_become_exact_fractions() {
        assert_eq!(rate_fraction(30.0), (30, 1));
        assert_eq!(rate_fraction(29.97), (2997, 100));
        assert_eq!(rate_fraction(12.5), (25, 2));
    }

    #[test]
    fn every_line_ends_in_the_grey_appsink() {
        let s = GstSettings { caps: Some("video/x-raw,width=1920".into()), ..GstSettings::default() };
        let v4l2 = launch_line(SourceKind::V4l2, &s, true).unwrap();
        assert_eq!(
            v4l2,
            "v4l2src name=src ! video/x-raw,width=1920 ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=sonoflow"
        );
        let test = launch_line(SourceKind::Test, &GstSettings::default(), false).unwrap();
        assert!(test.starts_with("videotestsrc name=src is-live=false pattern=ball num-buffers=-1 ! "), "{test}");
        let custom = GstSettings { pipeline: Some("udpsrc port=5000 ! decodebin".into()), ..GstSettings::default() };
        assert!(launch_line(SourceKind::Custom, &custom, true).unwrap().ends_with("appsink name=sonoflow"));
    }

    #[test]
    fn a_pattern_cannot_inject_elements() {
        let s = GstSettings { pattern: "ball ! fakesink".into(), ..GstSettings::default() };
        assert!(launch_line(SourceKind::Test, &s, false).is_err());
    }
}
