"""Consistency training (``chestx train --consistency``) and fine-tuning (``--init``): the loss
term is the weighted squared logit gap between two views, the saved model is the plain network,
and a fine-tuned run starts from its source's weights on its source's patient split."""

import csv
import json

import keras
import numpy as np
import pytest
from keras import ops

from chestx.cli import main
from chestx.modeldir import member_training_commands, training_commands
from chestx.models import build_model, compile_model
from chestx.models.consistency import ConsistencyTraining, probability_logit


def _dense_network():
    """No batch normalisation: its output for a batch does not depend on the batch's others."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x), name="dense")


def test_the_loss_term_is_the_weighted_squared_logit_gap_between_the_views():
    keras.utils.set_random_seed(0)
    network = _dense_network()
    model = ConsistencyTraining(network, weight=2.5, stretch=0.3)
    model.stretcher = keras.layers.Lambda(lambda x: ops.flip(x, axis=1))  # a known second view
    x = np.random.default_rng(0).uniform(0, 1, (6, 8, 8, 1)).astype("float32")  # unsaturated
    given = model(x, training=True)
    za = probability_logit(network(x))
    zb = probability_logit(network(x[:, ::-1]))
    want = 2.5 * np.mean((ops.convert_to_numpy(za) - ops.convert_to_numpy(zb)) ** 2)
    assert want > 0.01  # the views really differ for this network
    assert len(model.losses) == 1
    assert float(model.losses[0]) == pytest.approx(want, rel=1e-4)
    np.testing.assert_allclose(given, network(x), rtol=1e-5)  # the loss scores the X-ray itself
    np.testing.assert_allclose(model(x), network(x), rtol=1e-6)  # inference: the network alone
    assert not model.losses  # and no term outside training


def test_the_stretch_rescales_the_height_alone():
    model = ConsistencyTraining(_dense_network(), weight=1.0, stretch=0.4, seed=3)
    x = np.zeros((4, 40, 40, 1), "float32")
    x[:, 10:30, 10:30] = 255  # a white square in the middle
    y = ops.convert_to_numpy(model.stretcher(x, training=True))
    rows = (y[..., 0] > 127).any(axis=2).sum(axis=1)
    cols = (y[..., 0] > 127).any(axis=1).sum(axis=1)
    np.testing.assert_array_equal(cols, 20)  # width as it was
    # Keras's zoom factor is drawn in [0.6, 1.4]; the height scales by its inverse
    assert rows.min() >= 20 / 1.4 - 1 and rows.max() <= 20 / 0.6 + 1 and len(set(rows)) > 1


def test_training_logs_the_gap_and_saves_the_network_alone(tmp_path):
    keras.utils.set_random_seed(0)
    network = build_model("chestnet", 32, filters=(4, 8))
    model = compile_model(ConsistencyTraining(network, weight=1.0, stretch=0.3, seed=1))
    x = np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 1)).astype("float32")
    y = np.tile([0.0, 1.0], 8)[:, None].astype("float32")
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert len(history["consistency"]) == 2 and min(history["consistency"]) > 0
    model.save(tmp_path / "model.keras")
    saved = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert type(saved) is not ConsistencyTraining
    assert [w.name for w in saved.weights] == [w.name for w in network.weights]
    np.testing.assert_allclose(saved.predict(x, verbose=0), network.predict(x, verbose=0), 1e-6)


def test_a_card_lists_the_init_sources_commands_first():
    card = {"training": {"command": "chestx train --init a", "init": {"commands": ["make a"]}}}
    assert training_commands(card) == ["make a", "chestx train --init a"]


def test_an_ensemble_members_commands_are_its_own_after_its_init_sources():
    made = ["chestx pretrain --out p1", "chestx train --out a --init p1", "chestx train --out b"]
    made += ["chestx train --out=a2 --ini a --seed 2", "chestx train --ou c --init elsewhere"]
    members = [{"training": {"command": c}} for c in (made[3], made[2], made[4])]
    members += [{"training": {}}]
    card = {"ensemble": {"members": members}, "training": {"member_commands": made}}
    assert member_training_commands(card, 0) == made[:2] + [made[3]]
    assert member_training_commands(card, 1) == [made[2]]
    assert member_training_commands(card, 2) == [made[4]]  # its source is not in the card
    assert member_training_commands(card, 3) == made  # not recorded: everything that made them


def test_the_shipped_models_networks_each_have_the_chain_that_made_them():
    """Each network's chain ends in its own command and starts where nothing made its source;
    together they are every command the card lists (the shipped model's are fine-tunes)."""
    from chestx import config, modeldir

    card = modeldir.load_card(config.DEFAULT_MODEL_DIR)
    members = card["ensemble"]["members"]
    chains = [member_training_commands(card, i) for i in range(len(members))]
    for chain, member in zip(chains, members, strict=True):
        assert len(chain) >= 2 and chain[-1] == member["training"]["command"]
        assert "--init" not in chain[0].split()
    assert sorted(c for chain in chains for c in chain) == sorted(
        card["training"]["member_commands"]
    )


def _weights(model_dir):
    return keras.saving.load_model(model_dir / "model.keras", compile=False).get_weights()


def _first_kernel(model_dir):
    model = keras.saving.load_model(model_dir / "model.keras", compile=False)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    return ops.convert_to_numpy(conv.kernel)


def test_train_init_fine_tunes_its_source_with_consistency(capsys, tmp_path, xray_dir):
    base = ["train", "--data", str(xray_dir), "--image-size", "64", "--batch-size", "8"]
    source = tmp_path / "source"
    assert main([*base, "--out", str(source), "--epochs", "1", "--seed", "1"]) == 0
    tuned = tmp_path / "tuned"
    argv = [*base, "--out", str(tuned), "--epochs", "1", "--seed", "3", "--split-seed", "1"]
    argv += ["--init", str(source), "--consistency", "1", "--lr", "1e-7", "--no-augment"]
    argv += ["--keep", "last"]
    assert main(argv) == 0

    card = json.loads((tuned / "card.json").read_text())
    source_card = json.loads((source / "card.json").read_text())
    init = card["training"]["init"]
    assert init["version"] == source_card["version"] and init["directory"] == "source"
    assert init["commands"] == [source_card["training"]["command"]]
    assert training_commands(card) == [
        source_card["training"]["command"],
        card["training"]["command"],
    ]
    assert card["training"]["config"]["consistency"] == 1.0
    assert card["training"]["config"]["keep"] == "last"
    assert card["data"]["manifest_sha256"] == source_card["data"]["manifest_sha256"]
    with (tuned / "history.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["consistency"]) > 0
    # at a learning rate of 1e-7 the kernels are the source's, not new ones
    np.testing.assert_allclose(_first_kernel(tuned), _first_kernel(source), atol=1e-4)
    assert np.abs(_first_kernel(source)).max() > 0.05

    capsys.readouterr()
    other_split = [*base, "--out", str(tmp_path / "t2"), "--init", str(source), "--seed", "2"]
    assert main(other_split) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "another patient split" in err
    assert not (tmp_path / "t2").exists()  # refused before --out is made

    wider = [*base, "--out", str(tmp_path / "t3"), "--init", str(source), "--image-size", "96"]
    assert main([*wider, "--seed", "1"]) == 2
    assert "image_size 64" in capsys.readouterr().err
    # an exposure correction of the source's CLAHE is a fine-tune on the inputs an ensemble
    # would serve it; another normalisation is another input
    other = [*base, "--init", str(source), "--seed", "1", "--intensity"]
    assert main([*other, "equalize", "--out", str(tmp_path / "t5")]) == 2
    assert "intensity 'clahe', this run 'equalize'" in capsys.readouterr().err
    spanned = tmp_path / "spanned"
    argv = [*other, "span-clahe", "--out", str(spanned), "--epochs", "1", "--keep", "last"]
    assert main(argv) == 0
    assert json.loads((spanned / "card.json").read_text())["intensity"] == "span-clahe"
    ensemble = tmp_path / "ens"
    ensemble.mkdir()
    (ensemble / "card.json").write_text(json.dumps({**source_card, "ensemble": {"members": []}}))
    assert main([*base, "--out", str(tmp_path / "t4"), "--init", str(ensemble), "--seed", "1"]) == 2
    assert "ensemble" in capsys.readouterr().err


def test_the_film_options_flatten_and_soften_the_second_view():
    """--consistency-contrast and --consistency-blur give the stretched copy another film."""
    square = np.zeros((16, 32, 32, 1), "float32")
    square[:, 8:24, 8:24] = 200.0

    def view(**film):
        model = ConsistencyTraining(_dense_network(), weight=1.0, stretch=0.01, seed=1, **film)
        return ops.convert_to_numpy(model.second_view(square))[..., 0]

    plain, flat, soft = view(), view(contrast=0.5), view(blur=2.0)
    # the stretch alone moves rows: the middle row keeps its levels and its sharp sides
    np.testing.assert_array_equal(plain[:, 16], square[:, 16, :, 0])
    assert flat[:, 16, 16].std() > 5  # the square's contrast against black, drawn per image
    assert soft[:, 16, 7].max() > 5 and soft[:, 16, 8].min() < 195  # its side spread out


def test_the_film_options_reach_the_training_wrapper(tmp_path):
    from chestx.cli import build_parser
    from chestx.recipe import trainable
    from chestx.train import config_from_args

    argv = ["train", "--data", "d", "--out", str(tmp_path / "m"), "--consistency", "1"]
    argv += ["--consistency-contrast", "0.6", "--consistency-blur", "3"]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.consistency_contrast, cfg.consistency_blur) == (0.6, 3.0)
    model = trainable(_dense_network(), cfg)
    assert [type(layer).__name__ for layer in model.film] == ["RandomContrast", "RandomBlur"]
    assert model.film[1].sigma == (0.0, 3.0)
    with pytest.raises(ValueError, match="contrast"):
        ConsistencyTraining(_dense_network(), weight=1.0, stretch=0.3, contrast=1.5)


BAD_OPTIONS = [
    ["--consistency", "-1"],
    ["--consistency-stretch", "1.5"],
    ["--consistency-contrast", "1.5"],
    ["--consistency-blur", "-1"],
]


@pytest.mark.parametrize("bad", BAD_OPTIONS)
def test_consistency_options_are_range_checked(capsys, tmp_path, xray_dir, bad):
    argv = ["train", "--data", str(xray_dir), "--out", str(tmp_path / "m"), *bad]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and bad[0] in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_film_without_the_consistency_term_is_refused(capsys, tmp_path, xray_dir):
    argv = ["train", "--data", str(xray_dir), "--out", str(tmp_path / "m")]
    assert main([*argv, "--consistency-blur", "2", "--consistency-contrast", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--consistency-contrast and --consistency-blur shape" in err
    assert "give --consistency" in err and not (tmp_path / "m").exists()
    assert main([*argv, "--consistency-blur", "2"]) == 2
    assert "--consistency-blur shapes the consistency term's copy" in capsys.readouterr().err


def test_train_init_member_fine_tunes_one_network_of_an_ensemble(capsys, tmp_path, xray_dir):
    base = ["train", "--data", str(xray_dir), "--image-size", "48", "--batch-size", "8"]
    base += ["--epochs", "1", "--split-seed", "1"]
    for seed in ("1", "2"):
        assert main([*base, "--out", str(tmp_path / seed), "--seed", seed]) == 0
    ens = tmp_path / "ens"
    argv = ["ensemble", "--data", str(xray_dir), "--out", str(ens), "--zoom-out", "0.1"]
    assert main([*argv, "--member", str(tmp_path / "1"), "--member", str(tmp_path / "2")]) == 0
    fine_tune = [*base, "--seed", "3", "--lr", "1e-3", "--keep", "last"]
    tuned, own = tmp_path / "tuned", tmp_path / "own"
    assert main([*fine_tune, "--init", str(ens), "--init-member", "2", "--out", str(tuned)]) == 0
    assert main([*fine_tune, "--init", str(tmp_path / "2"), "--out", str(own)]) == 0

    # the same run as from member 2's own directory, weight for weight (its Dropout's seed too),
    # and trained: the ensemble froze the network's layers, the fine-tune unfroze them
    got, want = (_weights(d) for d in (tuned, own))
    assert len(got) == len(want) and all(map(np.array_equal, got, want))
    assert np.abs(_first_kernel(tuned) - _first_kernel(tmp_path / "2")).max() > 1e-4
    card = json.loads((tuned / "card.json").read_text())
    two = json.loads((tmp_path / "2" / "card.json").read_text())
    init = card["training"]["init"]
    assert init["member"] == 2 and init["version"] == two["version"]  # the network's version
    assert init["model"] == two["name"] == "chestx-chestnet"
    assert init["ensemble_version"] == json.loads((ens / "card.json").read_text())["version"]
    assert init["directory"] == "ens" and init["commands"] == [two["training"]["command"]]
    assert training_commands(card) == [two["training"]["command"], card["training"]["command"]]
    assert card["name"] == "chestx-chestnet" and card["arch"] == "chestnet"
    # fine-tunes of one network, whether from the ensemble or its own directory, make a soup
    argv = ["ensemble", "--soup", "--data", str(xray_dir), "--out", str(tmp_path / "soup")]
    assert main([*argv, "--member", str(tuned), "--member", str(own)]) == 0

    # each refusal: one line, exit 2, nothing written
    capsys.readouterr()
    refused = [
        (["--init", str(ens)], "ensemble of 2 networks; pick one with --init-member (1 to 2)"),
        (["--init", str(ens), "--init-member", "3"], "--init-member 3 is not one of 1 to 2"),
        (["--init", str(tmp_path / "1"), "--init-member", "1"], "is one network"),
        (["--init-member", "1"], "give --init"),
        (
            ["--init", str(ens), "--init-member", "1", "--split-seed", "2"],
            "another patient split; use the --data, --split-seed and --limit it was trained "
            "with (its card's ensemble.members[].training)",
        ),
    ]
    for extra, message in refused:
        argv = [*base, "--seed", "1", "--out", str(tmp_path / "bad"), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    "ensemble, message",
    [
        ({"soup": True, "members": [{"arch": "chestnet"}] * 2}, "into one network (--soup)"),
        ({"members": [{"arch": "transfer"}]}, "is a transfer network; only chestnet and cnn"),
    ],
)
def test_init_member_refuses_what_an_ensemble_cannot_give_back(
    capsys, tmp_path, xray_dir, ensemble, message
):
    source = tmp_path / "ens"
    source.mkdir()
    card = {"status": "complete", "image_size": 48, "intensity": "clahe", "threshold": 0.5}
    (source / "card.json").write_text(json.dumps({**card, "ensemble": ensemble}))
    argv = ["train", "--data", str(xray_dir), "--image-size", "48", "--out", str(tmp_path / "m")]
    assert main([*argv, "--init", str(source), "--init-member", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "m").exists()
