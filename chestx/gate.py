"""The input gate: is this upload a frontal chest X-ray the model can judge?

A classifier trained on two kinds of chest X-ray answers one of the two for anything, so every
image passes this gate after decoding and before the diagnosis (``Predictor.prepare``). The gate
is its own small detector, independent of the classifier's weights and input size, so a
retrained model can carry the same gate (``copy_gate``) or a refitted one (``chestx gate fit``).

Checks, cheapest first; the first that fails names the reason:

0. ``header``    a DICOM file's header says it is another modality, a lateral view or a
                 detector's raw For Processing image (``chestx.dicom.not_frontal``)
1. ``shape``     the image is no wider or taller than ``aspect_max`` : 1
2. ``colour``    mean chroma (max - min of B, G, R) of a small colour thumbnail <= ``colour_max``
3. ``blank``     the grey levels' standard deviation (64 x 64 grey) >= ``std_min``
4. ``contrast``  1st to 99th percentile of the grey levels >= ``range_min``
5. ``clipped``   at most ``white_max`` of the 64 x 64 grey image clipped white (>= 254): an
                 export windowed too bright, or an X-ray burnt white, hides what the model reads
                 (fixed at ``WHITE_MAX``; the training X-rays reach 3 %)
6. ``detector``  a learned detector on the 64 x 64 grey image: the distance to the training
                 X-rays in a PCA space (``distance_max``) and a small numpy MLP that tells
                 frontal chest X-rays from rotated ones, inverted ones and everything else
                 (P(chest X-ray) >= ``p_min``).

A refusal is headed ``NOT_AN_XRAY``, or ``UNJUDGEABLE`` where the image is a chest X-ray sent
in a state the model cannot judge, which another export would mend: a For Processing ``header``,
or ``blank``, ``contrast`` and ``clipped`` where the detector takes it for a chest X-ray (a
faint or washed-out X-ray; a blank or white page is refused by the same checks). The API
message starts with it and the UI words it as a sentence.

Everything runs in numpy and OpenCV (no TensorFlow), so the LiteRT runtime gets the same gate.
The weights live in ``gate.npz`` in the model directory and the thresholds, version and how
they were fitted in the ``"gate"`` entry of ``card.json``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from chestx.dicom import FOR_PROCESSING
from chestx.errors import ModelError, NotAChestXrayError
from chestx.fileio import atomic_write_bytes
from chestx.imaging import Decoded, trim_frame
from chestx.modeldir import CARD, GATE_FILE, load_card, write_card

log = logging.getLogger(__name__)

GATE_VERSION = "1"
SIDE = 64  # the detector's grey input, pixels a side
PCA_SIDE = 32  # the standardised image the PCA sees
HIST_BINS = 16
CLASSES = ("chest_xray", "rotated", "inverted", "other")
REASONS = {
    "rotated": "it looks like a chest X-ray turned on its side or upside down",
    "inverted": "it looks like a chest X-ray with inverted grey levels",
    "other": "it does not look like a chest X-ray",
}
ON, OFF, ABSENT = "on", "off", "absent"
# At most this share of the 64 x 64 grey image clipped white (>= WHITE_LEVEL). Fixed, not
# fitted: 3.1 % is the most any of the 5,216 training X-rays has, none of external-dev's any.
# External-dev with its grey levels x1.3 (used for selection): the 9 % of X-rays above it
# scored sensitivity 0.875 and specificity 0.824, the rest 0.967 and 0.929.
WHITE_MAX = 0.2
WHITE_LEVEL = 254
# What a refusal says first (the API message starts with it, the UI words it as a sentence):
# the image is not what the model reads, or it is a chest X-ray in a state the model cannot
# judge (faint, flattened, clipped white, a detector's raw values), which a better export
# would mend.
NOT_AN_XRAY = "not a chest X-ray"
UNJUDGEABLE = "a chest X-ray the model cannot judge"


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: ``check`` is the check that decided (``ok`` when accepted)."""

    accepted: bool
    check: str
    reason: str
    score: float  # P(frontal chest X-ray) from the detector; 0 for header, shape, colour
    headline: str = NOT_AN_XRAY  # what a refusal says first: NOT_AN_XRAY or UNJUDGEABLE


