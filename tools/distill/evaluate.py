"""Quality of the student against the teacher and the truth, with the official LiteMedSAM pre- and
post-processing (tools/reference/lmsref.py) and LiteMedSAM's prompt encoder and mask decoder.

    python tools/distill/evaluate.py RUN/student.pt [--json OUT.json]

- BUSI (../shared/data/busi, 30 real breast images never trained on): box = the expert mask's
  bounding box + 5 px; Dice of student and teacher masks against the expert masks, and of the
  student's against the teacher's.
- Simulator frames (`sonoflow simulate --seed 3`, a sweep no training view came from): every 5th
  frame showing at least 200 pixels of a structure, box = that structure's box + 5 px; Dice against
  the simulator's truth.
- PLUS recordings (../shared/data/plus; the teacher has no truth there): every 4th frame, box = the
  middle half of the image; Dice of the student's masks against the teacher's.
Teacher embeddings come from sonoflow's LiteMedSAM engine (`sonoflow model embed`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "reference"))
import lmsref  # noqa: E402

torch = lmsref.import_torch()
from embed import SonoflowTeacher  # noqa: E402
from student import load_student  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * (a & b).sum() / s


def box_of(mask, margin):
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return [max(0, xs.min() - margin), max(0, ys.min() - margin), min(w - 1, xs.max() + margin), min(h - 1, ys.max() + margin)]


class Models:
    def __init__(self, student_weights, sonoflow):
        self.teacher, _ = lmsref.build_model()
        self.student = load_student(student_weights)
        self.student.eval()
        self.embed = SonoflowTeacher(sonoflow)

    def masks(self, frame, box):
        """(teacher mask, student mask) of a Gray8 frame for a box in frame pixels."""
        pre = lmsref.preprocess(frame)
        plane = pre["tensor"][0, 0].numpy()
        t_emb = torch.from_numpy(np.ascontiguousarray(self.embed(plane)))[None]
        with torch.no_grad():
            s_emb = self.student(pre["tensor"])
        h, w = frame.shape
        box256 = lmsref.box_to_256(box, h, w)
        out = []
        for emb in (t_emb, s_emb):
            low, _ = lmsref.decode(self.teacher, emb, box256)
            logits = lmsref.postprocess(self.teacher, low, pre["new_size"], pre["original_size"])
            out.append(lmsref.threshold(logits).numpy())
        return out


def busi(models):
    import cv2

    rows = []
    for img_path in sorted((SHARED / "busi" / "images").glob("*.png")):
        frame = cv2.imread(str(img_path), cv2.IMREAD_GRAYSCALE)
        truth = cv2.imread(str(SHARED / "busi" / "masks" / img_path.name), cv2.IMREAD_GRAYSCALE) > 127
        t, s = models.masks(frame, box_of(truth, 5))
        rows.append((dice(t, truth), dice(s, truth), dice(s, t)))
    r = np.array(rows)
    return {"images": len(rows), "teacher_dice": r[:, 0].mean(), "student_dice": r[:, 1].mean(),
            "student_vs_teacher_dice": r[:, 2].mean(), "student_dice_min": r[:, 1].min(),
            "teacher_dice_min": r[:, 0].min()}


def simulator(models, sonoflow):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.mha"
        subprocess.run([sonoflow, "simulate", "--out", str(path), "--frames", "120", "--seed", "3"], check=True,
                       stderr=subprocess.DEVNULL)
        _, frames = lmsref.read_mha(path)
        _, labels = lmsref.read_mha(path.with_name("sim.labels.mha"))
    rows = {}
    for i in range(0, len(frames), 5):
        for label in np.unique(labels[i][labels[i] > 0]):
            truth = labels[i] == label
            if truth.sum() < 200:
                continue
            t, s = models.masks(frames[i], box_of(truth, 5))
            rows.setdefault(int(label), []).append((dice(t, truth), dice(s, truth)))
    return {f"label_{k}": {"frames": len(v), "teacher_dice": float(np.mean([a for a, _ in v])),
                           "student_dice": float(np.mean([b for _, b in v]))} for k, v in rows.items()}


def plus(models):
    rows = []
    for rec in sorted((SHARED / "plus").glob("*.igs.mha")):
        _, frames = lmsref.read_mha(rec)
        for i in range(0, len(frames), 4):
            h, w = frames[i].shape
            t, s = models.masks(frames[i], [w // 4, h // 4, 3 * w // 4, 3 * h // 4])
            rows.append(dice(s, t))
    return {"frames": len(rows), "student_vs_teacher_dice": float(np.mean(rows)), "min": float(np.min(rows))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sonoflow", default=str(ROOT / "target" / "release" / "sonoflow"))
    ap.add_argument("--only", choices=["busi", "simulator", "plus"], action="append")
    args = ap.parse_args()
    models = Models(args.weights, args.sonoflow)
    result = {}
    for name in args.only or ["busi", "simulator", "plus"]:
        result[name] = {"busi": lambda: busi(models), "simulator": lambda: simulator(models, args.sonoflow),
                        "plus": lambda: plus(models)}[name]()
        print(f"evaluate: {name}: {json.dumps(result[name], default=float)}", flush=True)
    models.embed.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
