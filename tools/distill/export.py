"""Ship a trained student: sonoflow's weights file, the manifest loading checks, parity goldens.

    python tools/distill/export.py RUN/student.pt [--out engines/student] [--goldens tests/fixtures/student]

Writes OUT/student.bin (BatchNorm folded into the convolutions; the format of
src/model/weights.rs), OUT/manifest.json (sha256, tensor list, parameters, multiply-adds) and,
for every LiteMedSAM golden case in tests/fixtures/litemedsam/, the PyTorch student's outputs:
embedding channels 0..3 and the low-res logits through LiteMedSAM's prompt encoder and mask
decoder (tests/segment_parity.rs checks sonoflow's engine against them with the teacher's limits).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "reference"))
import lmsref  # noqa: E402

torch = lmsref.import_torch()
from student import count, folded_tensors, load_student, write_sfweights  # noqa: E402


def export_weights(model, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    tensors = folded_tensors(model)
    path = out / "student.bin"
    write_sfweights(path, tensors)
    params, macs = count(model)
    data = path.read_bytes()
    manifest = {
        "name": "student",
        "description": "sonoflow's real-time ultrasound image encoder, distilled from LiteMedSAM's (tools/distill)",
        "license": "Apache-2.0",
        "teacher": "litemedsam",
        "input_size": 256,
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "params": int(params),
        "macs": int(macs),
        "tensors": [{"name": n, "shape": list(t.shape)} for n, t in tensors],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"export: {path} ({len(data)} bytes, {params} parameters, {2 * macs / 1e9:.2f} GFLOPs per frame)")


def export_goldens(model, goldens: Path):
    teacher_dir = ROOT / "tests" / "fixtures" / "litemedsam"
    cases = json.loads((teacher_dir / "cases.json").read_text())
    teacher, _ = lmsref.build_model()
    goldens.mkdir(parents=True, exist_ok=True)
    out_cases = []
    for case in cases["cases"]:
        name = case["name"]
        h, w = case["frame"]["height"], case["frame"]["width"]
        frame = np.fromfile(teacher_dir / f"{name}.input.u8", dtype=np.uint8).reshape(h, w)
        x = lmsref.preprocess(frame)["tensor"]
        with torch.no_grad():
            emb = model(x)
        p = case["prompt"]
        points = labels = None
        if p.get("points_256"):
            points = [pt[:2] for pt in p["points_256"]]
            labels = [pt[2] for pt in p["points_256"]]
        logits, iou = lmsref.decode(teacher, emb, p.get("box_256"), points, labels)
        emb[0, :4].numpy().astype("<f4").tofile(goldens / f"{name}.embedding_slice.f32")
        logits[0, 0].numpy().astype("<f4").tofile(goldens / f"{name}.low_res_logits.f32")
        out_cases.append({"name": name, "prompt": p, "frame": case["frame"], "resized": case["resized"],
                          "iou_pred": float(iou[0, 0])})
        print(f"export: golden {name}: IoU {float(iou[0, 0]):.3f}")
    doc = {
        "format_version": 1,
        "note": "PyTorch student (tools/distill/student.py) on the inputs of tests/fixtures/litemedsam; written by tools/distill/export.py",
        "tolerances": cases["tolerances"],
        "cases": out_cases,
    }
    (goldens / "cases.json").write_text(json.dumps(doc, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path, help="student.pt (a state dict) or a training checkpoint.pt")
    ap.add_argument("--out", type=Path, default=ROOT / "engines" / "student")
    ap.add_argument("--goldens", type=Path, default=ROOT / "tests" / "fixtures" / "student")
    args = ap.parse_args()
    model = load_student(args.weights)
    model.eval()
    export_weights(model, args.out)
    export_goldens(model, args.goldens)


if __name__ == "__main__":
    main()
