"""Distil LiteMedSAM's image encoder into the real-time student (tools/distill/student.py).

    python tools/distill/train.py --cache DIR --out RUN [--stage1-steps N] [--stage2-steps N]

Stage 1: embedding distillation, MSE between the student's and the cached teacher embeddings
(tools/distill/embed.py) of the training views. Stage 2: mask-level fine-tuning through the
teacher's frozen prompt encoder and mask decoder, on views that have a mask: box prompts from the
mask (5 px margin, each side jittered) or one positive point, loss = BCE against the teacher's
probabilities from its own embedding + Dice + focal against the ground truth + `--emb-weight` x the
stage-1 MSE (keeps the embedding near the teacher's, so the shared decoder still fits it).

Deterministic: batches and prompts are drawn from generators seeded by (seed, step), so a resumed
run continues exactly as an uninterrupted one. RUN/checkpoint.pt is written every
`--checkpoint-every` steps and at the end; a rerun resumes from it. RUN/log.csv has one line per
logged step, RUN/loss.png the curves, RUN/student.pt the final weights.

Runs on the CPU (the recipe for a 2-core machine), on a GPU with --device cuda, and unchanged
under `torchrun --nproc-per-node K` (DistributedDataParallel: each rank draws its own batches,
gradients are averaged, rank 0 writes).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "reference"))
import data  # noqa: E402
import lmsref  # noqa: E402

torch = lmsref.import_torch()
import torch.nn.functional as F  # noqa: E402

from student import DEPTH, StudentEncoder, depth_of, keep_blocks, state_of  # noqa: E402


def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stage1-steps", type=int, default=3000)
    ap.add_argument("--stage2-steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--stage2-lr", type=float, default=4e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--emb-weight", type=float, default=20.0, help="embedding MSE weight in stage 2")
    ap.add_argument("--iou-weight", type=float, default=1.0,
                    help="stage 2: weight of the MSE between the decoder's IoU predictions from the student's and the teacher's embedding")
    ap.add_argument("--init", type=Path, help="start from these student weights (a student.pt) instead of from scratch")
    ap.add_argument("--depth", type=int, help=f"TinyViT blocks (default: as many as --init has, else {DEPTH})")
    ap.add_argument("--keep-blocks", help="with --init and a smaller --depth: which of its blocks to keep, e.g. 0,3")
    ap.add_argument("--point-fraction", type=float, default=0.2, help="stage-2 batches prompted by a point")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--validate-every", type=int, default=250)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--limit-views", type=int, default=0, help="use only the first N views (smoke runs)")
    return ap.parse_args()


class Dist:
    """torchrun's environment, or a single process."""

    def __init__(self, device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(f"cuda:{local}" if device == "cuda" else "cpu")
        if self.world > 1:
            torch.distributed.init_process_group("nccl" if device == "cuda" else "gloo")
            if device == "cuda":
                torch.cuda.set_device(self.device)

    @property
    def main(self):
        return self.rank == 0

    def wrap(self, model):
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value):
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.device)
        torch.distributed.all_reduce(t)
        return t.item() / self.world


class Views:
    def __init__(self, cache: Path, limit: int):
        v = np.load(cache / "views.npz")
        done = int((cache / "teacher.done").read_text())
        n = min(done, limit) if limit else done
        self.images, self.labels, self.sizes = v["images"][:n], v["labels"][:n], v["sizes"][:n]
        self.validation = v["validation"][:n]
        self.teacher = np.load(cache / "teacher.npy", mmap_mode="r")
        self.train = np.nonzero(~self.validation)[0]
        self.held_out = np.nonzero(self.validation)[0]
        masked = [i for i in self.train if self.labels[i].any()]
        self.masked = np.array(masked, dtype=np.int64)
        if len(self.train) == 0:
            raise SystemExit(f"{cache}: no embedded training views yet (run embed.py)")

    def check_masks(self, stage2_steps):
        if stage2_steps and len(self.masked) == 0:
            raise SystemExit("stage 2 needs training views with masks; these views have none (--stage2-steps 0?)")

    def planes(self, idx):
        return torch.from_numpy(np.stack([data.plane(self.images[i], self.sizes[i]) for i in idx]))[:, None]

    def targets(self, idx):
        return torch.from_numpy(np.stack([np.asarray(self.teacher[i], np.float32) for i in idx]))

    def channel_stats(self, count=200):
        sample = self.targets(self.train[:count])
        return sample.mean(dim=(0, 2, 3)), sample.std(dim=(0, 2, 3))


