"""DICOM Part 10 files -> grey uint8, through pydicom (imported only when a DICOM file arrives,
so the JPEG path that training runs 5,216 times an epoch stays cheap).

MONOCHROME1 is inverted so bone is always bright (Photometric Interpretation decides; a
Presentation LUT Shape is not followed, since some files carry a wrong one, and an X-ray that
comes out inverted is refused by the input gate); the stored range is scaled by its declared
bit depth (BitsStored, or less where the brightest pixel says so: ``pixels.stored_bits``)
through its Modality LUT or rescale slope/intercept, then through its VOI LUT or window as a
viewer shows it, with its padding and its display shutter (the area outside the exposed field)
black, and turned as its PatientOrientation says to the way chest X-rays are read; the first
frame of a multi-frame file is used. Rows x Columns x NumberOfFrames and the embedded
JPEG/JPEG 2000 frame header are checked against the pixel limit before the pixels are decoded.
What the header says the image is (another modality, a lateral view, a For Processing image)
travels with it for the input gate (``not_frontal``).
"""

from __future__ import annotations

import io
import logging
import struct
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from chestx.errors import CorruptImageError, ImageTooLargeError, UnsupportedImageError
from chestx.imageformat import ImageHeader, check_pixels, jpeg_size
from chestx.pixels import Decoded, colour_thumb, scale_to_uint8, stored_bits

log = logging.getLogger(__name__)


def load_pydicom() -> ModuleType:
    """pydicom, imported on first use: it costs ~0.3 s, and only DICOM needs it.

    Importing it imports python-gdcm (its decoder for JPEG Lossless and JPEG-LS), whose
    ``gdcm.py`` still tries Python 2's ``import dl`` and then reads ``dl.RTLD_NOW``. A folder
    named ``dl`` where Python looks first (the working directory, under ``python -m chestx`` or
    in a notebook) made that an AttributeError, and every DICOM file a traceback. gdcm is
    imported first with ``dl`` and ``DLFCN`` hidden, so it takes its Python 3 path."""
    if "pydicom" not in sys.modules:
        hidden = {name: sys.modules.pop(name, None) for name in ("dl", "DLFCN")}
        for name in hidden:  # None in sys.modules: importing the name raises ImportError
            sys.modules[name] = None  # type: ignore[assignment]
        try:
            import gdcm  # noqa: F401
        except ImportError:  # not installed: pydicom says what it cannot decode without it
            pass
        finally:
            for name, module in hidden.items():
                if module is None:
                    del sys.modules[name]
                else:
                    sys.modules[name] = module
    import pydicom

    return pydicom


def read_dicom(data: bytes, *, stop_before_pixels: bool):
    pydicom = load_pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as exc:
        raise UnsupportedImageError("not a readable DICOM file") from exc
    except Exception as exc:  # pydicom raises many kinds on damaged files
        raise CorruptImageError("the DICOM file is damaged or truncated") from exc


def patient_of(path: Path) -> str | None:
    """A DICOM file's PatientID, read from its header alone; None for any other file, an
    unreadable one, or one whose PatientID is empty."""
    try:
        with path.open("rb") as f:
            if f.read(132)[128:] != b"DICM":
                return None
        ds = load_pydicom().dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        return str(ds.get("PatientID") or "").strip() or None
    except Exception:  # OSError, or pydicom's many kinds on a damaged file: no patient known
        return None


def holds_image(path: Path) -> bool:
    """Whether a DICOM file's SOP class, named in its file meta, stores an image. A PACS export
    or a CD puts structured reports (a dose report), presentation states, key-object notes,
    encapsulated PDFs and a ``DICOMDIR`` index beside the X-rays: their class names lack "Image
    Storage". An unknown (private) class, or a file whose meta cannot be read, counts as an
    image, so decoding it says what is wrong."""
    load_pydicom()
    from pydicom.filereader import read_file_meta_info

    try:
        uid = read_file_meta_info(path).get("MediaStorageSOPClassUID")
    except Exception:  # OSError, or pydicom's many kinds on a damaged file
        return True
    if uid is None or uid.name == str(uid):  # absent, or a class pydicom does not know
        return True
    return "Image Storage" in uid.name


def dicom_header(ds) -> ImageHeader:
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


