"""Training views for distillation: real B-mode images (../shared/data/us-train), simulator sweeps
and PLUS recordings, each turned into a fixed number of (optionally augmented) views.

A view is the letterboxed 256 x 256 uint8 image the teacher and the student both see (resized so
the longest side is 256 with cv2 INTER_AREA, zero padded bottom/right: the official LiteMedSAM
pre-processing, whose min-max step is `plane()` below) and its label map (0 = background; the
us-train masks are 1, the simulator's labels keep their ids). `../shared/data/busi` is the
validation set and is never read here.

Ultrasound-specific augmentation (each drawn per view from a seeded generator, so the same seed
gives the same views): horizontal flip, crop/zoom, depth crop (the bottom of the image cut off, as
a shallower depth setting does), gain, gamma, a TGC ramp along depth, multiplicative speckle, blur.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import lmsref  # noqa: E402

SIDE = 256


@dataclass
class Source:
    name: str
    image: np.ndarray  # uint8 (H, W)
    labels: np.ndarray | None  # uint8 (H, W) or None when the source has no mask


def us_train(root: Path):
    """Every image of the corpus with its mask (mask_pixels = 0: a lesion-free image)."""
    import cv2

    with open(root / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            d, n = row["dataset"], row["name"]
            img = cv2.imread(str(root / d / "images" / f"{n}.png"), cv2.IMREAD_GRAYSCALE)
            mask = cv2.imread(str(root / d / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE)
            if img is None or mask is None:
                raise lmsref.ReferenceError(f"{root / d}: cannot read image or mask {n}.png")
            yield Source(f"us-train/{d}/{n}", img, (mask > 127).astype(np.uint8))


def sequence(path: Path, every: int, labels_path: Path | None = None):
    """Every `every`-th frame of a MetaImage sequence (PLUS recording or simulator sweep)."""
    _, frames = lmsref.read_mha(path)
    labels = lmsref.read_mha(labels_path)[1] if labels_path else None
    for i in range(0, len(frames), every):
        yield Source(f"{path.name}#{i}", frames[i], None if labels is None else labels[i])


def letterbox(image, labels):
    """Resize the longest side to 256 (INTER_AREA; labels nearest) and pad to 256 x 256."""
    import cv2

    h, w = image.shape
    nh, nw = lmsref.resized_size(h, w)
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        if labels is not None:
            labels = cv2.resize(labels, (nw, nh), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((SIDE, SIDE), np.uint8)
    out[:nh, :nw] = image
    lab = np.zeros((SIDE, SIDE), np.uint8)
    if labels is not None:
        lab[:nh, :nw] = labels
    return out, lab, (nh, nw)


def plane(image_u8, size):
    """The encoder's input plane of a letterboxed view: min-max over the image (not the padding)
    to [0, 1], padding 0, float32 (lmsref.preprocess without the resize, which is already done)."""
    nh, nw = size
    img = image_u8[:nh, :nw].astype(np.float64)
    lo, hi = img.min(), img.max()
    out = np.zeros((SIDE, SIDE), np.float32)
    out[:nh, :nw] = (img - lo) / max(hi - lo, 1e-8)
    return out


def augment(image, labels, rng):
    """One random ultrasound-style variation of (image, labels); uint8 in and out."""
    import cv2

    img = image.astype(np.float32)
    lab = labels
    h, w = img.shape
    if rng.random() < 0.5:
        img = img[:, ::-1]
        lab = None if lab is None else lab[:, ::-1]
    if rng.random() < 0.5:  # crop/zoom: keep 70-100 % of each side
        ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        img, lab = img[y0 : y0 + ch, x0 : x0 + cw], None if lab is None else lab[y0 : y0 + ch, x0 : x0 + cw]
    elif rng.random() < 0.3:  # depth crop: a shallower depth setting cuts off the bottom
        ch = int(h * rng.uniform(0.65, 0.9))
        img, lab = img[:ch], None if lab is None else lab[:ch]
    h, w = img.shape
    img = img / 255.0
    if rng.random() < 0.7:
        img = img ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.5:  # TGC ramp: gain changing linearly with depth
        top, bottom = rng.uniform(0.6, 1.4, size=2)
        img = img * np.linspace(top, bottom, h, dtype=np.float32)[:, None]
    if rng.random() < 0.5:
        img = img * rng.uniform(0.6, 1.4)
    if rng.random() < 0.4:  # multiplicative speckle (gamma-distributed, mean 1)
        looks = rng.uniform(3.0, 12.0)
        img = img * rng.gamma(looks, 1.0 / looks, size=img.shape).astype(np.float32)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.5, 1.5))
    img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img), None if lab is None else np.ascontiguousarray(lab)


def build_views(sources, augment_fraction, seed):
    """(images (N, 256, 256) u8, labels (N, 256, 256) u8, sizes (N, 2), has_mask (N,), names)."""
    images, labels, sizes, has_mask, names = [], [], [], [], []
    for i, s in enumerate(sources):
        rng = np.random.default_rng([seed, i])
        img, lab = s.image, s.labels
        if rng.random() < augment_fraction:
            img, lab = augment(img, lab, rng)
        out, out_lab, size = letterbox(img, lab)
        images.append(out)
        labels.append(out_lab)
        sizes.append(size)
        has_mask.append(s.labels is not None)
        names.append(s.name)
    return (np.stack(images), np.stack(labels), np.array(sizes, np.int32), np.array(has_mask), np.array(names))


def box_of(mask, margin, size, rng=None, jitter=0):
    """A box prompt (x0, y0, x1, y1) in the 256 frame around a mask, `margin` px wider, clipped to
    the image; with `rng`, each side moved by up to `jitter` px."""
    ys, xs = np.nonzero(mask)
    nh, nw = size
    b = np.array([xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin], np.float32)
    if rng is not None and jitter:
        b += rng.uniform(-jitter, jitter, size=4).astype(np.float32)
    b[0::2] = np.clip(b[0::2], 0, nw - 1)
    b[1::2] = np.clip(b[1::2], 0, nh - 1)
    if b[2] <= b[0]:
        b[2] = min(b[0] + 1, nw - 1)
    if b[3] <= b[1]:
        b[3] = min(b[1] + 1, nh - 1)
    return b
