"""The engine's parts: the HyperModel's checks and builds, the defaults-first oracle, the
leaderboard's ranking and table, ``--set`` pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestx.tuning.engine.leaderboard import format_table, rank
from chestx.tuning.engine.space import load_space, parse_space
from chestx.tuning.errors import SpaceError

HYPERPARAMS = Path(__file__).resolve().parents[2] / "hyperparams"


@pytest.fixture(scope="module")
def smoke():
    return load_space(HYPERPARAMS / "smoke.yaml")


def test_hypermodel_constructor_validates(smoke):
    from chestx.tuning.engine.hypermodel import ChestHyperModel

    with pytest.raises(ValueError, match="SearchSpace"):
        ChestHyperModel("hyperparams/smoke.yaml")
    with pytest.raises(ValueError, match="min_sensitivity"):
        ChestHyperModel(smoke, min_sensitivity=0)
    with pytest.raises(ValueError, match="verbose"):
        ChestHyperModel(smoke, verbose=3)
    assert ChestHyperModel(smoke).name == "smoke"


def test_build_declares_the_yaml_keys_and_honours_conditions(smoke):
    import keras_tuner as kt

    from chestx.tuning.engine.hypermodel import ChestHyperModel

    hm = ChestHyperModel(smoke)
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert [p.name for p in hp.space] == list(smoke.params)
    assert model.input_shape == (None, 64, 64, 1) and model.output_shape == (None, 1)
    assert hp.values["augment"] is False and "rotation" not in hp.values  # inactive
    cfg = hm.configuration(hp)
    assert cfg["rotation"] == 10.0 and cfg["filters"] == 8 and cfg["blocks"] == 2

    hp = kt.HyperParameters()
    smoke.declare(hp)
    hp.values.update(augment=True, rotation=7.5, blocks=3, filters=4)
    cfg = hm.configuration(hp)
    assert cfg["rotation"] == 7.5
    model = hm.build(hp)
    assert [layer.filters for layer in model.layers if layer.name.endswith("_1_conv")] == [4, 8, 16]


def test_too_small_an_image_fails_the_trial_not_the_search(smoke):
    import keras_tuner as kt

    from chestx.tuning.engine.hypermodel import ChestHyperModel

    space = smoke.with_fixed({"image_size": 32, "blocks": 5})
    with pytest.raises(kt.errors.FailedTrialError, match="too small"):
        ChestHyperModel(space).build(kt.HyperParameters())


def test_transfer_space_builds_offline():
    import keras_tuner as kt

    from chestx.tuning.engine.hypermodel import ChestHyperModel

    space = load_space(HYPERPARAMS / "transfer.yaml").with_fixed({"image_size": 64})
    hp = kt.HyperParameters()
    model = ChestHyperModel(space).build(hp)
    assert model.name == "transfer_mobilenetv2" and model.input_shape == (None, 64, 64, 1)
    assert "fine_tune_learning_rate" not in hp.values  # fine_tune_layers defaults to 0


def test_defaults_first_oracle(smoke):
    import keras_tuner as kt

    from chestx.tuning.tuners.random import RandomSearchOracle

    oracle = RandomSearchOracle(objective=kt.Objective("val_roc_auc", "max"), max_trials=3, seed=1)
    hp = oracle.get_space()
    smoke.declare(hp)
    oracle.update_space(hp)
    first = oracle.populate_space("0")
    assert first["status"] == "RUNNING" and first["values"] == smoke.defaults()


def test_pins_are_validated(smoke):
    assert smoke.with_fixed({"batch_size": 4}).params["batch_size"].type == "fixed"
    with pytest.raises(SpaceError, match="batch_size must be >= 1"):
        smoke.with_fixed({"batch_size": 0})
    with pytest.raises(SpaceError, match="unknown key"):
        smoke.with_fixed({"backbone": "resnet50"})


def test_rank_and_table():
    space = parse_space(
        "model: chestnet\nspace:\n  blocks: {type: int, min: 2, max: 3}\n  image_size: 64\n"
    )
    rows = rank(
        [
            {"trial": "0", "status": "COMPLETED", "val_roc_auc": 0.8, "blocks": 2},
            {"trial": "1", "status": "FAILED", "val_roc_auc": None, "blocks": 3},
            {"trial": "2", "status": "COMPLETED", "val_roc_auc": 0.9, "blocks": 3},
        ],
        "val_roc_auc",
        "max",
    )
    assert [(r["trial"], r["rank"]) for r in rows] == [("2", 1), ("0", 2), ("1", None)]
    table = format_table(rows, space).splitlines()
    assert table[0].split()[:4] == ["rank", "trial", "status", "roc_auc"]
    assert "blocks" in table[0] and "image_size" not in table[0]  # fixed keys are not shown
    assert table[1].split()[:4] == ["1", "2", "COMPLETED", "0.9"]
    assert table[3].split()[2] == "FAILED"
