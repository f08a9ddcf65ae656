"""``chestx.recipe``: the callbacks a configuration gets, and a run that never checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from chestx import recipe
from chestx.errors import ChestxError, DataError, TrainingError
from chestx.train import TrainConfig


def _names(callbacks) -> list[str]:
    return [type(c).__name__ for c in callbacks]


def test_patience_sets_early_stopping_and_the_plateau_none_turns_both_off(tmp_path):
    cfg = TrainConfig(data=tmp_path, out=tmp_path, patience=6, monitor="val_loss")
    made = recipe.callbacks(cfg, tmp_path)
    assert _names(made) == [
        "AtomicCheckpoint",
        "EarlyStopping",
        "ReduceLROnPlateau",
        "AtomicHistory",
        "TerminateOnNaN",
    ]
    checkpoint, stop, plateau = made[:3]
    assert checkpoint.path == tmp_path / "model.keras"
    assert (checkpoint.monitor, checkpoint.mode) == ("val_loss", "min")
    assert (stop.monitor, stop.patience, stop.restore_best_weights) == ("val_loss", 6, True)
    assert (plateau.monitor, plateau.patience) == ("val_loss", 2)

    cfg = TrainConfig(data=tmp_path, out=tmp_path, patience=None)
    assert _names(recipe.callbacks(cfg, tmp_path, interrupt=object())) == [
        "AtomicCheckpoint",
        "AtomicHistory",
        "TerminateOnNaN",
        "StopOnInterrupt",
    ]


def test_learning_rates_and_class_weights(tmp_path):
    cfg = TrainConfig(data=tmp_path, out=tmp_path)
    assert recipe.learning_rate(cfg) == 1e-3 and recipe.fine_tune_learning_rate(cfg) == 1e-4
    cfg = TrainConfig(data=tmp_path, out=tmp_path, lr=3e-3, fine_tune_lr=1e-5)
    assert recipe.learning_rate(cfg) == 3e-3 and recipe.fine_tune_learning_rate(cfg) == 1e-5
    assert recipe.class_weights([0, 0, 0, 1]) == {0: 4 / 6, 1: 2.0}
    with pytest.raises(DataError, match="both NORMAL and PNEUMONIA"):
        recipe.class_weights([1, 1])


def test_a_run_that_never_checkpoints_is_a_training_error(tmp_path):
    """NaN inputs: the loss is NaN, TerminateOnNaN stops the first epoch and no epoch has a
    finite val_loss to checkpoint. The error is a training failure, not a data-folder one."""
    import keras
    import tensorflow as tf

    from chestx.models import compile_model

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    compile_model(model)
    x = np.full((8, 4), np.nan, np.float32)
    y = np.array([0, 1] * 4, np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    cfg = TrainConfig(data=tmp_path, out=tmp_path, epochs=2, patience=None, monitor="val_loss")
    cfg.verbose = 0
    with pytest.raises(TrainingError, match="before the first checkpoint") as caught:
        recipe.fit(model, cfg, ds, ds, class_weight={0: 1.0, 1: 1.0})
    assert isinstance(caught.value, ChestxError) and not isinstance(caught.value, DataError)
    assert not (tmp_path / "model.keras").exists()


def test_a_later_phase_keeps_the_earlier_phases_better_checkpoint(tmp_path):
    """Fine-tuning starts its checkpoint at the head phase's best value: an epoch that scores
    worse leaves the head phase's model in place; a better one replaces it."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    cfg = TrainConfig(data=tmp_path, out=tmp_path, patience=None)
    checkpoint = recipe.callbacks(cfg, tmp_path, best=0.9)[0]
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_auc": 0.85})
    assert not (tmp_path / "model.keras").exists() and checkpoint.best == 0.9
    checkpoint.on_epoch_end(1, {"val_auc": 0.95})
    assert (tmp_path / "model.keras").is_file() and checkpoint.best == 0.95
    fresh = recipe.callbacks(cfg, tmp_path)[0]  # a first phase: any finite value is progress
    assert fresh.best == float("-inf")
