//! The shipped configs load and validate, and configs/README.md documents every key.

use std::path::{Path, PathBuf};

use sonoflow::config::{Config, SourceKind};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn shipped_configs_validate_once_given_an_input() {
    let input = tempfile::NamedTempFile::new().unwrap();
    for name in ["demo.toml", "replay.toml"] {
        let mut config = Config::load(&repo("configs").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.capture.kind, SourceKind::Replay, "{name}");
        config.capture.path = Some(input.path().to_path_buf());
        config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Every leaf key of a fully populated config, as `section.key` paths.
fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(table) = value {
        for (k, v) in table {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if v.is_table() {
                keys(v, &path, out);
            } else {
                out.push(path);
            }
        }
    }
}

#[test]
fn the_hil_config_validates_as_shipped() {
    let config = Config::load(&repo("configs/hil.toml")).unwrap();
    assert_eq!(config.capture.kind, SourceKind::Simulator);
    config.validate().unwrap();
}

#[test]
fn the_capture_configs_validate_as_shipped() {
    let live = Config::load(&repo("configs/live-v4l2.toml")).unwrap();
    assert_eq!(live.capture.kind, SourceKind::V4l2);
    let bench = Config::load(&repo("configs/capture-bench.toml")).unwrap();
    assert_eq!(bench.capture.kind, SourceKind::Test);
    for config in [live, bench] {
        // Without GStreamer, the environment pass refuses these kinds, naming the key.
        match config.validate() {
            Ok(()) => {
                if !cfg!(feature = "gstreamer") {
                    panic!("validated without GStreamer");
                }
            }
            Err(e) => assert!(!cfg!(feature = "gstreamer") && e.to_string().contains("capture.kind"), "{e}"),
        }
    }
}

#[test]
fn every_key_is_documented() {
    let mut config = Config::default();
    // Optional keys are left out when unset; set them so they are listed too.
    config.capture.path = Some("a".into());
    config.capture.labels_path = Some("a".into());
    config.record.path = Some("a".into());
    config.metrics.report_path = Some("a".into());
    config.metrics.trace_path = Some("a".into());
    config.haptics.on_error = Some(sonoflow::pipeline::ErrorPolicy::SafeStop);
    config.haptics.settings.port = Some("a".into());
    config.segment.settings.model_dir = Some("a".into());
    config.segment.settings.bbox = Some([0.0, 0.0, 1.0, 1.0]);
    config.capture.roi_px = Some([0, 0, 1, 1]);
    config.capture.spacing_mm = Some([1.0, 1.0]);
    config.capture.gstreamer.pipeline = Some("a".into());
    config.capture.gstreamer.caps = Some("a".into());
    let recon = &mut config.reconstruct.settings;
    recon.plus_config = Some("a".into());
    (recon.output_origin_mm, recon.output_extent) = (Some([0.0; 3]), Some([0, 1, 0, 1, 0, 1]));
    (recon.clip_rectangle_origin_px, recon.clip_rectangle_size_px) = (Some([0, 0]), Some([1, 1]));
    let value = toml::Value::try_from(&config).unwrap();
    let mut all = Vec::new();
    keys(&value, "", &mut all);
    let readme = std::fs::read_to_string(repo("configs/README.md")).unwrap();
    let mut missing = Vec::new();
    for path in &all {
        let (section, key) = path.rsplit_once('.').unwrap();
        let stage_key = ["enabled", "on_error", "queue_capacity", "queue_policy"].contains(&key);
        let section_heading =
            if ["preprocess", "segment", "threshold", "reconstruct", "haptics"].contains(&section) && stage_key {
                "## Stage sections".to_string()
            } else {
                format!("[{section}]`")
            };
        if !readme.contains(&section_heading) || !readme.contains(&format!("| `{key}` |")) {
            missing.push(path.clone());
        }
    }
    assert!(all.len() > 20, "{all:?}");
    assert!(missing.is_empty(), "configs/README.md does not document: {missing:?}");
}
