#!/usr/bin/env python3
"""Reference decoding of the ultrasound files of pydicom's test corpus (pydicom's own test files
and the pydicom-data package), for tests/dicom_corpus.rs.

For every file whose Modality is US or whose SOP class is an ultrasound one, writes the frames
pydicom decodes (pylibjpeg for JPEG and JPEG 2000), turned to 8-bit grey the way sonoflow's DICOM
reader documents it (src/capture/dicom/grey.rs), as raw u8 (frames x rows x columns), and one
line of index.json describing it: transfer syntax, size, whether the codec is lossy, and the
crop and spacing the file's ultrasound region gives (rules of src/capture/dicom/regions.rs),
computed here independently.

Usage (in the reference environment, tools/reference/setup):
    ~/.cache/sonoflow/ref-venv/bin/python tools/dicom_reference.py OUT_DIR
"""

import json
import pathlib
import sys
import warnings

import numpy as np
import pydicom
import pydicom.data
from pydicom.data import data_manager
from pydicom.pixels import apply_color_lut

US_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1",  # US Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.6",  # retired US Image Storage
    "1.2.840.10008.5.1.4.1.1.3",  # retired US Multi-frame Image Storage
}
LOSSY = {
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
}
MAX_OVERSHOOT_PX = 2


def corpus_files():
    """Every file of pydicom's test corpus: its own test files and the external data sources
    (pydicom-data) that are installed. Nothing is downloaded."""
    roots = [pathlib.Path(pydicom.data.__file__).parent / "test_files"]
    roots += [pathlib.Path(s.data_path) for s in data_manager.external_data_sources().values()]
    return sorted((p for r in roots for p in r.rglob("*") if p.is_file()), key=lambda p: p.name)


def is_ultrasound(ds):
    return ds.get("Modality") == "US" or str(ds.get("SOPClassUID", "")) in US_SOP_CLASSES


def luma(rgb):
    rgb = rgb.astype(np.uint32)
    return ((299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000).astype(np.uint8)


def palette_rgb8(ds, arr):
    """The palette's colours at 8 bits: 16-bit entries by their high byte."""
    big_endian = not ds.file_meta.TransferSyntaxUID.is_little_endian
    if "RedPaletteColorLookupTableData" in ds:
        # pydicom's apply_color_lut reads plain tables in the machine's byte order, which is
        # wrong for big-endian files; read them here in the file's.
        channels = []
        for c in ("Red", "Green", "Blue"):
            entries, first, bits = ds[f"{c}PaletteColorLookupTableDescriptor"].value
            entries = entries or 65536
            raw = ds[f"{c}PaletteColorLookupTableData"].value
            if bits == 16:
                lut = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2")[:entries].astype(np.int64) >> 8
            else:
                assert len(raw) >= entries and len(raw) < 2 * entries, "8-bit entries packed two to a word"
                words = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=">u2" if big_endian else "<u2")
                lut = words.astype("<u2").view(np.uint8)[:entries].astype(np.int64)
            index = np.clip(arr.astype(np.int64) - first, 0, entries - 1)
            channels.append(lut[index])
        return np.stack(channels, axis=-1).astype(np.uint8)
    # Segmented tables: pydicom expands them in the file's byte order.
    bits = ds.RedPaletteColorLookupTableDescriptor[2]
    rgb = apply_color_lut(arr, ds)
    return (rgb >> 8 if bits == 16 else rgb).astype(np.uint8)


def to_grey(ds, arr):
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        return luma(palette_rgb8(ds, arr))
    if arr.ndim == 4 or (arr.ndim == 3 and ds.SamplesPerPixel == 3):
        # pydicom gives YBR as RGB (its default), as the codecs do for sonoflow.
        return luma(arr)
    if ds.BitsAllocated == 8:
        grey = arr.astype(np.uint8)
        return 255 - grey if photometric == "MONOCHROME1" else grey
    raise ValueError(f"no reference conversion for {photometric} with {ds.BitsAllocated} bits")


def region(ds, columns, rows):
    """(crop, spacing_mm) of the B-mode region, or (None, None) without a usable one."""
    candidates = []
    for r in ds.get("SequenceOfUltrasoundRegions", []):
        if r.get("PhysicalUnitsXDirection") != 3 or r.get("PhysicalUnitsYDirection") != 3:
            continue
        dx, dy = r.get("PhysicalDeltaX"), r.get("PhysicalDeltaY")
        b = [r.get(k) for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")]
        if dx is None or dy is None or dx <= 0 or dy <= 0 or None in b or b[2] < b[0] or b[3] < b[1]:
            continue
        fmt, kind = r.get("RegionSpatialFormat"), r.get("RegionDataType")
        rank = 0 if (fmt, kind) == (1, 1) else 1 if fmt == 1 else 2
        candidates.append((rank, len(candidates), b, [dx * 10, dy * 10]))
    if not candidates:
        return None, None
    _, _, (x0, y0, x1, y1), spacing = min(candidates)
    if x0 >= columns or y0 >= rows or x1 > columns - 1 + MAX_OVERSHOOT_PX or y1 > rows - 1 + MAX_OVERSHOOT_PX:
        return None, None
    x1, y1 = min(x1, columns - 1), min(y1, rows - 1)
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1], spacing


def main(out):
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for path in corpus_files():
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue  # not a DICOM file
        if not is_ultrasound(header):
            continue
        ds = pydicom.dcmread(path)
        ts = str(ds.file_meta.TransferSyntaxUID)
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        entry = {
            "name": path.name,
            "path": str(path),
            "transfer_syntax": ts,
            "transfer_syntax_name": ds.file_meta.TransferSyntaxUID.name,
            "photometric": ds.PhotometricInterpretation,
            "frames": frames,
            "rows": rows,
            "columns": columns,
            "lossy": ts in LOSSY,
        }
        entry["crop"], entry["spacing_mm"] = region(ds, columns, rows)
        try:
            arr = ds.pixel_array
            if frames == 1:
                arr = arr[np.newaxis]
            grey = to_grey(ds, arr)
            assert grey.shape == (frames, rows, columns), grey.shape
            reference = path.name + ".u8"
            (out / reference).write_bytes(np.ascontiguousarray(grey).tobytes())
            entry["reference"] = reference
        except Exception as e:  # recorded, so that the test states what pydicom could not do
            entry["reference"] = None
            entry["error"] = f"{type(e).__name__}: {e}"
        index.append(entry)
    (out / "index.json").write_text(json.dumps(index, indent=1))
    print(f"{len(index)} ultrasound files written to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    warnings.simplefilter("ignore")
    main(sys.argv[1])
