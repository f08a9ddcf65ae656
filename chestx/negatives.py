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

Every item is the bytes of a file (PNG, JPEG, BMP, TIFF or DICOM), so a measurement runs the
same decoder the service runs; packaged files that chestx cannot decode (a DICOM compression
without its plugin) enter only as pixels, re-encoded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

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


def _size(rng: np.random.Generator, lo: int = 160, hi: int = 900) -> tuple[int, int]:
    """(height, width) of a rendered page or screen, portrait or landscape."""
    w = int(rng.integers(lo, hi))
    return int(w * rng.uniform(0.6, 1.6)), w


def _grey_or_colour(image: np.ndarray, rng: np.random.Generator, p_grey: float = 0.5):
    if image.ndim == 3 and rng.random() < p_grey:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)
_WORDS = (
    "patient",
    "report",
    "the",
    "of",
    "and",
    "chest",
    "radiograph",
    "findings",
    "normal",
    "lung",
    "fields",
    "are",
    "clear",
    "no",
    "effusion",
    "date",
    "signed",
    "invoice",
    "total",
    "page",
    "name",
    "address",
    "result",
    "pneumonia",
    "1024",
    "2026",
    "mg",
    "impression",
    "history",
    "cough",
    "fever",
    "x-ray",
    "table",
    "figure",
    "summary",
)


def _line(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(_WORDS, size=words))


def _text_block(img, rng, x0, y0, x1, y1, colour, scale=None) -> None:
    """Lines of words from (x0, y0) down to y1; a line may run past x1, as on a real page."""
    font = int(rng.choice(_FONTS))
    scale = scale or float(rng.uniform(0.35, 1.1))
    step = int(28 * scale) + int(rng.integers(4, 14))
    y = y0 + step
    while y < y1:
        if rng.random() < 0.85:
            text = _line(rng, int(rng.integers(2, 14)))
            cv2.putText(img, text, (x0, y), font, scale, colour, 1 + int(scale > 0.8), cv2.LINE_AA)
        y += step


def document(rng: np.random.Generator) -> np.ndarray:
    """A page of text: a report, a letter, a scanned form (sometimes tilted, sometimes grey)."""
    h, w = _size(rng, 200, 1000)
    paper = int(rng.integers(200, 256))
    img: np.ndarray = np.full((h, w, 3), paper, np.uint8)
    if rng.random() < 0.3:  # off-white or tinted paper
        img[:] = np.clip(np.array([paper, paper, paper]) - rng.integers(0, 40, 3), 0, 255)
    ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    margin = int(w * rng.uniform(0.04, 0.12))
    y = margin
    if rng.random() < 0.6:  # a heading
        cv2.putText(
            img,
            _line(rng, 3).upper(),
            (margin, y + 30),
            int(rng.choice(_FONTS)),
            float(rng.uniform(0.8, 1.6)),
            ink,
            2,
            cv2.LINE_AA,
        )
        y += 50
    if rng.random() < 0.3:  # a table
        rows, cols = int(rng.integers(3, 8)), int(rng.integers(2, 5))
        th = min(h - y - margin, rows * 30)
        for r in range(rows + 1):
            yy = y + r * th // rows
            cv2.line(img, (margin, yy), (w - margin, yy), ink, 1)
        for c in range(cols + 1):
            xx = margin + c * (w - 2 * margin) // cols
            cv2.line(img, (xx, y), (xx, y + th), ink, 1)
        y += th + 10
    _text_block(img, rng, margin, y, w - margin, h - margin, ink)
    if rng.random() < 0.4:  # scanned: tilt, blur and grain
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-3, 3)), 1.0)
        img = cv2.warpAffine(img, m, (w, h), borderValue=(paper, paper, paper))
        img = cv2.GaussianBlur(img, (3, 3), 0)
        grain = rng.normal(0, rng.uniform(2, 10), img.shape)
        img = np.clip(img + grain, 0, 255).astype(np.uint8)
    return _grey_or_colour(img, rng, 0.6)


