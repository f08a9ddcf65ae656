"""Search-space files: every validation error names the file, the key and the line; the shipped
files are valid; a bad file stops ``chestx tune`` with exit 2 before anything is written."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from chestx.cli import main
from chestx.tuning.engine.space import load_space, parse_space
from chestx.tuning.errors import SpaceError

HYPERPARAMS = Path(__file__).resolve().parents[2] / "hyperparams"

GOOD = """\
model: chestnet
tuner: random
budget: {max_trials: 3, epochs: 1}
space:
  image_size: 64
  blocks: {type: int, min: 2, max: 3}
  learning_rate: {type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}
  batch_size: {type: choice, values: [8, 16]}
  augment: {type: boolean, default: true}
  rotation: {type: float, min: 0, max: 10, when: {augment: true}}
"""


def space_error(text: str, tmp_path) -> SpaceError:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SpaceError) as exc:
        load_space(path)
    return exc.value


@pytest.mark.parametrize("name", ["cnn.yaml", "transfer.yaml", "smoke.yaml"])
def test_shipped_files_are_valid(name):
    space = load_space(HYPERPARAMS / name)
    assert space.params and space.budget.max_trials >= 1
    assert space.objective == "val_roc_auc" and space.direction == "max"


def test_transfer_file_runs_offline_by_default():
    assert load_space(HYPERPARAMS / "transfer.yaml").params["weights"].default == "none"


def test_cnn_defaults_are_chestx_train_recipe():
    from chestx.tuning.engine import vocabulary

    space = load_space(HYPERPARAMS / "cnn.yaml")
    for name, value in space.defaults().items():
        assert value == vocabulary.CHESTNET[name].default, name


def test_good_space_parses_with_defaults_and_order():
    space = parse_space(GOOD, "good.yaml")
    assert list(space.params)[:1] == ["image_size"]
    assert space.params["blocks"].default == 2  # min, when the vocabulary default is outside
    assert space.params["rotation"].when == (("augment", (True,)),)
    assert space.defaults()["rotation"] == 10.0
    assert space.with_caps(max_trials=7, epochs=2).budget.max_trials == 7


# (yaml text, the key the message must name, the line, a phrase of the message)
CASES = {
    "malformed": ("model: chestnet\nspace: {a: [1, 2\n", "", 3, "not valid YAML"),
    "not a mapping": ("- 1\n- 2\n", "", None, "must be a mapping"),
    "empty": ("", "", None, "empty"),
    "unknown top key": ("model: chestnet\nspce: {}\n", "spce", 2, "unknown key"),
    "unknown model": ("model: vgg\nspace: {dropout: 0.1}\n", "model", 1, "unknown value"),
    "unknown tuner": (
        "model: chestnet\ntuner: grid\nspace: {dropout: 0.1}\n",
        "tuner",
        2,
        "unknown value",
    ),
    "unknown space key": (
        "model: chestnet\nspace:\n  dropout: 0.1\n  dropuot: 0.2\n",
        "space.dropuot",
        4,
        "unknown key for model chestnet",
    ),
    "key of other family": (
        "model: chestnet\nspace:\n  backbone: resnet50\n",
        "space.backbone",
        3,
        "unknown key",
    ),
    "unknown type": (
        "model: chestnet\nspace:\n  dropout: {type: real, min: 0, max: 1}\n",
        "space.dropout.type",
        3,
        "unknown type 'real'",
    ),
    "missing type": (
        "model: chestnet\nspace:\n  dropout: {min: 0, max: 1}\n",
        "space.dropout",
        3,
        "needs a type",
    ),
    "unknown entry key": (
        "model: chestnet\nspace:\n  dropout:\n    type: float\n    min: 0\n"
        "    max: 0.5\n    maximum: 1\n",
        "space.dropout.maximum",
        7,
        "unknown key",
    ),
    "min > max": (
        "model: chestnet\nspace:\n  blocks:\n    type: int\n    min: 5\n    max: 3\n",
        "space.blocks.min",
        5,
        "min (5) > max (3)",
    ),
    "log touching 0": (
        "model: chestnet\nspace:\n  learning_rate:\n    type: float\n"
        "    min: 0\n    max: 0.01\n    sampling: log\n",
        "space.learning_rate.min",
        5,
        "must not touch 0",
    ),
    "log step": (
        "model: chestnet\nspace:\n  learning_rate: {type: float, min: 1.0e-4, "
        "max: 1.0e-2, sampling: log, step: 0.5}\n",
        "space.learning_rate.step",
        3,
        "must be > 1",
    ),
    "default outside": (
        "model: chestnet\nspace:\n  blocks: {type: int, min: 2, max: 3, default: 5}\n",
        "space.blocks.default",
        3,
        "outside [2, 3]",
    ),
    "int given a float": (
        "model: chestnet\nspace:\n  blocks: {type: int, min: 2.5, max: 3}\n",
        "space.blocks.min",
        3,
        "must be an integer",
    ),
    "float type for int key": (
        "model: chestnet\nspace:\n  blocks: {type: float, min: 2, max: 3}\n",
        "space.blocks.type",
        3,
        "takes integer values",
    ),
    "outside vocabulary range": (
        "model: chestnet\nspace:\n  dropout: {type: float, min: 0.5, max: 1.5}\n",
        "space.dropout.max",
        3,
        "must be <= 0.95",
    ),
    "choice not a list": (
        "model: chestnet\nspace:\n  batch_size: {type: choice, values: 8}\n",
        "space.batch_size.values",
        3,
        "non-empty list",
    ),
    "choice mixed": (
        "model: chestnet\nspace:\n  intensity: {type: choice, values: [clahe, 3]}\n",
        "space.intensity.values.1",
        3,
        "non-empty string",
    ),
    "choice bad string": (
        "model: chestnet\nspace:\n  intensity: {type: choice, values: [clahe, sharpen]}\n",
        "space.intensity.values.1",
        3,
        "unknown value 'sharpen'",
    ),
    "choice default": (
        "model: chestnet\nspace:\n  batch_size: {type: choice, values: [8, 16], default: 32}\n",
        "space.batch_size.default",
        3,
        "not one of the values",
    ),
    "choice of booleans": (
        "model: chestnet\nspace:\n  augment: {type: choice, values: [true, false]}\n",
        "space.augment.values",
        3,
        "type: boolean",
    ),
    "boolean for numeric": (
        "model: chestnet\nspace:\n  dropout: {type: boolean}\n",
        "space.dropout.type",
        3,
        "not boolean",
    ),
    "condition on unknown": (
        "model: chestnet\nspace:\n  rotation: {type: float, min: 0, max: 9,"
        "\n             when: {augmentation: true}}\n",
        "space.rotation.when.augmentation",
        4,
        "condition on unknown parameter 'augmentation'",
    ),
    "condition impossible": (
        "model: chestnet\nspace:\n  blocks: {type: int, min: 2, max: 3}\n"
        "  dense_units: {type: choice, values: [0, 64], when: {blocks: 5}}"
        "\n",
        "space.dense_units.when.blocks",
        4,
        "blocks can never be 5",
    ),
    "condition on float": (
        "model: chestnet\nspace:\n  dropout: {type: float, min: 0, max: 0.5}\n"
        "  blocks: {type: int, min: 2, max: 3, when: {dropout: 0.1}}\n",
        "space.blocks.when.dropout",
        4,
        "float parameter",
    ),
    "condition cycle": (
        "model: chestnet\nspace:\n  augment: {type: boolean, when: {flip: true}}"
        "\n  flip: {type: boolean, when: {augment: true}}\n",
        "space.",
        None,
        "cycle",
    ),
    "duplicate key": (
        "model: chestnet\nspace:\n  dropout: 0.1\n  dropout: 0.2\n",
        "space.dropout",
        4,
        "duplicate key",
    ),
    "unknown objective": (
        "model: chestnet\nobjective: val_auroc\nspace: {dropout: 0.1}\n",
        "objective",
        2,
        "unknown value 'val_auroc'",
    ),
    "bad budget": (
        "model: chestnet\nbudget: {max_trials: 0}\nspace: {dropout: 0.1}\n",
        "budget.max_trials",
        2,
        "must be >= 1",
    ),
    "unknown budget key": (
        "model: chestnet\nbudget: {trials: 3}\nspace: {dropout: 0.1}\n",
        "budget.trials",
        2,
        "unknown key",
    ),
    "hyperband section on random": (
        "model: chestnet\nbudget:\n  hyperband: {factor: 3}\nspace: {dropout: 0.1}\n",
        "budget.hyperband",
        3,
        "only used with tuner: hyperband",
    ),
    "missing weights file": (
        "model: transfer\nspace:\n  weights: /no/such/file.h5\n",
        "space.weights",
        3,
        "existing file",
    ),
    "missing space": ("model: chestnet\n", "space", None, "required"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_errors_name_file_key_and_line(case, tmp_path):
    text, key, line, phrase = CASES[case]
    err = space_error(text, tmp_path)
    message = str(err)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "bad.yaml"))
    assert phrase in message, message
    if key:
        assert err.key.startswith(key), message
        assert f": {err.key}: " in message
    if line:
        assert err.line == line, message
        assert message.startswith(f"{tmp_path / 'bad.yaml'}:{line}: ")


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "nope.yaml")


def test_numbers_written_1e_4_are_read_as_numbers():
    space = parse_space(
        "model: chestnet\nspace:\n  learning_rate: {type: float, min: 1e-4, "
        "max: 1e-2, sampling: log, default: 1e-3}\n"
    )
    assert space.params["learning_rate"].min == 1e-4


def test_bad_space_exits_2_with_one_line_and_writes_nothing(capsys, tmp_path, xray_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: chestnet\nspace:\n  blocks: {type: int, min: 5, max: 3}\n")
    out = tmp_path / "run"
    code = main(["tune", "--space", str(bad), "--data", str(xray_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"chestx: error: {bad}:3: space.blocks.min: min (5) > max (3)"]
    assert not out.exists()


def test_validation_imports_no_tensorflow():
    import subprocess

    code = (
        "import sys; from chestx.tuning.engine.space import load_space; "
        f"load_space({str(HYPERPARAMS / 'cnn.yaml')!r}); "
        "assert not [m for m in sys.modules if m.startswith(('tensorflow', 'keras'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (["tune", "--space", "x.yaml"], "tune needs --data, --out"),
        (["tune", "--check"], "needs --space"),
        (["tune", "--report", "/no/such/run"], "holds no chestx search"),
    ],
)
def test_cli_usage_errors_exit_2(capsys, argv, phrase):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1


def test_check_prints_ok(capsys):
    assert main(["tune", "--check", "--space", str(HYPERPARAMS / "cnn.yaml")]) == 0
    assert "ok (bayesian search over" in capsys.readouterr().out


def test_rundir_refuses_a_second_search_without_resume(capsys, tmp_path, xray_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "search.yaml").write_text((HYPERPARAMS / "smoke.yaml").read_text())
    argv = [
        "tune",
        "--space",
        str(HYPERPARAMS / "smoke.yaml"),
        "--data",
        str(xray_dir),
        "--out",
        str(out),
    ]
    assert main(argv) == 2
    assert "already holds a search; pass --resume" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(GOOD)
    assert (
        main(
            ["tune", "--space", str(other), "--data", str(xray_dir), "--out", str(out), "--resume"]
        )
        == 2
    )
    assert "another space" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["search.yaml"]
