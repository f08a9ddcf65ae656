"""Bytes of an X-ray file -> the model's input: one code path for training, serving and the CLI.

    header check -> decode -> grey uint8 -> resize -> intensity normalisation -> (S, S, 1) uint8

Formats: JPEG, PNG (8/16-bit), BMP, TIFF (classic and BigTIFF) through OpenCV, and DICOM Part 10
files through pydicom (imported only when a DICOM file arrives, so the JPEG path that training
runs 5,216 times an epoch stays cheap).

Rules that keep training and serving consistent:

* Higher bit depths are scaled by their *declared* range, never by the image's own min-max: a
  16-bit PNG or TIFF by 0..65535, a DICOM by the BitsStored range mapped through its rescale
  slope/intercept. A dim image stays dim.
* Colour becomes grey with the ITU-R BT.601 weights (OpenCV's); JPEGs are decoded straight to
  luma, which is the same thing and twice as fast. Alpha is composited over black: a transparent
  pixel carries no X-ray signal, and black is what "no signal" looks like on a radiograph.
  A JPEG's EXIF orientation is honoured (OpenCV applies it when decoding to grey).
* DICOM: MONOCHROME1 is inverted so bone is always bright. VOI windows are not applied (the
  contract is bit-depth scaling; CLAHE evens out exposure afterwards).
* Multi-frame DICOM and multi-page TIFF: the first frame is used.
* The resize is a plain INTER_AREA resize to a square, without keeping the aspect ratio,
  because that is how the training images were made.
* Decompression bombs: the pixel count is read from the header (PNG IHDR, JPEG SOFn, BMP DIB
  header, TIFF first IFD, DICOM Rows x Columns x NumberOfFrames and the embedded JPEG/JPEG 2000
  frame header) and the file is refused before any decoder runs.

The model scales 0-255 to 0-1 itself, so what leaves this module is plain uint8 pixels.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from chestx.config import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INTENSITY,
    DEFAULT_MAX_PIXELS,
    INTENSITY_METHODS,
)
from chestx.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)

__all__ = [
    "FORMATS",
    "Decoded",
    "ImageHeader",
    "decode",
    "decode_gray",
    "inspect_header",
    "model_input",
    "normalise_intensity",
    "prepare",
    "read_file",
    "sniff_format",
]

FORMATS = ("jpeg", "png", "bmp", "tiff", "dicom")
_NAMES = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF", "dicom": "DICOM"}
_READABLE = "JPEG, PNG, BMP, TIFF or DICOM"
_BMP_HEADER_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)  # the DIB header versions in use

# Formats people do upload, named so the refusal says what was sent.
_OTHER_MAGIC = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"%PDF", "PDF"),
    (0, b"PK\x03\x04", "ZIP"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (8, b"WEBP", "WebP"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
)


class ImageHeader(NamedTuple):
    """What a file's header declares, read without decoding any pixels."""

    format: str
    width: int
    height: int
    frames: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames


# --------------------------------------------------------------------------- format and header


def sniff_format(data: bytes) -> str:
    """Name the container format from its magic bytes: jpeg, png, bmp, tiff or dicom."""
    if not data:
        raise EmptyImageError("the file is empty")
    head = bytes(data[:132])
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    for offset, magic, name in _OTHER_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            raise UnsupportedImageError(f"{name} files are not supported; send {_READABLE}")
    raise UnsupportedImageError(f"not an image chestx can read; send {_READABLE}")


def inspect_header(data: bytes) -> ImageHeader:
    """Format and declared size of an image, from its header alone (nothing is decoded)."""
    data = _as_bytes(data)
    fmt = sniff_format(data)
    if fmt == "dicom":
        return _dicom_header(_read_dicom(data, stop_before_pixels=True))
    width, height = _HEADER_READERS[fmt](data)
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"the {_NAMES[fmt]} header declares a {width}x{height} image")
    return ImageHeader(fmt, width, height)


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def _truncated(fmt: str) -> CorruptImageError:
    return CorruptImageError(f"the {_NAMES[fmt]} file is truncated or damaged (header incomplete)")


def _png_size(data: bytes) -> tuple[int, int]:
    # Signature (8), then the IHDR chunk must come first: length (4), b"IHDR", width, height.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _truncated("png")
    return struct.unpack(">II", data[16:24])


# SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC), plus JPEG-LS SOF55 (F7): all share the
# layout length, precision, height, width.
_JPEG_SOF = (frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}) | {0xF7}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}  # RSTn, SOI, TEM: no length field


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the marker segments to the first frame header, the way libjpeg does."""
    i, n = 2, len(data)
    while True:
        if i < n and data[i] != 0xFF:  # libjpeg skips garbage before a marker, so do we
            i = data.find(b"\xff", i)
            if i < 0:
                raise _truncated("jpeg")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            raise _truncated("jpeg")
        marker = data[i]
        i += 1
        if marker == 0x00 or marker in _JPEG_STANDALONE:  # 0x00: a stuffed FF00, garbage
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            raise CorruptImageError("the JPEG file has no frame header")
        if i + 2 > n:
            raise _truncated("jpeg")
        length = int.from_bytes(data[i : i + 2], "big")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                raise _truncated("jpeg")
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        if length < 2:
            raise CorruptImageError("the JPEG file is damaged (bad segment length)")
        i += length


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise _truncated("bmp")
    dib_size = int.from_bytes(data[14:18], "little")
    if dib_size == 12:  # BITMAPCOREHEADER: unsigned 16-bit sides
        return struct.unpack("<HH", data[18:22])
    if dib_size < 16:
        raise CorruptImageError(f"the BMP file has an unknown header (size {dib_size})")
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height means rows stored top-down


# TIFF field types that can hold ImageWidth/ImageLength: SHORT, LONG, LONG8 (BigTIFF).
_TIFF_INT_TYPES = {3: "H", 4: "I", 16: "Q"}


def _tiff_size(data: bytes) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) of the first IFD, in either byte order."""
    if len(data) < 16:
        raise _truncated("tiff")
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43  # BigTIFF: 8-byte offsets and counts
    if big:
        ifd = struct.unpack(order + "Q", data[8:16])[0]
        count_fmt, entry_fmt, entry_size, inline = "Q", "HHQ", 20, 8
    else:
        ifd = struct.unpack(order + "I", data[4:8])[0]
        count_fmt, entry_fmt, entry_size, inline = "H", "HHI", 12, 4
    count_size = struct.calcsize(count_fmt)
    if ifd + count_size > len(data):
        raise _truncated("tiff")
    (entries,) = struct.unpack_from(order + count_fmt, data, ifd)
    size: dict[int, int] = {}
    pos = ifd + count_size
    for _ in range(entries):
        if pos + entry_size > len(data):
            raise _truncated("tiff")
        tag, typ, count = struct.unpack_from(order + entry_fmt, data, pos)
        if tag in (256, 257):
            if typ not in _TIFF_INT_TYPES or count < 1:
                raise CorruptImageError("the TIFF file declares its size with a bad field type")
            value_fmt = order + _TIFF_INT_TYPES[typ]
            value_at = pos + entry_size - inline
            if struct.calcsize(value_fmt) * count > inline:  # stored elsewhere, at an offset
                (value_at,) = struct.unpack_from(order + ("Q" if big else "I"), data, value_at)
            if value_at + struct.calcsize(value_fmt) > len(data):
                raise _truncated("tiff")
            (size[tag],) = struct.unpack_from(value_fmt, data, value_at)
            if len(size) == 2:
                return size[256], size[257]
        pos += entry_size
    raise CorruptImageError("the TIFF file does not declare its width and height")


