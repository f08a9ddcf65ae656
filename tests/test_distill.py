"""Knowledge distillation (``chestx train --teacher``): the teacher's probabilities, softened and
blended with the labels, are what the student trains on, in the records' order."""

import json
import shutil

import numpy as np
import pytest

from chestx.cli import main
from chestx.data import Record, dataset, scan_folder
from chestx.distill import blend, soft_targets, soften, teacher_commands
from chestx.errors import ModelError
from chestx.scoring import predict_dataset


def test_temperature_flattens_and_blend_moves_labels_towards_the_teacher():
    p = np.array([0.01, 0.3, 0.5, 0.99])
    np.testing.assert_allclose(soften(p, 1.0), p, atol=1e-9)
    soft = soften(p, 2.0)
    assert soft[2] == pytest.approx(0.5)
    off = [0, 1, 3]
    assert np.all(np.abs(soft - 0.5)[off] < np.abs(p - 0.5)[off])  # nearer 0.5
    assert np.all((soft > 0.5) == (p > 0.5))  # same side
    assert soft[3] == pytest.approx(1 / (1 + np.sqrt(0.01 / 0.99)))  # sigmoid(logit / 2)
    targets = blend(np.array([1, 0, 1]), np.array([0.2, 0.2, 1.0]), 0.25, 1.0)
    np.testing.assert_allclose(targets, [0.8, 0.05, 1.0], atol=1e-6)


def test_dataset_feeds_the_given_targets_in_order(xray_dir):
    records = scan_folder(xray_dir)[:6]
    targets = np.linspace(0.1, 0.6, 6).astype(np.float32)
    common = dict(image_size=32, intensity="none", batch_size=4)
    y = np.concatenate([b for _, b in dataset(records, targets=targets, **common)])
    np.testing.assert_allclose(y, targets)
    with pytest.raises(ValueError, match="5 targets for 6 records"):
        dataset(records, targets=targets[:5], **common)


def test_soft_targets_are_the_teachers_probabilities_blended(tiny_model_dir, xray_dir, tmp_path):
    import keras

    records = scan_folder(xray_dir)[:8]
    bad = tmp_path / "notes.jpeg"
    bad.write_text("not an X-ray")
    records.insert(3, Record(bad, 1, "notes", "train"))  # unreadable: keeps its label
    targets, entry = soft_targets(
        tiny_model_dir, records, image_size=64, intensity="clahe", weight=0.5, temperature=2.0
    )
    teacher = keras.saving.load_model(tiny_model_dir / "model.keras", compile=False)
    good = [r for r in records if r.path != bad]
    y, p = predict_dataset(teacher, dataset(good, image_size=64, intensity="clahe", batch_size=8))
    want = 0.5 * y + 0.5 * soften(p, 2.0)
    assert targets.shape == (9,) and targets[3] == 1.0
    np.testing.assert_allclose(np.delete(targets, 3), want, atol=1e-5)
    assert entry["scored"] == 8 and entry["weight"] == 0.5 and entry["temperature"] == 2.0
    assert entry["model"] == "tiny-test" and entry["directory"] == tiny_model_dir.name


def test_teacher_commands_list_the_members_first():
    card = {"training": {"command": "chestx ensemble …", "member_commands": ["a", "b"]}}
    assert teacher_commands(card) == ["a", "b", "chestx ensemble …"]
    assert teacher_commands({"training": {"command": "chestx train …"}}) == ["chestx train …"]
    assert teacher_commands({}) == []


def test_teacher_with_another_input_or_bad_weights_is_refused(tiny_model_dir, xray_dir):
    records = scan_folder(xray_dir)[:2]
    with pytest.raises(ModelError, match="image_size 64"):
        soft_targets(tiny_model_dir, records, image_size=48, intensity="clahe", weight=0.5)
    with pytest.raises(ModelError, match="teacher-weight"):
        soft_targets(tiny_model_dir, records, image_size=64, intensity="clahe", weight=1.5)
    with pytest.raises(ModelError, match="teacher-temperature"):
        soft_targets(
            tiny_model_dir, records, image_size=64, intensity="clahe", weight=0.5, temperature=0
        )


def _copy_with_card(src, dst, **changes):
    shutil.copytree(src, dst)
    card_path = dst / "card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), **changes}))
    return dst


def test_train_with_a_teacher_records_it_in_the_card(capsys, tmp_path, xray_dir, tiny_model_dir):
    made_by = {"command": "chestx ensemble --member m1 --member m2 …", "member_commands": ["m1"]}
    teacher_dir = _copy_with_card(tiny_model_dir, tmp_path / "teacher", training=made_by)
    base = ["train", "--data", str(xray_dir), "--image-size", "64", "--batch-size", "8"]
    out = tmp_path / "student"
    argv = [*base, "--out", str(out), "--epochs", "1", "--seed", "1", "--teacher"]
    assert main([*argv, str(teacher_dir), "--teacher-weight", "0.3"]) == 0
    card = json.loads((out / "card.json").read_text())
    teacher = card["training"]["teacher"]
    assert teacher["model"] == "tiny-test" and teacher["weight"] == 0.3
    assert teacher["commands"] == ["m1", made_by["command"]]  # reproducible from the data
    assert teacher["scored"] == card["data"]["counts"]["train"]["n"]
    assert card["training"]["config"]["teacher"] == "teacher"  # no absolute path
    assert "--teacher" in card["training"]["command"]

    unfinished = _copy_with_card(tiny_model_dir, tmp_path / "unfinished", status="training")
    capsys.readouterr()
    code = main([*base, "--out", str(tmp_path / "s2"), "--teacher", str(unfinished)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "training" in err
    assert not (tmp_path / "s2").exists()  # refused before the output directory is made

    code = main([*base, "--out", str(out), "--teacher", str(teacher_dir), "--image-size", "48"])
    assert code == 2 and "image_size 64" in capsys.readouterr().err
    assert (out / "model.keras").is_file()  # the earlier model in --out is untouched
