#!/usr/bin/env python3
"""LiteMedSAM CPU benchmark: the PyTorch reference, ONNX Runtime on an ONNX export of the same
weights, and optionally sonoflow's own engine, timed in one invocation on the same input.

Usage (from the repository root; tools/bench/run sets up the environment first):
    tools/bench/run [--frames 30] [--warmup 5] [--case NAME] [--sonoflow "CMD"] [--json OUT.json]

What is timed, per frame, after the warm-up frames:
  encoder: preprocessed 1x3x256x256 float32 tensor -> 1x256x64x64 image embedding
  decoder: box prompt in the 256 frame + embedding -> 1x1x256x256 low-res logits and IoU
           (prompt encoder + mask decoder, multimask off)
Pre-processing (resize, normalise, pad) and post-processing (crop, resize back) are not timed.
PyTorch and ONNX Runtime take turns frame by frame (after their warm-up), so load from other
processes on the machine falls on both alike; the sonoflow command runs after them.
PyTorch runs with 2 threads; ONNX Runtime with intra_op_num_threads=2, inter_op_num_threads=1,
sequential execution and all graph optimisations.

--sonoflow "CMD" runs CMD through bash. CMD must print one JSON object on stdout:
    {"engine": "name", "encoder_ms": [..], "decoder_ms": [..]}
with one entry per timed frame (warm-up frames excluded). It is given the input through the
environment: SONOFLOW_BENCH_INPUT (Gray8 frame file, row-major), SONOFLOW_BENCH_WIDTH,
SONOFLOW_BENCH_HEIGHT, SONOFLOW_BENCH_BOX ("x0,y0,x1,y1" in frame pixels),
SONOFLOW_BENCH_FRAMES, SONOFLOW_BENCH_WARMUP, SONOFLOW_BENCH_THREADS (=2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

try:
    import numpy as np
except ImportError:
    sys.exit("bench: error: numpy is not importable; run tools/reference/setup and use the python it prints")

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "tools" / "reference"))
import lmsref  # noqa: E402
from lmsref import ReferenceError  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "litemedsam"
CACHE = REPO / "target" / "bench" / "litemedsam"
DEFAULT_CASE = "sim_s1_f18_lesion_box"
OPSET = 17
THREADS = 2


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Input
# ----------------------------------------------------------------------------------------------

def load_case(name):
    cases_path = FIXTURES / "cases.json"
    if not cases_path.is_file():
        raise ReferenceError(f"{cases_path} not found; generate the fixtures with tools/reference/make_goldens.py")
    doc = json.loads(cases_path.read_text())
    by_name = {c["name"]: c for c in doc["cases"]}
    if name not in by_name:
        raise ReferenceError(f"unknown case {name!r}; cases: {', '.join(by_name)}")
    case = by_name[name]
    if case["prompt"]["box"] is None or case["prompt"]["points"] is not None:
        raise ReferenceError(f"case {name} is not a box-only case; the benchmark times the box prompt path")
    w, h = case["frame"]["width"], case["frame"]["height"]
    path = FIXTURES / case["files"]["input"]["file"]
    frame = np.fromfile(path, dtype=np.uint8)
    if frame.size != w * h:
        raise ReferenceError(f"{path}: {frame.size} bytes, expected {w * h}")
    return case, path, frame.reshape(h, w)


# ----------------------------------------------------------------------------------------------
# ONNX export (cached)
# ----------------------------------------------------------------------------------------------

def export_onnx(model, torch):
    """Exports encoder and prompt-encoder+decoder once; reuses them while the weights, torch version
    and this script are unchanged."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(
        (lmsref.WEIGHTS_SHA256 + torch.__version__ + str(OPSET)).encode() + Path(__file__).read_bytes()
        + (REPO / "tools" / "reference" / "lmsref.py").read_bytes()
    ).hexdigest()
    enc_path, dec_path, stamp = CACHE / "encoder.onnx", CACHE / "decoder.onnx", CACHE / "export.key"
    if enc_path.is_file() and dec_path.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        log(f"using cached ONNX export in {CACHE}")
        return enc_path, dec_path

    class Decoder(torch.nn.Module):
        """Prompt encoder (box only) + mask decoder, multimask off."""

        def __init__(self, m):
            super().__init__()
            self.prompt_encoder = m.prompt_encoder
            self.mask_decoder = m.mask_decoder

        def forward(self, image_embeddings, boxes):
            return lmsref.decode_batch(self, image_embeddings, boxes, None)

    log(f"exporting ONNX (opset {OPSET}) to {CACHE}")
    stamp.unlink(missing_ok=True)
    image = torch.rand(1, 3, 256, 256)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        emb = model.image_encoder(image)
        tmp = enc_path.with_suffix(".onnx.tmp")
        torch.onnx.export(model.image_encoder, (image,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["image_embeddings"])
        tmp.replace(enc_path)
        tmp = dec_path.with_suffix(".onnx.tmp")
        box = torch.tensor([[[40.0, 50.0, 120.0, 140.0]]])
        torch.onnx.export(Decoder(model).eval(), (emb, box), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["image_embeddings", "boxes"], output_names=["low_res_logits", "iou_pred"])
        tmp.replace(dec_path)
    import onnx

    for p in (enc_path, dec_path):
        onnx.checker.check_model(str(p))
    stamp.write_text(key + "\n")
    return enc_path, dec_path


# ----------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------

class Engine:
    """One engine's encode() -> embedding and decode(embedding) -> (low_res_logits, iou)."""

    def __init__(self, name, encode, decode):
        self.name, self.encode, self.decode = name, encode, decode
        self.enc_ms, self.dec_ms = [], []
        self.out = self.embedding = None

    def frame(self, timed):
        t0 = time.perf_counter()
        emb = self.encode()
        t1 = time.perf_counter()
        out = self.decode(emb)
        t2 = time.perf_counter()
        if timed:
            self.enc_ms.append((t1 - t0) * 1e3)
            self.dec_ms.append((t2 - t1) * 1e3)
        self.embedding, self.out = np.asarray(emb), [np.asarray(o) for o in out]


def run_interleaved(engines, warmup, frames):
    """Warm-up frames per engine, then timed frames taking turns (engine A frame 1, engine B frame 1,
    A frame 2, ...), so that load from other processes falls on every engine alike."""
    for e in engines:
        log(f"warming up {e.name}")
        for _ in range(warmup):
            e.frame(False)
    log("timing " + " and ".join(e.name for e in engines) + ", frames interleaved")
    for _ in range(frames):
        for e in engines:
            e.frame(True)


def torch_engine(model, torch, tensor, box256):
    boxes = torch.tensor([[box256]], dtype=torch.float32)

    def encode():
        with torch.no_grad():
            return model.image_encoder(tensor)

    def decode(emb):
        with torch.no_grad():
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
            return model.mask_decoder(image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)

    return Engine(f"pytorch {torch.__version__}", encode, decode)


def ort_engine(enc_path, dec_path, tensor, box256):
    import onnxruntime as ort

    def session(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    enc_s, dec_s = session(enc_path), session(dec_path)
    image = tensor.numpy()
    boxes = np.asarray([[box256]], dtype=np.float32)

    def encode():
        return enc_s.run(None, {"image": image})[0]

    def decode(emb):
        return dec_s.run(None, {"image_embeddings": emb, "boxes": boxes})

    return Engine(f"onnxruntime {ort.__version__}", encode, decode)


def bench_sonoflow(cmd, input_path, case, warmup, frames):
    env = dict(os.environ)
    b = case["prompt"]["box"]
    env.update({
        "SONOFLOW_BENCH_INPUT": str(input_path),
        "SONOFLOW_BENCH_WIDTH": str(case["frame"]["width"]),
        "SONOFLOW_BENCH_HEIGHT": str(case["frame"]["height"]),
        "SONOFLOW_BENCH_BOX": ",".join(repr(float(v)) for v in b),
        "SONOFLOW_BENCH_FRAMES": str(frames),
        "SONOFLOW_BENCH_WARMUP": str(warmup),
        "SONOFLOW_BENCH_THREADS": str(THREADS),
    })
    log(f"running sonoflow command: {cmd}")
    r = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise ReferenceError(f"--sonoflow command exited {r.returncode}: {r.stderr.strip()[-1000:]}")
    doc = None
    text = r.stdout.strip()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        for line in reversed(text.splitlines()):  # tolerate log lines before the object
            try:
                doc = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if not isinstance(doc, dict):
        raise ReferenceError(f"--sonoflow command printed no JSON object on stdout (got {text[-300:]!r})")
    for key in ("engine", "encoder_ms", "decoder_ms"):
        if key not in doc:
            raise ReferenceError(f"--sonoflow output lacks {key!r}: {sorted(doc)}")
    enc, dec = doc["encoder_ms"], doc["decoder_ms"]
    if not (isinstance(enc, list) and isinstance(dec, list) and enc and len(enc) == len(dec)
            and all(isinstance(v, (int, float)) for v in enc + dec)):
        raise ReferenceError("--sonoflow output: encoder_ms and decoder_ms must be equally long non-empty lists of numbers")
    return str(doc["engine"]), [float(v) for v in enc], [float(v) for v in dec]


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def pct(values, q):
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarise(name, enc, dec):
    tot = [e + d for e, d in zip(enc, dec)]
    return {"engine": name, "frames": len(enc),
            "encoder_p50": pct(enc, 50), "encoder_p90": pct(enc, 90),
            "decoder_p50": pct(dec, 50), "decoder_p90": pct(dec, 90),
            "total_p50": pct(tot, 50), "total_p90": pct(tot, 90),
            "encoder_ms": enc, "decoder_ms": dec}


def print_table(rows, ort_row):
    head = f"{'engine':<28} {'frames':>6} {'enc p50':>9} {'enc p90':>9} {'dec p50':>9} {'dec p90':>9} " \
           f"{'total p50':>10} {'total p90':>10} {'p50/ORT':>8} {'p90/ORT':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['engine']:<28} {r['frames']:>6} {r['encoder_p50']:>9.1f} {r['encoder_p90']:>9.1f} "
              f"{r['decoder_p50']:>9.2f} {r['decoder_p90']:>9.2f} {r['total_p50']:>10.1f} {r['total_p90']:>10.1f} "
              f"{r['total_p50'] / ort_row['total_p50']:>8.2f} {r['total_p90'] / ort_row['total_p90']:>8.2f}")
    print("(milliseconds per frame; p50/ORT and p90/ORT: the engine's total over ONNX Runtime's total in this run)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=30, help="timed frames per engine (default 30)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed warm-up frames per engine (default 5)")
    ap.add_argument("--case", default=DEFAULT_CASE, help=f"fixture case used as input (default {DEFAULT_CASE})")
    ap.add_argument("--sonoflow", metavar="CMD", help="command timing sonoflow's engine (see above)")
    ap.add_argument("--rounds", type=int, default=10,
                    help="with --sonoflow: run its command this many times, each after a share of the "
                         "other engines' timed frames (default 10)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.rounds < 1:
        ap.error("--frames and --rounds must be >= 1 and --warmup >= 0")
    try:
        torch = lmsref.import_torch()
        case, input_path, frame = load_case(args.case)
        model, _ = lmsref.build_model()
        pre = lmsref.preprocess(frame)
        h, w = frame.shape
        box256 = lmsref.box_to_256(case["prompt"]["box"], h, w)
        enc_path, dec_path = export_onnx(model, torch)
        log(f"input: {args.case} ({w}x{h}, box {case['prompt']['box']} -> {box256}), "
            f"{args.warmup} warm-up + {args.frames} timed frames per engine, {THREADS} threads")

        load_before = os.getloadavg()
        pt = torch_engine(model, torch, pre["tensor"], box256)
        ox = ort_engine(enc_path, dec_path, pre["tensor"], box256)
        # Rounds: the timed frames are split so that sonoflow's command runs between chunks of the
        # other engines' frames, and a slow spell of the machine falls on every engine alike.
        rounds = min(args.rounds, args.frames) if args.sonoflow else 1
        s_name, s_enc, s_dec = None, [], []
        for r in range(rounds):
            chunk = args.frames // rounds + (1 if r < args.frames % rounds else 0)
            run_interleaved([pt, ox], args.warmup if r == 0 else 0, chunk)
            if args.sonoflow:
                log(f"round {r + 1} of {rounds}")
                s_name, enc, dec = bench_sonoflow(args.sonoflow, input_path, case, args.warmup, chunk)
                s_enc += enc
                s_dec += dec
        rows = [summarise(pt.name, pt.enc_ms, pt.dec_ms), summarise(ox.name, ox.enc_ms, ox.dec_ms)]
        t_low, t_iou, t_emb = pt.out[0], pt.out[1], pt.embedding
        o_low, o_iou, o_emb = ox.out[0], ox.out[1], ox.embedding
        if args.sonoflow:
            rows.append(summarise(s_name, s_enc, s_dec))
    except ReferenceError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1

    load_after = os.getloadavg()
    # Agreement of the ONNX export with PyTorch, and of both with the committed golden.
    golden = np.fromfile(FIXTURES / case["files"]["low_res_logits"]["file"], dtype="<f4").reshape(256, 256)
    check = {
        "onnx_vs_torch_low_res_logits_max_abs": float(np.abs(o_low - t_low).max()),
        "onnx_vs_torch_iou_abs": float(np.abs(o_iou - t_iou).max()),
        "onnx_vs_torch_embedding_max_abs": float(np.abs(o_emb - t_emb).max()),
        "onnx_vs_torch_embedding_rel_l2": float(np.linalg.norm((o_emb - t_emb).astype(np.float64))
                                                / np.linalg.norm(t_emb.astype(np.float64))),
        "torch_vs_golden_low_res_logits_max_abs": float(np.abs(t_low[0, 0] - golden).max()),
    }
    print()
    print(f"LiteMedSAM CPU benchmark, input {args.case} ({w}x{h}), {os.cpu_count()} CPUs visible, {THREADS} threads per engine")
    print(f"1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (other processes share these CPUs)")
    print_table(rows, rows[1])
    print()
    print(f"ONNX Runtime vs PyTorch: low-res logits max |delta| {check['onnx_vs_torch_low_res_logits_max_abs']:.3g}, "
          f"IoU |delta| {check['onnx_vs_torch_iou_abs']:.3g}, embedding max |delta| {check['onnx_vs_torch_embedding_max_abs']:.3g} "
          f"(relative L2 {check['onnx_vs_torch_embedding_rel_l2']:.3g})")
    print(f"PyTorch vs committed golden: low-res logits max |delta| {check['torch_vs_golden_low_res_logits_max_abs']:.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps({"case": args.case, "threads": THREADS, "load_average_1min": [load_before[0], load_after[0]],
                                                "rows": rows, "check": check}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
