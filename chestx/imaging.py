"""Bytes of an X-ray file -> the model's input: one code path for training, serving and the CLI.

decode (JPEG, PNG 8/16-bit, BMP, TIFF, DICOM) -> grey uint8 -> resize -> intensity normalisation.
The model itself scales 0-255 to 0-1, so what leaves this module is plain uint8 pixels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from chestx.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)

from chestx.config import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_PIXELS, INTENSITY_METHODS


def sniff_format(data: bytes) -> str:
    """Name the container format from its magic bytes: jpeg, png, bmp, tiff or dicom."""
    if not data:
        raise EmptyImageError("the file is empty")
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    raise UnsupportedImageError("not an image chestx can read (JPEG, PNG, BMP, TIFF or DICOM)")


def decode_gray(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any supported file to a 2-D uint8 grey image."""
    fmt = sniff_format(data)
    if fmt == "dicom":
        raise UnsupportedImageError("DICOM support is not built yet")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CorruptImageError(f"the {fmt.upper()} file could not be decoded")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageTooLargeError(f"image has {img.shape[0] * img.shape[1]} pixels, over {max_pixels}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    return img


def normalise_intensity(gray: np.ndarray, method: str = "clahe") -> np.ndarray:
    """Even out exposure differences between collections (the main source of test-time shift)."""
    if method == "none":
        return gray
    if method == "equalize":
        return cv2.equalizeHist(gray)
    if method == "clahe":
        return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
    raise ValueError(f"unknown intensity method {method!r}; choose from {INTENSITY_METHODS}")


def prepare(
    data: bytes,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    intensity: str = "clahe",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """File bytes -> (image_size, image_size, 1) uint8, ready for the model."""
    gray = decode_gray(data, max_pixels=max_pixels)
    if gray.shape != (image_size, image_size):
        gray = cv2.resize(gray, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return normalise_intensity(gray, intensity)[..., np.newaxis]


def read_file(path: str | Path, **kwargs) -> np.ndarray:
    """``prepare`` for a file on disk."""
    return prepare(Path(path).read_bytes(), **kwargs)
