//! B-mode image formation, simplified but with the features segmentation has to cope with:
//! fully developed speckle (Rayleigh envelope of band-limited complex Gaussian noise), a
//! hypoechoic lesion, an anechoic vessel with bright walls, depth attenuation left after time-gain
//! compensation, and log compression to 8 bits over a fixed dynamic range.

use super::geometry::Vec3;
use super::phantom::{LABEL_BACKGROUND, LABEL_LESION, LABEL_VESSEL, Phantom};
use super::rng::Stream;
use crate::frame::Matrix4;

/// Echo strength relative to the background tissue.
const LESION_ECHO: f32 = 0.2;
const VESSEL_ECHO: f32 = 0.03;
const WALL_ECHO: f32 = 3.0;
/// Thickness of the bright vessel wall, mm.
const WALL_MM: f64 = 0.5;
/// Envelope amplitude shown at full brightness (a bright speckle of the background).
const WHITE_LEVEL: f32 = 10.0;

/// Settings the renderer needs, copied from the spec.
pub struct BModeSettings {
    pub width: usize,
    pub height: usize,
    pub spacing_mm: f64,
    pub dynamic_range_db: f64,
    pub attenuation_db_per_cm: f64,
}

/// Scratch memory for one frame, allocated once.
pub struct Scratch {
    noise: Vec<[f32; 2]>,
    smoothed: Vec<[f32; 2]>,
}

impl Scratch {
    pub fn new(pixels: usize) -> Self {
        Scratch { noise: vec![[0.0; 2]; pixels], smoothed: vec![[0.0; 2]; pixels] }
    }
}

/// Renders one frame: `image_to_reference` maps (column, row, 0) to the phantom's frame.
pub fn render(
    settings: &BModeSettings,
    phantom: &Phantom,
    image_to_reference: &Matrix4,
    mut noise_stream: Stream,
    scratch: &mut Scratch,
    image: &mut [u8],
    labels: &mut [u8],
) {
    let (w, h) = (settings.width, settings.height);
    speckle(w, h, &mut noise_stream, scratch);
    let m = image_to_reference;
    let origin = Vec3::new(m[3], m[7], m[11]);
    let along_row = Vec3::new(m[0], m[4], m[8]);
    let down = Vec3::new(m[1], m[5], m[9]);
    let db_scale = 255.0 / settings.dynamic_range_db as f32;
    for r in 0..h {
        let depth_cm = r as f64 * settings.spacing_mm / 10.0;
        let attenuation = 10f64.powf(-settings.attenuation_db_per_cm * depth_cm / 20.0) as f32;
        let row_start = origin + down * r as f64;
        for c in 0..w {
            let p = row_start + along_row * c as f64;
            let label = phantom.label(p);
            let echo = match label {
                LABEL_LESION => LESION_ECHO,
                LABEL_VESSEL => VESSEL_ECHO,
                _ => {
                    let v = &phantom.vessel;
                    let (radial, along) = v.axial(p);
                    let on_wall =
                        radial > v.radius_mm && radial <= v.radius_mm + WALL_MM && along.abs() <= v.length_mm / 2.0;
                    if on_wall { WALL_ECHO } else { 1.0 }
                }
            };
            let i = r * w + c;
            let [re, im] = scratch.smoothed[i];
            let envelope = (re * re + im * im).sqrt();
            let amplitude = (echo * envelope * attenuation / WHITE_LEVEL).max(1e-6);
            let db = 20.0 * amplitude.log10();
            image[i] = ((db + settings.dynamic_range_db as f32) * db_scale).clamp(0.0, 255.0) as u8;
            labels[i] = label;
        }
    }
    debug_assert!(labels.iter().take(w * h).all(|l| [LABEL_BACKGROUND, LABEL_LESION, LABEL_VESSEL].contains(l)));
}

/// Complex Gaussian noise smoothed axially ([1 2 1]) and laterally ([1 1]): speckle grains a few
/// pixels long in depth, as a pulse a few wavelengths long gives. Rescaled to unit variance.
fn speckle(w: usize, h: usize, stream: &mut Stream, scratch: &mut Scratch) {
    let n = w * h;
    for v in &mut scratch.noise[..n] {
        let (a, b) = stream.normal_pair();
        *v = [a as f32, b as f32];
    }
    // Variance after the filters: (1+4+1)/16 · (1+1)/4 = 0.1875.
    let gain = 1.0 / 0.1875f32.sqrt();
    let noise = &scratch.noise;
    for r in 0..h {
        let (up, down) = (r.saturating_sub(1), (r + 1).min(h - 1));
        for c in 0..w {
            let right = (c + 1).min(w - 1);
            let mut acc = [0.0f32; 2];
            for (cc, weight) in [(c, 0.5f32), (right, 0.5)] {
                for (rr, wr) in [(up, 0.25f32), (r, 0.5), (down, 0.25)] {
                    let v = noise[rr * w + cc];
                    acc[0] += v[0] * weight * wr;
                    acc[1] += v[1] * weight * wr;
                }
            }
            scratch.smoothed[r * w + c] = [acc[0] * gain, acc[1] * gain];
        }
    }
}
