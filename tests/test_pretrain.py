"""``chestx pretrain``: the SimCLR loss and views on literal values, then whole runs on the 24
real X-rays: the directory it writes, ``chestx train --init`` from it, what refuses it, Ctrl-C."""

from __future__ import annotations

import json
import logging
import math
import signal

import numpy as np
import pytest

from chestx import callbacks as chestx_callbacks
from chestx.cli import main
from chestx.modeldir import training_commands
from chestx.pretrain import Views, nt_xent, random_views
from chestx.versions import source_revision

SMALL = ["--image-size", "48", "--width", "8", "--batch-size", "4", "--seed", "3"]


# -- the loss and the views ------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_nt_xent_of_orthogonal_pairs_is_the_closed_form(temperature):
    """Three X-rays, each view equal to its partner and orthogonal to the other four views:
    each row's softmax is e^(1/T) against 1 + 1 + 1 + 1 (self excluded)."""
    z = np.eye(3, 8, dtype=np.float32) * 5.0  # the loss normalises: the scale must not matter
    loss, accuracy = nt_xent(z, z, temperature)
    expected = -math.log(math.exp(1 / temperature) / (math.exp(1 / temperature) + 4))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(accuracy) == 1.0


def test_nt_xent_counts_a_view_closer_to_a_stranger_as_a_miss():
    z1 = np.eye(3, 8, dtype=np.float32)
    z2 = np.roll(z1, 1, axis=0)  # each second view looks like another X-ray's first
    loss, accuracy = nt_xent(z1, z2, 0.2)
    assert float(accuracy) == 0.0
    assert float(loss) > float(nt_xent(z1, z1, 0.2)[0]) + 4


def test_views_that_change_nothing_give_the_image_or_its_mirror():
    import tensorflow as tf

    tf.random.set_seed(0)
    still = Views(min_area=1.0, max_aspect=1.0, gamma=0, contrast=0, brightness=0, blur=0, noise=0)
    images = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 1)).astype(np.float32)
    out = random_views(tf.constant(images), still).numpy()
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-2) for o, i in zip(out, images, strict=True)]
    same = [np.allclose(o, i, atol=1e-2) for o, i in zip(out, images, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert any(mirrored) and any(same)  # the mirror is a coin toss per image


def test_default_views_stay_in_range_and_differ_from_each_other():
    import tensorflow as tf

    tf.random.set_seed(1)
    images = tf.constant(
        np.random.default_rng(1).uniform(0, 255, (6, 32, 32, 1)).astype(np.float32)
    )
    a, b = (random_views(images, Views()).numpy() for _ in range(2))
    assert a.shape == b.shape == (6, 32, 32, 1)
    assert a.min() >= 0 and a.max() <= 255
    assert np.abs(a - b).mean() > 5 and np.abs(a - images.numpy()).mean() > 5


# -- whole runs ------------------------------------------------------------------------------
@pytest.fixture
def run(capsys, caplog):
    """``run(*argv)`` -> (exit code, log text + stderr) of ``chestx`` in this process."""
    caplog.set_level(logging.INFO, logger="chestx")

    def _run(*argv):
        caplog.clear()
        code = main([str(a) for a in argv])
        return code, caplog.text + capsys.readouterr().err

    return _run


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, xray_dir):
    """One ``chestx pretrain`` run of two epochs: (its directory, its command)."""
    out = tmp_path_factory.mktemp("pretrain") / "pre"
    argv = ["pretrain", "--data", str(xray_dir), "--out", str(out), *SMALL, "--epochs", "2"]
    assert main(argv) == 0
    return out, "chestx " + " ".join(argv)


def test_pretrain_writes_a_directory_that_records_how_it_was_made(pretrained, xray_dir):
    from chestx import modeldir

    out, command = pretrained
    assert sorted(p.name for p in out.iterdir()) == [
        "card.json",
        "history.csv",
        "manifest.csv",
        "model.keras",
    ]
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "pretrained" and card["arch"] == "chestnet"
    assert card["image_size"] == 48 and "threshold" not in card  # it classifies nothing
    assert card["training"]["command"] == command and card["training"]["epochs_run"] == 2
    assert card["training"]["interrupted"] is False
    assert card["versions"]["chestx_source"] == source_revision()  # the commit, in a checkout
    assert card["data"]["root"] == xray_dir.name and str(xray_dir) not in json.dumps(card["data"])
    pre = card["pretraining"]
    assert pre["temperature"] == 0.2 and pre["views"]["min_area"] == 0.35
    assert 0 <= pre["final_accuracy"] <= 1 and pre["final_loss"] > 0
    assert pre["linear_probe_val_roc_auc"] is None or 0 <= pre["linear_probe_val_roc_auc"] <= 1
    rows = (out / "history.csv").read_text().splitlines()
    assert rows[0].split(",")[:3] == ["epoch", "accuracy", "loss"] and len(rows) == 3
    network = modeldir.load_keras(out)  # a whole chestnet, head included, at --width 8
    assert network.input_shape == (None, 48, 48, 1) and network.output_shape == (None, 1)
    assert network.get_layer("stem_conv").filters == 8


def test_train_init_from_it_chains_both_commands(pretrained, xray_dir, tmp_path, run):
    pre, command = pretrained
    out = tmp_path / "tuned"
    code, text = run(
        "train", "--data", xray_dir, "--out", out, "--init", pre, "--image-size", "48",
        "--batch-size", "4", "--epochs", "1", "--no-augment", "--seed", "3",
    )  # fmt: skip
    assert code == 0, text
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "complete"
    assert card["training"]["init"]["model"] == "chestx-chestnet-simclr"
    assert training_commands(card) == [command, card["training"]["command"]]


def test_train_init_refuses_it_on_another_split(pretrained, xray_dir, tmp_path, run):
    pre, _ = pretrained
    out = tmp_path / "other"
    code, text = run(
        "train", "--data", xray_dir, "--out", out, "--init", pre, "--image-size", "48",
        "--split-seed", "4",
    )  # fmt: skip
    assert code == 2 and "was trained on another patient split" in text
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--model", "{pre}", "{image}"],
        ["evaluate", "--model", "{pre}", "--data", "{data}"],
        ["ensemble", "--member", "{pre}", "--data", "{data}", "--out", "{tmp}/e"],
    ],
    ids=["predict", "evaluate", "ensemble"],
)
def test_what_needs_a_classifier_refuses_it_in_one_line(pretrained, xray_dir, tmp_path, run, argv):
    pre, _ = pretrained
    image = sorted((xray_dir / "NORMAL").iterdir())[0]
    fill = {"pre": pre, "image": image, "data": xray_dir, "tmp": tmp_path}
    code, text = run(*(a.format(**fill) for a in argv))
    assert code == 2
    assert f"chestx: error: {pre} holds a self-supervised pretrained network" in text
    assert f"chestx train --init {pre}" in text
    assert list(tmp_path.iterdir()) == []


