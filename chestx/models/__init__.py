"""Model builders: every one returns a functional ``keras.Model`` that takes raw 0-255 grey
pixels of shape (S, S, 1) and outputs P(pneumonia); all scaling happens inside the model."""

from __future__ import annotations

import keras

from chestx.errors import ModelError
from chestx.models import layers as _layers  # noqa: F401  (registers custom layers for loading)
from chestx.models.cnn import chestnet, seed_cnn
from chestx.models.transfer import transfer_model, unfreeze_top

__all__ = ["build_model", "compile_model", "chestnet", "seed_cnn", "transfer_model", "unfreeze_top"]


def build_model(arch: str, image_size: int = 224, **options) -> keras.Model:
    """Build ``arch`` (chestnet | cnn | transfer); options go to that builder."""
    if arch == "chestnet":
        return chestnet(image_size, **options)
    if arch == "cnn":
        return seed_cnn(image_size)
    if arch == "transfer":
        return transfer_model(image_size, **options)
    raise ModelError(f"unknown architecture {arch!r}; choose chestnet, cnn or transfer")


def compile_model(
    model: keras.Model,
    *,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.0,
    weight_decay: float | None = None,
    ema_momentum: float | None = None,
) -> keras.Model:
    """Adam (or AdamW with ``weight_decay``) on binary cross-entropy, with clinical metrics.
    ``ema_momentum``: the optimizer also keeps that exponential moving average of the weights
    (Keras' ``use_ema``; ``chestx.callbacks.ValidateMovingAverage`` validates and saves it)."""
    ema = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum else {}
    if weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, **ema)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, **ema)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
        metrics=[
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.Recall(name="sensitivity"),
            keras.metrics.Precision(name="precision"),
        ],
    )
    return model
