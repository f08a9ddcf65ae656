"""Bytes of an X-ray file -> the model's input: one code path for training, serving and the CLI.

    header check -> decode -> grey uint8 -> frame trim -> resize -> heavy grain smoothed
    -> intensity normalisation -> (S, S, 1) uint8

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
  A JPEG's EXIF orientation is honoured (OpenCV applies it when decoding to grey), and a grey
  TIFF stored WhiteIsZero is inverted, as a DICOM's MONOCHROME1 is.
* DICOM: MONOCHROME1 is inverted so bone is always bright; the file's Modality LUT, VOI LUT
  or window, padding, display shutter and PatientOrientation are applied as a viewer does
  (``chestx.dicom``).
* Multi-frame DICOM and multi-page TIFF: the first frame is used.
* The resize is a plain INTER_AREA resize to a square, without keeping the aspect ratio,
  because that is how the training images were made; a side far shorter than the model's
  input (a thumbnail) is enlarged with a cubic kernel instead (``resize_square``).
* Decompression bombs: the pixel count is read from the header (PNG IHDR, JPEG SOFn, BMP DIB
  header, TIFF first IFD, DICOM Rows x Columns x NumberOfFrames and the embedded JPEG/JPEG 2000
  frame header) and the file is refused before any decoder runs.

The model scales 0-255 to 0-1 itself, so what leaves this module is plain uint8 pixels.

Three modules: ``chestx.imageformat`` (format and header size, before decoding),
``chestx.dicom`` (DICOM decoding) and this one (raster decoding and the model input), which
is the one to import: ``sniff_format``, ``inspect_header`` and ``ImageHeader`` live on here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from chestx.config import (
    BLACK_LEVEL,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INTENSITY,
    DEFAULT_MAX_PIXELS,
    DENOISE_COLOUR,
    DENOISE_SPACE,
    FRAME_BAND,
    FRAME_BAND_DRIFT,
    FRAME_DARK,
    FRAME_DARK_TOLERANCE,
    FRAME_FLOOR,
    FRAME_GRAIN,
    FRAME_TOLERANCE,
    FRAME_WHITE,
    INTENSITY_METHODS,
    LIFT_LEVEL,
    MID_FLOOR,
    MID_LEVELS,
    NOISE_MAX,
    SMALL_SIDE,
)
from chestx.errors import CorruptImageError, UnsupportedImageError
from chestx.imageformat import (  # the public names stay importable from chestx.imaging
    FORMAT_NAMES,
    FORMATS,
    ImageHeader,
    as_bytes,
    check_pixels,
    raster_header,
    sniff_format,
    tiff_fields,
)
from chestx.pixels import Decoded, colour_thumb, scale_to_uint8, stored_bits  # re-exported

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


def inspect_header(data: bytes) -> ImageHeader:
    """Format and declared size of an image, from its header alone (nothing is decoded)."""
    data = as_bytes(data)
    fmt = sniff_format(data)
    if fmt == "dicom":
        from chestx import dicom  # pydicom is imported only when a DICOM file arrives

        return dicom.dicom_header(dicom.read_dicom(data, stop_before_pixels=True))
    return raster_header(data, fmt)


# --------------------------------------------------------------------------- decoding


def decode_gray(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any supported file to a 2-D uint8 grey image (refusing oversized ones first)."""
    return decode(data, max_pixels=max_pixels, colour=False).gray


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, colour: bool = True) -> Decoded:
    """``decode_gray`` plus, with ``colour``, a colour thumbnail of colour files."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, not {max_pixels}")
    data = as_bytes(data)
    fmt = sniff_format(data)
    if fmt == "dicom":
        from chestx import dicom  # pydicom is imported only when a DICOM file arrives

        return dicom.decode_dicom(data, max_pixels, colour)
    header = inspect_header(data)
    check_pixels(header, max_pixels)
    # JPEG straight to luma is twice as fast as BGR + cvtColor, and gives the same grey.
    flag = cv2.IMREAD_GRAYSCALE if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise CorruptImageError(f"the {FORMAT_NAMES[fmt]} file is damaged or truncated")
    if fmt == "tiff" and img.ndim == 2:
        img = _white_is_zero(data, img)
    thumb = None
    if colour and fmt == "jpeg":
        thumb = _jpeg_colour_thumb(data, header)
    elif colour and img.ndim == 3 and img.shape[2] >= 3:
        thumb = colour_thumb(img[..., :3], *_stored_range(img[..., :3]))
    return Decoded(_raster_to_gray(img), thumb)


def _white_is_zero(data: bytes, img: np.ndarray) -> np.ndarray:
    """A grey TIFF stored WhiteIsZero (PhotometricInterpretation 0, TIFF's MONOCHROME1: a film
    digitiser's or a CR reader's export) comes from OpenCV as stored, bone dark: inverted here
    over its BitsPerSample, as a viewer shows it. (What OpenCV reads through libtiff's RGBA
    interface comes back in colour, already inverted, and is not passed here.)"""
    try:
        fields = tiff_fields(data, (258, 262))
    except CorruptImageError:  # OpenCV read the pixels: a malformed tag leaves them as stored
        return img
    if fields.get(262) != 0 or img.dtype.kind != "u":
        return img
    # OpenCV widens 1-bit and 4-bit samples to 8; 16-bit ones may use fewer bits (BitsPerSample)
    top = 255 if img.itemsize == 1 else 2 ** min(fields.get(258, 16), 16) - 1
    return (top - np.minimum(img, top)).astype(img.dtype)


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
    return None if bgr is None or bgr.ndim != 3 else colour_thumb(bgr, 0, 255)


def _value_range(dtype: np.dtype) -> tuple[float, float]:
    """The declared range of a pixel type: the full integer range, or 0..1 for floats."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _stored_range(img: np.ndarray) -> tuple[float, float]:
    """The range of the bits a raster holds: a 16-bit PNG or TIFF by its ``stored_bits``."""
    if img.dtype != np.uint16:
        return _value_range(img.dtype)
    return 0.0, float(2 ** stored_bits(int(img.max())) - 1)


