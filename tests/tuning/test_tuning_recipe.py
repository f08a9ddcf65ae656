"""A trial and ``best/`` are trained by one recipe (``chestx.recipe``).

A real trial (``ChestHyperModel.build`` + ``fit`` on the search's data) and a real
``chestx.train.train`` of the same configuration, as ``chestx tune`` retrains its winner, run on
the fixture X-rays. A recorder appended to the recipe's callbacks notes, at the start of every
``model.fit``, what the recipe set up: the callbacks and their settings, the learning rate and
how many weights train. Both runs must show the same phases: the head phase and, started from
the reloaded best checkpoint, the fine-tuning phase at a tenth of the learning rate with more
of the backbone trainable.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from chestx import recipe
from chestx.tuning.engine.space import parse_space

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:All-NaN:RuntimeWarning")]

SPACE = """
name: recipe
model: transfer
tuner: random
seed: 3
budget:
  max_trials: 1
  epochs: 2
  fine_tune_epochs: 1
  early_stopping: {patience: 3, monitor: val_loss}
space:
  weights: none
  image_size: 48
  batch_size: 4
  augment: false
  head_units: 8
  fine_tune_layers: 10
  learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log, default: 2.0e-3}
"""

SETTINGS = ("monitor", "mode", "patience", "factor", "min_lr", "restore_best_weights")


def _describe(callback) -> tuple:
    return (type(callback).__name__, *(getattr(callback, k, None) for k in SETTINGS))


@pytest.fixture
def phases(monkeypatch):
    """Every ``model.fit`` the recipe starts: its callbacks, learning rate, trainable weights."""
    import keras

    seen: list[dict] = []
    real = recipe.callbacks

    class Recorder(keras.callbacks.Callback):
        def __init__(self, made):
            super().__init__()
            self.made = made

        def on_train_begin(self, logs=None):
            seen.append(
                {
                    "callbacks": [_describe(c) for c in self.made],
                    "learning_rate": float(self.model.optimizer.learning_rate),
                    "trainable": len(self.model.trainable_weights),
                }
            )

    def recording(*args, **kwargs):
        made = real(*args, **kwargs)
        return [*made, Recorder(made)]

    monkeypatch.setattr(recipe, "callbacks", recording)
    return seen


def test_a_trial_and_best_are_trained_by_the_same_recipe(phases, monkeypatch, tmp_path, xray_dir):
    import keras_tuner as kt

    from chestx import train as train_module
    from chestx.tuning.engine.hypermodel import ChestHyperModel
    from chestx.tuning.engine.inputs import SearchData
    from chestx.tuning.export import retrain_config

    monkeypatch.setattr(train_module, "_export_litert", lambda model, out: None)  # not tested
    space = parse_space(SPACE)
    hypermodel = ChestHyperModel(space, seed=3, verbose=0)
    hp = kt.HyperParameters()
    trial_cfg = hypermodel.train_config(hp, epochs=2)

    # one mapping from hyperparameters to training: the trial's config is best/'s
    values = {k: v for k, v in space.declare(kt.HyperParameters()).items() if v is not None}
    best_cfg = retrain_config(
        space, values, data=xray_dir, out=tmp_path / "best", seed=3, limit=None,
        min_sensitivity=hypermodel.min_sensitivity,
    )  # fmt: skip
    differ = {"data", "out", "verbose"}
    same = {k: v for k, v in dataclasses.asdict(trial_cfg).items() if k not in differ}
    assert same == {k: v for k, v in dataclasses.asdict(best_cfg).items() if k not in differ}
    assert (trial_cfg.monitor, trial_cfg.patience, trial_cfg.fine_tune_epochs) == ("val_loss", 3, 1)

    # a real trial
    data = SearchData(xray_dir, seed=3)
    results = hypermodel.fit(hp, hypermodel.build(hp), data=data, epochs=2)
    trial_phases = list(phases)
    assert 0 <= results["val_roc_auc"] <= 1 and results["epochs"] == 3  # 2 head + 1 fine-tune

    # best/, as chestx tune retrains it
    phases.clear()
    card = train_module.train(best_cfg)
    assert card["training"]["epochs_run"] == 3
    assert len(json.loads((tmp_path / "best" / "card.json").read_text())["metrics"]["val"]) > 0

    # chestx train adds its Ctrl-C handling (a first Ctrl-C finishes the run); the rest is one
    for phase in phases:
        assert phase["callbacks"][-1][0] == "StopOnInterrupt"
        del phase["callbacks"][-1]
    assert len(trial_phases) == 2 and trial_phases == phases  # same callbacks, rates, weights
    head, fine = trial_phases
    names = [c[0] for c in head["callbacks"]]
    for name in ("AtomicCheckpoint", "EarlyStopping", "ReduceLROnPlateau", "TerminateOnNaN"):
        assert name in names, names
    assert {c[1] for c in head["callbacks"] if c[1] is not None} == {"val_loss"}
    assert head["learning_rate"] == pytest.approx(2e-3)
    assert fine["learning_rate"] == pytest.approx(2e-4)
    assert fine["trainable"] > head["trainable"]  # the top backbone layers were unfrozen
