//! Reads a PLUS configuration XML: the fixed transforms of `CoordinateDefinitions` (the probe
//! calibration `ImageToProbe` and the like) and the `VolumeReconstruction` element.
//!
//! Every `VolumeReconstruction` attribute is either implemented or refused with an error naming
//! it: a setting silently ignored would give a volume that differs from PLUS's without a word.
//! Other elements (device sets, scan conversion) are not about reconstruction and are skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::frame::{Matrix4, NamedTransform, TransformStatus};

use super::settings::{Compounding, HoleFilling, Interpolation, ReconSettings};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlusConfigError {
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not well-formed XML: {message}")]
    Xml { path: PathBuf, message: String },
    #[error("{path}: {element} attribute {attribute}: {message}")]
    Attribute { path: PathBuf, element: String, attribute: String, message: String },
    #[error("{path}: {message}")]
    Structure { path: PathBuf, message: String },
}

/// What a PLUS configuration says about reconstruction.
#[derive(Debug, Clone, PartialEq)]
pub struct PlusConfig {
    pub settings: ReconSettings,
    /// Fixed transforms (`From`To`To`), added to every frame's own.
    pub calibration: Vec<NamedTransform>,
}

/// Attributes of `VolumeReconstruction` that PLUS knows and sonoflow does not implement.
const NOT_IMPLEMENTED: [&str; 6] = [
    "PixelRejectionThreshold",
    "ImportanceMaskFilename",
    "FanAnglesAutoDetectBrightnessThreshold",
    "FanAnglesAutoDetectFilterRadiusPixel",
    "SkipInterval",
    "EnableFanAnglesAutoDetect",
];

struct Reader<'a> {
    path: &'a Path,
}

impl Reader<'_> {
    fn attr_error(&self, node: roxmltree::Node, attribute: &str, message: impl Into<String>) -> PlusConfigError {
        PlusConfigError::Attribute {
            path: self.path.to_path_buf(),
            element: node.tag_name().name().to_string(),
            attribute: attribute.to_string(),
            message: message.into(),
        }
    }

    fn numbers<const N: usize>(
        &self,
        node: roxmltree::Node,
        attribute: &str,
    ) -> Result<Option<[f64; N]>, PlusConfigError> {
        let Some(text) = node.attribute(attribute) else { return Ok(None) };
        let values: Vec<f64> = text
            .split_whitespace()
            .map(|t| t.parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| self.attr_error(node, attribute, format!("`{text}` is not a list of numbers")))?;
        let n = values.len();
        values
            .try_into()
            .map(Some)
            .map_err(|_| self.attr_error(node, attribute, format!("expected {N} numbers, found {n}")))
    }

    fn integers<const N: usize>(
        &self,
        node: roxmltree::Node,
        attribute: &str,
    ) -> Result<Option<[i64; N]>, PlusConfigError> {
        match self.numbers::<N>(node, attribute)? {
            None => Ok(None),
            Some(v) if v.iter().all(|x| x.fract() == 0.0 && x.abs() < 1e9) => Ok(Some(v.map(|x| x as i64))),
            Some(_) => Err(self.attr_error(node, attribute, "expected whole numbers")),
        }
    }

    fn scalar(&self, node: roxmltree::Node, attribute: &str) -> Result<Option<f64>, PlusConfigError> {
        Ok(self.numbers::<1>(node, attribute)?.map(|[v]| v))
    }

    fn required_scalar(&self, node: roxmltree::Node, attribute: &str) -> Result<f64, PlusConfigError> {
        self.scalar(node, attribute)?.ok_or_else(|| self.attr_error(node, attribute, "is required"))
    }

    fn choice<T: Copy>(
        &self,
        node: roxmltree::Node,
        attribute: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, PlusConfigError> {
        let Some(text) = node.attribute(attribute) else { return Ok(None) };
        options.iter().find(|(name, _)| name.eq_ignore_ascii_case(text.trim())).map(|(_, v)| Some(*v)).ok_or_else(
            || {
                let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
                self.attr_error(node, attribute, format!("`{text}` is not one of {}", names.join(", ")))
            },
        )
    }
}

