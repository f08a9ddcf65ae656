"""Keras callbacks for ``chestx train`` that keep a model directory consistent at every moment.

* ``AtomicCheckpoint``: saves the best model so far (by a monitored metric) through a temporary
  file and ``os.replace``, so a crash or a Ctrl-C during a save never destroys the previous
  checkpoint (Keras' ``ModelCheckpoint`` writes the file in place).
* ``AtomicHistory``: the per-epoch log, rewritten atomically each epoch (what ``CSVLogger``
  appends in place, which a Ctrl-C can cut mid-line).
* ``StopOnInterrupt``: ends ``fit`` after the current batch once Ctrl-C was pressed; the epoch's
  validation and checkpoint still run, so the run can finish from a real checkpoint.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path

import keras

from chestx.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


class AtomicCheckpoint(keras.callbacks.Callback):
    """Save the full model to ``path`` whenever ``monitor`` improves (``mode`` max or min) on
    ``best``: the best value so far, None at the start of a run (a later phase passes the
    earlier phase's, so it never replaces a better checkpoint with a worse one)."""

    def __init__(
        self,
        path: str | Path,
        *,
        monitor: str = "val_auc",
        mode: str = "max",
        best: float | None = None,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path = Path(path)
        self.monitor = monitor
        self.mode = mode
        self.best = (-math.inf if mode == "max" else math.inf) if best is None else float(best)

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            log.warning("checkpoint: %s is not in the epoch's logs; nothing saved", self.monitor)
            return
        value = float(value)
        if self._improved(value):
            self.save()
            self.best = value

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            self.model.save(tmp)


class AtomicHistory(keras.callbacks.Callback):
    """``epoch`` plus every logged metric, one row per epoch, as ``CSVLogger`` writes them.

    Rows already in the file are kept (a second ``fit``, the fine-tuning phase, continues the
    same log); a new run deletes the file first.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        self.rows = []
        if self.path.is_file():
            with self.path.open(newline="") as fh:
                self.rows = list(csv.DictReader(fh))

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{k: _cell(v) for k, v in (logs or {}).items()}})
        keys = ["epoch", *sorted({k for row in self.rows for k in row} - {"epoch"})]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue())


def _cell(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class StopOnInterrupt(keras.callbacks.Callback):
    """Set ``model.stop_training`` once ``ctrl_c.requested`` (a ``GracefulInterrupt``)."""

    def __init__(self, ctrl_c):
        super().__init__()
        self.ctrl_c = ctrl_c

    def _check(self, *args, **kwargs):
        if self.ctrl_c.requested:
            self.model.stop_training = True

    on_train_batch_end = _check
    on_epoch_end = _check