def _raster_to_gray(img: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array (grey, BGR or BGRA; 8, 16 or 32 bits) -> 2-D uint8."""
    if img.dtype not in (np.uint8, np.uint16, np.float32):  # cvtColor's supported depths
        lo, hi = _value_range(img.dtype)
        img = ((img.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    opaque = _value_range(img.dtype)[1]
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
    lo, hi = _stored_range(img)  # of the grey, not the alpha channel
    if alpha is not None:  # composite over black
        img = img.astype(np.float32) * (alpha.astype(np.float32) / opaque)
    return scale_to_uint8(img, lo, hi)


# --------------------------------------------------------------------------- model input


def grey_level(gray: np.ndarray, fraction: float, floor: int = 0) -> int:
    """The grey level that ``fraction`` of a uint8 image's pixels at or above ``floor`` do not
    exceed (a percentile, as ``np.percentile(gray[gray >= floor], 100 * fraction,
    method="inverted_cdf")``, at histogram cost); 0 when no pixel reaches ``floor``. Any array
    of small non-negative integers works the same way (``noise_level``'s residuals)."""
    counts = np.bincount(gray.ravel(), minlength=256)
    counts[:floor] = 0
    cumulative = np.cumsum(counts)
    return int(np.searchsorted(cumulative, fraction * cumulative[-1]))


def bright_level(gray: np.ndarray) -> int:
    """The grey level that 99 % of a uint8 image's pixels do not exceed."""
    return grey_level(gray, 0.99)


def lift_exposure(gray: np.ndarray, level: int = LIFT_LEVEL) -> np.ndarray:
    """Scale an under-exposed X-ray's grey levels up until its ``bright_level`` is ``level``;
    an X-ray at or above it is returned as it is. CLAHE cannot do this: its clip limit keeps a
    dim X-ray's narrow histogram narrow, and a model trained on well-exposed X-rays calls the
    result pneumonia."""
    bright = bright_level(gray)
    if bright >= level:
        return gray
    return cv2.convertScaleAbs(gray, alpha=level / max(bright, 1))


def dark_level(gray: np.ndarray) -> int:
    """The grey level that 1 % of a uint8 image's pixels do not exceed (its black point)."""
    return grey_level(gray, 0.01)


def lower_black(gray: np.ndarray, level: int = BLACK_LEVEL) -> np.ndarray:
    """Stretch a washed-out X-ray's grey levels down, white staying white, until its
    ``dark_level`` is ``level``; an X-ray at or below it is returned as it is. Flattened
    contrast (an export's window, a soft film) turns the black background grey, and the
    networks call a flat normal X-ray pneumonia."""
    dark = dark_level(gray)
    if dark <= level or dark == 255:
        return gray
    scale = (255 - level) / (255 - dark)
    return cv2.convertScaleAbs(gray, alpha=scale, beta=level - dark * scale)


def mid_level(gray: np.ndarray) -> int:
    """The median grey level of an X-ray's pixels that are not black (``MID_FLOOR`` and up):
    black padding or borders (a letterboxed export, a looser framing) are not its exposure."""
    return grey_level(gray, 0.5, floor=MID_FLOOR)


_UNIT_LEVELS = np.linspace(0.0, 1.0, 256)


def gamma_curve(gray: np.ndarray, exponent: float) -> np.ndarray:
    """A uint8 image's grey levels raised to ``exponent`` on 0-1 (black and white stay put)."""
    return cv2.LUT(gray, np.rint(255 * _UNIT_LEVELS**exponent).astype(np.uint8))


def level_midtones(gray: np.ndarray, levels: tuple[int, int] = MID_LEVELS) -> np.ndarray:
    """Bend an X-ray's grey levels with a gamma curve (black and white stay put) until its
    ``mid_level`` lies in ``levels``; one already inside is returned as it is. A scanner's or
    an export's exposure curve moves the mid-tones (the robustness report's gamma), which the
    networks otherwise read as disease."""
    low, high = levels
    mid = mid_level(gray)
    if low <= mid <= high or mid in (0, 255):
        return gray
    return gamma_curve(gray, np.log((low if mid < low else high) / 255) / np.log(mid / 255))


def normalise_intensity(gray: np.ndarray, method: str = "clahe") -> np.ndarray:
    """Even out exposure differences between collections (the main source of test-time shift).
    ``lift-clahe`` is ``clahe`` after ``lift_exposure``: the same input as ``clahe`` for all but
    the dimmest twentieth of the training X-rays, and a darker X-ray brought up to their level.
    ``level-clahe`` also brings the mid-tones into the training X-rays' middle half
    (``level_midtones``) before CLAHE; ``span-clahe`` first lowers a washed-out X-ray's black
    point into the training X-rays' range (``lower_black``)."""
    if method == "none":
        return gray
    if method == "equalize":
        return cv2.equalizeHist(gray)
    if method == "clahe":
        return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
    if method == "lift-clahe":
        return normalise_intensity(lift_exposure(gray), "clahe")
    if method == "level-clahe":
        return normalise_intensity(level_midtones(lift_exposure(gray)), "clahe")
    if method == "span-clahe":
        return normalise_intensity(lower_black(gray), "level-clahe")
    raise ValueError(f"unknown intensity method {method!r}; choose from {INTENSITY_METHODS}")


def describe(image_size: int, intensity: str) -> str:
    """The preprocessing a model card records."""
    return (
        "decode -> grey uint8 (16-bit scaled by its stored bit depth) -> a frame "
        f"trimmed -> resize to {image_size}x{image_size} (INTER_AREA; cubic for a side under "
        f"{SMALL_SIDE:g} of it) -> heavy grain smoothed "
        f"-> intensity '{intensity}' (chestx.imaging.prepare)"
    )


def prepare(
    data: bytes,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    intensity: str = DEFAULT_INTENSITY,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    frontal_only: bool = False,
) -> np.ndarray:
    """File bytes -> (image_size, image_size, 1) uint8, ready for the model. ``frontal_only``
    refuses a DICOM file whose header says it is not a frontal chest radiograph (a lateral view,
    a CT slice: ``Decoded.not_frontal``), as the input gate does; training reads so."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, not {image_size}")
    if intensity not in INTENSITY_METHODS:
        raise ValueError(f"unknown intensity method {intensity!r}; choose from {INTENSITY_METHODS}")
    decoded = decode(data, max_pixels=max_pixels, colour=False)
    if frontal_only and decoded.not_frontal:
        raise UnsupportedImageError(f"its DICOM header says {decoded.not_frontal}")
    return model_input(decoded.gray, image_size=image_size, intensity=intensity)


def trim_frame(gray: np.ndarray) -> np.ndarray:
    """Cut away the rows and columns along an image's edges that are a frame: a white or grey
    border that an export, a scanner or a film's unexposed margin put around the X-ray (uniform,
    or with grain), or black bars (a portrait X-ray letterboxed onto a wider canvas);
    ``config.FRAME_*``. The networks never saw a light frame, and a white one makes them call
    every X-ray normal; black bars squeeze the anatomy, and they call a squeezed normal X-ray
    pneumonia. At most a quarter of each side goes; an image without a frame is returned as it
    is."""
    h, w = gray.shape

    def framing(line: np.ndarray) -> bool:
        low, high = int(line.min()), int(line.max())
        if low >= FRAME_FLOOR and high - low <= FRAME_TOLERANCE:
            return True
        if high <= FRAME_DARK and high - low <= FRAME_DARK_TOLERANCE:
            return True
        mean, std = cv2.meanStdDev(line)
        return mean[0, 0] >= FRAME_WHITE and std[0, 0] <= FRAME_GRAIN

    def cut(line: Callable[[int], np.ndarray], side: int) -> int:
        """How many lines, counted from the edge in, are a frame: each one alone, then a grey
        band with grain (lines as even as a margin, whose mean stays within FRAME_BAND_DRIFT
        of the first's), taken only when it is FRAME_BAND of the side or more: the soft tissue
        along an X-ray's edge can be as even over a few lines, but its mean moves."""
        limit, k = side // 4, 0
        while k < limit and framing(line(k)):
            k += 1
        band, first = 0, 0.0
        while k + band < limit:
            mean, std = (v[0, 0] for v in cv2.meanStdDev(line(k + band)))
            if mean < FRAME_FLOOR or std > FRAME_GRAIN:
                break
            if band == 0:
                first = mean
            elif abs(mean - first) > FRAME_BAND_DRIFT:
                break
            band += 1
        return k + band if band >= FRAME_BAND * side else k

    top = cut(lambda k: gray[k], h)
    bottom = h - cut(lambda k: gray[h - 1 - k], h)
    left = cut(lambda k: gray[top:bottom, k], w)
    right = w - cut(lambda k: gray[top:bottom, w - 1 - k], w)
    if (top, bottom, left, right) == (0, h, 0, w):
        return gray
    return np.ascontiguousarray(gray[top:bottom, left:right])


def noise_level(gray: np.ndarray) -> float:
    """The image's grain, in grey levels: the robust spread (1.4826 x the median absolute
    deviation) of what a 3 x 3 median filter takes away. A clean X-ray at 224 px scores 0 to 1.5,
    and Gaussian noise of standard deviation s about 0.85 s. The medians are read from counts of
    the integer residuals by ``grey_level`` (0.2 ms at 224 px, against 1 ms for ``np.median``)."""
    residual = cv2.subtract(gray, cv2.medianBlur(gray, 3), dtype=cv2.CV_16S) + 255  # 0..510
    middle = grey_level(residual, 0.5)
    return grey_level(np.abs(residual - middle), 0.5) * 1.4826


def quiet_noise(gray: np.ndarray) -> np.ndarray:
    """Smooth the grain of an image at the model's input size when it is above ``NOISE_MAX``,
    with a bilateral filter that keeps edges (``config.DENOISE_*``); others are returned as they
    are. The networks trained on X-rays with a little noise, and heavier grain looks like
    pneumonia to them: external-dev with noise of standard deviation 20 kept its ranking (ROC
    AUC 0.958) but scored specificity 0.129."""
    level = noise_level(gray)
    if level <= NOISE_MAX:
        return gray
    scale = gray.shape[1] / DEFAULT_IMAGE_SIZE  # the settings were chosen at 224 px
    diameter = max(3, round(7 * scale))  # the neighbourhood: 7 px across at 224
    return cv2.bilateralFilter(gray, diameter, DENOISE_COLOUR * level, DENOISE_SPACE * scale)


def model_input(
    gray: np.ndarray, *, image_size: int = DEFAULT_IMAGE_SIZE, intensity: str = DEFAULT_INTENSITY
) -> np.ndarray:
    """A decoded grey image -> (image_size, image_size, 1) uint8, the second half of ``prepare``:
    a frame trimmed, resized, heavy grain smoothed, its intensity normalised."""
    gray = resize_square(trim_frame(gray), image_size)
    return normalise_intensity(quiet_noise(gray), intensity)[..., np.newaxis]


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """``gray`` resized to size x size: by area (averaging, no aliasing), except that a side
    shorter than ``SMALL_SIDE`` x size is enlarged with a cubic kernel, where area would repeat
    pixels in blocks. Each axis takes its own kernel (a small strip of a tall image)."""
    if gray.shape == (size, size):
        return gray
    h, w = gray.shape
    kx, ky = (cv2.INTER_CUBIC if n < SMALL_SIDE * size else cv2.INTER_AREA for n in (w, h))
    if kx != ky:
        gray = cv2.resize(gray, (size, h), interpolation=kx)
    return cv2.resize(gray, (size, size), interpolation=ky)


def read_file(path: str | Path, **kwargs) -> np.ndarray:
    """``prepare`` for a file on disk."""
    return prepare(Path(path).read_bytes(), **kwargs)