def decode_dicom(data: bytes, max_pixels: int, colour: bool = False) -> Decoded:
    header = dicom_header(read_dicom(data, stop_before_pixels=True))
    check_pixels(header, max_pixels)

    ds = read_dicom(data, stop_before_pixels=False)
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
        thumb = colour_thumb(np.ascontiguousarray(arr[..., ::-1]), 0, 2**bits - 1)
    found = orientation(ds)
    return Decoded(as_displayed(_dicom_to_gray(arr, ds), found), thumb, not_frontal(ds, found))


# Modalities (PS3.3 C.7.3.1.1.1) whose images are never a chest radiograph: cross-sections,
# ultrasound, nuclear medicine, mammograms, dental and eye images, angiograms, photographs.
NOT_RADIOGRAPHS = frozenset("CT MR US NM PT MG IO PX XA OP OPT OCT IVUS SM ES XC GM BMD".split())
# Lateral projections (PS3.3 C.8.11.5 ViewPosition: LL, RL; LATERAL and LAT as vendors write it).
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT"})


# A patient direction's axis: left-right, front-back, head-foot (PS3.3 C.7.6.1.1.1).
_AXES = {"L": 0, "R": 0, "A": 1, "P": 1, "H": 2, "F": 2}


def orientation(ds) -> tuple[str, str] | None:
    """The patient directions along the image's rows and down its columns (PatientOrientation,
    e.g. ``("L", "F")``), by their main component: the first letter of each. None when the
    header does not say, or says something unreadable."""
    value = ds.get("PatientOrientation")
    if value is None or isinstance(value, str) or len(value) != 2:  # str: one value, not two
        return None
    row, col = (str(v).strip().upper()[:1] for v in value)
    if row not in _AXES or col not in _AXES or _AXES[row] == _AXES[col]:
        return None
    return row, col


FOR_PROCESSING = (
    "a For Processing image: raw detector values, before the processing that makes "
    "the X-ray a radiologist reads; send its For Presentation image"
)


def not_frontal(ds, found: tuple[str, str] | None) -> str | None:
    """What the file's header says it is when that is not a frontal chest radiograph, for the
    input gate: another modality (a CT slice, an ultrasound), a detector's raw For Processing
    image, or a lateral view, which a chest study in a PACS holds beside the frontal one; the
    model saw none of them. A header that says nothing, or an unknown modality, leaves it to
    the gate's look at the pixels. ``found`` is the header's ``orientation``."""
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality in NOT_RADIOGRAPHS:
        return f"a {modality} image (Modality {modality}), not a chest radiograph"
    if for_processing(ds):
        return FOR_PROCESSING
    view = str(ds.get("ViewPosition") or "").strip().upper()
    said = None
    if view in LATERAL_VIEWS:
        said = f"ViewPosition {view}"
    elif found and {_AXES[found[0]], _AXES[found[1]]} == {1, 2}:  # front-back and head-foot
        said = f"PatientOrientation {found[0]}\\{found[1]}"
    if said:
        return f"a lateral view ({said}); the model reads frontal (PA or AP) views"
    return None


def for_processing(ds) -> bool:
    """Whether the image is a detector's For Processing one (PresentationIntentType, or a SOP
    class such as "Digital X-Ray Image Storage - For Processing"; PS3.3 C.8.11.1.1.1): values
    before the detector's own processing (log, equalisation, edge enhancement), which no viewer
    shows to a radiologist and no training X-ray resembles."""
    if str(ds.get("PresentationIntentType") or "").strip().upper() == "FOR PROCESSING":
        return True
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
    return uid is not None and "For Processing" in uid.name