def screenshot(rng: np.random.Generator) -> np.ndarray:
    """An application window or web page: bars, panels, buttons and text, light or dark."""
    h, w = _size(rng, 300, 1200)
    dark = rng.random() < 0.35
    bg = int(rng.integers(20, 60)) if dark else int(rng.integers(225, 256))
    img = np.full((h, w, 3), bg, np.uint8)
    fg = (230, 230, 230) if dark else (30, 30, 30)
    accent = tuple(int(v) for v in rng.integers(0, 256, 3))
    bar = int(rng.integers(24, 60))
    cv2.rectangle(img, (0, 0), (w, bar), accent, -1)
    cv2.putText(
        img,
        _line(rng, 3),
        (10, bar - 8),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.6,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    side = int(w * rng.uniform(0, 0.3))
    if side:
        shade = bg + (15 if dark else -15)
        cv2.rectangle(img, (0, bar), (side, h), (shade, shade, shade), -1)
        _text_block(img, rng, 8, bar + 10, side - 8, h - 10, fg, 0.45)
    for _ in range(int(rng.integers(2, 9))):  # panels, buttons, images
        x0, y0 = int(rng.integers(side, w - 40)), int(rng.integers(bar, h - 30))
        x1, y1 = int(rng.integers(x0 + 20, w)), int(rng.integers(y0 + 15, h))
        colour = (
            tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.5 else (bg + 10,) * 3
        )
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1 if rng.random() < 0.6 else 1)
    _text_block(img, rng, side + 15, bar + 15, w - 15, h - 15, fg, float(rng.uniform(0.4, 0.7)))
    return _grey_or_colour(img, rng, 0.3)