/// The settings in force for `toml` settings: those of its `plus_config` file when it names one
/// (with the keys PLUS has no word for, and an explicit grid, kept from the TOML), and the
/// calibration that file defines.
pub fn effective_settings(toml: &ReconSettings) -> Result<(ReconSettings, Vec<NamedTransform>), PlusConfigError> {
    let Some(path) = &toml.plus_config else { return Ok((toml.clone(), Vec::new())) };
    let PlusConfig { mut settings, calibration } = read_plus_config(path)?;
    settings.plus_config = Some(path.clone());
    settings.label_compounding = toml.label_compounding;
    settings.pose_time_offset_s = toml.pose_time_offset_s;
    settings.max_memory_mb = toml.max_memory_mb;
    settings.publish_every_frames = toml.publish_every_frames;
    settings.live_margin_mm = toml.live_margin_mm;
    if toml.output_origin_mm.is_some() {
        (settings.output_origin_mm, settings.output_extent) = (toml.output_origin_mm, toml.output_extent);
    }
    Ok((settings, calibration))
}

/// Reads `path`.
pub fn read_plus_config(path: &Path) -> Result<PlusConfig, PlusConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PlusConfigError::Read { path: path.to_path_buf(), source })?;
    parse_plus_config(path, &text)
}

/// Parses the text of a PLUS configuration (`path` names it in errors).
pub fn parse_plus_config(path: &Path, text: &str) -> Result<PlusConfig, PlusConfigError> {
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| PlusConfigError::Xml { path: path.to_path_buf(), message: e.to_string() })?;
    let r = Reader { path };
    let root = doc.root_element();
    let structure = |message: String| PlusConfigError::Structure { path: path.to_path_buf(), message };
    let calibration = match root.children().find(|n| n.has_tag_name("CoordinateDefinitions")) {
        Some(defs) => read_transforms(&r, defs)?,
        None => Vec::new(),
    };
    let recon = root
        .children()
        .find(|n| n.has_tag_name("VolumeReconstruction"))
        .ok_or_else(|| structure("no VolumeReconstruction element".into()))?;
    let settings = read_reconstruction(&r, recon)?;
    settings.validate().map_err(|e| r.attr_error(recon, e.key, format!("(sonoflow setting) {}", e.message)))?;
    Ok(PlusConfig { settings, calibration })
}

fn read_transforms(r: &Reader, defs: roxmltree::Node) -> Result<Vec<NamedTransform>, PlusConfigError> {
    let mut out = Vec::new();
    for t in defs.children().filter(|n| n.has_tag_name("Transform")) {
        let name = |a: &str| t.attribute(a).ok_or_else(|| r.attr_error(t, a, "is required"));
        let (from, to) = (name("From")?, name("To")?);
        let matrix: Matrix4 = r.numbers::<16>(t, "Matrix")?.ok_or_else(|| r.attr_error(t, "Matrix", "is required"))?;
        if matrix[12..] != [0.0, 0.0, 0.0, 1.0] {
            return Err(r.attr_error(t, "Matrix", "the last row must be 0 0 0 1"));
        }
        out.push(NamedTransform { name: Arc::from(format!("{from}To{to}")), matrix, status: TransformStatus::Ok });
    }
    Ok(out)
}

/// The `VolumeReconstruction` attributes read here; any other is refused by name.
pub const RECONSTRUCTION_ATTRIBUTES: [&str; 22] = [
    "ReferenceCoordinateFrame",
    "ImageCoordinateFrame",
    "OutputSpacing",
    "OutputOrigin",
    "OutputExtent",
    "ClipRectangleOrigin",
    "ClipRectangleSize",
    "FanAngles",
    "FanAnglesDeg",
    "FanOrigin",
    "FanOriginPixel",
    "FanDepth",
    "FanRadiusStartPixel",
    "FanRadiusStopPixel",
    "Interpolation",
    "Optimization",
    "CompoundingMode",
    "Compounding",
    "Calculation",
    "NumberOfThreads",
    "FillHoles",
    "EnableFanAnglesAutoDetect",
];

