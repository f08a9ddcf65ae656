"""A model directory: everything needed to use, audit and reproduce one trained model.

    model.keras   the Keras 3 model (raw 0-255 grey pixels in, P(pneumonia) out)
    model.h5      the same model in the legacy HDF5 format the tutorial asks for
    model.tflite  LiteRT export for small hosts (when the converter is available)
    card.json     the model card: architecture, preprocessing, threshold, metrics, provenance
                  (and, under "gate", the input gate's thresholds and how it was fitted)
    gate.npz      the input gate's weights (chestx.gate; optional: without it no gate runs)
    manifest.csv  the patient-grouped split, for audit
    history.csv   the per-epoch training log

Every file is written atomically (``chestx.fileio``), and the card is written last: a card
whose ``status`` is not ``"complete"`` (``"training"`` while ``chestx train`` runs, or after it
was aborted) marks a directory that must not be served. ``chestx pretrain`` writes
model.keras, manifest.csv, history.csv and a card with status ``"pretrained"``: a start for
``chestx train --init``, not a model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from chestx import config, strictjson
from chestx.errors import ModelError
from chestx.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

CARD = "card.json"
MODEL_FILE = "model.keras"
H5_FILE = "model.h5"
MANIFEST = "manifest.csv"
HISTORY = "history.csv"
LITERT_FILE = "model.tflite"
GATE_FILE = "gate.npz"

# What serving reads, by runtime: a copy of the directory (the server's snapshot) takes these
# along. The gate file is optional (without it no gate runs); the others are required.
SERVED_FILES = {
    "tensorflow": (CARD, MODEL_FILE, GATE_FILE),
    "litert": (CARD, LITERT_FILE, GATE_FILE),
}
# What every card holds: written by save_model, checked by whoever loads one (check_card).
REQUIRED_CARD_KEYS = ("image_size", "intensity", "threshold")

STATUS = "status"  # card key: "training" while a run writes the directory, then "complete"
TRAINING = "training"
COMPLETE = "complete"
PRETRAINED = "pretrained"  # chestx pretrain's: a network without a trained head, for --init


def load_card(model_dir: str | Path | None = None) -> dict:
    """The model card of ``model_dir`` (default: $CHESTX_MODEL_DIR or the shipped model). A
    bare NaN or Infinity, as cards wrote an undefined metric before ``strictjson``, reads as
    None, as ``write_card`` writes it now: every reader (the UI, ``/api/model``) sees one form."""
    path = config.model_dir(model_dir) / CARD
    if not path.is_file():
        raise ModelError(f"{path.parent} is not a chestx model directory (no {CARD})")
    try:
        return json.loads(path.read_text(), parse_constant=lambda _: None)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None


def card_status(card: dict) -> str:
    """``"complete"``, or why the directory is not finished. Cards older than the ``status``
    key are complete, except the provisional card of a run (version ``"training"``)."""
    default = TRAINING if card.get("version") == TRAINING else COMPLETE
    return str(card.get(STATUS, default))


def check_finished(card: dict, where: str | Path) -> None:
    """Raise ``ModelError`` (one line) unless ``card`` describes a finished model."""
    status = card_status(card)
    if status == PRETRAINED:
        raise ModelError(
            f"{where} holds a self-supervised pretrained network whose head is untrained, not a "
            f"model: train one from it with `chestx train --init {where}`"
        )
    if status != COMPLETE:
        raise ModelError(
            f"{where} is not a finished model (card status {status!r}: a "
            "training run is still writing it, or was aborted)"
        )


def training_commands(card: dict) -> list[str]:
    """The chestx commands that made a model (an ensemble's members' first, an ``--init``
    source's before its own), for the card of a model trained from it: with them, that model
    is reproducible from the Kaggle data set alone."""
    training = card.get("training") or {}
    init = (training.get("init") or {}).get("commands", [])
    commands = [*init, *training.get("member_commands", []), training.get("command")]
    return [c for c in commands if c]


def member_training_commands(card: dict, index: int) -> list[str]:
    """The commands that made the ``index``-th member of the ensemble ``card`` describes: its own
    last, each ``--init`` source's before it, found among the card's ``member_commands`` by their
    ``--out``. All of ``member_commands`` if the member's own command is not recorded."""
    training = card.get("training") or {}
    commands = [c for c in training.get("member_commands", []) if c]
    member = card["ensemble"]["members"][index]
    own = (member.get("training") or {}).get("command")
    if not own:
        return commands
    made = {_option(c, "--out"): c for c in commands}
    chain = [own]
    while (source := _option(chain[0], "--init")) in made and made[source] not in chain:
        chain.insert(0, made[source])
    return chain


def _option(command: str, flag: str) -> str | None:
    """The value of ``flag`` in a recorded command line: ``--flag V`` or ``--flag=V``, the flag
    perhaps abbreviated as argparse allowed when the command ran (``--ou V``)."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if not (len(name) > 2 and name.startswith("--") and flag.startswith(name)):
            continue
        if eq:
            return value
        if i + 1 < len(words):
            return words[i + 1]
    return None


def check_card(card, where: str | Path) -> None:
    """Raise ``ModelError`` (one line) unless ``card`` is a finished model's: a JSON object
    with every ``REQUIRED_CARD_KEYS`` whose status is complete."""
    if not isinstance(card, dict):
        raise ModelError(f"{where}: {CARD} is not a JSON object")
    check_finished(card, where)  # first: a pretrained or unfinished card says why it is
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ModelError(f"{where}: {CARD} lacks {', '.join(missing)}")


def check_new(out: str | Path) -> None:
    """Refuse an ``--out`` that holds anything: a new model directory never overwrites one."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"--out {out} already exists and is not empty")


@contextlib.contextmanager
def new_model_dir(out: str | Path) -> Iterator[Path]:
    """Build a model directory in a private folder beside ``out`` and rename it into place on a
    clean exit: ``out`` appears whole or not at all (an error or a Ctrl-C removes the folder).

        with new_model_dir(out) as tmp:
            model.save(tmp / MODEL_FILE)
            write_card(tmp, card)
    """
    out = Path(out)
    check_new(out)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model directory is for everyone to read
    try:
        yield staging
        if out.exists():
            out.rmdir()  # empty: checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_keras(model_dir: str | Path):
    """The directory's ``model.keras`` with chestx's custom layers (no optimizer), or
    ``ModelError`` with a one-line reason (a truncated or foreign file, not a traceback)."""
    import keras

    import chestx.models  # noqa: F401  (registers the custom layers)

    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{model_dir} has no {MODEL_FILE}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:
        reason = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
        raise ModelError(f"cannot load {path}: {reason}") from exc


def write_card(model_dir: str | Path, card: dict) -> Path:
    path = Path(model_dir) / CARD
    atomic_write_text(path, strictjson.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def save_model(model, model_dir: str | Path, card: dict, *, h5: bool = True) -> Path:
    """Write ``model`` (.keras and, by default, .h5) and its ``card`` into ``model_dir``.

    The card must hold at least the ``REQUIRED_CARD_KEYS``.
    """
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ValueError(f"card lacks {missing}")
    model_dir = Path(model_dir)
    for name in (MODEL_FILE, H5_FILE) if h5 else (MODEL_FILE,):
        with atomic_path(model_dir / name) as tmp:
            model.save(tmp)
    write_card(model_dir, {**card, STATUS: card.get(STATUS, COMPLETE)})  # last: the commit
    return model_dir
