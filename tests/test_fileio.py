"""Atomic writes (chestx.fileio) and the model directory's finished/unfinished card."""

from __future__ import annotations

import json

import pytest

from chestx import modeldir
from chestx.errors import ModelError
from chestx.fileio import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    leftover_temp_files,
    temp_path_for,
)


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "sub" / "card.json"
    assert atomic_write_text(path, "one\n") == path
    assert path.read_text() == "one\n"
    atomic_write_bytes(path, b"two\n")
    assert path.read_bytes() == b"two\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["card.json"]


def test_temp_path_is_hidden_next_to_the_file_and_keeps_the_suffix(tmp_path):
    tmp = temp_path_for(tmp_path / "model.keras")
    assert tmp.parent == tmp_path and tmp.name.startswith(".model") and tmp.suffix == ".keras"
    assert temp_path_for(tmp_path / "model.keras") != tmp  # two writers never share one


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, OSError, ValueError])
def test_an_interrupted_write_keeps_the_previous_file(tmp_path, error):
    path = tmp_path / "model.keras"
    path.write_bytes(b"the good checkpoint")
    with pytest.raises(error), atomic_path(path) as tmp:
        tmp.write_bytes(b"half a mod")  # a save cut short: Ctrl-C, disk full, a crash...
        raise error
    assert path.read_bytes() == b"the good checkpoint"
    assert leftover_temp_files(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_writer_that_wrote_nothing_changes_nothing(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"old")
    with pytest.raises(FileNotFoundError), atomic_path(path):
        pass
    assert path.read_bytes() == b"old"


def test_leftover_temp_files_lists_only_temporaries(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"x")
    stale = temp_path_for(tmp_path / "model.keras")
    stale.write_bytes(b"y")  # what a kill -9 during a save leaves behind
    assert leftover_temp_files(tmp_path) == [stale]


@pytest.mark.parametrize(
    ("card", "status"),
    [
        ({"status": "complete"}, "complete"),
        ({"status": "training"}, "training"),
        ({"version": "2025.01.01-abcd"}, "complete"),  # cards written before the status key
        ({"version": "training"}, "training"),  # the provisional card of an older chestx train
    ],
)
def test_card_status(card, status):
    assert modeldir.card_status(card) == status


def test_check_finished_refuses_with_one_line(tmp_path):
    modeldir.check_finished({"status": "complete"}, tmp_path)
    with pytest.raises(ModelError) as info:
        modeldir.check_finished({"status": "training"}, tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "training" in message


def test_write_card_is_atomic_and_save_model_marks_complete(tmp_path, tiny_model_dir):
    card = json.loads((tiny_model_dir / modeldir.CARD).read_text())
    assert card["status"] == "complete"  # save_model (conftest) marks a finished model
    modeldir.write_card(tmp_path, {"status": "training", "threshold": 0.5})
    assert json.loads((tmp_path / modeldir.CARD).read_text())["status"] == "training"
    assert leftover_temp_files(tmp_path) == []
