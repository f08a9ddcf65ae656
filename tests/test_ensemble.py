"""Ensembles and test-time views as one Keras model: the mean of the members' answers, saved and
loaded as one file (.keras, .h5, LiteRT), explained by Grad-CAM, built by ``chestx ensemble``."""

import json
import shutil

import cv2
import keras
import numpy as np
import pytest

from chestx import imaging
from chestx.models import build_model
from chestx.models.ensemble import ensemble, member_network, members_of, soup
from chestx.versions import source_revision

SIZE = 48


@pytest.fixture(scope="module")
def members():
    keras.utils.set_random_seed(1)
    return [build_model("chestnet", SIZE, filters=(8, 16)) for _ in range(2)]


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 1)).astype("float32")


def test_ensemble_is_the_mean_over_members_and_mirror(members, batch):
    model = ensemble(members, flip=True)
    want = np.mean(
        [m(x, training=False).numpy() for m in members for x in (batch, batch[:, :, ::-1])], axis=0
    )
    assert np.allclose(model(batch, training=False).numpy(), want, atol=1e-6)
    assert members_of(model) == model.layers[2:4] or len(members_of(model)) == 2


def test_single_member_without_views_is_that_member(members, batch):
    model = ensemble(members[:1])
    assert np.allclose(model(batch).numpy(), members[0](batch).numpy(), atol=1e-6)


def test_members_must_share_an_input():
    with pytest.raises(ValueError, match="different inputs"):
        ensemble(
            [build_model("chestnet", 48, filters=(8,)), build_model("chestnet", 64, filters=(8,))]
        )


def test_soup_is_the_mean_of_every_weight(members, batch):
    net = soup(members)
    assert net is not members[0] and len(net.weights) == len(members[0].weights)
    for got, *given in zip(net.get_weights(), *(m.get_weights() for m in members), strict=True):
        assert np.allclose(got, np.mean(given, axis=0), atol=1e-7)
    # the members themselves are untouched, and one network's soup answers as that network does
    assert not np.allclose(members[0].get_weights()[0], net.get_weights()[0])
    assert np.allclose(soup(members[:1])(batch).numpy(), members[0](batch).numpy(), atol=1e-6)


def test_soup_needs_one_shape():
    keras.utils.set_random_seed(2)
    narrow, wide = (build_model("chestnet", SIZE, filters=f) for f in ((8, 16), (8, 32)))
    with pytest.raises(ValueError, match="different architectures"):
        soup([narrow, wide])


def test_a_member_network_comes_out_trainable_and_answering_as_in_the_ensemble(members, batch):
    model = ensemble(members)  # freezes every member's layers
    net = member_network(model, 1, name="chestnet")
    assert net.name == "chestnet" and net is not members[1]
    assert np.allclose(net(batch).numpy(), members[1](batch).numpy(), atol=1e-6)
    assert not np.allclose(net(batch).numpy(), members[0](batch).numpy(), atol=1e-3)
    fresh = build_model("chestnet", SIZE, filters=(8, 16))
    assert len(net.trainable_weights) == len(fresh.trainable_weights) > 0
    assert not members[1].trainable_weights  # the ensemble's own copy stays frozen
    with pytest.raises(ValueError, match="no member network 2"):
        member_network(model, 2, name="chestnet")
    with pytest.raises(ValueError, match="no member network 0"):
        member_network(members[0], 0, name="chestnet")  # a network, not an ensemble


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_round_trip(members, batch, tmp_path, fmt):
    import chestx.models  # noqa: F401  (custom layers)

    model = ensemble(members, flip=True)
    path = tmp_path / f"model.{fmt}"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert np.allclose(loaded(batch).numpy(), model(batch).numpy(), atol=1e-6)
    assert [m.name for m in members_of(loaded)] == ["member_0", "member_1"]


