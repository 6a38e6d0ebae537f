//! Folds each TinyViT `Conv2d_BN` (a bias-free convolution followed by BatchNorm) into one
//! convolution with a bias, so the model graph runs a single op where training ran two.
//!
//! Input tensors `X.c.weight` and `X.bn.{weight, bias, running_mean, running_var}`; output
//! `X.weight` and `X.bias`, at the place `X.c.weight` held, with per output channel o:
//! `w'[o] = w[o]·γ[o]/√(var[o]+eps)` and `b'[o] = β[o] − mean[o]·γ[o]/√(var[o]+eps)`.
//! This is `Conv2d_BN.fuse()` of the reference code (`tiny_vit_sam.py`), computed in f64 and
//! rounded once, so the folded model is as close to the unfused one as float32 allows.

use std::collections::{HashMap, HashSet};

use super::tensor::{OwnedTensor, shape_text};

/// `torch.nn.BatchNorm2d`'s default eps, which `Conv2d_BN` keeps.
pub const BATCH_NORM_EPS: f64 = 1e-5;

const BN_PARTS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// A `X.bn.*` tensor without the rest of its `Conv2d_BN`.
    #[error("tensor `{tensor}`: BatchNorm without {missing} (an incomplete Conv2d_BN)")]
    Incomplete { tensor: String, missing: String },
    /// Shapes of the convolution and its BatchNorm disagree.
    #[error("tensor `{tensor}`: shape {shape} does not fit {expected}")]
    Shape { tensor: String, shape: String, expected: String },
    /// The folded tensor's name is already taken.
    #[error("tensor `{tensor}` already exists; cannot fold `{prefix}` into it")]
    Collision { tensor: String, prefix: String },
}

/// Tensors after folding, and which `Conv2d_BN` prefixes were folded.
#[derive(Debug, Clone)]
pub struct Folded {
    pub tensors: Vec<OwnedTensor>,
    pub prefixes: Vec<String>,
}

/// Folds every `Conv2d_BN` found in `tensors`; other tensors pass through unchanged, in order.
pub fn fold_conv_bn(tensors: Vec<OwnedTensor>, eps: f64) -> Result<Folded, FoldError> {
    let index: HashMap<&str, usize> = tensors.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();

    // A Conv2d_BN is recognised by its BatchNorm; every part must be present.
    let mut prefixes = Vec::new();
    for t in &tensors {
        let Some((prefix, part)) = t.name.rsplit_once(".bn.") else { continue };
        if part != "weight" {
            if !BN_PARTS.contains(&part) {
                continue;
            }
            if !index.contains_key(format!("{prefix}.bn.weight").as_str()) {
                return Err(FoldError::Incomplete { tensor: t.name.clone(), missing: format!("`{prefix}.bn.weight`") });
            }
            continue;
        }
        for needed in BN_PARTS.iter().map(|p| format!("{prefix}.bn.{p}")).chain([format!("{prefix}.c.weight")]) {
            if !index.contains_key(needed.as_str()) {
                return Err(FoldError::Incomplete { tensor: t.name.clone(), missing: format!("`{needed}`") });
            }
        }
        for taken in [format!("{prefix}.weight"), format!("{prefix}.bias")] {
            if index.contains_key(taken.as_str()) {
                return Err(FoldError::Collision { tensor: taken, prefix: prefix.to_string() });
            }
        }
        prefixes.push(prefix.to_string());
    }

    let mut replaced: HashMap<usize, [OwnedTensor; 2]> = HashMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    for prefix in &prefixes {
        let at = |suffix: &str| index[format!("{prefix}.{suffix}").as_str()];
        let conv = at("c.weight");
        let bn = BN_PARTS.map(|p| at(&format!("bn.{p}")));
        let [gamma, beta, mean, var] = bn.map(|i| &tensors[i]);
        let folded = fold_one(prefix, &tensors[conv], gamma, beta, mean, var, eps)?;
        replaced.insert(conv, folded);
        dropped.extend(bn);
    }

    let mut out = Vec::with_capacity(tensors.len() - prefixes.len() * 3);
    for (i, t) in tensors.into_iter().enumerate() {
        if let Some(pair) = replaced.remove(&i) {
            out.extend(pair);
        } else if !dropped.contains(&i) {
            out.push(t);
        }
    }
    Ok(Folded { tensors: out, prefixes })
}

