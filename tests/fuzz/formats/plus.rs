//! PLUS configuration XML: transforms, `VolumeReconstruction` attributes, hole-filling elements.

use super::*;
use sonoflow::recon::plus_config::RECONSTRUCTION_ATTRIBUTES;

pub const PLUS_WORDS: &[&str] = &[
    "PlusConfiguration",
    "CoordinateDefinitions",
    "Transform",
    "VolumeReconstruction",
    "HoleFilling",
    "HoleFillingElement",
    "OutputSpacing",
    "OutputOrigin",
    "OutputExtent",
    "ClipRectangleOrigin",
    "ClipRectangleSize",
    "FanAngles",
    "FanOrigin",
    "FanDepth",
    "Interpolation",
    "CompoundingMode",
    "Compounding",
    "Calculation",
    "NumberOfThreads",
    "FillHoles",
    "PixelRejectionThreshold",
    "EnableFanAnglesAutoDetect",
    "NEAREST_NEIGHBOR",
    "LINEAR",
    "MEAN",
    "MAXIMUM",
    "LATEST",
    "IMPORTANCE_MASK",
    "STICK",
    "ON",
    "OFF",
    "FULL",
    "Matrix",
    "From",
    "To",
    "Type",
    "Size",
    "MinimumKnownVoxelsRatio",
    "StickLengthLimit",
    "NumberOfSticksToUse",
];

/// The attributes the reader knows, and some it must refuse by name.
fn recon_attributes() -> Vec<&'static str> {
    let unknown = ["PixelRejectionThreshold", "SkipInterval", "Unknown"];
    RECONSTRUCTION_ATTRIBUTES.iter().copied().chain(unknown).collect()
}

const CHOICES: &[&str] = &[
    "NEAREST_NEIGHBOR",
    "LINEAR",
    "linear",
    "MEAN",
    "MAXIMUM",
    "LATEST",
    "IMPORTANCE_MASK",
    "WEIGHTED_AVERAGE",
    "ON",
    "OFF",
    "On",
    "Off",
    "FULL",
    "PARTIAL",
    "NONE",
    "FALSE",
    "TRUE",
    "",
];

fn attribute_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => numbers(1..4),
        2 => numbers(6..7),
        3 => select(CHOICES).prop_map(str::to_string),
        1 => printable(),
    ]
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;")
}

fn attributes(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!(" {k}=\"{}\"", escape(v))).collect()
}

/// A PLUS configuration: calibration transforms, a VolumeReconstruction element with random
/// attributes, and hole-filling elements.
pub fn plus_config() -> impl Strategy<Value = Vec<u8>> {
    let transform = (
        select(&["Image", "Probe", "", "A B"][..]),
        select(&["Probe", "Reference", "Tracker"][..]),
        prop_oneof![
            4 => numbers(12..13).prop_map(|m| format!("{m} 0 0 0 1")),
            1 => numbers(16..17),
            1 => numbers(0..20),
        ],
        prop::bool::weighted(0.9),
    );
    let recon = (
        prop::option::weighted(0.9, numbers(3..4)),
        vec((select(recon_attributes()).prop_map(str::to_string), attribute_value()), 0..10),
    );
    let hole = (
        select(&["STICK", "NEAREST_NEIGHBOR", "stick", "GAUSSIAN", ""][..]),
        vec(
            (
                select(&["StickLengthLimit", "NumberOfSticksToUse", "Size", "MinimumKnownVoxelsRatio", "Other"][..])
                    .prop_map(str::to_string),
                prop_oneof![3 => number(), 1 => printable()],
            ),
            0..4,
        ),
    );
    let holes = (prop::option::weighted(0.5, vec(hole, 0..3)), prop::bool::ANY);
    (
        prop::option::weighted(0.8, vec(transform, 0..3)),
        recon,
        holes,
        prop_oneof![9 => Just("PlusConfiguration"), 1 => Just("Other")],
    )
        .prop_map(|(transforms, (spacing, mut attrs), (holes, fill_on), root)| {
            let mut xml = format!("<{root} version=\"2.1\">\n");
            if let Some(transforms) = transforms {
                xml.push_str("  <CoordinateDefinitions>\n");
                for (from, to, matrix, with_matrix) in transforms {
                    let mut pairs = vec![("From".to_string(), from.to_string()), ("To".to_string(), to.to_string())];
                    if with_matrix {
                        pairs.push(("Matrix".to_string(), matrix));
                    }
                    xml.push_str(&format!("    <Transform{} />\n", attributes(&pairs)));
                }
                xml.push_str("  </CoordinateDefinitions>\n");
            }
            if let Some(spacing) = spacing {
                attrs.insert(0, ("OutputSpacing".to_string(), spacing));
            }
            if holes.is_some() {
                attrs.push(("FillHoles".to_string(), if fill_on { "ON" } else { "OFF" }.to_string()));
            }
            // XML refuses a repeated attribute; keep the first.
            let mut seen = std::collections::HashSet::new();
            attrs.retain(|(k, _)| seen.insert(k.clone()));
            xml.push_str(&format!("  <VolumeReconstruction{}>\n", attributes(&attrs)));
            if let Some(holes) = holes {
                xml.push_str("    <HoleFilling>\n");
                for (kind, mut pairs) in holes {
                    pairs.insert(0, ("Type".to_string(), kind.to_string()));
                    let mut seen = std::collections::HashSet::new();
                    pairs.retain(|(k, _)| seen.insert(k.clone()));
                    xml.push_str(&format!("      <HoleFillingElement{} />\n", attributes(&pairs)));
                }
                xml.push_str("    </HoleFilling>\n");
            }
            xml.push_str(&format!("  </VolumeReconstruction>\n</{root}>\n"));
            xml.into_bytes()
        })
}