def chart(rng: np.random.Generator) -> np.ndarray:
    """A matplotlib figure: lines, bars, scatter, histogram, pie or an image plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(rng.uniform(3, 8), rng.uniform(2.5, 6)), dpi=int(rng.integers(50, 110)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    kind = rng.choice(["line", "bar", "scatter", "hist", "pie", "imshow"])
    x = np.arange(int(rng.integers(5, 60)))
    if kind == "line":
        for _ in range(int(rng.integers(1, 4))):
            ax.plot(x, np.cumsum(rng.normal(0, 1, len(x))))
    elif kind == "bar":
        ax.bar(x[:12], rng.uniform(0, 10, len(x[:12])))
    elif kind == "scatter":
        ax.scatter(rng.normal(size=200), rng.normal(size=200), s=8)
    elif kind == "hist":
        ax.hist(rng.normal(size=500), bins=int(rng.integers(10, 40)))
    elif kind == "pie":
        ax.pie(rng.uniform(1, 5, int(rng.integers(3, 7))))
    else:
        ax.imshow(
            rng.normal(size=(20, 20)).cumsum(0),
            cmap=str(rng.choice(["viridis", "gray", "magma", "coolwarm"])),
        )
    ax.set_title(_line(rng, 3))
    if rng.random() < 0.5:
        ax.grid(True)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]  # Agg canvas
    img = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)
    return _grey_or_colour(img, rng, 0.3)


def shapes(rng: np.random.Generator) -> np.ndarray:
    """Circles, rectangles, lines and polygons on a plain or noisy background."""
    h, w = _size(rng, 64, 700)
    img: np.ndarray = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(int(rng.integers(1, 25))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        thick = -1 if rng.random() < 0.5 else int(rng.integers(1, 8))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        q = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if kind == 0:
            cv2.circle(img, p, int(rng.integers(3, max(4, min(h, w) // 2))), colour, thick)
        elif kind == 1:
            cv2.rectangle(img, p, q, colour, thick)
        elif kind == 2:
            cv2.line(img, p, q, colour, max(1, thick))
        else:
            pts = rng.integers(0, [w, h], (int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], colour)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 6)))
    return _grey_or_colour(img, rng, 0.5)


def gradient(rng: np.random.Generator) -> np.ndarray:
    """Linear or radial gradients between random colours or grey levels."""
    h, w = _size(rng, 32, 900)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        t = np.hypot(yy - cy, xx - cx) / np.hypot(h, w)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    if rng.random() < 0.3:  # periodic bands
        t = 0.5 + 0.5 * np.sin(t * rng.uniform(3, 30))
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return _grey_or_colour(np.clip(img, 0, 255).astype(np.uint8), rng, 0.5)


def noise(rng: np.random.Generator) -> np.ndarray:
    """Uniform, Gaussian, salt-and-pepper or smooth (blurred, cloud-like) noise."""
    h, w = _size(rng, 32, 900)
    channels = 3 if rng.random() < 0.5 else 1
    kind = rng.integers(0, 4)
    if kind == 0:
        img: np.ndarray = rng.integers(0, 256, (h, w, channels))
    elif kind == 1:
        img = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (h, w, channels))
    elif kind == 2:
        img = np.where(rng.random((h, w, channels)) < rng.uniform(0.05, 0.5), 255, 0)
        img = np.where(rng.random((h, w, channels)) < 0.5, img, rng.integers(0, 256))
    else:
        small = rng.normal(
            128,
            60,
            (
                max(2, h // int(rng.integers(4, 64))),
                max(2, w // int(rng.integers(4, 64))),
                channels,
            ),
        )
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def blank(rng: np.random.Generator) -> np.ndarray:
    """A single colour or grey level (white, black, anything), sometimes with faint noise."""
    h, w = _size(rng, 16, 900)
    value = rng.choice([0, 255, int(rng.integers(0, 256))])
    img = np.full((h, w, 3), value, np.float32)
    if rng.random() < 0.5:
        img[:] = rng.integers(0, 256, 3)
    if rng.random() < 0.4:
        img += rng.normal(0, rng.uniform(0.5, 3), img.shape)
    return _grey_or_colour(np.clip(img, 0, 255).astype(np.uint8), rng, 0.5)


def scan(rng: np.random.Generator) -> np.ndarray:
    """Another modality's screen: an ultrasound fan or a CT/MR-like cross-section in speckle on
    black, with the scanner's annotations in the corners."""
    h, w = _size(rng, 128, 800)
    img = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, rng.uniform(0.02, 0.5) * h
    if rng.random() < 0.5:  # an ultrasound sector
        radius = int(rng.uniform(0.5, 0.95) * h)
        half = rng.uniform(25, 55)
        cv2.ellipse(mask, (int(cx), int(cy * 0.3)), (radius, radius), 90, -half, half, 255, -1)
    else:  # a cross-section: an ellipse of body with blobs of organ and bone
        cy = h / 2 + rng.uniform(-0.1, 0.1) * h
        axes = (int(rng.uniform(0.25, 0.48) * w), int(rng.uniform(0.2, 0.45) * h))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, 0, 0, 360, 255, -1)
        for _ in range(int(rng.integers(2, 10))):
            centre = (
                int(cx + rng.uniform(-0.7, 0.7) * axes[0]),
                int(cy + rng.uniform(-0.7, 0.7) * axes[1]),
            )
            blob = (int(rng.uniform(0.05, 0.3) * axes[0]), int(rng.uniform(0.05, 0.3) * axes[1]))
            cv2.ellipse(
                img,
                centre,
                blob,
                float(rng.uniform(0, 180)),
                0,
                360,
                float(rng.uniform(40, 255)),
                -1,
            )
    tissue = cv2.GaussianBlur(
        rng.normal(0.5, 0.25, (h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.5, 3))
    )
    speckle = rng.rayleigh(rng.uniform(0.2, 0.5), (h, w)).astype(np.float32)
    img = np.where(mask > 0, np.clip(img + 255 * tissue * speckle, 0, 255), 0).astype(np.uint8)
    for corner in range(int(rng.integers(0, 5))):  # annotations
        x = 5 if corner % 2 == 0 else int(w * 0.65)
        y = 15 if corner < 2 else h - 40
        _text_block(img, rng, x, y - 14, w, y + 25, 200, 0.4)
    return img


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
        import pydicom

        try:
            arr = pydicom.dcmread(path).pixel_array.astype(np.float32)
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
        yield encode(_grey_or_colour(img, rng, 0.4), rng)
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


RENDERERS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "document": document,
    "screenshot": screenshot,
    "chart": chart,
    "shapes": shapes,
    "gradient": gradient,
    "noise": noise,
    "blank": blank,
    "scan": scan,
}


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
