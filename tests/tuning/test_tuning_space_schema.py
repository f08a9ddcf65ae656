"""The search-space schema (pydantic models) and what it newly states: unknown entry types, empty
keys, condition cycles named with their line, the README's file layout matching the models, and
the order of keys (parents first, otherwise the file's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from chestx.cli import main
from chestx.tuning.engine import space_schema
from chestx.tuning.engine.space import parse_space
from chestx.tuning.errors import SpaceError

HYPERPARAMS = Path(__file__).resolve().parents[2] / "hyperparams"


def refusal(text: str) -> SpaceError:
    with pytest.raises(SpaceError) as exc:
        parse_space(text, "s.yaml")
    return exc.value


def test_unknown_type_lists_the_five_types_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: chestnet\nspace:\n  blocks: {type: integer, min: 2, max: 3}\n")
    assert main(["tune", "--check", "--space", str(bad)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"chestx: error: {bad}:3: space.blocks.type: unknown type 'integer'; "
        "expected one of int, float, choice, boolean, fixed"
    ]


def test_a_cycle_of_three_conditions_is_named_at_its_line():
    err = refusal(
        "model: chestnet\nspace:\n"
        "  blocks: {type: int, min: 2, max: 3, when: {filters: 8}}\n"
        "  filters: {type: choice, values: [8, 16], when: {dense_units: 0}}\n"
        "  dense_units: {type: choice, values: [0, 64], when: {blocks: 2}}\n"
    )
    assert "conditions form a cycle" in str(err)
    cycle = re.search(r"cycle: (\w+(?: -> \w+)+)", str(err)).group(1).split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"blocks", "filters", "dense_units"}
    # the key is one condition of the cycle, with its own line
    parent, child = cycle[0], cycle[1]
    assert err.key == f"space.{child}.when.{parent}"
    assert err.line == {"blocks": 3, "filters": 4, "dense_units": 5}[child]


def test_parents_come_first_otherwise_the_file_order_stays():
    space = parse_space(
        "model: chestnet\nspace:\n"
        "  dense_units: {type: choice, values: [0, 64], when: {blocks: 3}}\n"
        "  dropout: 0.2\n"
        "  blocks: {type: int, min: 2, max: 4}\n"
        "  filters: {type: choice, values: [8, 16]}\n"
    )
    assert list(space.params) == ["blocks", "dense_units", "dropout", "filters"]


@pytest.mark.parametrize(
    "text, key, line, phrase",
    [
        # a key written with nothing after it is a slip, not "use the default"
        (
            "model: chestnet\nspace:\n  blocks:\n    type: int\n    min: 2\n    max: 3\n"
            "    step:\n",
            "space.blocks.step",
            7,
            "has no value (null)",
        ),
        ("model: chestnet\nseed:\nspace: {blocks: 3}\n", "seed", 2, "has no value"),
        ("model: chestnet\nspace:\n  image_size:\n", "space.image_size", 3, "has no value"),
        # the missing key is named, with its entry's line
        (
            "model: chestnet\nspace:\n  blocks: {type: int, max: 3}\n",
            "space.blocks.min",
            3,
            "type int needs min",
        ),
        ("model: chestnet\nspace:\n  1: 3\n", "space", 2, "keys must be strings"),
        (
            "model: chestnet\nbudget: false\nspace: {blocks: 3}\n",
            "budget",
            2,
            "must be a mapping, got boolean false",
        ),
        (
            "model: chestnet\nspace:\n  blocks: {type: int, min: 2, max: 3, help: 5}\n",
            "space.blocks.help",
            3,
            "must be text",
        ),
        (
            "model: chestnet\nspace:\n  blocks: {type: int, min: 2, max: 3, when: {}}\n",
            "space.blocks.when",
            3,
            "is empty",
        ),
        (
            "model: chestnet\nspace:\n  augment: true\n"
            "  blocks: {type: int, min: 2, max: 3, when: {augment: []}}\n",
            "space.blocks.when.augment",
            4,
            "is empty",
        ),
        (
            "model: chestnet\nspace:\n  dropout: {type: float, min: .nan, max: 0.5}\n",
            "space.dropout.min",
            3,
            "must be finite",
        ),
        (
            "model: chestnet\nobjective: {name: val_loss, direction: down}\nspace: {blocks: 3}\n",
            "objective.direction",
            2,
            "unknown value 'down'",
        ),
        (
            "model: chestnet\nspace:\n  blocks: {type: choice, values: [3, true]}\n",
            "space.blocks.values.1",
            3,
            "must be an integer, got boolean true",
        ),
        (
            "model: chestnet\nspace:\n  weight_decay: {type: choice, values: [1e-4, 0.0001]}\n",
            "space.weight_decay.values",
            3,
            "values repeat",
        ),
    ],
)
def test_refusals_name_the_key_and_line(text, key, line, phrase):
    err = refusal(text)
    assert (err.key, err.line) == (key, line), str(err)
    assert phrase in str(err) and str(err).startswith(f"s.yaml:{line}: {key}: ")


def test_unknown_entry_key_lists_that_types_keys():
    err = refusal("model: chestnet\nspace:\n  augment: {type: boolean, values: [1]}\n")
    assert err.key == "space.augment.values"
    assert str(err).endswith("unknown key; expected one of type, when, help, default")


def test_the_first_problem_in_file_order_is_reported():
    err = refusal(
        "model: chestnet\nbudget: {epochs: 0}\nspace:\n  blocks: {type: int, min: 5, max: 3}\n"
        "seed: -1\n"
    )
    assert (err.key, err.line) == ("budget.epochs", 2)


def test_yaml11_numbers_may_form_an_ordered_choice():
    space = parse_space(
        "model: chestnet\nspace:\n"
        "  weight_decay: {type: choice, values: [0, 1e-5, 1e-4], ordered: true, default: 1e-4}\n"
    )
    param = space.params["weight_decay"]
    assert param.values == (0.0, 1e-5, 1e-4) and param.default == 1e-4 and param.ordered


def test_readme_file_layout_matches_the_schema():
    readme = (HYPERPARAMS / "README.md").read_text()
    block = re.search(r"## The file\n\n```yaml\n(.*?)```", readme, re.S).group(1)
    layout = yaml.safe_load(block)
    assert list(layout) == list(space_schema.SpaceFile.model_fields)
    assert list(layout["budget"]) == list(space_schema.Budget.model_fields)
    assert list(layout["retrain"]) == list(space_schema.Retrain.model_fields)
    documented = re.findall(r"^\*\*([a-z]+)\*\*: ", readme, re.M)
    assert documented == list(space_schema.TYPES)


def test_schema_exports_a_json_schema_with_the_type_discriminator():
    schema = space_schema.SpaceFile.model_json_schema()
    space = schema["properties"]["space"]["additionalProperties"]
    assert sorted(space["discriminator"]["mapping"]) == sorted(space_schema.TYPES)
