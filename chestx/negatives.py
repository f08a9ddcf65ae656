"""Images that are not frontal chest X-rays, rendered here or taken from installed packages.

The input gate (``chestx.gate``) is fitted on them and measured on them. Nothing is downloaded:
documents, screenshots, shapes, gradients, noise and blank images are drawn with OpenCV; charts
with matplotlib; photographs and other imaging modalities come from files that ship inside
scikit-learn, matplotlib, pydicom and (when installed) scikit-image; rotated and inverted chest
X-rays are made from the X-rays passed in.

Fit and measurement never share an image: every family is rendered from a seed of the caller's
(fitting uses ``FIT_SEED``, measuring ``EVAL_SEED``), packaged pictures are split by file into a
fitting and a measuring half (``PACKAGED``), and the X-rays that become rotated or inverted
negatives come from the caller (the fitting split, or the held-out test sets).

The drawn families' renderers live in ``chestx.negatives_drawn`` (importable from here too);
this module holds the families, the packaged pictures, the X-ray families and the encoding.

Every item is the bytes of a file (PNG, JPEG, BMP, TIFF or DICOM), so a measurement runs the
same decoder the service runs; packaged files that chestx cannot decode (a DICOM compression
without its plugin) enter only as pixels, re-encoded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from chestx.negatives_drawn import (  # the renderers stay importable from here
    RENDERERS,
    blank,
    chart,
    document,
    gradient,
    grey_or_colour,
    noise,
    scan,
    screenshot,
    shapes,
)

__all__ = [
    "EVAL_SEED",
    "FAMILIES",
    "FIT_SEED",
    "PACKAGED",
    "PACKAGED_FAMILIES",
    "RENDERERS",
    "SYNTHETIC",
    "XRAY_FAMILIES",
    "blank",
    "chart",
    "document",
    "encode",
    "family",
    "from_xrays",
    "gradient",
    "noise",
    "packaged",
    "packaged_files",
    "scan",
    "screenshot",
    "shapes",
]

FIT_SEED = 0
EVAL_SEED = 1

# The families of the measured negative set; ``rotated`` and ``inverted`` need X-rays.
SYNTHETIC = ("document", "screenshot", "chart", "shapes", "gradient", "noise", "blank", "scan")
PACKAGED_FAMILIES = ("photo", "other_modality")
XRAY_FAMILIES = ("rotated", "inverted")
FAMILIES = SYNTHETIC + PACKAGED_FAMILIES + XRAY_FAMILIES

# Packaged files by family and half: (package, path inside its data folder).
PACKAGED = {
    "photo": {
        "fit": [
            ("sklearn", "china.jpg"),
            ("skimage", "astronaut.png"),
            ("skimage", "camera.png"),
            ("skimage", "chelsea.png"),
            ("skimage", "coffee.png"),
            ("skimage", "coins.png"),
            ("skimage", "horse.png"),
            ("skimage", "moon.png"),
            ("skimage", "brick.png"),
            ("skimage", "grass.png"),
            ("skimage", "text.png"),
            ("skimage", "clock_motion.png"),
            ("skimage", "motorcycle_left.png"),
            ("skimage", "logo.png"),
            ("matplotlib", "Minduka_Present_Blue_Pack.png"),
        ],
        "eval": [
            ("sklearn", "flower.jpg"),
            ("skimage", "rocket.jpg"),
            ("skimage", "hubble_deep_field.jpg"),
            ("skimage", "gravel.png"),
            ("skimage", "color.png"),
            ("skimage", "chessboard_GRAY.png"),
            ("skimage", "page.png"),
            ("skimage", "motorcycle_right.png"),
            ("matplotlib", "grace_hopper.jpg"),
            ("matplotlib", "logo2.png"),
        ],
    },
    "other_modality": {
        "fit": [
            ("pydicom", "CT_small.dcm"),
            ("pydicom", "JPGExtended.dcm"),
            ("skimage", "cell.png"),
            ("skimage", "retina.jpg"),
            ("pydicom", "examples_rgb_color.dcm"),
        ],
        "eval": [
            ("pydicom", "MR_small.dcm"),
            ("pydicom", "JPEG2000.dcm"),
            ("pydicom", "image_dfl.dcm"),
            ("pydicom", "examples_ybr_color.dcm"),
            ("skimage", "phantom.png"),
            ("skimage", "ihc.png"),
            ("skimage", "microaneurysms.png"),
        ],
    },
}
FACES = ("skimage", "lfw_subset.npy")  # 200 small grey faces: the first 100 fit, the rest eval


def _package_dir(package: str) -> Path | None:
    sub = {
        "sklearn": "datasets/images",
        "skimage": "data",
        "matplotlib": "mpl-data/sample_data",
        "pydicom": "data/test_files",
    }[package]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / sub


def packaged_files(family: str, half: str) -> list[Path]:
    """The packaged files of ``family`` for ``half`` (``fit`` or ``eval``) installed here."""
    found = []
    for package, name in PACKAGED[family][half]:
        folder = _package_dir(package)
        if folder is not None and (folder / name).is_file():
            found.append(folder / name)
    return found


# --------------------------------------------------------------------------- encoding


def encode(image: np.ndarray, rng: np.random.Generator) -> bytes:
    """An image as the bytes of a file in a random format people upload (JPEG most often)."""
    fmt = rng.choice(["jpeg", "jpeg", "png", "bmp", "tiff"])
    params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))] if fmt == "jpeg" else []
    ok, buf = cv2.imencode("." + ("jpg" if fmt == "jpeg" else str(fmt)), image, params)
    if not ok:  # pragma: no cover - OpenCV encodes every uint8 grey or BGR image
        raise ValueError(f"cannot encode a {image.shape} image as {fmt}")
    return buf.tobytes()


def _crop_and_scale(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if rng.random() < 0.6 and min(h, w) >= 32:
        ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = img[y : y + ch, x : x + cw]
    scale = rng.uniform(0.5, 2.0)
    size = (max(16, int(img.shape[1] * scale)), max(16, int(img.shape[0] * scale)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _load_packaged(path: Path) -> list[np.ndarray]:
    data = path.read_bytes()
    if path.suffix == ".dcm":  # through pydicom, min-max to 8 bits (the pixels, not the file)
        from chestx.dicom import load_pydicom

        try:
            arr = load_pydicom().dcmread(path).pixel_array.astype(np.float32)
        except Exception:  # a DICOM this install cannot decode
            return []
        if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] != 3):  # frames: the first
            arr = arr[0]
        arr = (arr - arr.min()) / max(float(np.ptp(arr)), 1e-6) * 255
        arr = arr.astype(np.uint8)
        return [cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return [] if img is None else [img]


def _decodable(path: Path) -> bool:
    from chestx import imaging
    from chestx.errors import ImageError

    try:
        imaging.decode_gray(path.read_bytes())
    except ImageError:
        return False
    return True


def _faces(half: str) -> list[np.ndarray]:
    folder = _package_dir(FACES[0])
    if folder is None or not (folder / FACES[1]).is_file():
        return []
    faces = np.load(folder / FACES[1])
    faces = faces[:100] if half == "fit" else faces[100:]
    return [np.clip(f * 255 if f.max() <= 1 else f, 0, 255).astype(np.uint8) for f in faces]


def packaged(family: str, half: str, rng: np.random.Generator, n: int) -> Iterator[bytes]:
    """``n`` images of a packaged family: each file once as it is, then crops and rescales
    (a quarter of them, for photos, small grey faces)."""
    files = packaged_files(family, half)
    pictures = [img for path in files for img in _load_packaged(path)]
    faces = _faces(half) if family == "photo" else []
    count = 0
    for path in files:  # every file once, as shipped (DICOM through chestx's DICOM decoder)
        if count < n and _decodable(path):
            yield path.read_bytes()
            count += 1
    if not pictures:
        return
    while count < n:
        if faces and rng.random() < 0.25:
            img = faces[int(rng.integers(len(faces)))]
        else:
            img = _crop_and_scale(pictures[int(rng.integers(len(pictures)))], rng)
        yield encode(grey_or_colour(img, rng, 0.4), rng)
        count += 1


def from_xrays(
    family: str, xrays: Sequence[bytes], rng: np.random.Generator, n: int
) -> Iterator[bytes]:
    """Chest X-rays turned by 90, 180 or 270 degrees (``rotated``) or with inverted grey levels."""
    from chestx import imaging

    picks = rng.choice(len(xrays), size=min(n, len(xrays)), replace=n > len(xrays))
    for i, k in enumerate(picks):
        gray = imaging.decode_gray(xrays[k])
        if family == "rotated":
            gray = np.rot90(gray, k=1 + i % 3)
        elif family == "inverted":
            gray = 255 - gray
        else:
            raise ValueError(f"unknown X-ray family {family!r}")
        yield encode(np.ascontiguousarray(gray), rng)


def family(
    name: str, n: int, seed: int, *, half: str = "eval", xrays: Sequence[bytes] = ()
) -> list[bytes]:
    """``n`` negatives of family ``name`` (file bytes), reproducible from ``seed``."""
    rng = np.random.default_rng([seed, FAMILIES.index(name)])
    if name in RENDERERS:
        return [encode(RENDERERS[name](rng), rng) for _ in range(n)]
    if name in PACKAGED_FAMILIES:
        return list(packaged(name, half, rng, n))
    if name in XRAY_FAMILIES:
        if not xrays:
            raise ValueError(f"the {name} family needs chest X-rays to turn or invert")
        return list(from_xrays(name, xrays, rng, n))
    raise ValueError(f"unknown negative family {name!r}; choose from {FAMILIES}")