def lr_at(step, total, base, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def prompts(views, idx, rng, point):
    """Per view: a target mask (one label of the map) and its prompt in the 256 frame."""
    masks, boxes, points = [], [], []
    for i in idx:
        lab = views.labels[i]
        ids = np.unique(lab[lab > 0])
        m = lab == rng.choice(ids)
        masks.append(m)
        if point:
            ys, xs = np.nonzero(m)
            k = rng.integers(len(xs))
            points.append([xs[k], ys[k]])
        else:
            boxes.append(data.box_of(m, margin=5, size=views.sizes[i], rng=rng, jitter=5))
    target = torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]
    if point:
        coords = torch.tensor(np.array(points, np.float32))[:, None, :]
        return target, None, (coords, torch.ones(len(idx), 1))
    return target, torch.tensor(np.stack(boxes))[:, None, :], None


def decode(teacher, embedding, boxes, points):
    """(logits (B,1,256,256), predicted IoU (B,1))"""
    return lmsref.decode_batch(teacher, embedding, boxes, points)


def dice_loss(logits, target):
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    return (1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)).mean()


def focal_loss(logits, target, gamma=2.0, alpha=0.25):
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    pt = p * target + (1 - p) * (1 - target)
    a = alpha * target + (1 - alpha) * (1 - target)
    return (a * (1 - pt) ** gamma * ce).mean() * 2  # x2: the same order as the Dice term


def validate(model, views, dev):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(views.held_out), 8):
            idx = views.held_out[s : s + 8]
            total += F.mse_loss(model(views.planes(idx).to(dev)), views.targets(idx).to(dev), reduction="sum").item()
    model.train()
    return total / (len(views.held_out) * 256 * 64 * 64) if len(views.held_out) else float("nan")


