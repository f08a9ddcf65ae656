"""The one training recipe: ``chestx train`` and every trial of ``chestx tune`` use it.

Given a ``chestx.train.TrainConfig``, ``build`` makes the model (or loads ``cfg.init``'s trained
network to fine-tune), wraps it in ``ConsistencyTraining`` when ``cfg.consistency`` asks for
the two-view consistency term, and compiles it. ``fit`` trains it: class-weighted ``model.fit``
with ``callbacks`` (checkpoint of the best epoch by ``cfg.monitor``, EarlyStopping and
ReduceLROnPlateau from ``cfg.patience``, the per-epoch history, TerminateOnNaN, when given the
Ctrl-C stop, and with ``cfg.ema`` the swap that makes all of them see the weights' moving
average), then for a transfer model the fine-tuning phase, started from the best checkpoint
reloaded, with the top backbone layers unfrozen at a lower learning rate. The result is the best
checkpoint, reloaded. So the search ranks configurations under exactly the recipe its winner is
retrained with into ``best/``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chestx import config, modeldir
from chestx.errors import DataError, TrainingError

if TYPE_CHECKING:
    from chestx.train import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """What ``fit`` returns: the best checkpoint, reloaded, and how training went."""

    model: Any
    epochs_run: int
    interrupted: bool
    history: dict[str, list[float]] = field(default_factory=dict)  # both phases, per epoch


def learning_rate(cfg: TrainConfig) -> float:
    return cfg.lr or config.DEFAULT_LEARNING_RATE


def fine_tune_learning_rate(cfg: TrainConfig) -> float:
    return cfg.fine_tune_lr or learning_rate(cfg) / 10


def fine_tunes(cfg: TrainConfig) -> bool:
    return bool(cfg.arch == "transfer" and cfg.fine_tune_layers and cfg.fine_tune_epochs)


def model_options(cfg: TrainConfig) -> dict:
    """``chestx.models.build_model`` options of ``cfg``."""
    options = dict(cfg.model_options)
    if cfg.arch == "transfer":
        options.setdefault("backbone", cfg.backbone)
        options.setdefault("weights", cfg.weights or "imagenet")
    return options


def build(cfg: TrainConfig):
    """The model of ``cfg`` (``cfg.init``'s trained network, else a new one), compiled for its
    first phase."""
    from chestx.models import build_model

    if cfg.init is not None:
        # checked by chestx.train before --out is touched
        if cfg.init_member is None:
            model = modeldir.load_keras(cfg.init)
        else:
            model = _member(cfg.init, cfg.init_member, name=cfg.arch)
    else:
        model = build_model(cfg.arch, cfg.image_size, **model_options(cfg))
    model = trainable(model, cfg)
    _compile(model, cfg, learning_rate(cfg))
    return model


def _member(source: Path, number: int, *, name: str):
    """Network ``number`` (1 = the first) of the ensemble in ``source``: the same start, seeds
    included, as its own directory would give. A layer with randomness (Dropout) draws its seed
    from Python's ``random`` when it is made, and loading the ensemble makes every member's
    layers, so those draws are undone before the member's copy is made."""
    from chestx.models.ensemble import member_network

    state = random.getstate()
    ensemble = modeldir.load_keras(source)
    random.setstate(state)
    return member_network(ensemble, number - 1, name=name)


def trainable(network, cfg: TrainConfig):
    """What ``fit`` trains: ``network``, inside ``ConsistencyTraining`` with ``cfg.consistency``
    (it saves the network alone, so checkpoints stay plain models)."""
    if not cfg.consistency:
        return network
    from chestx.models.consistency import ConsistencyTraining

    return ConsistencyTraining(
        network,
        weight=cfg.consistency,
        stretch=cfg.consistency_stretch,
        contrast=cfg.consistency_contrast,
        blur=cfg.consistency_blur,
        seed=cfg.seed,
    )


def _compile(model, cfg: TrainConfig, lr: float) -> None:
    from chestx.models import compile_model

    compile_model(
        model,
        learning_rate=lr,
        label_smoothing=cfg.label_smoothing,
        weight_decay=cfg.weight_decay,
        ema_momentum=cfg.ema,
    )


def augment_layer(cfg: TrainConfig):
    """``chestx.data.augmenter`` of ``cfg`` (seeded by ``cfg.seed``), or None."""
    from chestx.data import augmenter

    if not cfg.augmentation:
        return None
    return augmenter(**dataclasses.asdict(cfg.augmentation), seed=cfg.seed)


def class_weights(labels: Sequence[int] | np.ndarray) -> dict[int, float]:
    """Balanced weights, n / (2 * n_class): each class contributes equally to the loss."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2)
    if (counts == 0).any():
        raise DataError("the training split needs both NORMAL and PNEUMONIA images")
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1)}


def callbacks(cfg: TrainConfig, workdir: Path, interrupt=None, best: float | None = None) -> list:
    """The recipe's callbacks for one phase; ``workdir`` gets the checkpoint and history. ``best``:
    the monitor's best value in an earlier phase, which the checkpoint must beat."""
    import keras

    from chestx.callbacks import (
        AtomicCheckpoint,
        AtomicHistory,
        StopOnInterrupt,
        ValidateMovingAverage,
    )

    mode = config.MONITORS[cfg.monitor]
    last = cfg.keep == "last"
    out: list = [
        AtomicCheckpoint(
            workdir / modeldir.MODEL_FILE,
            monitor=cfg.monitor,
            mode=mode,
            best=best,
            save_best_only=not last,
        )
    ]
    if cfg.patience:  # None or 0: every epoch runs, at one learning rate
        out += [
            keras.callbacks.EarlyStopping(
                monitor=cfg.monitor,
                mode=mode,
                patience=cfg.patience,
                restore_best_weights=not last,
                verbose=1,
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor=cfg.monitor,
                mode=mode,
                factor=0.5,
                patience=max(1, cfg.patience // 3),
                min_lr=1e-6,
                verbose=1,
            ),
        ]
    out += [AtomicHistory(workdir / modeldir.HISTORY), keras.callbacks.TerminateOnNaN()]
    if interrupt is not None:
        out.append(StopOnInterrupt(interrupt))
    if cfg.ema:  # last: puts the training weights back after everything above saw the average
        out.append(ValidateMovingAverage())
    return out


def fit(
    model,
    cfg: TrainConfig,
    train_ds,
    val_ds,
    *,
    class_weight: dict[int, float],
    workdir: Path | None = None,
    interrupt=None,
    extra_callbacks: Sequence = (),
) -> Fitted:
    """Train ``model`` (built by ``build``) by the recipe; checkpoint and history go to
    ``workdir`` (default ``cfg.out``). ``interrupt``: a ``GracefulInterrupt``; its first Ctrl-C
    ends the phase after the current batch and skips the rest. Raises ``TrainingError`` when
    no checkpoint was written."""
    import keras

    import chestx.models  # noqa: F401  (custom layers, to reload the checkpoint)
    from chestx.models import unfreeze_top

    workdir = Path(cfg.out if workdir is None else workdir)
    checkpoint = workdir / modeldir.MODEL_FILE
    history: dict[str, list[float]] = {}

    best: float | None = None  # the checkpoint's value: fine-tuning must beat the head phase

    def phase(model, epochs: int, initial_epoch: int = 0) -> tuple[int, bool]:
        nonlocal best
        if interrupt is not None and interrupt.requested:  # pressed before this phase began
            return 0, True
        done = keras.callbacks.History()
        recipe_callbacks = callbacks(cfg, workdir, interrupt, best)
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            class_weight=class_weight,
            shuffle=False,  # the training dataset shuffles itself
            callbacks=[*extra_callbacks, *recipe_callbacks, done],
            verbose=cfg.verbose,
        )
        for key, values in done.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        checkpoint_cb = recipe_callbacks[0]
        if math.isfinite(checkpoint_cb.best):
            best = checkpoint_cb.best
        return len(done.epoch), bool(interrupt is not None and interrupt.requested)

    epochs_run, interrupted = phase(model, cfg.epochs)
    if fine_tunes(cfg) and not interrupted and checkpoint.is_file():
        network = keras.saving.load_model(checkpoint, compile=False)
        n = unfreeze_top(network, cfg.fine_tune_layers)
        lr = fine_tune_learning_rate(cfg)
        log.info("fine-tuning the top %d backbone layers at lr %.2g", n, lr)
        model = trainable(network, cfg)
        _compile(model, cfg, lr)
        more, interrupted = phase(model, cfg.fine_tune_epochs, initial_epoch=epochs_run)
        epochs_run += more
    if not checkpoint.is_file():
        raise TrainingError(
            "training stopped before the first checkpoint was written"
            + (" (interrupted)" if interrupted else f" ({cfg.monitor} never finite?)")
        )
    best = keras.saving.load_model(checkpoint, compile=False)
    return Fitted(best, epochs_run, interrupted, history)
