"""Write a labelled folder's X-rays as DICOM files the way a detector might store them, so that
``chestx evaluate --data OUT`` measures how chestx reads a hospital's DICOM (a simulation: no
hospital DICOM is at hand).

    python benchmarks/as_dicom.py --data ../shared/data/external-dev --out /tmp/d12 --bits 12
    python benchmarks/as_dicom.py --data ../shared/data/external-dev --out /tmp/voi \\
        --window sigmoid
    chestx evaluate --data /tmp/voi

``--window none`` spreads each X-ray's 0-255 over ``--bits`` bits. ``linear`` stores them over
1200-2800 of 12 bits (39 % of the range) with the LINEAR window that shows them as the JPEG;
``sigmoid`` stores the inverse of DICOM's SIGMOID window function (center 2048, width 1200).
Both burn a lead marker's letter in at 4095, above the window. ``--mirror`` stores each X-ray
mirrored, with the PatientOrientation that says so (``R\\F``; otherwise ``L\\F``).
``--monochrome1`` stores it inverted (bone dark), as CR plates often do. ``--pad P`` widens it
by P % of its width on each side with padding, as a plate outside its exposed field: 65535 in
MONOCHROME1, 0 in MONOCHROME2, named by PixelPaddingValue. ``--modality-lut`` stores raw
values linear in dose (up to 16383) with the Modality LUT Sequence that turns them into those
values (a log curve, as a detector's table). ``--shutter P`` surrounds it with a border of
P % of its width a side, left bright as a collimated-off area is (0.95 of the top grey outside,
darkened by scatter to 0.7 at the field's edge, with grain), and names the X-ray's edges in a
RECTANGULAR display shutter. BitsStored is always 16, as many detectors
write it; each file's PatientID is its class and file name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

WINDOWS = {"linear": (2000.5, 1601.0, "LINEAR"), "sigmoid": (2048.0, 1200.0, "SIGMOID")}
LUT_TOP, LUT_KNEE = 16383, 256.0  # raw values linear in dose, and the log curve's knee


def modality_lut(values: np.ndarray, top: int):
    """(raw values linear in dose that the table maps to ``values``, the Modality LUT Sequence
    item: LUT_TOP + 1 entries, log-shaped, onto 0..top)."""
    from pydicom.dataset import Dataset

    scale = np.log1p(LUT_TOP / LUT_KNEE)
    table = np.rint(top * np.log1p(np.arange(LUT_TOP + 1) / LUT_KNEE) / scale)
    raw = np.rint(LUT_KNEE * np.expm1(values.astype(np.float64) / top * scale))
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [LUT_TOP + 1, 0, 16])
    item.add_new("LUTData", "US", table.astype(int).tolist())
    return np.clip(raw, 0, LUT_TOP).astype(np.uint16), item


def stored(gray: np.ndarray, bits: int, window: str) -> np.ndarray:
    """Raw values that the window (or, with none, the stored range) shows as ``gray``
    (MONOCHROME2)."""
    x = gray.astype(np.float64)
    if window == "none":
        return np.rint(x * (2**bits - 1) / 255).astype(np.uint16)
    if window == "linear":
        raw = 1200 + x * 1600 / 255
    else:
        center, width, _ = WINDOWS["sigmoid"]
        raw = center - width / 4 * np.log(4095 / (4095 * (x + 0.5) / 256) - 1)
    raw = np.clip(np.rint(raw), 0, 4095).astype(np.uint16)
    raw[4:20, 4:14] = 4095  # a lead marker's letter
    return raw


def write(
    raw: np.ndarray,
    path: Path,
    patient: str,
    *,
    top: int,
    window: str,
    mirror: bool,
    monochrome1: bool,
    pad: float,
    lut: bool = False,
    shutter: float = 0.0,
) -> None:
    """``raw`` (MONOCHROME2, values up to ``top``) as a DX file, as the options say."""
    h, w = raw.shape
    margin = round(w * shutter / 100)
    if margin:  # the collimated-off border, left bright (unexposed): scatter darkens it
        # towards the exposed field (0.7 of the top there, 0.95 at the outer edge), with grain
        rng = np.random.default_rng(raw.size)
        yy, xx = np.mgrid[: h + 2 * margin, : w + 2 * margin]
        depth = np.maximum(
            np.maximum(margin - yy, yy - (margin + h - 1)),
            np.maximum(margin - xx, xx - (margin + w - 1)),
        )
        border = top * (0.7 + 0.25 * np.clip(depth / margin, 0, 1))
        border += rng.normal(0, 0.01 * top, border.shape)
        border[margin : margin + h, margin : margin + w] = raw
        raw = np.clip(np.rint(border), 0, top).astype(np.uint16)
    if monochrome1:
        raw = top - raw
    item = None
    if lut:
        raw, item = modality_lut(raw, top)
    if mirror:
        raw = raw[:, ::-1]
    side = 0
    if pad:
        side = round(raw.shape[1] * pad / 100)
        padding = 65535 if monochrome1 else 0
        raw = np.pad(raw, ((0, 0), (side, side)), constant_values=padding)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = patient
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.PatientOrientation = ["R" if mirror else "L", "F"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if window != "none":
        center, width, function = WINDOWS[window]
        ds.WindowCenter = top - center if monochrome1 else center
        ds.WindowWidth, ds.VOILUTFunction = width, function
    if pad:
        ds.PixelPaddingValue = 65535 if monochrome1 else 0
    if item is not None:
        ds.ModalityLUTSequence = [item]
    if margin:  # 1-based, inclusive edges of the X-ray
        ds.ShutterShape = "RECTANGULAR"
        ds.ShutterLeftVerticalEdge = side + margin + 1
        ds.ShutterRightVerticalEdge = side + margin + w
        ds.ShutterUpperHorizontalEdge = margin + 1
        ds.ShutterLowerHorizontalEdge = margin + h
    ds.PixelData = np.ascontiguousarray(raw).tobytes()
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="NORMAL/ and PNEUMONIA/ JPEGs")
    parser.add_argument("--out", type=Path, required=True, help="a new folder")
    parser.add_argument(
        "--bits",
        type=int,
        default=12,
        choices=range(8, 17),
        metavar="8..16",
        help="bits the values use with --window none (default 12)",
    )
    parser.add_argument("--window", choices=("none", *WINDOWS), default="none")
    parser.add_argument("--mirror", action="store_true", help="store the X-rays mirrored")
    parser.add_argument("--monochrome1", action="store_true", help="store them inverted")
    parser.add_argument(
        "--pad", type=float, default=0.0, metavar="P", help="padding, %% of the width a side"
    )
    parser.add_argument(
        "--modality-lut", action="store_true", help="raw values and a Modality LUT Sequence"
    )
    parser.add_argument(
        "--shutter",
        type=float,
        default=0.0,
        metavar="P",
        help="a bright collimated-off border, %% of the width a side, behind a display shutter",
    )
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists")
    count = 0
    for cls in ("NORMAL", "PNEUMONIA"):
        (args.out / cls).mkdir(parents=True)
        for path in sorted((args.data / cls).glob("*.jpeg")):
            gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                raise SystemExit(f"{path}: not a readable JPEG")
            raw = stored(gray, args.bits, args.window)
            out = args.out / cls / f"{path.stem}.dcm"
            write(
                raw,
                out,
                f"{cls}-{path.stem}",
                top=2**args.bits - 1 if args.window == "none" else 4095,
                window=args.window,
                mirror=args.mirror,
                monochrome1=args.monochrome1,
                pad=args.pad,
                lut=args.modality_lut,
                shutter=args.shutter,
            )
            count += 1
    print(f"wrote {count} DICOM files to {args.out}")


if __name__ == "__main__":
    main()