# --------------------------------------------------------------------------- features


# np.percentile(x, (1, 99)) of SIDE * SIDE values ("linear" method), by one partition: the
# same numbers at a fraction of the cost.
_P_AT = (0.01 * (SIDE * SIDE - 1), 0.99 * (SIDE * SIDE - 1))
_P_IDX = sorted({int(np.floor(p)) for p in _P_AT} | {int(np.ceil(p)) for p in _P_AT})


def _stats(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(64 x 64 float grey, [mean, std, p1, p99]) of a decoded grey image."""
    g = cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    part = np.partition(g.ravel(), _P_IDX)
    p1, p99 = (
        part[int(np.floor(p))]
        + (p - np.floor(p)) * (part[int(np.ceil(p))] - part[int(np.floor(p))])
        for p in _P_AT
    )
    mean, std = cv2.meanStdDev(g)
    return g, np.array([mean[0, 0], std[0, 0], p1, p99], np.float32)


def raw_features(gray: np.ndarray, g_stats=None) -> tuple[np.ndarray, np.ndarray]:
    """(standardised 32 x 32 image, scalar features) of the grey image: the detector's input.

    ``g_stats`` is ``_stats(gray)`` when the caller has it already.
    """
    g, stats = _stats(gray) if g_stats is None else g_stats
    z = (g - stats[0]) / (stats[1] + 1.0)
    z32 = cv2.resize(z, (PCA_SIDE, PCA_SIDE), interpolation=cv2.INTER_AREA)
    hist = (
        np.bincount(
            np.minimum(g, 255).astype(np.int32).ravel() * HIST_BINS // 256, minlength=HIST_BINS
        ).astype(np.float32)
        / g.size
    )
    edges = [np.abs(np.diff(z, axis=0)).mean(), np.abs(np.diff(z, axis=1)).mean()]
    zc = z32 - z32.mean()
    norm = float((zc * zc).sum()) + 1e-6
    symmetry = [float((zc * zc[:, ::-1]).sum()) / norm, float((zc * zc[::-1]).sum()) / norm]
    # Where the image is bright: the column and row profiles of a chest X-ray differ from a
    # rotated one's.
    profiles = np.concatenate([z32.mean(axis=0)[::4], z32.mean(axis=1)[::4]])
    scalars = np.concatenate([stats / 255.0, hist, edges, symmetry, profiles]).astype(np.float32)
    return z32.ravel(), scalars


def colour_of(thumb: np.ndarray | None) -> float:
    """Mean chroma (max - min over B, G, R) of a colour thumbnail; 0 for a grey file."""
    if thumb is None:
        return 0.0
    t = thumb.astype(np.int16)
    return float((t.max(axis=2) - t.min(axis=2)).mean())


def detector_input(
    z: np.ndarray,
    scalars: np.ndarray,
    pca_mean: np.ndarray,
    pca_components: np.ndarray,
    pca_scale: np.ndarray,
):
    """(N, 1024) standardised images + (N, S) scalars -> (MLP input, PCA distance), batched.

    The distance is the RMS of the whitened PCA coordinates: how far an image is from the
    training X-rays inside their own subspace; the residual is what the subspace cannot explain.
    """
    centred = z - pca_mean
    coords = centred @ pca_components.T
    whitened = coords * pca_scale
    distance = np.sqrt((whitened * whitened).mean(axis=1))
    residual = centred - coords @ pca_components
    res = np.sqrt((residual * residual).mean(axis=1))
    x = np.concatenate(
        [whitened, np.log(distance)[:, None], np.log(res + 1e-6)[:, None], scalars], axis=1
    )
    return x.astype(np.float32), distance


def mlp(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, layers) -> np.ndarray:
    """Standardise, then ReLU layers and a softmax: (N, F) -> (N, len(CLASSES))."""
    x = (x - mean) * scale
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- the gate


class Gate:
    """A fitted gate: ``params`` (arrays of gate.npz) and ``spec`` (the card's "gate" entry)."""

    def __init__(self, params: dict[str, np.ndarray], spec: dict):
        self.spec = spec
        # a gate fitted before the clipped check gets its fixed threshold
        thresholds = {"white_max": WHITE_MAX, **spec["thresholds"]}
        self.thresholds = {k: float(v) for k, v in thresholds.items()}
        self.pca_mean = params["pca_mean"].astype(np.float32)
        self.pca_components = params["pca_components"].astype(np.float32)
        self.pca_scale = 1.0 / np.sqrt(params["pca_var"].astype(np.float32))
        self.feat_mean = params["feat_mean"].astype(np.float32)
        self.feat_scale = 1.0 / params["feat_std"].astype(np.float32)
        self.layers = [
            (params[f"w{i}"].astype(np.float32), params[f"b{i}"].astype(np.float32))
            for i in range(1, 1 + int(params["n_layers"]))
        ]

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, card: dict | None = None) -> Gate | None:
        """The gate of a model directory, or ``None`` when it has none (it still serves)."""
        model_dir = Path(model_dir)
        card = load_card(model_dir) if card is None else card
        spec = card.get("gate")
        path = model_dir / (spec.get("file", GATE_FILE) if isinstance(spec, dict) else GATE_FILE)
        if not isinstance(spec, dict) or not path.is_file():
            if isinstance(spec, dict) or path.is_file():
                log.warning(
                    "%s has %s but not %s: serving without an input gate",
                    model_dir,
                    "a gate entry in card.json" if spec else path.name,
                    path.name if spec else "a gate entry in card.json",
                )
            return None
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if spec.get("sha256") and spec["sha256"] != digest:
            raise ModelError(
                f"{path} does not match the gate entry of {CARD} (sha256 differs): "
                "copy gates with chestx.gate.copy_gate"
            )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return cls({k: npz[k] for k in npz.files}, spec)
        except (ValueError, KeyError, OSError) as exc:
            raise ModelError(f"cannot load {path}: {exc}") from exc

    # -- judging ---------------------------------------------------------------------------
    def detector(self, gray: np.ndarray, g_stats=None) -> tuple[np.ndarray, float]:
        """(class probabilities in ``CLASSES`` order, PCA distance) of a grey image."""
        z, scalars = raw_features(gray, g_stats)
        x, distance = detector_input(
            z[None], scalars[None], self.pca_mean, self.pca_components, self.pca_scale
        )
        return mlp(x, self.feat_mean, self.feat_scale, self.layers)[0], float(distance[0])

    def verdict(self, image: Decoded) -> Verdict:
        if image.not_frontal:
            headline = UNJUDGEABLE if image.not_frontal == FOR_PROCESSING else NOT_AN_XRAY
            reason = f"its DICOM header says {image.not_frontal}"
            return Verdict(False, "header", reason, 0.0, headline)
        t = self.thresholds
        gray = trim_frame(image.gray)  # judge the X-ray the model will see, not its frame
        h, w = gray.shape
        if max(h, w) > t["aspect_max"] * min(h, w):
            return Verdict(
                False,
                "shape",
                f"its shape ({w} x {h} pixels) is far from that of a chest X-ray",
                0.0,
            )
        chroma = colour_of(image.colour)
        if chroma > t["colour_max"]:
            return Verdict(
                False,
                "colour",
                f"it is a colour image (mean chroma {chroma:.0f}, X-rays are grey)",
                0.0,
            )
        g_stats = _stats(gray)
        stats = g_stats[1]
        probs, distance = self.detector(gray, g_stats)
        score = float(probs[0])
        # A faint, flattened or clipped image the detector still takes for a chest X-ray is one
        # the model cannot judge as sent; a blank or white page is not one at all.
        headline = UNJUDGEABLE if score >= t["p_min"] else NOT_AN_XRAY
        if stats[1] < t["std_min"]:
            reason = "it is blank or nearly uniform"
            if headline == UNJUDGEABLE:
                reason = "its grey levels are nearly uniform, too faint to read"
            return Verdict(False, "blank", reason, score, headline)
        if stats[3] - stats[2] < t["range_min"]:
            reason = "its grey levels span too narrow a range"
            return Verdict(False, "contrast", reason, score, headline)
        white = float(np.count_nonzero(g_stats[0] >= WHITE_LEVEL)) / g_stats[0].size
        if white > t["white_max"]:  # a chest X-ray exported too bright, or a white page
            return Verdict(
                False,
                "clipped",
                f"{white:.0%} of it is clipped to white, where the model sees nothing "
                "(over-exposed, or exported too bright)",
                score,
                headline,
            )
        if score >= t["p_min"] and distance <= t["distance_max"]:
            return Verdict(True, "ok", "", score)
        best = int(np.argmax(probs[1:])) + 1
        if score >= t["p_min"]:  # the MLP would accept, but it is far from every X-ray seen
            reason = "it is unlike the chest X-rays the model was trained on"
        else:
            reason = REASONS[CLASSES[best]]
        return Verdict(False, "detector", f"{reason} (score {score:.2f})", score)

    def check(self, image: Decoded) -> Verdict:
        """The verdict, or ``NotAChestXrayError`` when the image is refused."""
        verdict = self.verdict(image)
        if not verdict.accepted:
            raise NotAChestXrayError(verdict)
        return verdict

    @property
    def info(self) -> dict:
        return {"status": ON, "version": self.spec.get("version"), "thresholds": self.thresholds}


def gate_status(gate: Gate | None, enabled: bool) -> dict:
    """What ``/api/model`` and the model info say about the gate: on, off or absent."""
    if gate is None:
        return {"status": ABSENT}
    if not enabled:
        return {**gate.info, "status": OFF}
    return gate.info


# --------------------------------------------------------------------------- moving gates


def copy_gate(src: str | Path, dst: str | Path) -> Path:
    """Copy the gate of model directory ``src`` into model directory ``dst`` (file + card).

    ``dst`` must already be a model directory (it has a card.json); its card gets the gate
    entry of ``src``, noting where it came from. Returns the written gate file.
    """
    src, dst = Path(src), Path(dst)
    spec = load_card(src).get("gate")
    if not isinstance(spec, dict) or not (src / spec.get("file", GATE_FILE)).is_file():
        raise ModelError(f"{src} has no input gate to copy")
    card = load_card(dst)
    name = spec.get("file", GATE_FILE)
    shutil.copy2(src / name, dst / name)
    card["gate"] = {
        **spec,
        "copied_from": f"{load_card(src).get('name', src.name)} "
        f"{load_card(src).get('version', '')}".strip(),
    }
    write_card(dst, card)
    log.info("copied the input gate %s from %s to %s", spec.get("version"), src, dst)
    return dst / name


def save_gate(model_dir: str | Path, params: dict[str, np.ndarray], spec: dict) -> Path:
    """Write ``gate.npz`` and the card's gate entry (with the file's sha256) into ``model_dir``."""
    model_dir = Path(model_dir)
    card = load_card(model_dir)
    buf = io.BytesIO()
    np.savez_compressed(buf, **params)  # type: ignore[arg-type]  # numpy stub: **kwds as bool
    data = buf.getvalue()
    path = atomic_write_bytes(model_dir / GATE_FILE, data)
    card["gate"] = {"file": GATE_FILE, "sha256": hashlib.sha256(data).hexdigest(), **spec}
    write_card(model_dir, card)
    return path
