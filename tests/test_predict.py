"""The predictor's TensorFlow inference: the model traced once with its weights as constants."""

import keras
import numpy as np
import pytest

from chestx.models import build_model
from chestx.models.ensemble import ensemble
from chestx.predict import constant_inference

SIZE = 48


def _scrambled(model: keras.Model, seed: int) -> keras.Model:
    """``model`` with BatchNormalization's statistics, scales and every offset random (kernels
    keep their random initialisation), so that folding any of them wrongly would show."""
    rng = np.random.default_rng(seed)
    weights = []
    for v, w in zip(model.weights, model.get_weights(), strict=True):
        name = v.path.rsplit("/", 1)[-1]
        if name in ("moving_variance", "gamma"):
            w = rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
        elif name in ("moving_mean", "beta", "bias"):
            w = (0.1 * rng.standard_normal(w.shape)).astype(w.dtype)
        weights.append(w)
    model.set_weights(weights)
    return model


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 1)).astype("float32")


@pytest.mark.parametrize("shape", ["chestnet", "cnn", "ensemble"])
def test_constant_inference_answers_as_the_model(shape, batch):
    keras.utils.set_random_seed(1)
    if shape == "ensemble":
        members = [
            _scrambled(build_model("chestnet", SIZE, filters=(8, 16)), seed) for seed in (1, 2)
        ]
        model = ensemble(members, flip=True, zoom_out=0.1)
    else:
        model = _scrambled(build_model(shape, SIZE), 3)
    want = model(batch, training=False).numpy()
    infer = constant_inference(model, SIZE)
    assert np.allclose(infer(batch).numpy(), want, rtol=1e-5, atol=1e-6)
    assert np.allclose(infer(batch[:1]).numpy(), want[:1], rtol=1e-5, atol=1e-6)  # any batch


def test_constant_inference_reads_no_variables():
    model = _scrambled(build_model("chestnet", SIZE, filters=(8, 16)), 4)
    graph = constant_inference(model, SIZE).get_concrete_function().graph
    kinds = {op.type for op in graph.get_operations()}
    assert "Const" in kinds and "Conv2D" in kinds
    assert not kinds & {"ReadVariableOp", "VarHandleOp", "ResourceGather"}