fn fold_one(
    prefix: &str,
    conv: &OwnedTensor,
    gamma: &OwnedTensor,
    beta: &OwnedTensor,
    mean: &OwnedTensor,
    var: &OwnedTensor,
    eps: f64,
) -> Result<[OwnedTensor; 2], FoldError> {
    let channels = match conv.shape.first() {
        Some(&c) if c > 0 && conv.shape.len() >= 2 => c,
        _ => {
            return Err(FoldError::Shape {
                tensor: conv.name.clone(),
                shape: shape_text(&conv.shape),
                expected: "a convolution weight [out, in/groups, kh, kw]".into(),
            });
        }
    };
    for t in [gamma, beta, mean, var] {
        if t.shape != [channels] || t.data.len() != channels {
            return Err(FoldError::Shape {
                tensor: t.name.clone(),
                shape: shape_text(&t.shape),
                expected: format!("the {channels} output channels of `{}`", conv.name),
            });
        }
    }
    let per_channel = conv.data.len() / channels;
    if per_channel * channels != conv.data.len() {
        return Err(FoldError::Shape {
            tensor: conv.name.clone(),
            shape: shape_text(&conv.shape),
            expected: format!("{} values (it holds {})", per_channel * channels, conv.data.len()),
        });
    }
    let mut weight = Vec::with_capacity(conv.data.len());
    let mut bias = Vec::with_capacity(channels);
    for o in 0..channels {
        let scale = f64::from(gamma.data[o]) / (f64::from(var.data[o]) + eps).sqrt();
        let row = &conv.data[o * per_channel..(o + 1) * per_channel];
        weight.extend(row.iter().map(|&w| (f64::from(w) * scale) as f32));
        bias.push((f64::from(beta.data[o]) - f64::from(mean.data[o]) * scale) as f32);
    }
    Ok([
        OwnedTensor { name: format!("{prefix}.weight"), shape: conv.shape.clone(), data: weight },
        OwnedTensor { name: format!("{prefix}.bias"), shape: vec![channels], data: bias },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, shape: &[usize], data: &[f32]) -> OwnedTensor {
        OwnedTensor { name: name.into(), shape: shape.to_vec(), data: data.to_vec() }
    }

    /// A 2-output 1×1 convolution over 2 inputs with its BatchNorm, between two plain tensors.
    fn conv_bn(var: [f32; 2]) -> Vec<OwnedTensor> {
        vec![
            t("first", &[1], &[9.0]),
            t("m.c.weight", &[2, 2, 1, 1], &[1.0, 2.0, 3.0, -4.0]),
            t("m.bn.weight", &[2], &[2.0, 0.5]),
            t("m.bn.bias", &[2], &[3.0, -1.0]),
            t("m.bn.running_mean", &[2], &[0.5, 4.0]),
            t("m.bn.running_var", &[2], &var),
            t("last", &[1], &[7.0]),
        ]
    }

    #[test]
    fn folds_with_exact_values() {
        // eps 0: scale γ/√var is 2/√1 = 2 for channel 0 and 0.5/√0.25 = 1 for channel 1.
        let folded = fold_conv_bn(conv_bn([1.0, 0.25]), 0.0).unwrap();
        let names: Vec<&str> = folded.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["first", "m.weight", "m.bias", "last"]);
        assert_eq!(folded.prefixes, ["m"]);
        let (w, b) = (&folded.tensors[1], &folded.tensors[2]);
        assert_eq!((w.shape.as_slice(), b.shape.as_slice()), (&[2, 2, 1, 1][..], &[2][..]));
        // w' = w·scale: (1, 2)·2 and (3, −4)·1.
        assert_eq!(w.data, [2.0, 4.0, 3.0, -4.0]);
        // b' = β − mean·scale: 3 − 0.5·2 = 2 and −1 − 4·1 = −5.
        assert_eq!(b.data, [2.0, -5.0]);
    }

    #[test]
    fn uses_the_batch_norm_eps() {
        // var + eps = 0.99999 + 0.00001 and 0.24999 + 0.00001: the same folded values as above.
        let folded = fold_conv_bn(conv_bn([0.99999, 0.24999]), BATCH_NORM_EPS).unwrap();
        assert_eq!(folded.tensors[1].data, [2.0, 4.0, 3.0, -4.0]);
        assert_eq!(folded.tensors[2].data, [2.0, -5.0]);
        // A zero variance divides by √eps, not by zero: scale 2/√1e-5 = 632.4555…
        let folded = fold_conv_bn(conv_bn([0.0, 1.0]), BATCH_NORM_EPS).unwrap();
        assert_eq!(folded.tensors[1].data[0], 632.455_5_f32);
    }

    #[test]
    fn incomplete_and_colliding_groups_are_errors() {
        let mut tensors = conv_bn([1.0, 1.0]);
        tensors.retain(|t| t.name != "m.bn.running_var");
        let err = fold_conv_bn(tensors, BATCH_NORM_EPS).unwrap_err();
        assert_eq!(err, FoldError::Incomplete { tensor: "m.bn.weight".into(), missing: "`m.bn.running_var`".into() });

        let mut tensors = conv_bn([1.0, 1.0]);
        tensors.retain(|t| t.name != "m.bn.weight");
        assert!(matches!(fold_conv_bn(tensors, BATCH_NORM_EPS), Err(FoldError::Incomplete { .. })));

        let mut tensors = conv_bn([1.0, 1.0]);
        tensors.push(t("m.bias", &[2], &[0.0, 0.0]));
        assert!(matches!(fold_conv_bn(tensors, BATCH_NORM_EPS), Err(FoldError::Collision { .. })));

        let mut tensors = conv_bn([1.0, 1.0]);
        tensors[4] = t("m.bn.running_mean", &[3], &[0.0; 3]);
        let err = fold_conv_bn(tensors, BATCH_NORM_EPS).unwrap_err().to_string();
        assert!(err.contains("`m.bn.running_mean`") && err.contains("[3]"), "{err}");
    }

    #[test]
    fn tensors_without_batch_norm_pass_through() {
        let tensors = vec![t("a.weight", &[2], &[1.0, 2.0]), t("a.c.weight", &[1, 1, 1, 1], &[3.0])];
        let folded = fold_conv_bn(tensors.clone(), BATCH_NORM_EPS).unwrap();
        assert_eq!(folded.tensors, tensors);
        assert!(folded.prefixes.is_empty());
    }
}
