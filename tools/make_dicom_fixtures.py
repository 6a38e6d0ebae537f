#!/usr/bin/env python3
"""Writes the small multi-frame ultrasound DICOM files the DICOM cine tests replay.

Needs pydicom, Pillow and numpy (python3 -m pip install pydicom Pillow numpy); the outputs are
committed, so CI does not. Run from the repository root:

    python3 tools/make_dicom_fixtures.py tests/fixtures/dicom

Files (US Multi-frame Image Storage, 64x48 MONOCHROME2, 8 bit):
  us_cine_raw.dcm     8 frames, Explicit VR Little Endian, Frame Time 40 ms, one ultrasound
                      region (x 8..55, y 4..43, 0.02 x 0.025 cm per pixel)
  us_cine_jpeg.dcm    6 frames, JPEG Baseline (1.2.840.10008.1.2.4.50), Cine Rate 25,
                      Pixel Spacing 0.3 mm, no region
  us_palette16.dcm    2 frames, PALETTE COLOR, 16 bits allocated (stored values 0..1199), a
                      plain 16-bit lookup table of 800 entries from stored value 200 (below it
                      entry 0, past its end the last), one ultrasound region whose inclusive
                      maximum x is 64, one past the frame (clamped to 63)
  us_mono12.dcm       3 frames, MONOCHROME2, 12 bits stored in 16, Window Center 1500 and
                      Width 1001 (plus a second pair, ignored)
  *.original.u8       the frames as generated (frames x rows x columns bytes)
  *.grey.u8           the 8-bit grey frames the reader documents for the palette and 12-bit
                      files (src/capture/dicom/grey.rs), computed here independently
  us_cine_jpeg.libjpeg.u8  the JPEG frames as libjpeg (through Pillow) decodes them: the
                      reference a Rust decoder is compared against (IDCTs may differ by a level)
"""

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
ROWS, COLS = 48, 64


def frames(count, seed):
    """Speckle over a smooth depth ramp with a dark cyst that moves a pixel per frame, so each
    frame differs and a frame swap shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ROWS, 0:COLS]
    out = []
    for i in range(count):
        ramp = 160 - 1.5 * y
        cyst = ((x - 20 - i) ** 2 + (y - 24) ** 2) < 64
        speckle = rng.rayleigh(18.0, size=(ROWS, COLS))
        img = np.clip(ramp + speckle - 120 * cyst, 0, 255)
        out.append(img.astype(np.uint8))
    return np.stack(out)


def base_dataset(ts, count):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = "Phantom^Test"
    ds.PatientID = "SONOFLOW-TEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = count
    return ds


def region(min_x, min_y, max_x, max_y, dx_cm, dy_cm):
    r = Dataset()
    r.RegionSpatialFormat = 1  # 2D
    r.RegionDataType = 1  # tissue
    r.RegionFlags = 0
    r.RegionLocationMinX0 = min_x
    r.RegionLocationMinY0 = min_y
    r.RegionLocationMaxX1 = max_x
    r.RegionLocationMaxY1 = max_y
    r.PhysicalUnitsXDirection = 3  # cm
    r.PhysicalUnitsYDirection = 3
    r.PhysicalDeltaX = dx_cm
    r.PhysicalDeltaY = dy_cm
    return r


def save(ds, path):
    ds.save_as(path, enforce_file_format=True)


def main(out):
    out.mkdir(parents=True, exist_ok=True)

    raw = frames(8, seed=3)
    ds = base_dataset(ExplicitVRLittleEndian, len(raw))
    ds.FrameTime = 40.0
    ds.FrameIncrementPointer = 0x00181063
    ds.SequenceOfUltrasoundRegions = [region(8, 4, 55, 43, 0.02, 0.025)]
    ds.PixelData = raw.tobytes()
    save(ds, out / "us_cine_raw.dcm")
    (out / "us_cine_raw.original.u8").write_bytes(raw.tobytes())

    jpg = frames(6, seed=5)
    encoded, decoded = [], []
    for f in jpg:
        buf = io.BytesIO()
        Image.fromarray(f, mode="L").save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
        decoded.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
    ds = base_dataset(JPEGBaseline8Bit, len(jpg))
    ds.CineRate = 25
    ds.PixelSpacing = [0.3, 0.3]
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    save(ds, out / "us_cine_jpeg.dcm")
    (out / "us_cine_jpeg.original.u8").write_bytes(jpg.tobytes())
    (out / "us_cine_jpeg.libjpeg.u8").write_bytes(np.stack(decoded).tobytes())
    mse = np.mean((np.stack(decoded).astype(float) - jpg.astype(float)) ** 2)
    print(f"jpeg: PSNR of the libjpeg decode against the original {10 * np.log10(255**2 / mse):.1f} dB")

    palette_and_mono12(out)


def luma(r, g, b):
    r, g, b = (c.astype(np.uint32) for c in (r, g, b))
    return ((299 * r + 587 * g + 114 * b + 500) // 1000).astype(np.uint8)


def palette_and_mono12(out):
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:ROWS, 0:COLS]
    stored = np.stack([(x * 17 + y * 3 + 40 * i) % 1200 for i in range(2)]).astype(np.uint16)
    entries, first = 800, 200
    # Colours as scanners write them: 8-bit values shifted up by 8, plus low bits.
    lut = [(rng.integers(0, 256, entries).astype(np.uint16) << 8) | rng.integers(0, 256, entries).astype(np.uint16)
           for _ in range(3)]
    ds = base_dataset(ExplicitVRLittleEndian, len(stored))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.FrameTime = 50.0
    for c, table in zip(("Red", "Green", "Blue"), lut):
        setattr(ds, f"{c}PaletteColorLookupTableDescriptor", [entries, first, 16])
        setattr(ds, f"{c}PaletteColorLookupTableData", table.astype("<u2").tobytes())
    ds.SequenceOfUltrasoundRegions = [region(4, 2, COLS, 45, 0.03, 0.03)]
    ds.PixelData = stored.astype("<u2").tobytes()
    save(ds, out / "us_palette16.dcm")
    index = np.clip(stored.astype(np.int64) - first, 0, entries - 1)
    r, g, b = ((table[index] >> 8).astype(np.uint8) for table in lut)
    (out / "us_palette16.grey.u8").write_bytes(luma(r, g, b).tobytes())

    mono = np.stack([(x * 60 + y * 20 + 100 * i + rng.integers(0, 30, (ROWS, COLS))) % 4096 for i in range(3)])
    mono = mono.astype(np.uint16)
    ds = base_dataset(ExplicitVRLittleEndian, len(mono))
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.FrameTime = 50.0
    ds.WindowCenter = [1500, 2048]
    ds.WindowWidth = [1001, 4096]
    ds.PixelData = mono.astype("<u2").tobytes()
    save(ds, out / "us_mono12.dcm")
    # PS3.3 C.11.2.1.2.1, linear: c - 0.5 - (w - 1) / 2 and below black, above c - 0.5 + (w - 1) / 2 white.
    c, w = 1500.0, 1001.0
    v = mono.astype(np.float64)
    grey = np.where(v <= c - 0.5 - (w - 1) / 2, 0.0,
                    np.where(v > c - 0.5 + (w - 1) / 2, 255.0, ((v - (c - 0.5)) / (w - 1) + 0.5) * 255))
    (out / "us_mono12.grey.u8").write_bytes(np.clip(np.round(grey), 0, 255).astype(np.uint8).tobytes())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/dicom"))