fn read_reconstruction(r: &Reader, e: roxmltree::Node) -> Result<ReconSettings, PlusConfigError> {
    for a in e.attributes() {
        let name = a.name();
        let refused = NOT_IMPLEMENTED.contains(&name)
            && !(name == "EnableFanAnglesAutoDetect" && a.value().eq_ignore_ascii_case("false"));
        if refused {
            return Err(r.attr_error(e, name, "is not implemented by sonoflow; remove it"));
        }
        if !RECONSTRUCTION_ATTRIBUTES.contains(&name) {
            return Err(r.attr_error(e, name, "is not a VolumeReconstruction setting sonoflow knows"));
        }
    }
    let mut s = ReconSettings::default();
    if let Some(v) = e.attribute("ImageCoordinateFrame") {
        s.image_frame = v.to_string();
    }
    if let Some(v) = e.attribute("ReferenceCoordinateFrame") {
        s.reference_frame = v.to_string();
    }
    s.output_spacing_mm =
        r.numbers::<3>(e, "OutputSpacing")?.ok_or_else(|| r.attr_error(e, "OutputSpacing", "is required"))?;
    s.output_origin_mm = r.numbers::<3>(e, "OutputOrigin")?;
    s.output_extent = r.integers::<6>(e, "OutputExtent")?;
    s.clip_rectangle_origin_px = r.integers::<2>(e, "ClipRectangleOrigin")?;
    s.clip_rectangle_size_px = r.integers::<2>(e, "ClipRectangleSize")?;
    // The deprecated spellings are read first so that the current ones win, as in PLUS.
    for name in ["FanAngles", "FanAnglesDeg"] {
        if let Some(v) = r.numbers::<2>(e, name)? {
            s.fan_angles_deg = v;
        }
    }
    for name in ["FanOrigin", "FanOriginPixel"] {
        if let Some(v) = r.numbers::<2>(e, name)? {
            s.fan_origin_px = v;
        }
    }
    for name in ["FanDepth", "FanRadiusStopPixel"] {
        if let Some(v) = r.scalar(e, name)? {
            s.fan_radius_stop_px = v;
        }
    }
    if let Some(v) = r.scalar(e, "FanRadiusStartPixel")? {
        s.fan_radius_start_px = v;
    }
    let interpolation = [("NEAREST_NEIGHBOR", Interpolation::Nearest), ("LINEAR", Interpolation::Linear)];
    if let Some(v) = r.choice(e, "Interpolation", &interpolation)? {
        s.interpolation = v;
    }
    // Every optimisation level computes the same volume up to rounding; sonoflow always uses
    // the fixed-point arithmetic of PLUS's FULL level for nearest-neighbour insertion.
    r.choice(e, "Optimization", &[("FULL", ()), ("PARTIAL", ()), ("NONE", ())])?;
    let modes = [("MEAN", Compounding::Mean), ("MAXIMUM", Compounding::Maximum), ("LATEST", Compounding::Latest)];
    let mode = match e.attribute("CompoundingMode") {
        Some("IMPORTANCE_MASK") => {
            return Err(r.attr_error(e, "CompoundingMode", "IMPORTANCE_MASK is not implemented by sonoflow"));
        }
        _ => r.choice(e, "CompoundingMode", &modes)?,
    };
    // PLUS's deprecated pair: Calculation=MAXIMUM → MAXIMUM, else Compounding Off → LATEST, else MEAN.
    let calculation =
        r.choice(e, "Calculation", &[("WEIGHTED_AVERAGE", Compounding::Mean), ("MAXIMUM", Compounding::Maximum)])?;
    let compounding_on = r.choice(e, "Compounding", &[("ON", true), ("OFF", false)])?;
    s.compounding = match (mode, calculation, compounding_on) {
        (Some(m), _, _) => m,
        (None, Some(Compounding::Maximum), _) => Compounding::Maximum,
        (None, _, Some(false)) => Compounding::Latest,
        _ => Compounding::Mean,
    };
    if let Some(n) = r.scalar(e, "NumberOfThreads")? {
        if n.fract() != 0.0 || !(0.0..=64.0).contains(&n) {
            return Err(r.attr_error(e, "NumberOfThreads", format!("{n} is not a thread count in 0..=64")));
        }
        // PLUS's 0 means "the default": one thread keeps results independent of the machine.
        s.threads = (n as usize).max(1);
    }
    if r.choice(e, "FillHoles", &[("ON", true), ("OFF", false)])?.unwrap_or(false) {
        let holes = e
            .children()
            .find(|n| n.has_tag_name("HoleFilling"))
            .ok_or_else(|| r.attr_error(e, "FillHoles", "is ON but there is no HoleFilling element"))?;
        for h in holes.children().filter(|n| n.has_tag_name("HoleFillingElement")) {
            s.hole_filling.push(read_hole_filling(r, h)?);
        }
        if s.hole_filling.is_empty() {
            return Err(r.attr_error(e, "FillHoles", "is ON but HoleFilling has no HoleFillingElement"));
        }
    }
    Ok(s)
}

