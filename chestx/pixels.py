"""Pixel arrays shared by the raster decoder (``chestx.imaging``) and the DICOM decoder
(``chestx.dicom``): the decoded result, its colour thumbnail, and the linear scaling to 8 bits.
Both decoders import it; it imports neither (``chestx.imaging`` re-exports these names)."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class Decoded(NamedTuple):
    """A decoded file: the grey image every stage uses, and a glimpse of its colour.

    ``colour`` is a small BGR uint8 thumbnail (at most ``COLOUR_THUMB`` pixels a side) when the
    file stores colour channels, else ``None``; ``not_frontal`` is what a DICOM file's own header
    says it is when that is not a frontal chest radiograph ("a lateral view (ViewPosition LL)"),
    else ``None``. The input gate looks at both; training skips a file with ``not_frontal``.
    """

    gray: np.ndarray
    colour: np.ndarray | None = None
    not_frontal: str | None = None


COLOUR_THUMB = 64


def colour_thumb(bgr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    h, w = bgr.shape[:2]
    scale = min(1.0, COLOUR_THUMB / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return scale_to_uint8(bgr, lo, hi)


def scale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map the declared range lo..hi linearly onto 0..255 (rounding, clipping outliers)."""
    if values.dtype == np.uint8 and (lo, hi) == (0, 255):
        return values
    out = values.astype(np.float32)
    out -= lo
    out *= 255.0 / (hi - lo)
    np.clip(out, 0, 255, out=out)
    np.rint(out, out=out)
    return out.astype(np.uint8)


def stored_bits(brightest: int) -> int:
    """The bit depth an unsigned X-ray's values were stored with, read from its brightest pixel:
    the smallest of 8, 10, 12, 14 and 16 bits that holds it. Detectors write 10, 12 or 14-bit
    values into 16-bit containers (a PNG or TIFF cannot say so; a DICOM file's BitsStored often
    says 16 all the same), and scaled by 65535 such an X-ray comes out nearly black."""
    bits = int(brightest).bit_length()
    return max(8, bits + bits % 2)
