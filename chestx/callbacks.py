"""Keras callbacks for ``chestx train`` that keep a model directory consistent at every moment.

* ``AtomicCheckpoint``: saves the best model so far (by a monitored metric) through a temporary
  file and ``os.replace``, so a crash or a Ctrl-C during a save never destroys the previous
  checkpoint (Keras' ``ModelCheckpoint`` writes the file in place).
* ``AtomicHistory``: the per-epoch log, rewritten atomically each epoch (what ``CSVLogger``
  appends in place, which a Ctrl-C can cut mid-line).
* ``StopOnInterrupt``: ends ``fit`` after the current batch once Ctrl-C was pressed; the epoch's
  validation and checkpoint still run, so the run can finish from a real checkpoint.
* ``ValidateMovingAverage``: with an optimizer that keeps a moving average of the weights
  (``use_ema``), each epoch's validation, checkpoint, early stopping and learning-rate schedule
  see that average; training itself goes on from the raw weights.
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
    earlier phase's, so it never replaces a better checkpoint with a worse one). With
    ``save_best_only=False`` (as in Keras' ``ModelCheckpoint``), every epoch is saved: the file
    holds the last epoch's model, and ``best`` is only tracked."""

    def __init__(
        self,
        path: str | Path,
        *,
        monitor: str = "val_auc",
        mode: str = "max",
        best: float | None = None,
        save_best_only: bool = True,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path = Path(path)
        self.monitor = monitor
        self.mode = mode
        self.best = (-math.inf if mode == "max" else math.inf) if best is None else float(best)
        self.save_best_only = save_best_only

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logged = (logs or {}).get(self.monitor)
        value = None if logged is None else float(logged)
        if value is not None and self._improved(value):
            self.save()
            self.best = value
        elif not self.save_best_only:
            self.save()
        elif value is None:
            log.warning("checkpoint: %s is not in the epoch's logs; nothing saved", self.monitor)

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


class ValidateMovingAverage(keras.callbacks.Callback):
    """Swap the optimizer's moving average of the weights in for each epoch's validation and
    out again at the end of the epoch; it must come last among the callbacks, so that every
    ``on_epoch_end`` before it (the checkpoint above all) sees the average.

    The average is Keras' own (``use_ema``; ``finalize_variable_values`` copies it into the
    model, as ``fit`` does when it ends); only the raw weights are kept here, to restore. Unlike
    ``ema_overwrite_frequency``, this leaves the training trajectory untouched.
    """

    def __init__(self):
        super().__init__()
        self._raw: list | None = None
        self._fitting = False

    def on_train_begin(self, logs=None):
        if not getattr(self.model.optimizer, "use_ema", False):
            raise ValueError("ValidateMovingAverage needs an optimizer built with use_ema=True")
        self._fitting = True

    def on_train_end(self, logs=None):
        self._fitting = False

    def on_test_begin(self, logs=None):
        if not self._fitting or self._raw is not None:  # a plain evaluate(): leave it alone
            return
        variables = self.model.trainable_variables
        self._raw = [keras.ops.convert_to_numpy(v) for v in variables]
        self.model.optimizer.finalize_variable_values(variables)

    def on_epoch_end(self, epoch, logs=None):
        if self._raw is None:  # no validation this epoch
            return
        for variable, value in zip(self.model.trainable_variables, self._raw, strict=True):
            variable.assign(value)
        self._raw = None
