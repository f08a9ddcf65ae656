"""Graded corruptions of labelled X-rays: how a model's ranking and specificity hold up.

Each corruption imitates something another scanner, exposure or technician does to an image
(exposure curve, contrast, overall brightness, focus, noise, compression, positioning, framing,
resolution) and is applied to the decoded grey X-ray *before* chestx's own resizing and
intensity normalisation, as a different acquisition would be. A model that leans on one
collection's look loses ROC AUC or specificity quickly here; it is a data-free guide to how it
will travel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from chestx import imaging
from chestx.errors import ImageError
from chestx.metrics import binary_metrics

log = logging.getLogger(__name__)

_REFERENCE_WIDTH = 224  # blur and noise strengths are given for an image this wide


def _contrast(img, c):
    mean = float(img.mean())
    return np.clip(mean + c * (img.astype(np.float32) - mean), 0, 255).astype(np.uint8)


def _exposure(img, factor):
    """Under-exposure: every grey level scaled by ``factor``, black staying black, as a dim
    film or an export windowed to a wider range than the X-ray uses."""
    return cv2.convertScaleAbs(img, alpha=factor)


def _blur(img, sigma):
    return cv2.GaussianBlur(img, (0, 0), sigma * img.shape[1] / _REFERENCE_WIDTH)


def _noise(img, std, *, seed=0):
    rng = np.random.default_rng(seed)
    noisy = img.astype(np.float32) + rng.normal(0.0, std, img.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _jpeg(img, quality):
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _rotate(img, degrees):
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def _crop(img, fraction):
    """Tighter framing: cut ``fraction`` from each side, then back to the original size."""
    h, w = img.shape
    dy, dx = round(h * fraction), round(w * fraction)
    return cv2.resize(img[dy : h - dy, dx : w - dx], (w, h), interpolation=cv2.INTER_LINEAR)


def _zoom_out(img, fraction):
    """Looser framing: shrink by ``fraction`` per side and pad with black. Since the frame trim
    cuts black bars (``imaging.trim_frame``), the padding goes again before the resize, and
    this measures what is left: the shrink and resize, and any border the X-ray had."""
    return _shrink_and_pad(img, fraction, 0)


def _frame(img, fraction):
    """A white frame (a film's unexposed margin, a scanner's or an export's border): shrink by
    ``fraction`` per side and pad with white."""
    return _shrink_and_pad(img, fraction, 255)


def _low_resolution(img, side):
    """A thumbnail or a small export: the longest side shrunk to ``side`` px (by area), left
    at that size for chestx's own resize to enlarge."""
    scale = side / max(img.shape)
    if scale >= 1:
        return img
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _shrink_and_pad(img, fraction, value):
    h, w = img.shape
    dy, dx = round(h * fraction), round(w * fraction)
    small = cv2.resize(img, (w - 2 * dx, h - 2 * dy), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(
        small,
        dy,
        h - small.shape[0] - dy,
        dx,
        w - small.shape[1] - dx,
        cv2.BORDER_CONSTANT,
        value=value,
    )


# name -> (function, three levels from mild to strong, what the level means)
CORRUPTIONS: dict[str, tuple[Callable, tuple[float, ...], str]] = {
    "gamma": (imaging.gamma_curve, (1.25, 1.5, 2.0), "exponent on 0-1 intensities"),
    "contrast": (_contrast, (0.8, 0.6, 0.4), "factor around the mean"),
    "exposure": (_exposure, (0.8, 0.6, 0.4), "factor on grey levels"),
    "blur": (_blur, (1.0, 2.0, 3.0), "Gaussian sigma, px at 224 wide"),
    "noise": (_noise, (5.0, 10.0, 20.0), "Gaussian std, grey levels"),
    "jpeg": (_jpeg, (50, 25, 10), "JPEG quality"),
    "rotation": (_rotate, (5.0, 10.0, 15.0), "degrees"),
    "crop": (_crop, (0.05, 0.10, 0.15), "fraction cut per side"),
    "zoom_out": (_zoom_out, (0.05, 0.10, 0.15), "fraction padded per side"),
    "frame": (_frame, (0.05, 0.10, 0.15), "fraction framed in white per side"),
    "resolution": (_low_resolution, (128, 96, 64), "longest side, px (a thumbnail)"),
}


def _load(paths, max_side: int) -> tuple[list[np.ndarray], list[int]]:
    """Decoded grey images (large ones shrunk to ``max_side``), and the indices that read."""
    images, ok = [], []
    for i, path in enumerate(paths):
        try:
            gray = imaging.decode_gray(path.read_bytes())
        except (ImageError, OSError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        scale = max_side / max(gray.shape)
        if scale < 1:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append(gray)
        ok.append(i)
    return images, ok


def robustness(predictor, records, *, corruptions=None, batch_size: int = 64) -> list[dict]:
    """One row per corruption and level (and a clean row): ROC AUC, sensitivity and specificity
    at the model's stored threshold, through the predictor's own inference path."""
    images, ok = _load([r.path for r in records], max_side=4 * predictor.image_size)
    y = np.array([records[i].label for i in ok])
    names = corruptions or list(CORRUPTIONS)

    def scored(transform) -> dict:
        batch = np.stack(
            [
                imaging.model_input(
                    transform(g), image_size=predictor.image_size, intensity=predictor.intensity
                )
                for g in images
            ]
        )
        p = np.concatenate(
            [
                predictor.predict_batch(batch[i : i + batch_size])
                for i in range(0, len(batch), batch_size)
            ]
        )
        m = binary_metrics(y, p, predictor.threshold)
        return {k: m[k] for k in ("roc_auc", "sensitivity", "specificity", "accuracy")}

    rows = [{"corruption": "none", "level": 0, "param": None, **scored(lambda g: g)}]
    for name in names:
        fn, levels, meaning = CORRUPTIONS[name]
        for level, param in enumerate(levels, 1):
            rows.append(
                {
                    "corruption": name,
                    "level": level,
                    "param": param,
                    "meaning": meaning,
                    **scored(lambda g, f=fn, a=param: f(g, a)),
                }
            )
            log.info("robustness %s level %d: ROC AUC %.3f", name, level, rows[-1]["roc_auc"])
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "corruption  level  param   ROC AUC  sensitivity  specificity",
        "----------  -----  ------  -------  -----------  -----------",
    ]
    for r in rows:
        param = "" if r["param"] is None else f"{r['param']:g}"
        lines.append(
            f"{r['corruption']:<10}  {r['level']:>5}  {param:>6}  {r['roc_auc']:7.4f}  "
            f"{r['sensitivity']:11.3f}  {r['specificity']:11.3f}"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = next(r for r in rows if r["corruption"] == "none")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    names = dict.fromkeys(r["corruption"] for r in rows if r["corruption"] != "none")
    for i, name in enumerate(names):
        sel = [clean] + [r for r in rows if r["corruption"] == name]
        # matplotlib has 10 colours: the corruptions after them are dashed
        style = {"marker": "o", "label": name, "linestyle": "-" if i < 10 else "--"}
        for ax, key in zip(axes, ("roc_auc", "specificity"), strict=True):
            ax.plot([r["level"] for r in sel], [r[key] for r in sel], **style)
    for ax, title in zip(axes, ("ROC AUC", "specificity at the stored threshold"), strict=True):
        ax.set_xticks([0, 1, 2, 3], ["clean", "1", "2", "3"])
        ax.set_xlabel("corruption level")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
