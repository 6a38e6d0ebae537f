#!/usr/bin/env python3
"""Writes the tiny PyTorch checkpoints under tests/fixtures/checkpoint/.

They are laid out byte for byte as `torch.save(state_dict, path)` lays them out (torch >= 2.1),
without needing torch: the same pickler (Python's, protocol 2 by default), the same persistent ids
('storage', torch.FloatStorage, key, location, numel), the same `_rebuild_tensor_v2` arguments,
the same zip records (stored, each record's data aligned to 64 bytes with an 'FB' padding field,
storages in sorted key order, then `version`). Where torch is installed, the script also loads
each file back with `torch.load` and checks every value.

The state_dict holds what the converter must handle: a Conv2d_BN pair with its int64
`num_batches_tracked`, two views sharing one storage (one of them non-contiguous, at an offset),
a 0-d tensor and a plain matrix. Values are exact in binary so tests compare them exactly.

Usage: tools/make_checkpoint_fixture.py [OUT_DIR]   (default tests/fixtures/checkpoint)
"""

import array
import collections
import importlib.util
import io
import json
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

# Looked up before the stand-ins below take the name.
HAVE_TORCH = importlib.util.find_spec("torch") is not None

# Stand-ins for the torch globals the pickle names. Pickle writes a global by module and name
# after checking that the module really holds that object, so they live in fake modules.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    raise RuntimeError("only for pickling")


class FloatStorage:
    typecode, itemsize = "f", 4


class LongStorage:
    typecode, itemsize = "q", 8


for obj, module in ((_rebuild_tensor_v2, torch_utils), (FloatStorage, torch), (LongStorage, torch)):
    obj.__module__ = module.__name__
    setattr(module, obj.__name__, obj)


class Storage:
    def __init__(self, kind, values):
        self.kind = kind
        self.values = values

    def raw(self):
        return array.array(self.kind.typecode, self.values).tobytes()


class Tensor:
    """A view (offset, size, stride) into a storage, reduced exactly as torch.Tensor is."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce_ex__(self, protocol):
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)

    def values(self):
        out = []

        def walk(dim, at):
            if dim == len(self.size):
                out.append(self.storage.values[at])
                return
            for i in range(self.size[dim]):
                walk(dim + 1, at + i * self.stride[dim])

        walk(0, self.offset)
        return out


def contiguous(storage, size):
    stride, acc = [], 1
    for d in reversed(size):
        stride.insert(0, acc)
        acc *= d
    return Tensor(storage, 0, size, stride)


def state_dict():
    sd = collections.OrderedDict()
    conv = Storage(FloatStorage, [0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0, -2.0])
    sd["enc.stem.c.weight"] = contiguous(conv, (4, 2, 1, 1))
    sd["enc.stem.bn.weight"] = contiguous(Storage(FloatStorage, [1.0, 2.0, 0.5, -1.0]), (4,))
    sd["enc.stem.bn.bias"] = contiguous(Storage(FloatStorage, [0.0, 0.125, -0.5, 4.0]), (4,))
    sd["enc.stem.bn.running_mean"] = contiguous(Storage(FloatStorage, [0.25, -0.5, 1.0, 0.0]), (4,))
    sd["enc.stem.bn.running_var"] = contiguous(Storage(FloatStorage, [1.0, 0.25, 4.0, 0.0625]), (4,))
    sd["enc.stem.bn.num_batches_tracked"] = Tensor(Storage(LongStorage, [1234]), 0, (), ())
    # One storage of 16 values (0, 0.5, ..., 7.5) shared by two views, as slicing a parameter
    # and saving both slices leaves them: a transposed 3×4 view at offset 2 (strides 1, 3) and a
    # contiguous 3-vector at offset 13.
    shared = Storage(FloatStorage, [i * 0.5 for i in range(16)])
    sd["enc.proj.weight"] = Tensor(shared, 2, (3, 4), (1, 3))
    sd["enc.proj.bias"] = Tensor(shared, 13, (3,), (1,))
    sd["dec.scale"] = Tensor(Storage(FloatStorage, [-3.5]), 0, (), ())
    sd["dec.attention_biases"] = contiguous(Storage(FloatStorage, [float(i) - 4.0 for i in range(10)]), (2, 5))
    # torch.nn.Module.state_dict() records module versions as an attribute; pickle writes it
    # after the items with BUILD.
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("enc.stem.bn", {"version": 2})])
    return sd


def pickle_state_dict(sd, protocol):
    import pickle

    keys = {}
    storages = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                key = keys.setdefault(id(obj), str(len(keys)))
                storages[key] = obj
                return ("storage", obj.kind, key, "cpu", len(obj.values))
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(sd)
    return buf.getvalue(), storages


def write_checkpoint(path, sd, protocol=2):
    """torch.save's record order: data.pkl, byteorder, data/<key> (sorted as strings), version."""
    data_pkl, storages = pickle_state_dict(sd, protocol)
    folder = path.stem
    records = [("data.pkl", data_pkl), ("byteorder", b"little")]
    records += [(f"data/{key}", storages[key].raw()) for key in sorted(storages)]
    records += [("version", b"3\n")]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in records:
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            # Pad the local header with an 'FB' extra field so the data starts on a 64-byte
            # boundary, as torch's writer does (it lets torch mmap storages).
            start = zf.fp.tell() + 30 + len(info.filename.encode())
            pad = (64 - (start + 4) % 64) % 64
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            zf.writestr(info, data)


def expected_values(sd):
    out = {}
    for name, t in sd.items():
        out[name] = {"shape": list(t.size), "values": t.values()}
    return out


CHECK_WITH_TORCH = """
import json, sys, torch
expected = json.load(open(sys.argv[1]))
for path in sys.argv[2:]:
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(expected), f"{path}: keys differ"
    for name, want in expected.items():
        got = loaded[name]
        assert list(got.shape) == want["shape"], f"{path}: {name}: shape {list(got.shape)}"
        assert got.flatten().tolist() == want["values"], f"{path}: {name}: values differ"
    print(f"{path}: torch.load reads every tensor back", file=sys.stderr)
"""


def main():
    default = Path(__file__).resolve().parent.parent / "tests/fixtures/checkpoint"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    out.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    paths = [out / "tiny.pth", out / "tiny_protocol4.pth"]
    write_checkpoint(paths[0], sd, protocol=2)
    # torch.save(..., pickle_protocol=4): frames, short strings, memoize, stack globals.
    write_checkpoint(paths[1], sd, protocol=4)
    expected = out / "tiny.expected.json"
    expected.write_text(json.dumps(expected_values(sd), indent=1) + "\n")
    print(f"wrote {', '.join(str(p) for p in paths + [expected])}", file=sys.stderr)
    if HAVE_TORCH:
        # A fresh interpreter: this one's `torch` is the stand-in.
        subprocess.run([sys.executable, "-c", CHECK_WITH_TORCH, str(expected), *map(str, paths)], check=True)
    else:
        print("torch is not installed: the files were not cross-checked with torch.load", file=sys.stderr)


if __name__ == "__main__":
    main()