def as_displayed(gray: np.ndarray, found: tuple[str, str] | None) -> np.ndarray:
    """A frontal X-ray turned to the convention every chest X-ray is read in (and the training
    X-rays follow): the patient's left towards the image's right, the feet down (rows ``L``,
    columns ``F``). A header whose PatientOrientation says the image is stored mirrored
    (``R\\F``), upside down (``L\\H``) or on its side (``F\\L``) is turned; one that says
    nothing, or says a lateral view (``A`` or ``P``), is left as stored. ``found`` is the
    header's ``orientation``."""
    if found is None:
        return gray
    row, col = found
    if row in "HF" and col in "LR":  # on its side: rows run head to foot
        gray, row, col = gray.T, col, row
    if row not in "LR" or col not in "HF":  # a lateral or an oblique: nothing to turn to
        return gray
    if row == "R":
        gray = gray[:, ::-1]
    if col == "H":
        gray = gray[::-1]
    return np.ascontiguousarray(gray)


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
    # Pillow and pydicom's GDCM plugin read only 8-bit JPEG Extended; pylibjpeg-libjpeg (GPL,
    # so not a chestx dependency) reads 12-bit too.
    twelve_bit = decoder is not None and "pylibjpeg" in decoder.available_plugins
    if syntax == JPEGExtended12Bit and bits_stored > 8 and not twelve_bit:
        needs = " (12-bit JPEG needs pylibjpeg-libjpeg)"
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
        size = jpeg_size(frame)
    elif frame[:4] == b"\xff\x4f\xff\x51" and len(frame) >= 24:  # JPEG 2000 codestream, SIZ
        x, y, x0, y0 = struct.unpack(">IIII", frame[8:24])
        size = (x - x0, y - y0)
    if size is None:
        return
    check_pixels(ImageHeader("dicom", *size), max_pixels)
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
        padding = _padding(arr, ds)
        shutter = _shutter(ds, arr.shape)
        masks = [m for m in (padding, shutter) if m is not None]
        hidden = np.logical_or.reduce(masks) if masks else None  # not X-ray: not its bits
        if int(ds.get("PixelRepresentation") or 0) == 1:
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        else:  # 12-bit values under a BitsStored of 16 are common: judged as a PNG's are
            brightest = int(arr.max() if hidden is None or hidden.all() else arr[~hidden].max())
            lo, hi = 0, 2 ** min(bits, stored_bits(brightest)) - 1
        modality, lo, hi = _modality_lut(ds, lo, hi)

        def to_gray(stored: np.ndarray) -> np.ndarray:
            values, shown_lo, shown_hi = _apply_voi(modality(stored), ds, lo, hi)
            gray = scale_to_uint8(values, shown_lo, shown_hi)
            return 255 - gray if photometric == "MONOCHROME1" else gray

        gray = _per_level(arr, to_gray)
        if padding is not None:
            gray[padding] = 0
        if shutter is not None:
            gray[shutter] = _shutter_grey(ds)
        return gray
    if arr.ndim == 3 and arr.shape[2] == 3:  # RGB; pydicom has already converted YBR to RGB
        gray = cv2.cvtColor(arr.astype(np.float32), cv2.COLOR_RGB2GRAY)
        return scale_to_uint8(gray, 0, 2**bits - 1)
    raise UnsupportedImageError(f"DICOM images in {photometric} are not supported")


def _modality_lut(ds, lo: float, hi: float):
    """The file's modality transform (stored values -> output units) and the range it maps the
    stored range lo..hi onto: its Modality LUT Sequence where it has one (a table, through
    pydicom), else its rescale slope and intercept. The result is scaled by that range, and a
    negative slope or a falling table inverts as it should."""
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        def modality(stored: np.ndarray) -> np.ndarray:
            return apply_modality_lut(np.rint(stored).astype(np.int64), ds).astype(np.float32)

        try:  # the table over the stored range within its own entries (at most 65,536)
            n, first = (int(v) for v in ds.ModalityLUTSequence[0].LUTDescriptor[:2])
            domain = np.arange(max(lo, first), min(hi, first + (n or 65536) - 1) + 1)
            table = modality(domain if domain.size else np.array([lo, hi]))
        except Exception as exc:  # pydicom's ValueError, AttributeError, ... on a bad table
            raise CorruptImageError("the DICOM file has an unreadable Modality LUT") from exc
        return modality, float(table.min()), float(table.max())
    slope = _dicom_float(ds, "RescaleSlope", 1.0)
    intercept = _dicom_float(ds, "RescaleIntercept", 0.0)
    if slope == 0:
        raise CorruptImageError("the DICOM file has a rescale slope of 0")
    lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return (lambda stored: stored * slope + intercept), lo, hi