_HEADER_READERS = {"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size, "tiff": _tiff_size}


def _check_pixels(header: ImageHeader, max_pixels: int) -> None:
    if header.pixels <= max_pixels:
        return
    frames = f" x {header.frames} frames" if header.frames > 1 else ""
    limit = max_pixels / 1e6
    # As few decimals as keep the size visibly over the limit: 900 MP, 50.01 MP, 0.01 MP.
    digits = next(d for d in range(7) if round(header.pixels / 1e6, d) > limit)
    raise ImageTooLargeError(
        f"image is {header.width}x{header.height}{frames} = {header.pixels / 1e6:.{digits}f} MP, "
        f"over the {limit:g} MP limit"
    )


# --------------------------------------------------------------------------- decoding


class Decoded(NamedTuple):
    """A decoded file: the grey image every stage uses, and a glimpse of its colour.

    ``colour`` is a small BGR uint8 thumbnail (at most ``COLOUR_THUMB`` pixels a side) when the
    file stores colour channels, else ``None``; the input gate looks at it, nothing else does.
    """

    gray: np.ndarray
    colour: np.ndarray | None = None


COLOUR_THUMB = 64


def decode_gray(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any supported file to a 2-D uint8 grey image (refusing oversized ones first)."""
    return decode(data, max_pixels=max_pixels, colour=False).gray


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, colour: bool = True) -> Decoded:
    """``decode_gray`` plus, with ``colour``, a colour thumbnail of colour files."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, not {max_pixels}")
    data = _as_bytes(data)
    fmt = sniff_format(data)
    if fmt == "dicom":
        return _decode_dicom(data, max_pixels, colour)
    header = inspect_header(data)
    _check_pixels(header, max_pixels)
    # JPEG straight to luma is twice as fast as BGR + cvtColor, and gives the same grey.
    flag = cv2.IMREAD_GRAYSCALE if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise CorruptImageError(f"the {_NAMES[fmt]} file is damaged or truncated")
    thumb = None
    if colour and fmt == "jpeg":
        thumb = _jpeg_colour_thumb(data, header)
    elif colour and img.ndim == 3 and img.shape[2] >= 3:
        thumb = _colour_thumb(img[..., :3], *_value_range(img.dtype))
    return Decoded(_raster_to_gray(img), thumb)


def _colour_thumb(bgr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    h, w = bgr.shape[:2]
    scale = min(1.0, COLOUR_THUMB / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return _scale_to_uint8(bgr, lo, hi)


def _jpeg_colour_thumb(data: bytes, header: ImageHeader) -> np.ndarray | None:
    """libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost of a full decode;
    a thumbnail of 16 px or more a side is enough to tell colour from grey."""
    flag = cv2.IMREAD_COLOR
    for factor, reduced in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    ):
        if max(header.width, header.height) >= factor * 16:
            flag = reduced
            break
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        return None
    return None if bgr is None or bgr.ndim != 3 else _colour_thumb(bgr, 0, 255)


def _value_range(dtype: np.dtype) -> tuple[float, float]:
    """The declared range of a pixel type: the full integer range, or 0..1 for floats."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _raster_to_gray(img: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (grey, BGR or BGRA; 8, 16 or 32 bits) -> 2-D uint8."""
    if img.dtype not in (np.uint8, np.uint16, np.float32):  # cvtColor's supported depths
        lo, hi = _value_range(img.dtype)
        img = ((img.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    lo, hi = _value_range(img.dtype)
    alpha = None
    if img.ndim == 3:
        channels = img.shape[2]
        if channels in (2, 4):
            alpha = img[..., -1]
        if channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels in (1, 2):
            img = img[..., 0]
        else:
            raise UnsupportedImageError(f"images with {channels} channels are not supported")
    if alpha is not None:  # composite over black
        img = img.astype(np.float32) * (alpha.astype(np.float32) / hi)
    return _scale_to_uint8(img, lo, hi)


def _scale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map the declared range lo..hi linearly onto 0..255 (rounding, clipping outliers)."""
    if values.dtype == np.uint8 and (lo, hi) == (0, 255):
        return values
    out = values.astype(np.float32)
    out -= lo
    out *= 255.0 / (hi - lo)
    np.clip(out, 0, 255, out=out)
    np.rint(out, out=out)
    return out.astype(np.uint8)


# --------------------------------------------------------------------------- DICOM


def _read_dicom(data: bytes, *, stop_before_pixels: bool):
    import pydicom  # lazy: costs ~0.3 s and only DICOM needs it
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise UnsupportedImageError("not a readable DICOM file") from exc
    except Exception as exc:  # pydicom raises many kinds on damaged files
        raise CorruptImageError("the DICOM file is damaged or truncated") from exc


def _dicom_header(ds) -> ImageHeader:
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError) as exc:
        raise CorruptImageError("the DICOM file has unreadable image dimensions") from exc
    if rows == 0 and cols == 0:
        raise UnsupportedImageError("the DICOM file holds no image")
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise CorruptImageError(
            f"the DICOM header declares a {cols}x{rows} image with {frames} frames"
        )
    return ImageHeader("dicom", cols, rows, frames)


def _decode_dicom(data: bytes, max_pixels: int, colour: bool = False) -> Decoded:
    header = _dicom_header(_read_dicom(data, stop_before_pixels=True))
    _check_pixels(header, max_pixels)

    ds = _read_dicom(data, stop_before_pixels=False)
    if "PixelData" not in ds:  # pydicom drops an element cut short by the end of the file
        raise CorruptImageError("the DICOM file is truncated: its pixel data is missing")
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is None:
        raise CorruptImageError("the DICOM file does not say how its pixels are encoded")
    _check_decoder(syntax, int(ds.get("BitsStored") or 8))
    if syntax.is_encapsulated:
        _check_embedded_frame(ds, header, max_pixels)

    from pydicom.pixels import pixel_array

    try:
        arr = pixel_array(ds, index=0)
    except Exception as exc:
        if type(exc).__name__ == "DecompressionBombError":  # Pillow's own guard
            raise ImageTooLargeError("the image inside the DICOM file is too large") from exc
        raise CorruptImageError(
            f"the DICOM pixel data ({syntax.name}) is damaged or truncated"
        ) from exc
    if arr.shape[:2] != (header.height, header.width):
        raise CorruptImageError(
            f"the DICOM pixels are {arr.shape[1]}x{arr.shape[0]}, "
            f"the header says {header.width}x{header.height}"
        )
    thumb = None
    if colour and arr.ndim == 3 and arr.shape[2] == 3:  # RGB, as pydicom hands it over
        bits = int(ds.get("BitsStored") or 8)
        thumb = _colour_thumb(np.ascontiguousarray(arr[..., ::-1]), 0, 2**bits - 1)
    return Decoded(_dicom_to_gray(arr, ds), thumb)


def _check_decoder(syntax, bits_stored: int) -> None:
    """Refuse, naming what is missing, pixel encodings this installation cannot decode."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGExtended12Bit

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    needs = ""
    if decoder is not None and not decoder.is_available:
        options = [m.split(" - requires ")[-1] for m in decoder.missing_dependencies]
        needs = f" (needs {' or '.join(options)})" if options else ""
    # Pillow, pydicom's default JPEG plugin, reads only 8-bit JPEG Extended.
    pillow_only = decoder is not None and decoder.available_plugins == ("pillow",)
    if syntax == JPEGExtended12Bit and bits_stored > 8 and pillow_only:
        needs = " (12-bit JPEG needs pylibjpeg-libjpeg or gdcm)"
    if decoder is None or needs:
        raise UnsupportedImageError(
            f"DICOM compressed as {syntax.name} cannot be decoded here{needs}"
        )


def _check_embedded_frame(ds, header: ImageHeader, max_pixels: int) -> None:
    """The compressed frame carries its own size, which the decoder believes, not Rows/Columns."""
    from pydicom.encaps import get_frame

    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=header.frames)
    except Exception as exc:
        raise CorruptImageError("the DICOM pixel data is damaged or truncated") from exc
    size = None
    if frame[:2] == b"\xff\xd8":
        size = _jpeg_size(frame)
    elif frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # JPEG 2000 codestream, SIZ
        x, y, x0, y0 = struct.unpack(">IIII", frame[8:24])
        size = (x - x0, y - y0)
    if size is None:
        return
    _check_pixels(ImageHeader("dicom", *size), max_pixels)
    if size != (header.width, header.height):
        raise CorruptImageError(
            f"the image inside the DICOM file is {size[0]}x{size[1]}, "
            f"the header says {header.width}x{header.height}"
        )


def _dicom_float(ds, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    try:
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError) as exc:
        raise CorruptImageError(f"the DICOM file has an unreadable {keyword}") from exc


def _dicom_to_gray(arr: np.ndarray, ds) -> np.ndarray:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise CorruptImageError(f"the {photometric} DICOM image has {arr.shape[2]} samples")
        if int(ds.get("PixelRepresentation") or 0) == 1:
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        else:
            lo, hi = 0, 2**bits - 1
        # Rescale to output units, and map the declared stored range the same way: the result
        # is scaled by bit depth, and a negative slope inverts as it should.
        slope = _dicom_float(ds, "RescaleSlope", 1.0)
        intercept = _dicom_float(ds, "RescaleIntercept", 0.0)
        if slope == 0:
            raise CorruptImageError("the DICOM file has a rescale slope of 0")
        values = arr.astype(np.float32) * slope + intercept
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        gray = _scale_to_uint8(values, lo, hi)
        return 255 - gray if photometric == "MONOCHROME1" else gray
    if arr.ndim == 3 and arr.shape[2] == 3:  # RGB; pydicom has already converted YBR to RGB
        gray = cv2.cvtColor(arr.astype(np.float32), cv2.COLOR_RGB2GRAY)
        return _scale_to_uint8(gray, 0, 2**bits - 1)
    raise UnsupportedImageError(f"DICOM images in {photometric} are not supported")


# --------------------------------------------------------------------------- model input


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
    intensity: str = DEFAULT_INTENSITY,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """File bytes -> (image_size, image_size, 1) uint8, ready for the model."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, not {image_size}")
    if intensity not in INTENSITY_METHODS:
        raise ValueError(f"unknown intensity method {intensity!r}; choose from {INTENSITY_METHODS}")
    return model_input(
        decode_gray(data, max_pixels=max_pixels), image_size=image_size, intensity=intensity
    )


def model_input(
    gray: np.ndarray, *, image_size: int = DEFAULT_IMAGE_SIZE, intensity: str = DEFAULT_INTENSITY
) -> np.ndarray:
    """A decoded grey image -> (image_size, image_size, 1) uint8, the second half of ``prepare``."""
    if gray.shape != (image_size, image_size):
        gray = cv2.resize(gray, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return normalise_intensity(gray, intensity)[..., np.newaxis]


def read_file(path: str | Path, **kwargs) -> np.ndarray:
    """``prepare`` for a file on disk."""
    return prepare(Path(path).read_bytes(), **kwargs)