def test_litert_parity(members, batch, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from chestx.litert import export_litert, load_litert

    model = ensemble(members, flip=True)
    export_litert(model, tmp_path / "model.tflite")
    (tmp_path / "card.json").write_text(json.dumps({"image_size": SIZE}))
    lite = load_litert(tmp_path)
    assert (
        np.abs(np.asarray(lite(batch)).reshape(-1) - model(batch).numpy().reshape(-1)).max() < 1e-3
    )


def test_gradcam_explains_an_ensemble(members, batch):
    from chestx.explain import GradCAM

    exp = GradCAM(ensemble(members, flip=True)).explain(batch[0].astype("uint8"), 0.5)
    assert exp.heatmap.ndim == 2 and 0.0 <= exp.heatmap.min() <= exp.heatmap.max() <= 1.0
    assert exp.layer.startswith("block") and exp.target in ("NORMAL", "PNEUMONIA")


@pytest.mark.slow
def test_chestx_ensemble_end_to_end(capsys, tmp_path, xray_dir):
    from chestx.cli import main

    common = ["--data", str(xray_dir), "--image-size", "48", "--batch-size", "8"]
    common += ["--epochs", "1", "--split-seed", "7"]

    def ensemble(out, *members, extra=()):
        argv = ["ensemble", "--data", str(xray_dir), "--out", str(out), *extra]
        for m in members:
            argv += ["--member", str(tmp_path / m)]
        return main(argv)

    for seed, ema in (("1", []), ("2", ["--ema", "0.9"])):
        crop = ["--crop", "0.2", "--mixup", "0.2", *ema]
        assert main(["train", *common, "--out", str(tmp_path / seed), "--seed", seed, *crop]) == 0
    first = json.loads((tmp_path / "1" / "card.json").read_text())
    second = json.loads((tmp_path / "2" / "card.json").read_text())
    assert first["data"]["manifest_sha256"] == second["data"]["manifest_sha256"]
    assert (first["training"]["config"]["ema"], second["training"]["config"]["ema"]) == (None, 0.9)

    out = tmp_path / "ens"
    assert ensemble(out, "1", "2", extra=["--flip"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["arch"] == "ensemble" and len(card["ensemble"]["members"]) == 2
    assert card["ensemble"]["views"] == ["as given", "as given, mirrored left-right"]
    assert len(card["training"]["member_commands"]) == 2
    assert {"val", "test"} <= card["metrics"].keys()
    capsys.readouterr()
    image = sorted((xray_dir / "NORMAL").iterdir())[0]
    assert main(["predict", "--model", str(out), str(image)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("NORMAL", "PNEUMONIA")

    # served with the exposure lift of the members' CLAHE, recorded as such; nothing else
    lifted = tmp_path / "lifted"
    assert ensemble(lifted, "1", "2", extra=["--intensity", "lift-clahe"]) == 0
    card = json.loads((lifted / "card.json").read_text())
    assert card["intensity"] == "lift-clahe" and card["ensemble"]["members_intensity"] == "clahe"
    assert "'lift-clahe'" in card["preprocessing"]
    from chestx.predict import Predictor

    dim = cv2.convertScaleAbs(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), alpha=0.4)
    png = cv2.imencode(".png", dim)[1].tobytes()
    x_lift = Predictor(lifted, gate=False).prepare(png)
    size = card["image_size"]
    wanted = imaging.model_input(dim, image_size=size, intensity="lift-clahe")
    np.testing.assert_array_equal(x_lift, wanted)
    assert not np.array_equal(x_lift, Predictor(out, gate=False).prepare(png))
    # the mid-tone level too: a brightened X-ray is bent back before the members' CLAHE
    levelled = tmp_path / "levelled"
    assert ensemble(levelled, "1", "2", extra=["--intensity", "level-clahe"]) == 0
    assert json.loads((levelled / "card.json").read_text())["intensity"] == "level-clahe"
    bright = cv2.LUT(dim, np.rint(255 * np.linspace(0, 1, 256) ** 0.3).astype(np.uint8))
    png = cv2.imencode(".png", bright)[1].tobytes()
    x_level = Predictor(levelled, gate=False).prepare(png)
    wanted = imaging.model_input(bright, image_size=size, intensity="level-clahe")
    np.testing.assert_array_equal(x_level, wanted)
    assert not np.array_equal(x_level, Predictor(lifted, gate=False).prepare(png))
    # and the black point: a washed-out X-ray is stretched down before the level
    spanned = tmp_path / "spanned"
    assert ensemble(spanned, "1", "2", extra=["--intensity", "span-clahe"]) == 0
    assert json.loads((spanned / "card.json").read_text())["intensity"] == "span-clahe"
    washed = np.clip(0.4 * dim.astype(int) + 120, 0, 255).astype(np.uint8)
    png = cv2.imencode(".png", washed)[1].tobytes()
    x_span = Predictor(spanned, gate=False).prepare(png)
    wanted = imaging.model_input(washed, image_size=size, intensity="span-clahe")
    np.testing.assert_array_equal(x_span, wanted)
    assert not np.array_equal(x_span, Predictor(levelled, gate=False).prepare(png))
    capsys.readouterr()
    assert ensemble(tmp_path / "bad", "1", "2", extra=["--intensity", "equalize"]) == 2
    assert "lift-clahe, level-clahe, span-clahe" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # beside a network fine-tuned on span-clahe's inputs: served span-clahe, each member takes it
    argv = ["train", *common, "--out", str(tmp_path / "3"), "--seed", "3", "--init"]
    assert main([*argv, str(tmp_path / "2"), "--intensity", "span-clahe"]) == 0
    mixed = tmp_path / "mixed"
    assert ensemble(mixed, "1", "3", extra=["--intensity", "span-clahe"]) == 0
    card = json.loads((mixed / "card.json").read_text())
    assert card["intensity"] == "span-clahe"
    assert card["ensemble"]["members_intensity"] == "clahe, span-clahe"
    assert [m["intensity"] for m in card["ensemble"]["members"]] == ["clahe", "span-clahe"]
    capsys.readouterr()
    assert ensemble(tmp_path / "bad", "1", "3") == 2  # which one to serve is the user's call
    assert "members differ in intensity: ['clahe', 'span-clahe']; give --intensity" in (
        capsys.readouterr().err
    )
    assert ensemble(tmp_path / "bad", "1", "3", extra=["--intensity", "lift-clahe"]) == 2
    assert f"--member {tmp_path / '3'} was trained with intensity 'span-clahe'" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "bad").exists()

    # one network twice (a typo, or a copy of its directory) is refused with one line
    shutil.copytree(tmp_path / "1", tmp_path / "1copy")
    assert ensemble(tmp_path / "bad", "1", "2", "1copy") == 2
    assert "1 and --member" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

    # members on different splits are refused with one line
    assert main(["train", *common[:-1], "99", "--out", str(tmp_path / "3")]) == 0
    capsys.readouterr()
    assert ensemble(tmp_path / "bad", "1", "3") == 2
    assert "different patient splits" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_chestx_ensemble_soup_end_to_end(capsys, tmp_path, xray_dir):
    """Two fine-tunes of one network averaged into one: one network in the graph, the source's
    command recorded once, and members that do not share an --init source refused."""
    from chestx.cli import main

    common = ["--data", str(xray_dir), "--image-size", "48", "--batch-size", "8"]
    common += ["--epochs", "1", "--split-seed", "7"]
    assert main(["train", *common, "--out", str(tmp_path / "base")]) == 0
    for seed in ("1", "2"):
        tune = ["--init", str(tmp_path / "base"), "--seed", seed, "--lr", "1e-4"]
        assert main(["train", *common, "--out", str(tmp_path / seed), *tune]) == 0

    def soup_of(out, *names):
        argv = ["ensemble", "--soup", "--zoom-out", "0.1", "--data", str(xray_dir)]
        argv += ["--out", str(tmp_path / out)]
        for name in names:
            argv += ["--member", str(tmp_path / name)]
        return main(argv)

    assert soup_of("soup", "1", "2") == 0
    card = json.loads((tmp_path / "soup" / "card.json").read_text())
    base = json.loads((tmp_path / "base" / "card.json").read_text())
    assert card["ensemble"]["soup"] is True and len(card["ensemble"]["members"]) == 2
    assert card["parameters"] == base["parameters"]  # one network, not two
    commands = card["training"]["member_commands"]
    assert len(commands) == 3 and commands[0] == base["training"]["command"]
    assert card["versions"]["chestx_source"] == source_revision()  # the commit, in a checkout
    from chestx.modeldir import load_keras

    assert len(members_of(load_keras(tmp_path / "soup"))) == 1
    capsys.readouterr()
    image = sorted((xray_dir / "NORMAL").iterdir())[0]
    assert main(["predict", "--model", str(tmp_path / "soup"), str(image)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("NORMAL", "PNEUMONIA")

    # the source itself was not fine-tuned from anything: it is not an ingredient
    assert soup_of("bad", "1", "base") == 2
    assert "same --init source" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert soup_of("bad", "1") == 2
    assert "at least two members" in capsys.readouterr().err
