"""The README's first-screen example is what the shipped model prints today, so a new shipped
model cannot leave a stale probability or threshold on the page users read first."""

import json
import re
from pathlib import Path

import pytest

from chestx.cli import main

ROOT = Path(__file__).resolve().parents[1]


def first_predict_example() -> tuple[list[str], dict]:
    """The README's first ``.venv/bin/chestx predict …`` command line and the JSON line under it."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\.venv/bin/chestx predict \S+$", line):
            return line.split()[1:], json.loads(lines[i + 1])
    raise AssertionError("README.md has no `.venv/bin/chestx predict FILE` example")


def test_readme_predict_example_matches_the_shipped_model(capsys, monkeypatch):
    argv, shown = first_predict_example()
    monkeypatch.delenv("CHESTX_MODEL_DIR", raising=False)  # the shipped model, as on a fresh clone
    monkeypatch.chdir(ROOT)  # the example's path is relative to the checkout
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == shown["path"]
    assert printed["label"] == shown["label"]
    assert printed["threshold"] == shown["threshold"]
    # printed to 6 decimals; CPUs with other vector units round differently in the last digits
    assert printed["probability"] == pytest.approx(shown["probability"], abs=1e-3)
