"""What an image file is, from its first bytes: the container format and the size its header
declares, read without decoding a pixel, and the pixel limit checked against it.

The decompression-bomb guard of ``chestx.imaging``: the pixel count comes from the header (PNG
IHDR, JPEG SOFn, BMP DIB header, TIFF first IFD; DICOM through ``chestx.dicom``) and an
oversized file is refused before any decoder runs.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from chestx.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)

FORMATS = ("jpeg", "png", "bmp", "tiff", "dicom")
FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF", "dicom": "DICOM"}
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
    if head[128:132] == b"DICM":  # first: the 128-byte preamble before it may hold a TIFF header
        return "dicom"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    for offset, magic, name in _OTHER_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            raise UnsupportedImageError(f"{name} files are not supported; send {_READABLE}")
    raise UnsupportedImageError(f"not an image chestx can read; send {_READABLE}")


def raster_header(data: bytes, fmt: str) -> ImageHeader:
    """Declared size of a JPEG, PNG, BMP or TIFF (``fmt`` from ``sniff_format``), from its header
    alone. DICOM headers are read by ``chestx.dicom`` (``chestx.imaging.inspect_header`` picks)."""
    width, height = _HEADER_READERS[fmt](data)
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"the {FORMAT_NAMES[fmt]} header declares a {width}x{height} image")
    return ImageHeader(fmt, width, height)


def as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def _truncated(fmt: str) -> CorruptImageError:
    return CorruptImageError(
        f"the {FORMAT_NAMES[fmt]} file is truncated or damaged (header incomplete)"
    )


def _png_size(data: bytes) -> tuple[int, int]:
    # Signature (8), then the IHDR chunk must come first: length (4), b"IHDR", width, height.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _truncated("png")
    return struct.unpack(">II", data[16:24])


# SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC), plus JPEG-LS SOF55 (F7): all share the
# layout length, precision, height, width.
_JPEG_SOF = (frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}) | {0xF7}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}  # RSTn, SOI, TEM: no length field


def jpeg_size(data: bytes) -> tuple[int, int]:
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


def tiff_fields(data: bytes, wanted: tuple[int, ...]) -> dict[int, int]:
    """The first value of each ``wanted`` integer field (SHORT, LONG or LONG8) of the first IFD,
    in either byte order, classic TIFF or BigTIFF: {tag: value} for those present. A wanted
    tag of another type raises ``CorruptImageError``."""
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
    found: dict[int, int] = {}
    pos = ifd + count_size
    for _ in range(entries):
        if pos + entry_size > len(data):
            raise _truncated("tiff")
        tag, typ, count = struct.unpack_from(order + entry_fmt, data, pos)
        if tag in wanted:
            if typ not in _TIFF_INT_TYPES or count < 1:
                raise CorruptImageError(f"the TIFF file has a bad field type for its tag {tag}")
            value_fmt = order + _TIFF_INT_TYPES[typ]
            value_at = pos + entry_size - inline
            if struct.calcsize(value_fmt) * count > inline:  # stored elsewhere, at an offset
                (value_at,) = struct.unpack_from(order + ("Q" if big else "I"), data, value_at)
            if value_at + struct.calcsize(value_fmt) > len(data):
                raise _truncated("tiff")
            (found[tag],) = struct.unpack_from(value_fmt, data, value_at)
            if len(found) == len(wanted):
                break
        pos += entry_size
    return found


def _tiff_size(data: bytes) -> tuple[int, int]:
    """ImageWidth (256) and ImageLength (257) of the first IFD."""
    fields = tiff_fields(data, (256, 257))
    if len(fields) < 2:
        raise CorruptImageError("the TIFF file does not declare its width and height")
    return fields[256], fields[257]


_HEADER_READERS = {"png": _png_size, "jpeg": jpeg_size, "bmp": _bmp_size, "tiff": _tiff_size}


def check_pixels(header: ImageHeader, max_pixels: int) -> None:
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
