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
  *.original.u8       the frames as generated (frames x rows x columns bytes)
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


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/dicom"))