def test_an_existing_out_is_refused_before_any_work(pretrained, xray_dir, run):
    pre, _ = pretrained
    before = {p.name: p.stat().st_mtime_ns for p in pre.iterdir()}
    code, text = run("pretrain", "--data", xray_dir, "--out", pre, *SMALL)
    assert code == 2 and "already exists and is not empty" in text
    assert {p.name: p.stat().st_mtime_ns for p in pre.iterdir()} == before


class _SigintOnSecondBatch(chestx_callbacks.StopOnInterrupt):
    """The run's own Ctrl-C callback, raising ``times`` SIGINTs as batch 1 of epoch 0 begins."""

    times = 1

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1 and not getattr(self, "fired", False):
            self.fired = True
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)


def test_first_ctrl_c_still_writes_the_network_marked_interrupted(
    monkeypatch, xray_dir, tmp_path, run
):
    monkeypatch.setattr(chestx_callbacks, "StopOnInterrupt", _SigintOnSecondBatch)
    out = tmp_path / "pre"
    code, text = run("pretrain", "--data", xray_dir, "--out", out, *SMALL, "--epochs", "50")
    assert code == 0, text
    assert "writing the network as it is now" in text
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "pretrained" and card["training"]["interrupted"] is True
    assert card["training"]["epochs_run"] == 1


def test_second_ctrl_c_aborts_and_leaves_nothing(monkeypatch, xray_dir, tmp_path, run):
    monkeypatch.setattr(_SigintOnSecondBatch, "times", 2)
    monkeypatch.setattr(chestx_callbacks, "StopOnInterrupt", _SigintOnSecondBatch)
    out = tmp_path / "pre"
    code, text = run("pretrain", "--data", xray_dir, "--out", out, *SMALL, "--epochs", "50")
    assert code == 130 and text.strip().splitlines()[-1] == "chestx: interrupted"
    assert list(tmp_path.iterdir()) == []  # no directory, no staging folder


def test_serve_refuses_it_naming_the_directory_given(pretrained, tmp_path):
    """``chestx serve`` checks a snapshot copy; the message names the user's directory."""
    from chestx.errors import ModelError
    from chestx.web.snapshot import take_snapshot

    pre, _ = pretrained
    with pytest.raises(ModelError, match=f"^{pre} holds a self-supervised pretrained network"):
        take_snapshot(pre, "tensorflow", full_check=False, parent=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the snapshot folder is removed


def test_a_diverged_run_is_an_error_and_leaves_nothing(xray_dir, tmp_path, run):
    out = tmp_path / "pre"  # a temperature this small overflows the similarities at once
    code, text = run("pretrain", "--data", xray_dir, "--out", out, *SMALL, "--temperature", "1e-30")
    assert code == 2 and "the contrastive loss became nan in epoch 1" in text
    assert list(tmp_path.iterdir()) == []
