"""Grad-CAM on every architecture chestx builds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from chestx.explain import GradCAM, explain_png, feature_layer, overlay, png_bytes


@pytest.fixture(scope="module")
def image(xray_bytes):
    gray = cv2.imdecode(np.frombuffer(xray_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)[..., np.newaxis]


@pytest.fixture(scope="module")
def models():
    from chestx.models import build_model

    return {
        "chestnet": build_model("chestnet", 64, filters=(8, 16)),
        "cnn": build_model("cnn", 64),
        "transfer": build_model("transfer", 64, backbone="mobilenetv2", weights=None, head_units=0),
    }


def test_feature_layer_is_the_last_conv_map(models):
    assert feature_layer(models["chestnet"]).name == "block2_2_relu"  # not the pooling after it
    assert type(feature_layer(models["cnn"])).__name__ == "Conv2D"
    assert feature_layer(models["transfer"]).name.startswith("mobilenetv2")  # the nested base


@pytest.mark.parametrize("arch", ["chestnet", "cnn", "transfer"])
def test_heatmap_for_each_architecture(models, image, arch):
    model = models[arch]
    exp = GradCAM(model).explain(image, threshold=0.5)
    assert exp.heatmap.ndim == 2 and exp.heatmap.dtype == np.float32
    assert 0.0 <= exp.heatmap.min() and exp.heatmap.max() <= 1.0
    p = float(model(image[np.newaxis].astype("float32"), training=False).numpy().ravel()[0])
    assert exp.probability == pytest.approx(p, abs=1e-5)
    assert exp.target == ("PNEUMONIA" if p >= 0.5 else "NORMAL")


def test_target_follows_the_threshold(models, image):
    cam = GradCAM(models["chestnet"])
    assert cam.explain(image, threshold=0.0).target == "PNEUMONIA"
    assert cam.explain(image, threshold=1.0).target == "NORMAL"


def test_concurrent_explanations_match_one_at_a_time(models, image):
    # the lock is held by the first (tracing) call only; later calls run in parallel threads
    from concurrent.futures import ThreadPoolExecutor

    cam = GradCAM(models["chestnet"])
    images = [np.roll(image, 6 * i, axis=0) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # the first calls race to trace
        together = list(pool.map(lambda im: cam.explain(im, 0.5), images))
    for im, exp in zip(images, together, strict=True):
        alone = cam.explain(im, 0.5)
        np.testing.assert_allclose(exp.heatmap, alone.heatmap, atol=1e-5)
        assert exp.target == alone.target and exp.probability == pytest.approx(alone.probability)


def test_overlay_and_png(image):
    heat = np.zeros((8, 8), np.float32)
    heat[2:4, 2:4] = 1.0
    out = overlay(image, heat, size=128)
    assert out.shape == (128, 128, 3) and out.dtype == np.uint8
    assert out[40, 40, 2] > out[40, 40, 0]  # hot spot: red over blue
    cold = overlay(image, np.zeros((8, 8), np.float32), size=64)
    assert np.array_equal(cold[..., 0], cold[..., 1])  # no heat: plain grey
    assert png_bytes(out).startswith(b"\x89PNG")


def test_explain_png_one_shot(models, image):
    png, exp = explain_png(models["chestnet"], image, size=96)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (96, 96, 3)
    assert exp.layer == "block2_2_relu"
