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
    cfg = TrainConfig(data=tmp_path, out=tmp_path, patience=6, ema=0.99)
    assert (
        _names(recipe.callbacks(cfg, tmp_path, interrupt=object()))[-1] == "ValidateMovingAverage"
    )


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


def test_keep_last_saves_every_epoch_and_early_stopping_restores_nothing(tmp_path):
    """``--keep last``: the file holds the last epoch's model even when validation got worse
    (fine-tuning for what the internal validation cannot reward); the best is still tracked."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    cfg = TrainConfig(data=tmp_path, out=tmp_path, patience=6, keep="last")
    made = recipe.callbacks(cfg, tmp_path)
    checkpoint, stop = made[:2]
    assert stop.restore_best_weights is False
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_auc": 0.95})
    first = (tmp_path / "model.keras").read_bytes()
    model.layers[-1].kernel.assign(np.ones((4, 1), "float32"))
    checkpoint.on_epoch_end(1, {"val_auc": 0.90})  # worse, and still saved
    assert (tmp_path / "model.keras").read_bytes() != first and checkpoint.best == 0.95
    saved = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved.layers[-1].kernel), 1.0)
    best = recipe.callbacks(TrainConfig(data=tmp_path, out=tmp_path, patience=6), tmp_path)
    assert best[0].save_best_only and best[1].restore_best_weights


def test_with_ema_validation_and_checkpoint_see_the_average_and_training_goes_on_raw(tmp_path):
    """Each epoch's validation (and every epoch-end callback before the swap-back) sees the
    optimizer's moving average; the next epoch trains on from the raw weights; ``fit`` leaves
    the last average in the model (Keras finalises it), which is what the last epoch validated."""
    import keras

    from chestx.callbacks import ValidateMovingAverage
    from chestx.models import compile_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    compile_model(model, learning_rate=0.1, ema_momentum=0.9)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64).astype("float32")

    def weights():
        return [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]

    seen: dict[str, list] = {"validated": [], "epoch_end": [], "raw": [], "first_batch": []}

    class Probe(keras.callbacks.Callback):
        def __init__(self, before_swap_back: bool):
            super().__init__()
            self.before = before_swap_back

        def on_test_end(self, logs=None):
            if self.before:
                seen["validated"].append(weights())

        def on_epoch_end(self, epoch, logs=None):
            seen["epoch_end" if self.before else "raw"].append(weights())

        def on_train_batch_begin(self, batch, logs=None):
            if self.before and batch == 0:
                seen["first_batch"].append(weights())

    callbacks = [Probe(True), ValidateMovingAverage(), Probe(False)]
    model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=8, callbacks=callbacks, verbose=0)
    for validated, at_end, raw in zip(
        seen["validated"], seen["epoch_end"], seen["raw"], strict=True
    ):
        assert all(np.array_equal(a, b) for a, b in zip(validated, at_end, strict=True))
        assert not all(np.allclose(a, b) for a, b in zip(validated, raw, strict=True))
    for raw, next_start in zip(seen["raw"], seen["first_batch"][1:], strict=False):
        assert all(np.array_equal(a, b) for a, b in zip(raw, next_start, strict=True))
    assert all(np.allclose(a, b) for a, b in zip(weights(), seen["validated"][-1], strict=True))

    plain = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    compile_model(plain)
    with pytest.raises(ValueError, match="use_ema"):
        plain.fit(x, y, epochs=1, callbacks=[ValidateMovingAverage()], verbose=0)
