"""Knowledge distillation (Hinton et al. 2015): soft training targets from a teacher model.

``chestx train --teacher DIR`` scores every training X-ray once with the teacher (unaugmented,
before training starts: an offline teacher, so training costs what it did) and trains on
``(1 - w) * label + w * sigmoid(logit(p_teacher) / T)`` instead of the bare label. The teacher is
any finished model directory with the student's input (image size, intensity), typically an
ensemble (``chestx ensemble``) whose members cost too much to serve together: the student is one
network that learns the ensemble's softer, better-ranked view of the training X-rays. The
teacher's network output is used as is, before any site calibration in its card.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from chestx import modeldir
from chestx.calibration import logit
from chestx.data import DecodeLog, Record, dataset
from chestx.errors import ModelError
from chestx.modeldir import training_commands as teacher_commands
from chestx.scoring import predict_dataset

log = logging.getLogger(__name__)


def soften(p: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)``: T > 1 flattens the teacher's probabilities towards 0.5 (the
    calibration transform without offset, kept in float64: targets, not served scores)."""
    return 1.0 / (1.0 + np.exp(-logit(p) / temperature))


def blend(labels: np.ndarray, teacher: np.ndarray, weight: float, temperature: float):
    """The training targets: each label moved ``weight`` of the way to the softened teacher."""
    labels = np.asarray(labels, np.float64)
    return ((1 - weight) * labels + weight * soften(teacher, temperature)).astype(np.float32)


def check_teacher(
    teacher_dir: str | Path, *, image_size: int, intensity: str, weight: float, temperature: float
) -> dict:
    """The teacher's card, if it can teach this run (``ModelError``, one line, if not). Cheap:
    ``chestx train`` calls it before it touches its output directory."""
    if not 0 < weight <= 1:
        raise ModelError(f"--teacher-weight must be in (0, 1], not {weight:g}")
    if temperature <= 0:
        raise ModelError(f"--teacher-temperature must be positive, not {temperature:g}")
    card = modeldir.load_card(teacher_dir)
    modeldir.check_finished(card, teacher_dir)
    for key, mine in (("image_size", image_size), ("intensity", intensity)):
        if card.get(key) != mine:
            raise ModelError(
                f"teacher {teacher_dir} takes {key} {card.get(key)!r}, this run {mine!r}; "
                "train the student with the teacher's input"
            )
    return card


def soft_targets(
    teacher_dir: str | Path,
    records: list[Record],
    *,
    image_size: int,
    intensity: str,
    weight: float,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> tuple[np.ndarray, dict]:
    """``(targets, card entry)``: one float target per record, in order (a file the teacher
    cannot read keeps its label; training skips it anyway)."""
    teacher_dir = Path(teacher_dir)
    card = check_teacher(
        teacher_dir,
        image_size=image_size,
        intensity=intensity,
        weight=weight,
        temperature=temperature,
    )
    model = modeldir.load_keras(teacher_dir)
    skipped = DecodeLog()
    ds = dataset(
        records, image_size=image_size, intensity=intensity, batch_size=batch_size, skipped=skipped
    )
    y, p = predict_dataset(model, ds)
    labels = np.array([r.label for r in records], np.float32)
    read = np.array([str(r.path) not in skipped.failures for r in records], bool)
    targets = labels.copy()
    targets[read] = blend(y, p, weight, temperature)
    agree = float(np.mean((p >= 0.5) == (y >= 0.5))) if len(y) else 0.0
    log.info(
        "teacher %s: %d training X-rays scored, agrees with %.3f of the labels at 0.5",
        teacher_dir.name,
        len(y),
        agree,
    )
    entry = {
        "model": card.get("name"),
        "version": card.get("version"),
        "directory": teacher_dir.resolve().name,
        "weight": weight,
        "temperature": temperature,
        "commands": teacher_commands(card),
        "scored": int(len(y)),
        "label_agreement": round(agree, 4),
        "mean_abs_target_shift": round(float(np.mean(np.abs(targets[read] - labels[read]))), 4)
        if len(y)
        else 0.0,
    }
    return targets, entry