fn read_hole_filling(r: &Reader, h: roxmltree::Node) -> Result<HoleFilling, PlusConfigError> {
    let whole = |attribute: &str| -> Result<usize, PlusConfigError> {
        let v = r.required_scalar(h, attribute)?;
        if v.fract() != 0.0 || !(0.0..1e6).contains(&v) {
            return Err(r.attr_error(h, attribute, format!("{v} is not a whole number")));
        }
        Ok(v as usize)
    };
    let known = |names: &[&str]| -> Result<(), PlusConfigError> {
        match h.attributes().find(|a| a.name() != "Type" && !names.contains(&a.name())) {
            Some(a) => Err(r.attr_error(h, a.name(), "is not used by this hole-filling type")),
            None => Ok(()),
        }
    };
    let kind = h.attribute("Type").ok_or_else(|| r.attr_error(h, "Type", "is required"))?;
    match kind.to_ascii_uppercase().as_str() {
        "STICK" => {
            // PLUS reads NumberOfSticksToUse as required; its value 1 is the usual one.
            known(&["StickLengthLimit", "NumberOfSticksToUse"])?;
            Ok(HoleFilling::Stick {
                stick_length_limit: whole("StickLengthLimit")?,
                number_of_sticks_to_use: whole("NumberOfSticksToUse")?,
            })
        }
        "NEAREST_NEIGHBOR" => {
            known(&["Size", "MinimumKnownVoxelsRatio"])?;
            Ok(HoleFilling::NearestNeighbor {
                size: whole("Size")?,
                minimum_known_voxels_ratio: r.required_scalar(h, "MinimumKnownVoxelsRatio")?,
            })
        }
        _ => Err(r.attr_error(h, "Type", format!("{kind} is not implemented by sonoflow (STICK, NEAREST_NEIGHBOR)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPINE: &str = r#"<PlusConfiguration version="2.1">
      <CoordinateDefinitions>
        <Transform From="Image" To="Probe" Matrix="0.1 0 0 1  0 0.1 0 2  0 0 0.1 3  0 0 0 1" Error="1.6" Date="x"/>
      </CoordinateDefinitions>
      <VolumeReconstruction OutputSpacing="0.5 0.5 0.5" ClipRectangleOrigin="0 0" ClipRectangleSize="820 616"
        Interpolation="NEAREST_NEIGHBOR" Optimization="FULL" CompoundingMode="MEAN" FillHoles="ON" NumberOfThreads="1">
        <HoleFilling><HoleFillingElement Type="STICK" StickLengthLimit="9" NumberOfSticksToUse="1" /></HoleFilling>
      </VolumeReconstruction>
    </PlusConfiguration>"#;

    fn parse(text: &str) -> Result<PlusConfig, PlusConfigError> {
        parse_plus_config(Path::new("cfg.xml"), text)
    }

    #[test]
    fn reads_calibration_and_settings() {
        let c = parse(SPINE).unwrap();
        assert_eq!(&*c.calibration[0].name, "ImageToProbe");
        assert_eq!(c.calibration[0].matrix[3], 1.0);
        let s = &c.settings;
        assert_eq!(s.output_spacing_mm, [0.5; 3]);
        assert_eq!(s.clip_rectangle(), Some(([0, 0], [820, 616])));
        assert_eq!(s.interpolation, Interpolation::Nearest);
        assert_eq!(s.compounding, Compounding::Mean);
        assert_eq!(s.hole_filling, vec![HoleFilling::Stick { stick_length_limit: 9, number_of_sticks_to_use: 1 }]);
        assert_eq!((s.image_frame.as_str(), s.reference_frame.as_str()), ("Image", "Reference"));
    }

    #[test]
    fn deprecated_compounding_on_means_mean_and_off_latest() {
        let on = SPINE.replace("CompoundingMode=\"MEAN\"", "Compounding=\"On\"");
        assert_eq!(parse(&on).unwrap().settings.compounding, Compounding::Mean);
        let off = SPINE.replace("CompoundingMode=\"MEAN\"", "Compounding=\"Off\"");
        assert_eq!(parse(&off).unwrap().settings.compounding, Compounding::Latest);
    }

    #[test]
    fn unimplemented_or_unknown_attributes_are_named() {
        let with = |attr: &str| SPINE.replace("NumberOfThreads=\"1\"", attr);
        let err = parse(&with("PixelRejectionThreshold=\"10\"")).unwrap_err().to_string();
        assert!(err.contains("PixelRejectionThreshold") && err.contains("not implemented"), "{err}");
        let err = parse(&with("OutputSpacnig=\"1 1 1\"")).unwrap_err().to_string();
        assert!(err.contains("OutputSpacnig"), "{err}");
        let err = parse(&SPINE.replace("NEAREST_NEIGHBOR", "CUBIC")).unwrap_err().to_string();
        assert!(err.contains("Interpolation"), "{err}");
        let gaussian =
            SPINE.replace("Type=\"STICK\" StickLengthLimit=\"9\" NumberOfSticksToUse=\"1\"", "Type=\"GAUSSIAN\"");
        assert!(parse(&gaussian).unwrap_err().to_string().contains("GAUSSIAN"));
    }

    #[test]
    fn malformed_values_name_the_attribute() {
        let err = parse(&SPINE.replace("0.5 0.5 0.5", "0.5 x")).unwrap_err().to_string();
        assert!(err.contains("OutputSpacing") && err.contains("cfg.xml"), "{err}");
        let err = parse(&SPINE.replace("0.5 0.5 0.5", "0.5 0.5")).unwrap_err().to_string();
        assert!(err.contains("expected 3 numbers"), "{err}");
        assert!(matches!(parse("<PlusConfiguration>"), Err(PlusConfigError::Xml { .. })));
        assert!(matches!(parse("<PlusConfiguration/>"), Err(PlusConfigError::Structure { .. })));
    }

    #[test]
    fn absent_and_truncated_files_are_errors_naming_the_file() {
        let err = read_plus_config(Path::new("/nonexistent/config.xml")).unwrap_err();
        assert!(matches!(err, PlusConfigError::Read { .. }) && err.to_string().contains("/nonexistent/config.xml"));
        let whole = SPINE.trim_end();
        for cut in (0..whole.len()).filter(|&c| whole.is_char_boundary(c)) {
            let err = parse(&whole[..cut]).expect_err("a truncated configuration must not parse");
            assert!(err.to_string().contains("cfg.xml"), "cut at {cut}: {err}");
        }
    }
}
