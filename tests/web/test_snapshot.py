"""The Gunicorn master's model snapshot (chestx.web.snapshot): its checks, the reload that
keeps the old model when the new one is broken, and that no snapshot folder is left behind."""

from __future__ import annotations

import json
import shutil

import pytest

from chestx.errors import ModelError
from chestx.web.snapshot import (
    PREFIX,
    SNAPSHOT_ENV,
    Snapshots,
    check_structure,
    take_snapshot,
)


def _folders(parent):
    return sorted(p for p in parent.iterdir() if p.name.startswith(PREFIX))


@pytest.fixture()
def snaps(tmp_path):
    parent = tmp_path / "tmp"
    parent.mkdir()
    return parent


def test_snapshot_copies_what_the_runtime_reads(tiny_model_dir, snaps):
    snap, card = take_snapshot(tiny_model_dir, "tensorflow", full_check=False, parent=snaps)
    assert card["version"] == "0.0-test" and (snap / "model.keras").is_file()
    assert not (snap / "model.tflite").exists()
    snap, _ = take_snapshot(tiny_model_dir, "litert", full_check=False, parent=snaps)
    assert (snap / "model.tflite").is_file() and not (snap / "model.keras").exists()


def test_structure_checks_refuse_broken_directories(tiny_model_dir, tmp_path, snaps):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    card = json.loads((broken / "card.json").read_text())
    keras_bytes = (broken / "model.keras").read_bytes()
    (broken / "model.keras").write_bytes(keras_bytes[:5000])
    with pytest.raises(ModelError, match="model.keras"):
        take_snapshot(broken, "tensorflow", full_check=False, parent=snaps)
    (broken / "model.keras").write_bytes(keras_bytes)
    (broken / "card.json").write_text(
        json.dumps({k: v for k, v in card.items() if k != "threshold"})
    )
    with pytest.raises(ModelError, match="lacks threshold"):  # modeldir's list of keys
        check_structure(broken, "tensorflow")
    (broken / "card.json").write_text(json.dumps({**card, "status": "training"}))
    with pytest.raises(ModelError, match="not a finished model"):
        check_structure(broken, "tensorflow")
    (broken / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="card.json"):
        check_structure(broken, "tensorflow")
    with pytest.raises(ModelError, match="does not exist"):
        take_snapshot(tmp_path / "nothing", "tensorflow", full_check=False, parent=snaps)
    assert _folders(snaps) == []  # every failed snapshot removed its folder


def test_a_failed_full_check_leaves_no_folder(tiny_model_dir, tmp_path, snaps):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    # a complete zip with a config.json that is no Keras model: passes the structure check,
    # fails only when loaded
    import zipfile

    with zipfile.ZipFile(model / "model.keras", "w") as archive:
        archive.writestr("config.json", '{"class_name": "NoSuchLayer", "config": {}}')
    assert check_structure(model, "tensorflow")["version"] == "0.0-test"
    with pytest.raises(ModelError):
        take_snapshot(model, "tensorflow", full_check=True, parent=snaps)
    assert _folders(snaps) == []


def test_reload_replaces_the_snapshot_or_keeps_it(tiny_model_dir, tmp_path, snaps):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    environ: dict[str, str] = {}
    snapshots = Snapshots(model, "tensorflow", environ=environ, parent=snaps)
    assert snapshots.start()["version"] == "0.0-test"
    first = snapshots.current
    assert environ[SNAPSHOT_ENV] == str(first) and _folders(snaps) == [first]

    (model / "model.keras").write_bytes(b"PK\x03\x04 truncated")  # a broken model arrives
    with pytest.raises(ModelError):
        snapshots.reload()
    assert snapshots.current == first and _folders(snaps) == [first]  # the old one serves

    shutil.copy2(tiny_model_dir / "model.keras", model / "model.keras")
    card = json.loads((model / "card.json").read_text())
    (model / "card.json").write_text(json.dumps({**card, "version": "0.0-new"}))
    assert snapshots.reload()["version"] == "0.0-new"  # loads in a child process
    second = snapshots.current
    assert second != first and _folders(snaps) == [second]  # the replaced one is gone

    snapshots.close()  # the master exits
    assert _folders(snaps) == [] and SNAPSHOT_ENV not in environ


def test_only_this_masters_snapshots_are_removed(tiny_model_dir, tmp_path, snaps):
    handmade = tmp_path / "handmade"
    handmade.mkdir()
    Snapshots(tmp_path, "tensorflow", environ={SNAPSHOT_ENV: str(handmade)}).close()
    assert handmade.is_dir()  # a folder the variable was pointed at by hand is never removed
    inherited = snaps / f"{PREFIX}inherited"
    inherited.mkdir()
    environ = {SNAPSHOT_ENV: str(inherited)}
    snapshots = Snapshots(tiny_model_dir, "tensorflow", environ=environ, parent=snaps)
    snapshots.start()  # a value from the parent's environment: replaced, not removed
    assert inherited.is_dir() and snapshots.current != inherited
