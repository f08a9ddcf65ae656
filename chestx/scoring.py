"""One pass over a labelled dataset: its labels and what a function makes of each batch.

``chestx train`` (validation/test/external metrics of the best checkpoint), every tuner trial
(its validation score), ``chestx evaluate`` (the serving pipeline's probabilities) and the
search's image cache (the decoded images themselves) all read a ``(x, y)`` dataset this way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def collect(ds, fn: Callable) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, outputs)``: every batch's ``y`` and ``fn(x)``, each concatenated in order;
    two empty arrays when the dataset yields nothing (every file unreadable)."""
    ys, outs = [], []
    for x, y in ds:
        ys.append(np.asarray(y))
        outs.append(np.asarray(fn(x)))
    if not ys:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(ys), np.concatenate(outs)


def predict_dataset(model, ds) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of a non-training dataset, through the model's inference call."""
    import tensorflow as tf

    infer = tf.function(lambda x: model(x, training=False))
    return collect(ds, lambda x: infer(x).numpy().reshape(-1))
