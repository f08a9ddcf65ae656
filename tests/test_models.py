"""Model builders: shapes, outputs in 0-1, save/load round trips (.keras and .h5)."""

import keras
import numpy as np
import pytest

from chestx.models import build_model, unfreeze_top

SIZE = 64


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, SIZE, SIZE, 1)).astype("float32")


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("cnn", {}),
        ("chestnet", {"filters": (8, 16)}),
        ("transfer", {"backbone": "mobilenetv2", "weights": "none"}),
    ],
)
def test_shapes_and_probabilities(arch, options, batch):
    model = build_model(arch, SIZE, **options)
    assert model.input_shape == (None, SIZE, SIZE, 1)
    out = model(batch, training=False).numpy()
    assert out.shape == (3, 1)
    assert np.all((out >= 0) & (out <= 1))


def test_seed_cnn_is_the_tutorials_network():
    model = build_model("cnn", 224)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [128, 1]


# Written out here, not read from chestx.config.BACKBONE_TABLE: a wrong table entry must fail.
OWN_PREPROCESS = {
    "resnet50": ("resnet50", keras.applications.resnet50.preprocess_input),
    "mobilenetv2": ("mobilenetv2", keras.applications.mobilenet_v2.preprocess_input),
    "efficientnetb0": ("efficientnetb0", keras.applications.efficientnet.preprocess_input),
    "densenet121": ("densenet121", keras.applications.densenet.preprocess_input),
}


def test_every_offered_backbone_is_tested():
    from chestx import config

    assert set(config.BACKBONES) == set(OWN_PREPROCESS)


@pytest.mark.parametrize("backbone", sorted(OWN_PREPROCESS))
def test_every_backbone_runs_a_forward_pass_through_its_own_preprocessing(backbone):
    """Each backbone at 32 px without ImageNet weights: frozen, fed through the
    ``preprocess_input`` its weights expect, and a forward pass gives one probability each."""
    name, preprocess = OWN_PREPROCESS[backbone]
    keras.utils.set_random_seed(0)
    model = build_model("transfer", 32, backbone=backbone, weights="none")
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert not base.trainable and base.name.startswith(name)
    assert model.get_layer("grey_to_rgb").output.shape[-1] == 3

    grey = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    upto = keras.Model(model.input, model.get_layer("backbone_preprocess").output)
    rgb = np.repeat(grey, 3, axis=-1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(upto(grey)),
        keras.ops.convert_to_numpy(preprocess(rgb.copy())),
        rtol=1e-5,
        atol=1e-4,
    )
    out = keras.ops.convert_to_numpy(model(grey, training=False))
    assert out.shape == (2, 1) and np.all(np.isfinite(out)) and np.all((out > 0) & (out < 1))


def test_fine_tuning_unfreezes_only_the_top(batch):
    model = build_model("transfer", SIZE, backbone="mobilenetv2", weights="none")
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    n = unfreeze_top(model, 10)
    trainable = [layer for layer in base.layers if layer.trainable and layer.weights]
    assert 0 < n == len(trainable) <= 10
    assert not any(isinstance(t, keras.layers.BatchNormalization) for t in trainable)


def test_local_weights_file(tmp_path, batch):
    from keras import applications

    base = applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "mobilenetv2_notop.weights.h5"
    base.save_weights(path)
    model = build_model("transfer", SIZE, backbone="mobilenetv2", weights=str(path))
    loaded = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    np.testing.assert_allclose(loaded.get_weights()[0], base.get_weights()[0])


@pytest.mark.parametrize("arch", ["chestnet", "transfer"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_round_trip(tmp_path, batch, arch, suffix):
    options = (
        {"filters": (8, 16)}
        if arch == "chestnet"
        else {"backbone": "mobilenetv2", "weights": "none"}
    )
    model = build_model(arch, SIZE, **options)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(
        again(batch, training=False), model(batch, training=False), atol=1e-5
    )