def plot(log_path: Path, png: Path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("train: matplotlib missing, no loss.png (tools/distill/setup installs it)", flush=True)
        return
    rows = list(csv.DictReader(open(log_path)))
    if not rows:
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for stage, a in ((1, ax[0]), (2, ax[1])):
        r = [x for x in rows if int(x["stage"]) == stage]
        if not r:
            continue
        steps = [int(x["step"]) for x in r]
        for key in ("emb_mse", "val_mse", "teacher_bce", "dice", "focal", "iou_mse"):
            vals = [(s, float(x[key])) for s, x in zip(steps, r) if x.get(key) not in (None, "", "nan")]
            if vals:
                a.plot(*zip(*vals), label=key, marker="." if key == "val_mse" else None)
        a.set_yscale("log")
        a.set_xlabel("step")
        a.set_title(f"stage {stage}")
        a.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main():
    args = parse()
    torch.set_num_threads(args.threads)
    dist = Dist(args.device)
    dev = dist.device
    args.out.mkdir(parents=True, exist_ok=True)
    views = Views(args.cache, args.limit_views)
    views.check_masks(args.stage2_steps)
    torch.manual_seed(args.seed)
    init = state_of(torch.load(args.init, map_location=dev, weights_only=False)) if args.init else None
    depth = args.depth or (depth_of(init) if init else DEPTH)
    if init is not None and depth != depth_of(init):
        if not args.keep_blocks:
            raise SystemExit(f"train: --init has {depth_of(init)} blocks, --depth {depth}: say which with --keep-blocks")
        kept = [int(b) for b in args.keep_blocks.split(",") if b.strip().isdigit()]
        if len(kept) != depth or not all(b < depth_of(init) for b in kept):
            raise SystemExit(f"train: --keep-blocks {args.keep_blocks}: {depth} of blocks 0..{depth_of(init) - 1} expected")
        init = keep_blocks(init, kept)
    student = StudentEncoder(depth).to(dev)
    ckpt_path = args.out / "checkpoint.pt"
    log_path = args.out / "log.csv"
    total = args.stage1_steps + args.stage2_steps
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        student.load_state_dict(state["model"])
        start = state["step"]
        if dist.main:
            print(f"train: resuming at step {start} from {ckpt_path}", flush=True)
    elif init is not None:
        student.load_state_dict(init)
        start = 0
        if dist.main:
            print(f"train: starting from the weights in {args.init}", flush=True)
    else:
        mean, std = views.channel_stats()
        student.init_output_norm(mean, std)
        start = 0
    model = dist.wrap(student)
    teacher = None
    if args.stage2_steps:
        teacher, _ = lmsref.build_model()
        teacher = teacher.to(dev).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    decay = [p for n, p in student.named_parameters() if p.ndim > 1 and "attention_biases" not in n]
    no_decay = [p for n, p in student.named_parameters() if not (p.ndim > 1 and "attention_biases" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr
    )
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    fields = ["stage", "step", "lr", "emb_mse", "val_mse", "teacher_bce", "dice", "focal", "iou_mse", "seconds"]
    if dist.main and not log_path.exists():
        with open(log_path, "w", newline="") as f:
            csv.DictWriter(f, fields).writeheader()
    t0 = time.time() - (state["seconds"] if state else 0.0)
    model.train()
    for step in range(start, total):
        rng = np.random.default_rng([args.seed, step, dist.rank])
        stage = 1 if step < args.stage1_steps else 2
        if stage == 1:
            lr = lr_at(step, args.stage1_steps, args.lr, args.warmup)
            idx = rng.choice(views.train, size=args.batch)
        else:
            s2 = step - args.stage1_steps
            lr = lr_at(s2, args.stage2_steps, args.stage2_lr, min(args.warmup, args.stage2_steps // 10))
            idx = rng.choice(views.masked, size=args.batch)
        for g in opt.param_groups:
            g["lr"] = lr
        x, target = views.planes(idx).to(dev), views.targets(idx).to(dev)
        emb = model(x.expand(-1, 3, -1, -1))
        emb_mse = F.mse_loss(emb, target)
        row = {"stage": stage, "step": step + 1, "lr": f"{lr:.3g}", "emb_mse": "", "val_mse": ""}
        row.update({"teacher_bce": "", "dice": "", "focal": "", "iou_mse": ""})
        if stage == 1:
            loss = emb_mse
        else:
            point = rng.random() < args.point_fraction
            gt, boxes, points = prompts(views, idx, rng, point)
            gt = gt.to(dev)
            boxes = None if boxes is None else boxes.to(dev)
            points = None if points is None else tuple(t.to(dev) for t in points)
            with torch.no_grad():
                teacher_logits, teacher_iou = decode(teacher, target, boxes, points)
                soft = torch.sigmoid(teacher_logits)
            logits, iou = decode(teacher, emb, boxes, points)
            # The decoder's IoU prediction gates tracking (segment.iou_floor): a student whose
            # embedding makes it under-confident would have good masks flagged as lost.
            iou_mse = F.mse_loss(iou, teacher_iou)
            bce = F.binary_cross_entropy_with_logits(logits, soft)
            dl, fl = dice_loss(logits, gt), focal_loss(logits, gt)
            # LiteMedSAM was trained on boxes: from one click it mostly outlines nothing, so a
            # point batch learns the teacher's answer only (against the truth it would pull the
            # embedding away from what the shared decoder understands).
            loss = args.emb_weight * emb_mse + bce + args.iou_weight * iou_mse + (0.0 if point else dl + fl)
            row.update({"teacher_bce": f"{dist.mean(bce.item()):.5g}", "dice": f"{dist.mean(dl.item()):.5g}"})
            row["focal"] = f"{dist.mean(fl.item()):.5g}"
            row["iou_mse"] = f"{dist.mean(iou_mse.item()):.5g}"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        emb_value = dist.mean(emb_mse.item())
        done = step + 1
        logged = done % args.log_every == 0 or done == total or done == args.stage1_steps
        validated = done % args.validate_every == 0 or done == total or done == args.stage1_steps
        if dist.main and (logged or validated):
            row["emb_mse"] = f"{emb_value:.5g}"
            if validated:
                row["val_mse"] = f"{validate(student, views, dev):.5g}"
            row["seconds"] = f"{time.time() - t0:.0f}"
            with open(log_path, "a", newline="") as f:
                csv.DictWriter(f, fields).writerow(row)
            eta = (time.time() - t0) / (done - start) * (total - done) if done > start else 0
            extra = " ".join(f"{k} {row[k]}" for k in ("val_mse", "teacher_bce", "dice", "focal", "iou_mse") if row[k])
            print(f"train: stage {stage} step {done}/{total} lr {lr:.2g} emb_mse {emb_value:.4g} {extra} "
                  f"({time.time() - t0:.0f} s, {eta / 60:.1f} min left)", flush=True)
        if dist.main and (done % args.checkpoint_every == 0 or done == total or done == args.stage1_steps):
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": student.state_dict(), "optimizer": opt.state_dict(), "step": done,
                        "seconds": time.time() - t0, "args": vars(args)}, tmp)
            tmp.replace(ckpt_path)
            plot(log_path, args.out / "loss.png")
    if dist.main:
        torch.save(student.state_dict(), args.out / "student.pt")
        plot(log_path, args.out / "loss.png")
        print(f"train: done in {(time.time() - t0) / 60:.1f} min; weights {args.out / 'student.pt'}", flush=True)
    if dist.world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