def _shutter(ds, shape: tuple[int, ...]) -> np.ndarray | None:
    """Where the file's display shutter hides the image (PS3.3 C.7.6.11: RECTANGULAR, CIRCULAR
    and POLYGONAL, combined as the header lists them): the collimated-off area outside the
    exposed field, which a detector can leave bright and a viewer paints over. None when the
    header names none of them, or one that hides nothing or everything; a shutter that cannot
    be read is left out, as a viewer would (a BITMAP shutter lives in an overlay: left too)."""
    shapes = ds.get("ShutterShape")
    if not shapes:
        return None
    h, w = shape[:2]
    inside = np.full((h, w), 255, np.uint8)
    listed = [shapes] if isinstance(shapes, str) else list(shapes)  # one value, or several
    for name in (str(v).strip().upper() for v in listed):
        keep = np.zeros((h, w), np.uint8)
        try:
            if name == "RECTANGULAR":  # 1-based, inclusive edges
                left, right = int(ds.ShutterLeftVerticalEdge), int(ds.ShutterRightVerticalEdge)
                top, bottom = int(ds.ShutterUpperHorizontalEdge), int(ds.ShutterLowerHorizontalEdge)
                keep[max(top - 1, 0) : max(bottom, 0), max(left - 1, 0) : max(right, 0)] = 255
            elif name == "CIRCULAR":  # centre as row\column, 1-based
                row, col = (int(v) for v in ds.CenterOfCircularShutter)
                cv2.circle(keep, (col - 1, row - 1), int(ds.RadiusOfCircularShutter), 255, -1)
            elif name == "POLYGONAL":  # vertices as row\column pairs, 1-based
                v = [int(x) for x in ds.VerticesOfThePolygonalShutter]
                points = np.array(list(zip(v[1::2], v[0::2], strict=True)), np.int32) - 1
                cv2.fillPoly(keep, [points], 255)
            else:
                continue
        except (AttributeError, TypeError, ValueError, cv2.error):
            log.warning("ignoring an unreadable %s display shutter", name)
            continue
        inside &= keep
    hidden = inside == 0
    return hidden if hidden.any() and not hidden.all() else None


def _shutter_grey(ds) -> int:
    """The grey a viewer paints the shutter with: ShutterPresentationValue (a P-value, 16
    bits), else black."""
    value = ds.get("ShutterPresentationValue")
    return 0 if value is None else round(min(max(int(value), 0), 65535) * 255 / 65535)


def _padding(arr: np.ndarray, ds) -> np.ndarray | None:
    """Where the stored pixels are padding, not X-ray (PixelPaddingValue, up to
    PixelPaddingRangeLimit where given; PS3.3 C.7.5.1.1.2): the area outside the exposed field
    that a CR plate or a detector fills to make the image rectangular, at a value of its own
    (often the top of a 16-bit container in MONOCHROME1). A viewer shows it black, and it says
    nothing of the X-ray's bit depth. None when the header names no padding, or every pixel
    would be padding."""
    first = ds.get("PixelPaddingValue")
    if first is None or arr.dtype.kind not in "iu":
        return None
    last = ds.get("PixelPaddingRangeLimit", first)
    try:
        low, high = sorted((int(first), int(last)))
    except (TypeError, ValueError) as exc:  # a multi-valued or unreadable element
        raise CorruptImageError("the DICOM file has an unreadable PixelPaddingValue") from exc
    mask = (arr >= low) & (arr <= high)
    return mask if mask.any() and not mask.all() else None


def _per_level(arr: np.ndarray, to_gray) -> np.ndarray:
    """``to_gray`` (elementwise) applied to integer pixels through a table over their range:
    once per grey level, not per pixel. A 3,000 x 3,000 X-ray has 9 M pixels and 4,096 levels."""
    if arr.dtype.kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if high - low < 1 << 16:
            table = to_gray(np.arange(low, high + 1, dtype=np.float32))
            return table[np.subtract(arr, low, dtype=np.int64)]
    return to_gray(arr.astype(np.float32))


def _apply_voi(values: np.ndarray, ds, lo: float, hi: float) -> tuple[np.ndarray, float, float]:
    """The file's first VOI transform (its VOI LUT, else its window: LINEAR, LINEAR_EXACT or
    SIGMOID), through pydicom, with the range it maps the stored range lo..hi onto: the X-ray
    as a viewer shows it, which is what an export to JPEG (the training X-rays) holds. Raw
    detector values can use a fraction of their range, or a curve the window undoes. A file
    without a VOI, or with one pydicom refuses (a window width under 1, a LUT of 9 bits), keeps
    the stored range."""
    if not ds.get("VOILUTSequence") and "WindowCenter" not in ds:
        return values, lo, hi
    from pydicom.pixels import apply_voi_lut

    try:  # integers: a VOI LUT is indexed by them, and a window's input is the rescaled value
        shown = apply_voi_lut(np.rint(values).astype(np.int64), ds)
        ends = apply_voi_lut(np.rint([lo, hi]).astype(np.int64), ds)
    except Exception:  # pydicom's ValueError, NotImplementedError, ... on a malformed VOI
        return values, lo, hi
    shown_lo, shown_hi = sorted(float(e) for e in ends)
    if not shown_hi > shown_lo:  # a window the whole stored range falls on one side of
        return values, lo, hi
    return shown.astype(np.float32), shown_lo, shown_hi
