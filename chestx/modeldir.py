"""A model directory: everything needed to use, audit and reproduce one trained model.

    model.keras   the Keras 3 model (raw 0-255 grey pixels in, P(pneumonia) out)
    model.h5      the same model in the legacy HDF5 format the tutorial asks for
    model.tflite  LiteRT export for small hosts (when the converter is available)
    card.json     the model card: architecture, preprocessing, threshold, metrics, provenance
                  (and, under "gate", the input gate's thresholds and how it was fitted)
    gate.npz      the input gate's weights (chestx.gate; optional: without it no gate runs)
    manifest.csv  the patient-grouped split, for audit
    history.csv   the per-epoch training log
"""

from __future__ import annotations

import json
from pathlib import Path

from chestx import config
from chestx.errors import ModelError

CARD = "card.json"
MODEL_FILE = "model.keras"
H5_FILE = "model.h5"
MANIFEST = "manifest.csv"
HISTORY = "history.csv"
LITERT_FILE = "model.tflite"
GATE_FILE = "gate.npz"
GATE_FILES = (GATE_FILE,)  # what a copy of a model directory must take along for its gate


def load_card(model_dir: str | Path | None = None) -> dict:
    """The model card of ``model_dir`` (default: $CHESTX_MODEL_DIR or the shipped model)."""
    path = config.model_dir(model_dir) / CARD
    if not path.is_file():
        raise ModelError(f"{path.parent} is not a chestx model directory (no {CARD})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None


def write_card(model_dir: str | Path, card: dict) -> Path:
    path = Path(model_dir) / CARD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def save_model(model, model_dir: str | Path, card: dict, *, h5: bool = True) -> Path:
    """Write ``model`` (.keras and, by default, .h5) and its ``card`` into ``model_dir``.

    The card must hold at least ``image_size``, ``intensity`` and ``threshold``.
    """
    missing = {"image_size", "intensity", "threshold"} - card.keys()
    if missing:
        raise ValueError(f"card lacks {sorted(missing)}")
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / MODEL_FILE)
    if h5:
        model.save(model_dir / H5_FILE)
    write_card(model_dir, card)
    return model_dir
