"""Non-X-ray images drawn from a seed, for the input gate's negatives (``chestx.negatives``):
documents, screenshots, charts (matplotlib), shapes, gradients, noise, blank images and other
modalities' scan screens. Each renderer takes a ``numpy`` random generator and returns a uint8
grey or BGR image; nothing is downloaded or read from disk.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def _size(rng: np.random.Generator, lo: int = 160, hi: int = 900) -> tuple[int, int]:
    """(height, width) of a rendered page or screen, portrait or landscape."""
    w = int(rng.integers(lo, hi))
    return int(w * rng.uniform(0.6, 1.6)), w


def grey_or_colour(image: np.ndarray, rng: np.random.Generator, p_grey: float = 0.5):
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
    return grey_or_colour(img, rng, 0.6)


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
    return grey_or_colour(img, rng, 0.3)


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
    return grey_or_colour(img, rng, 0.3)


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
    return grey_or_colour(img, rng, 0.5)


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
    return grey_or_colour(np.clip(img, 0, 255).astype(np.uint8), rng, 0.5)


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
    return grey_or_colour(np.clip(img, 0, 255).astype(np.uint8), rng, 0.5)


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
