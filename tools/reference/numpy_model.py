#!/usr/bin/env python3
"""A second LiteMedSAM implementation in plain NumPy (float32), written from tools/reference/README.md
and not from the PyTorch modules, run on the committed fixtures and compared with them.

It checks the description the Rust engine follows: if this passes, the README's pre-processing,
encoder, prompt encoder, decoder and post-processing are complete enough to reproduce the goldens
within their tolerances. It also checks the README's description of cv2's INTER_AREA against
cv2.resize on many sizes.

PyTorch is used only to read the checkpoint and for erf (GELU); OpenCV only for the comparison.

Usage: ~/.cache/sonoflow/ref-venv/bin/python tools/reference/numpy_model.py [--case NAME]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

try:
    import numpy as np
except ImportError:
    sys.exit("numpy_model: error: numpy is not importable; run tools/reference/setup and use the python it prints")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lmsref  # noqa: E402

FIXTURES = HERE.parent.parent / "tests" / "fixtures" / "litemedsam"
F32 = np.float32


# ----------------------------------------------------------------------------------------------
# Pre-processing: cv2 INTER_AREA on uint8 (README section 1)
# ----------------------------------------------------------------------------------------------

def area_table(n_src, n_dst):
    """Shrinking weight table: list per destination index of (source index, float32 weight)."""
    s = n_src / n_dst
    table = []
    for d in range(n_dst):
        f1 = d * s
        f2 = f1 + s
        cell = min(s, n_src - f1)
        i1 = math.ceil(f1)
        i2 = min(math.floor(f2), n_src - 1)
        i1 = min(i1, i2)
        entries = []
        if i1 - f1 > 1e-3:
            entries.append((i1 - 1, F32((i1 - f1) / cell)))
        for i in range(i1, i2):
            entries.append((i, F32(1.0 / cell)))
        if f2 - i2 > 1e-3:
            entries.append((i2, F32(min(min(f2 - i2, 1.0), cell) / cell)))
        table.append(entries)
    return table


def shrink_area(src, new_h, new_w):
    h, w = src.shape
    xt, yt = area_table(w, new_w), area_table(h, new_h)
    k = max(len(e) for e in xt)
    idx = np.zeros((new_w, k), dtype=np.int64)
    wt = np.zeros((new_w, k), dtype=F32)  # padding entries: weight 0 adds +0.0, exact
    for d, e in enumerate(xt):
        for j, (i, a) in enumerate(e):
            idx[d, j], wt[d, j] = i, a
    s = src.astype(F32)
    buf = np.zeros((h, new_w), dtype=F32)  # horizontal pass for every source row, in table order
    for j in range(k):
        buf = buf + s[:, idx[:, j]] * wt[:, j]
    out = np.zeros((new_h, new_w), dtype=F32)
    for d, e in enumerate(yt):
        acc = np.zeros(new_w, dtype=F32)
        for i, b in e:
            acc = acc + F32(b) * buf[i]
        out[d] = acc
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # saturate_cast: round half to even


def shrink_area_integer(src, new_h, new_w):
    h, w = src.shape
    sy, sx = h // new_h, w // new_w
    blocks = src[: new_h * sy, : new_w * sx].astype(np.int64).reshape(new_h, sy, new_w, sx).sum(axis=(1, 3))
    if (sy, sx) == (2, 2):  # OpenCV's 2x2 fast path: integer rounding, ties up
        return ((blocks + 2) >> 2).astype(np.uint8)
    return np.clip(np.rint(blocks.astype(F32) * F32(1.0 / (sx * sy))), 0, 255).astype(np.uint8)


ENLARGE_VERTICAL = "simd"


def enlarge_area(src, new_h, new_w):
    """INTER_AREA when enlarging: bilinear with 'area' coefficients, 11-bit fixed point."""
    h, w = src.shape

    def coeffs(n_src, n_dst):
        inv = n_dst / n_src  # destination pixels per source pixel
        s = n_src / n_dst
        i0 = np.zeros(n_dst, dtype=np.int64)
        c = np.zeros((n_dst, 2), dtype=np.int64)
        for d in range(n_dst):
            si = math.floor(d * s)
            f = F32((d + 1) - (si + 1) * inv)
            f = F32(0) if f <= 0 else F32(f - math.floor(f))
            if si >= n_src - 1:  # clamp at the border
                si, f = n_src - 1, F32(0)
            i0[d] = si
            c[d] = [int(np.rint(F32(1 - f) * 2048)), int(np.rint(f * 2048))]
        return i0, c

    x0, cx = coeffs(w, new_w)
    y0, cy = coeffs(h, new_h)
    s = src.astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    rows = s[:, x0] * cx[:, 0] + s[:, x1] * cx[:, 1]  # (h, new_w), scale 2048
    y1 = np.minimum(y0 + 1, h - 1)
    if ENLARGE_VERTICAL == "simd":
        # OpenCV's SIMD vertical pass: 16-bit high multiplies of the rows shifted right by 4.
        v = ((rows[y0] >> 4) * cy[:, 0:1] >> 16) + ((rows[y1] >> 4) * cy[:, 1:2] >> 16)
        return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)
    v = rows[y0] * cy[:, 0:1] + rows[y1] * cy[:, 1:2]  # scale 2048^2
    return np.clip((v + (1 << 21)) >> 22, 0, 255).astype(np.uint8)


def cv2_inter_area(src, new_h, new_w):
    h, w = src.shape
    if (h, w) == (new_h, new_w):
        return src.copy()
    sx, sy = w / new_w, h / new_h
    if sx >= 1 and sy >= 1:
        if abs(sx - round(sx)) < 2.220446049250313e-16 and abs(sy - round(sy)) < 2.220446049250313e-16:
            return shrink_area_integer(src, new_h, new_w)
        return shrink_area(src, new_h, new_w)
    return enlarge_area(src, new_h, new_w)


def preprocess(frame):
    h, w = frame.shape
    scale = 256 * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    r = cv2_inter_area(frame, newh, neww)
    lo, hi = int(r.min()), int(r.max())
    norm = (r.astype(F32) - F32(lo)) / F32(max(hi - lo, 1e-8))
    x = np.zeros((3, 256, 256), dtype=F32)
    x[:, :newh, :neww] = norm
    padded_u8 = np.zeros((256, 256), dtype=np.uint8)
    padded_u8[:newh, :neww] = r
    return x, padded_u8, (newh, neww)


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------

class Weights:
    def __init__(self):
        torch = lmsref.import_torch()
        _, path = lmsref.build_model()
        sd = torch.load(path, map_location="cpu", weights_only=True)
        self.t = {k: v.numpy() for k, v in sd.items()}

    def __getitem__(self, k):
        return self.t[k]


def erf(x):
    import torch

    return torch.special.erf(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def gelu(x):
    return F32(0.5) * x * (F32(1) + erf(x / F32(math.sqrt(2.0))))


def relu(x):
    return np.maximum(x, F32(0))


def layernorm(x, w, b, eps):
    u = x.mean(-1, keepdims=True)
    d = x - u
    s = (d * d).mean(-1, keepdims=True)
    return d / np.sqrt(s + F32(eps)) * w + b


def layernorm2d(x, w, b, eps=1e-6):  # x (C, H, W)
    u = x.mean(0, keepdims=True)
    d = x - u
    s = (d * d).mean(0, keepdims=True)
    return d / np.sqrt(s + F32(eps)) * w[:, None, None] + b[:, None, None]


def linear(x, W, p):
    y = x @ W[p + ".weight"].T
    if p + ".bias" in W.t:
        y = y + W[p + ".bias"]
    return y


def softmax(x):
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(-1, keepdims=True)


def conv1x1(x, w):
    c, h, ww = x.shape
    return (w.reshape(w.shape[0], -1) @ x.reshape(c, h * ww)).reshape(w.shape[0], h, ww)


def dwconv3x3(x, w, stride=1):
    c, h, ww = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    oh, ow = (h + 2 - 3) // stride + 1, (ww + 2 - 3) // stride + 1
    out = np.zeros((c, oh, ow), dtype=F32)
    for dy in range(3):
        for dx in range(3):
            patch = xp[:, dy: dy + stride * (oh - 1) + 1: stride, dx: dx + stride * (ow - 1) + 1: stride]
            out += w[:, 0, dy, dx][:, None, None] * patch
    return out


def conv3x3(x, w):  # full conv, padding 1, no bias
    c, h, ww = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], h * ww), dtype=F32)
    for dy in range(3):
        for dx in range(3):
            out += w[:, :, dy, dx] @ xp[:, dy: dy + h, dx: dx + ww].reshape(c, h * ww)
    return out.reshape(w.shape[0], h, ww)


def batchnorm(x, W, p, eps=1e-5):
    a = W[p + ".weight"] / np.sqrt(W[p + ".running_var"] + F32(eps))
    b = W[p + ".bias"] - W[p + ".running_mean"] * a
    return x * a[:, None, None] + b[:, None, None]


def conv_bn(x, W, p, kind="1x1", stride=1):
    w = W[p + ".c.weight"]
    y = conv1x1(x, w) if kind == "1x1" else dwconv3x3(x, w, stride)
    return batchnorm(y, W, p + ".bn")


# ----------------------------------------------------------------------------------------------
# Encoder (README section 2)
# ----------------------------------------------------------------------------------------------

def mbconv(x, W, p):
    h = gelu(conv_bn(x, W, p + ".conv1"))
    h = gelu(conv_bn(h, W, p + ".conv2", "dw"))
    h = conv_bn(h, W, p + ".conv3")
    return gelu(h + x)


def patch_merging(x, W, p, out_dim):  # x (C, H, W) -> (C', H', W')
    stride = 1 if out_dim in (320, 448, 576) else 2
    h = gelu(conv_bn(x, W, p + ".conv1"))
    h = gelu(conv_bn(h, W, p + ".conv2", "dw", stride))
    return conv_bn(h, W, p + ".conv3")


def bias_index(ws):
    ys, xs = np.divmod(np.arange(ws * ws), ws)
    return np.abs(ys[:, None] - ys[None, :]) * ws + np.abs(xs[:, None] - xs[None, :])


def window_attention(xw, W, p, heads):  # xw (nwin, N, C)
    nwin, n, c = xw.shape
    kd = c // heads
    ws = int(round(math.sqrt(n)))
    x = layernorm(xw, W[p + ".norm.weight"], W[p + ".norm.bias"], 1e-5)
    qkv = linear(x, W, p + ".qkv").reshape(nwin, n, heads, 3 * kd)
    q = qkv[..., :kd].transpose(0, 2, 1, 3)
    k = qkv[..., kd: 2 * kd].transpose(0, 2, 1, 3)
    v = qkv[..., 2 * kd:].transpose(0, 2, 1, 3)
    ab = W[p + ".attention_biases"][:, bias_index(ws)]  # heads, N, N
    attn = softmax((q @ k.transpose(0, 1, 3, 2)) * F32(kd ** -0.5) + ab)
    out = (attn @ v).transpose(0, 2, 1, 3).reshape(nwin, n, c)
    return linear(out, W, p + ".proj")


def tinyvit_block(x, W, p, heads, ws):  # x (H, W, C)
    h, w, c = x.shape
    res = x
    pb, pr = (ws - h % ws) % ws, (ws - w % ws) % ws
    xp = np.pad(x, ((0, pb), (0, pr), (0, 0)))  # zeros BEFORE the attention's LayerNorm
    nh, nw = (h + pb) // ws, (w + pr) // ws
    win = xp.reshape(nh, ws, nw, ws, c).transpose(0, 2, 1, 3, 4).reshape(nh * nw, ws * ws, c)
    a = window_attention(win, W, p + ".attn", heads)
    a = a.reshape(nh, nw, ws, ws, c).transpose(0, 2, 1, 3, 4).reshape(h + pb, w + pr, c)[:h, :w]
    x = res + a
    x = conv_bn(x.transpose(2, 0, 1), W, p + ".local_conv", "dw").transpose(1, 2, 0)
    m = layernorm(x, W[p + ".mlp.norm.weight"], W[p + ".mlp.norm.bias"], 1e-5)
    m = linear(gelu(linear(m, W, p + ".mlp.fc1")), W, p + ".mlp.fc2")
    return x + m


def encoder(x, W):  # x (3, 256, 256) -> (256, 64, 64)
    e = "image_encoder"
    x = conv_bn(x, W, f"{e}.patch_embed.seq.0")
    x = gelu(x)
    x = conv_bn(x, W, f"{e}.patch_embed.seq.2")
    for b in range(2):
        x = mbconv(x, W, f"{e}.layers.0.blocks.{b}")
    x = patch_merging(x, W, f"{e}.layers.0.downsample", 128)
    stages = [(1, 2, 4, 7, 160), (2, 6, 5, 14, 320), (3, 2, 10, 7, None)]
    for i, depth, heads, ws, out_dim in stages:
        t = x.transpose(1, 2, 0)  # (H, W, C) tokens
        for b in range(depth):
            t = tinyvit_block(t, W, f"{e}.layers.{i}.blocks.{b}", heads, ws)
        x = t.transpose(2, 0, 1)
        if out_dim:
            x = patch_merging(x, W, f"{e}.layers.{i}.downsample", out_dim)
    x = conv1x1(x, W[f"{e}.neck.0.weight"])
    x = layernorm2d(x, W[f"{e}.neck.1.weight"], W[f"{e}.neck.1.bias"])
    x = conv3x3(x, W[f"{e}.neck.2.weight"])
    return layernorm2d(x, W[f"{e}.neck.3.weight"], W[f"{e}.neck.3.bias"])


# ----------------------------------------------------------------------------------------------
# Prompt encoder and mask decoder (README sections 3 and 4)
# ----------------------------------------------------------------------------------------------

def pe(coords01, W):  # (..., 2) in [0, 1] -> (..., 256)
    g = W["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    c = F32(2) * coords01.astype(F32) - F32(1)
    p = F32(2 * np.pi) * (c @ g)
    return np.concatenate([np.sin(p), np.cos(p)], axis=-1)


def prompt_tokens(W, box256=None, points256=None, labels=None):
    toks = []
    pw = lambda i: W[f"prompt_encoder.point_embeddings.{i}.weight"][0]  # noqa: E731
    if points256 is not None:
        pts = np.asarray(points256, dtype=F32) + F32(0.5)
        labs = list(labels)
        if box256 is None:
            pts = np.concatenate([pts, np.zeros((1, 2), dtype=F32)])
            labs.append(-1)
        emb = pe(pts / F32(256), W)
        for e, lab in zip(emb, labs):
            if lab == -1:
                toks.append(W["prompt_encoder.not_a_point_embed.weight"][0].copy())
            else:
                toks.append(e + pw(0 if lab == 0 else 1))
    if box256 is not None:
        corners = (np.asarray(box256, dtype=F32) + F32(0.5)).reshape(2, 2) / F32(256)
        emb = pe(corners, W)
        toks += [emb[0] + pw(2), emb[1] + pw(3)]
    return np.stack(toks).astype(F32)


def dense_pe(W):
    g = (np.arange(64, dtype=F32) + F32(0.5)) / F32(64)
    xy = np.stack(np.meshgrid(g, g, indexing="xy"), axis=-1)  # [i, j] = (x_j, y_i)
    return pe(xy, W).transpose(2, 0, 1)  # (256, 64, 64)


def dec_attention(q, k, v, W, p, heads=8):
    q, k, v = linear(q, W, p + ".q_proj"), linear(k, W, p + ".k_proj"), linear(v, W, p + ".v_proj")
    d = q.shape[-1]
    c = d // heads
    sh = lambda t: t.reshape(t.shape[0], heads, c).transpose(1, 0, 2)  # noqa: E731
    attn = softmax((sh(q) @ sh(k).transpose(0, 2, 1)) / F32(math.sqrt(c)))
    out = (attn @ sh(v)).transpose(1, 0, 2).reshape(-1, d)
    return linear(out, W, p + ".out_proj")


def ln(x, W, p):
    return layernorm(x, W[p + ".weight"], W[p + ".bias"], 1e-5)


def mlp(x, W, p, n=3):
    for i in range(n):
        x = linear(x, W, f"{p}.layers.{i}")
        if i < n - 1:
            x = relu(x)
    return x


def conv_transpose2x2(x, w, b):  # x (Cin, H, W), w (Cin, Cout, 2, 2)
    cin, h, ww = x.shape
    cout = w.shape[1]
    y = np.einsum("ihw,iokl->ohkwl", x, w, optimize=True).reshape(cout, 2 * h, 2 * ww)
    return y + b[:, None, None]


def decoder(emb, sparse, W):
    d = "mask_decoder"
    tokens = np.concatenate([W[f"{d}.iou_token.weight"], W[f"{d}.mask_tokens.weight"], sparse]).astype(F32)
    src = emb + W["prompt_encoder.no_mask_embed.weight"][0][:, None, None]
    keys = src.reshape(256, 4096).T
    kpe = dense_pe(W).reshape(256, 4096).T
    queries, qpe = tokens, tokens
    for i in range(2):
        p = f"{d}.transformer.layers.{i}"
        if i == 0:
            queries = dec_attention(queries, queries, queries, W, p + ".self_attn")
        else:
            q = queries + qpe
            queries = queries + dec_attention(q, q, queries, W, p + ".self_attn")
        queries = ln(queries, W, p + ".norm1")
        queries = ln(queries + dec_attention(queries + qpe, keys + kpe, keys, W, p + ".cross_attn_token_to_image"),
                     W, p + ".norm2")
        m = linear(relu(linear(queries, W, p + ".mlp.lin1")), W, p + ".mlp.lin2")
        queries = ln(queries + m, W, p + ".norm3")
        keys = ln(keys + dec_attention(keys + kpe, queries + qpe, queries, W, p + ".cross_attn_image_to_token"),
                  W, p + ".norm4")
    p = f"{d}.transformer"
    queries = ln(queries + dec_attention(queries + qpe, keys + kpe, keys, W, p + ".final_attn_token_to_image"),
                 W, p + ".norm_final_attn")
    up = keys.T.reshape(256, 64, 64)
    up = conv_transpose2x2(up, W[f"{d}.output_upscaling.0.weight"], W[f"{d}.output_upscaling.0.bias"])
    up = gelu(layernorm2d(up, W[f"{d}.output_upscaling.1.weight"], W[f"{d}.output_upscaling.1.bias"]))
    up = gelu(conv_transpose2x2(up, W[f"{d}.output_upscaling.3.weight"], W[f"{d}.output_upscaling.3.bias"]))
    hyper = mlp(queries[1], W, f"{d}.output_hypernetworks_mlps.0")  # mask token 0 only
    low_res = (hyper @ up.reshape(32, 65536)).reshape(256, 256)
    iou = mlp(queries[0], W, f"{d}.iou_prediction_head")[0]
    return low_res, iou


def bilinear(x, out_h, out_w):  # align_corners=False, no antialias
    in_h, in_w = x.shape

    def axis(n_in, n_out):
        scale = F32(n_in / n_out)
        src = np.maximum(scale * (np.arange(n_out, dtype=F32) + F32(0.5)) - F32(0.5), F32(0))
        i0 = np.floor(src).astype(np.int64)
        l1 = src - i0.astype(F32)
        return i0, np.minimum(i0 + 1, n_in - 1), F32(1) - l1, l1

    y0, y1, ly0, ly1 = axis(in_h, out_h)
    x0, x1, lx0, lx1 = axis(in_w, out_w)
    top = lx0 * x[y0][:, x0] + lx1 * x[y0][:, x1]
    bot = lx0 * x[y1][:, x0] + lx1 * x[y1][:, x1]
    return ly0[:, None] * top + ly1[:, None] * bot


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------

def check_inter_area():
    import cv2

    rng = np.random.default_rng(0)
    sizes = [(820, 616), (640, 480), (320, 240), (300, 200), (257, 100), (100, 257), (1000, 37),
             (512, 512), (768, 576), (512, 384), (192, 250), (200, 150), (128, 128), (255, 255), (60, 90)]
    ok = True
    print("cv2 INTER_AREA vs this description (random uint8 images, W x H -> new W x H):")
    for w, h in sizes:
        img = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        newh, neww = lmsref.resized_size(h, w)
        ref = cv2.resize(img, (neww, newh), interpolation=cv2.INTER_AREA)
        got = cv2_inter_area(img, newh, neww)
        sx, sy = w / neww, h / newh
        path = ("copy" if (sx, sy) == (1, 1) else "shrink-integer" if sx >= 1 and sy >= 1 and sx == int(sx)
                and sy == int(sy) else "shrink" if sx >= 1 and sy >= 1 else "enlarge")
        diff = np.abs(ref.astype(int) - got.astype(int))
        print(f"  {w:4d}x{h:<4d} -> {neww:3d}x{newh:<3d} {path:<15} mismatched pixels {int((diff > 0).sum()):6d}"
              f" / {diff.size}, max |diff| {int(diff.max())}")
        ok &= diff.max() == 0
    bad = 0
    for _ in range(100):
        w, h = int(rng.integers(20, 1200)), int(rng.integers(20, 1200))
        img = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        newh, neww = lmsref.resized_size(h, w)
        bad += not np.array_equal(cv2.resize(img, (neww, newh), interpolation=cv2.INTER_AREA),
                                  cv2_inter_area(img, newh, neww))
    print(f"  100 random sizes 20..1199 x 20..1199: {bad} differ")
    return ok and bad == 0


def run_case(W, case):
    w, h = case["frame"]["width"], case["frame"]["height"]
    frame = np.fromfile(FIXTURES / case["files"]["input"]["file"], dtype=np.uint8).reshape(h, w)
    x, resized, (newh, neww) = preprocess(frame)
    report = {}
    ok = True
    if "resized" in case["files"]:
        ref = np.fromfile(FIXTURES / case["files"]["resized"]["file"], dtype=np.uint8).reshape(256, 256)
        n = int((ref != resized).sum())
        report["resized mismatched px"] = n
        if n:  # continue from cv2's resize so the network is still checked
            lo, hi = int(ref[:newh, :neww].min()), int(ref[:newh, :neww].max())
            x = np.zeros((3, 256, 256), dtype=F32)
            x[:, :newh, :neww] = (ref[:newh, :neww].astype(F32) - F32(lo)) / F32(max(hi - lo, 1e-8))
    st = case["input_stats"]
    samples = max(abs(float(x[tuple(s["chw"])]) - s["value"]) for s in st["samples"])
    report["input sum |d|"] = abs(float(x.astype(np.float64).sum()) - st["sum"])
    report["input samples max |d|"] = samples
    ok &= samples == 0.0

    emb = encoder(x, W)
    ref = np.fromfile(FIXTURES / case["files"]["embedding_slice"]["file"], dtype="<f4").reshape(4, 64, 64)
    rel = float(np.linalg.norm((emb[:4] - ref).astype(np.float64)) / np.linalg.norm(ref.astype(np.float64)))
    report["embedding slice rel L2"] = rel
    ok &= rel <= 1e-5

    p = case["prompt"]
    pts = labels = None
    if p["points_256"]:
        pts = [q[:2] for q in p["points_256"]]
        labels = [int(q[2]) for q in p["points_256"]]
    sparse = prompt_tokens(W, p["box_256"], pts, labels)
    low_res, iou = decoder(emb, sparse, W)
    ref = np.fromfile(FIXTURES / case["files"]["low_res_logits"]["file"], dtype="<f4").reshape(256, 256)
    d = float(np.abs(low_res - ref).max())
    report["low_res max |d|"] = d
    ok &= d <= 1e-3
    report["iou |d|"] = abs(float(iou) - case["iou_pred"])
    ok &= report["iou |d|"] <= 1e-4
    logits = bilinear(low_res[:newh, :neww], h, w)
    key = "logits" if "logits" in case["files"] else "low_res_logits"
    ref = np.fromfile(FIXTURES / case["files"][key]["file"], dtype="<f4").reshape(h, w)
    d = float(np.abs(logits - ref).max())
    report["logits max |d|"] = d
    ok &= d <= 1e-3
    mask = np.fromfile(FIXTURES / case["files"]["mask"]["file"], dtype=np.uint8).reshape(h, w)
    sure = np.abs(ref) > 1e-3
    report["mask mismatches (|logit| > 1e-3)"] = int(((logits > 0).astype(np.uint8) != mask)[sure].sum())
    ok &= report["mask mismatches (|logit| > 1e-3)"] == 0
    return ok, report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", help="only this fixture case")
    args = ap.parse_args(argv)
    doc = json.loads((FIXTURES / "cases.json").read_text())
    cases = [c for c in doc["cases"] if not args.case or c["name"] == args.case]
    if not cases:
        print(f"numpy_model: error: no case {args.case!r}", file=sys.stderr)
        return 1
    all_ok = check_inter_area()
    W = Weights()
    for case in cases:
        ok, report = run_case(W, case)
        all_ok &= ok
        print(f"{'PASS' if ok else 'FAIL'} {case['name']}: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))
    print("numpy_model: " + ("the description reproduces every golden within tolerance" if all_ok else "MISMATCH"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
