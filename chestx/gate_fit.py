"""``chestx gate fit``: fit the input gate of a model directory on a training folder.

Positives are the training X-rays (the model's own ``train`` split when the model directory has a
manifest, so its ``test`` split stays unseen), lightly augmented so that other exposures, small
tilts and crops still pass. Negatives are rendered and packaged images (``chestx.negatives``,
fitting seed and fitting half only) and the same training X-rays turned by 90/180/270 degrees or
grey-inverted. The thresholds are set by rules on X-rays the detector was not fitted on (the
manifest's ``val`` split, or a fifth of the folder), written into the card with the counts.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from chestx import imaging, negatives
from chestx.data import find_data
from chestx.errors import DataError, ImageError
from chestx.gate import (
    CLASSES,
    GATE_VERSION,
    HIST_BINS,
    PCA_SIDE,
    SIDE,
    WHITE_MAX,
    Gate,
    colour_of,
    detector_input,
    mlp,
    raw_features,
    save_gate,
)
from chestx.modeldir import MANIFEST

log = logging.getLogger(__name__)

PCA_COMPONENTS = 32
HIDDEN = 48
ASPECT_MAX = 2.5  # fixed, not fitted: the training images are all square
COLOUR_FLOOR = 12.0  # chroma that JPEG colour noise and tinted viewers never reach
DISTANCE_MARGIN = 1.5  # distance_max = margin x the largest calibration X-ray distance
P_MIN = 0.5


# --------------------------------------------------------------------------- X-rays


def split_xrays(data: str | Path, model_dir: Path, seed: int) -> tuple[list[Path], list[Path]]:
    """(fit, calibration) X-ray paths: the manifest's train and val splits, else 80/20."""
    data = Path(data)
    manifest = model_dir / MANIFEST
    if manifest.is_file():
        with manifest.open() as fh:
            rows = list(csv.DictReader(fh))
        fit = [data / r["path"] for r in rows if r["split"] == "train"]
        calib = [data / r["path"] for r in rows if r["split"] == "val"]
        fit, calib = [p for p in fit if p.is_file()], [p for p in calib if p.is_file()]
        if len(fit) >= 10 and calib:
            return fit, calib
        log.warning(
            "%s's manifest does not match %s: splitting the folder instead", model_dir, data
        )
    found = find_data(data)
    records = found.get("all") or found.get("train") or []
    paths = sorted(r.path for r in records)
    if len(paths) < 10:
        raise DataError(f"{data} has too few X-rays to fit a gate ({len(paths)})")
    order = np.random.default_rng(seed).permutation(len(paths))
    cut = max(1, len(paths) // 5)
    return [paths[i] for i in order[cut:]], [paths[i] for i in order[:cut]]


def augment(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another plausible frontal chest X-ray: exposure, tilt, zoom, shift, blur, noise, flip."""
    g: np.ndarray = gray.astype(np.float32) / 255.0
    g = g ** rng.uniform(0.6, 1.6)
    g = (g - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12)
    h, w = g.shape
    m = cv2.getRotationMatrix2D(
        (w / 2 + rng.uniform(-0.06, 0.06) * w, h / 2 + rng.uniform(-0.06, 0.06) * h),
        rng.uniform(-15, 15),
        rng.uniform(0.85, 1.4),
    )
    border = cv2.BORDER_REFLECT if rng.random() < 0.5 else cv2.BORDER_CONSTANT
    g = cv2.warpAffine(g, m, (w, h), borderMode=border, borderValue=float(rng.uniform(0, 0.2)))
    if rng.random() < 0.3:
        g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.3:
        g = g + rng.normal(0, rng.uniform(0.005, 0.03), g.shape)
    if rng.random() < 0.5:
        g = g[:, ::-1]
    return np.clip(g * 255 + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- features


def _feature_rows(grays) -> tuple[np.ndarray, np.ndarray]:
    zs, scalars = zip(*(raw_features(g) for g in grays), strict=True)
    return np.stack(zs), np.stack(scalars)


def _decode_all(items: list[bytes]) -> list[imaging.Decoded]:
    out = []
    for data in items:
        try:
            decoded = imaging.decode(data)
        except ImageError:  # a packaged file this install cannot decode
            continue
        out.append(decoded._replace(gray=imaging.trim_frame(decoded.gray)))  # as Gate.verdict
    return out


def _train_mlp(
    x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 60, lr: float = 2e-3, decay: float = 1e-4
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two layers, ReLU, softmax; Adam on class-balanced cross-entropy, in numpy."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    k = len(CLASSES)
    sizes = [d, HIDDEN, k]
    params = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        params += [
            rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32),
            np.zeros(b, np.float32),
        ]
    counts = np.bincount(y, minlength=k).astype(np.float32)
    class_w = (n / (k * np.maximum(counts, 1))).astype(np.float32)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    onehot = np.eye(k, dtype=np.float32)[y]
    for epoch in range(epochs):
        order = rng.permutation(n)
        rate = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))  # cosine decay
        for start in range(0, n, 256):
            idx = order[start : start + 256]
            xb, tb, wb = x[idx], onehot[idx], class_w[y[idx]][:, None]
            w1, b1, w2, b2 = params
            h_pre = xb @ w1 + b1
            h = np.maximum(h_pre, 0)
            logits = h @ w2 + b2
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            g_logits = (p - tb) * wb / len(idx)
            g_w2 = h.T @ g_logits + decay * w2
            g_b2 = g_logits.sum(axis=0)
            g_h = g_logits @ w2.T * (h_pre > 0)
            g_w1 = xb.T @ g_h + decay * w1
            g_b1 = g_h.sum(axis=0)
            step += 1
            for i, g in enumerate((g_w1, g_b1, g_w2, g_b2)):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                mh, vh = m[i] / (1 - 0.9**step), v[i] / (1 - 0.999**step)
                params[i] -= (rate * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
    return [(params[0], params[1]), (params[2], params[3])]


# --------------------------------------------------------------------------- fitting


def fit_gate(
    data: str | Path,
    model_dir: str | Path,
    *,
    negatives_per_family: int = 400,
    seed: int = negatives.FIT_SEED,
    augment_copies: int = 2,
    limit: int | None = None,
) -> dict:
    """Fit the gate on the X-rays of ``data`` and write it into ``model_dir``; returns the
    card's new gate entry."""
    start = time.perf_counter()
    model_dir = Path(model_dir)
    rng = np.random.default_rng(seed)
    fit_paths, calib_paths = split_xrays(data, model_dir, seed)
    if limit:
        fit_paths, calib_paths = fit_paths[:limit], calib_paths[: max(1, limit // 4)]
    log.info("gate: %d fitting X-rays, %d calibration X-rays", len(fit_paths), len(calib_paths))
    fit_bytes = [p.read_bytes() for p in fit_paths]
    fit_xrays = _decode_all(fit_bytes)
    calib_xrays = _decode_all([p.read_bytes() for p in calib_paths])

    # Class 0: frontal chest X-rays, as they are and augmented.
    pos = [d.gray for d in fit_xrays]
    pos += [augment(d.gray, rng) for d in fit_xrays for _ in range(augment_copies)]
    # Rotated (class 1) and inverted (class 2) X-rays, some of them augmented first.
    rotated, inverted = [], []
    for i, d in enumerate(fit_xrays):
        g = augment(d.gray, rng) if i % 2 else d.gray
        rotated.append(np.ascontiguousarray(np.rot90(g, k=1 + i % 3)))
        if i % 4 == 0:
            rotated.append(np.ascontiguousarray(g[::-1]))  # upside-down mirror image
        inverted.append(255 - (augment(d.gray, rng) if i % 2 == 0 else d.gray))
        if i % 4 == 1:
            inverted.append(np.ascontiguousarray(np.rot90(255 - g, k=1 + i % 3)))
    # Everything else (class 3): every rendered and packaged family, fitting half.
    others: list[imaging.Decoded] = []
    counts = {}
    for name in negatives.SYNTHETIC + negatives.PACKAGED_FAMILIES:
        items = _decode_all(negatives.family(name, negatives_per_family, seed, half="fit"))
        counts[name] = len(items)
        others += items
    # ... and each again with an X-ray's augmentation (exposure, tilt, zoom, blur, mirror), so
    # that no family is told apart by a detail an upload does not share.
    other_grays = [d.gray for d in others]
    other_grays += [augment(g, rng) for g in other_grays]
    log.info(
        "gate: %d positives, %d rotated, %d inverted, %d others %s (%.0f s)",
        len(pos),
        len(rotated),
        len(inverted),
        len(others),
        counts,
        time.perf_counter() - start,
    )

    # PCA of the positives' standardised 32 x 32 images.
    z_pos, s_pos = _feature_rows(pos)
    pca_mean = z_pos.mean(axis=0)
    _, sv, vt = np.linalg.svd(z_pos - pca_mean, full_matrices=False)
    components = vt[:PCA_COMPONENTS].astype(np.float32)
    pca_var = (sv[:PCA_COMPONENTS] ** 2 / (len(z_pos) - 1)).astype(np.float32)
    pca_scale = 1.0 / np.sqrt(pca_var)

    groups = [(pos, 0), (rotated, 1), (inverted, 2), (other_grays, 3)]
    xs, ys = [], []
    for grays, label in groups:
        z, s = (z_pos, s_pos) if label == 0 else _feature_rows(grays)
        x, _ = detector_input(z, s, pca_mean, components, pca_scale)
        xs.append(x)
        ys.append(np.full(len(x), label))
    x, y = np.concatenate(xs), np.concatenate(ys)
    feat_mean, feat_std = x.mean(axis=0), x.std(axis=0) + 1e-6
    layers = _train_mlp((x - feat_mean) / feat_std, y, seed)
    params = {
        "pca_mean": pca_mean,
        "pca_components": components,
        "pca_var": pca_var,
        "feat_mean": feat_mean.astype(np.float32),
        "feat_std": feat_std.astype(np.float32),
        "n_layers": np.array(len(layers)),
    }
    for i, (w, b) in enumerate(layers, 1):
        params[f"w{i}"], params[f"b{i}"] = w, b
    train_acc = float((mlp(x, feat_mean, 1 / feat_std, layers).argmax(axis=1) == y).mean())

    # Thresholds, by rule, from X-rays the detector never saw (calibration) and the fit set.
    all_xrays = fit_xrays + calib_xrays
    stats = np.array(
        [
            [g.std(), np.subtract(*np.percentile(g, (99, 1)))]
            for g in (
                cv2.resize(d.gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
                for d in all_xrays
            )
        ]
    )
    chroma = max(colour_of(d.colour) for d in all_xrays)
    z_cal, s_cal = _feature_rows([d.gray for d in calib_xrays])
    x_cal, dist_cal = detector_input(z_cal, s_cal, pca_mean, components, pca_scale)
    p_cal = mlp(x_cal, feat_mean, 1 / feat_std, layers)[:, 0]
    thresholds = {
        "aspect_max": ASPECT_MAX,
        "white_max": WHITE_MAX,
        "colour_max": round(max(COLOUR_FLOOR, 2 * chroma), 2),
        "std_min": round(float(stats[:, 0].min()) / 2, 2),
        "range_min": round(float(stats[:, 1].min()) / 2, 2),
        "distance_max": round(float(dist_cal.max()) * DISTANCE_MARGIN, 4),
        "p_min": P_MIN,
    }
    spec = {
        "version": f"{GATE_VERSION}.{time.strftime('%Y%m%d', time.gmtime())}",
        "input": f"decoded grey image resized to {SIDE}x{SIDE} (INTER_AREA; standardised "
        f"{PCA_SIDE}x{PCA_SIDE} for the PCA, {HIST_BINS}-bin histogram), plus a "
        "64 px colour thumbnail; independent of the classifier",
        "checks": ["shape", "colour", "blank", "contrast", "clipped", "detector"],
        "thresholds": thresholds,
        "detector": {
            "pca_components": PCA_COMPONENTS,
            "hidden": HIDDEN,
            "classes": CLASSES,
            "train_accuracy": round(train_acc, 4),
        },
        "fitted": {
            "data": Path(data).resolve().name,
            "fit_xrays": len(fit_xrays),
            "calibration_xrays": len(calib_xrays),
            "xray_split": "manifest train (fit) / val (calibration)"
            if (model_dir / MANIFEST).is_file()
            else "folder 80/20 (seeded)",
            "augmented_copies": augment_copies,
            "rotated": len(rotated),
            "inverted": len(inverted),
            "negatives": counts,
            "negatives_augmented": len(other_grays) - len(others),
            "seed": seed,
            "rules": {
                "colour_max": f"max({COLOUR_FLOOR}, 2 x the largest X-ray chroma {chroma:.2f})",
                "std_min / range_min": "half the smallest of all fitting and calibration X-rays",
                "distance_max": f"{DISTANCE_MARGIN} x the largest calibration X-ray distance",
                "p_min": f"{P_MIN} (calibration X-rays: min P {p_cal.min():.3f}, "
                f"{(p_cal >= P_MIN).mean() * 100:.2f} % >= p_min)",
                "aspect_max / white_max": "fixed",
            },
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
    save_gate(model_dir, params, spec)
    gate = Gate.load(model_dir)
    assert gate is not None  # just written
    accepted = sum(gate.verdict(d).accepted for d in calib_xrays)
    log.info(
        "gate %s written to %s: accepts %d of %d calibration X-rays; thresholds %s",
        spec["version"],
        model_dir,
        accepted,
        len(calib_xrays),
        thresholds,
    )
    return spec


def fit_from_args(args) -> int:
    spec = fit_gate(
        args.data, args.model, negatives_per_family=args.negatives, seed=args.seed, limit=args.limit
    )
    print(f"gate {spec['version']} written to {args.model}: thresholds {spec['thresholds']}")
    return 0
