"""Grad-CAM: which regions of the X-ray pushed the model towards its answer.

Generic over chestx's architectures (chestnet, the seed CNN, transfer backbones): the feature
map is the last layer with a 4-D output that is not a pooling layer (for a transfer model, the
nested backbone itself). Gradients flow from the decision logit, not the sigmoid, so a
confident prediction (p rounded to 1.0 in float32) still has a heatmap.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

_POOLING = ("MaxPooling2D", "AveragePooling2D")


def _output_of(layer, model):
    """The symbolic output of ``layer`` inside ``model``'s graph (nested models have two)."""
    import keras

    try:
        out = layer.output
        keras.Model(model.inputs, out)  # connected to the outer inputs?
        return out
    except Exception:  # a nested model: its own output is not the call inside ``model``
        from chestx.keras_compat import call_output

        return call_output(layer)


def feature_layer(model):
    """The last layer whose output is a 4-D (N, H, W, C) map, preferring a non-pooling one."""
    pooled = None
    for layer in reversed(model.layers):
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) != 4:
            continue
        if type(layer).__name__ not in _POOLING:
            return layer
        pooled = pooled or layer
    if pooled is not None:
        return pooled
    raise ValueError(f"model {model.name} has no 4-D feature map to explain")


@dataclass(frozen=True)
class Explanation:
    heatmap: np.ndarray  # (h, w) float32 in [0, 1], feature-map resolution
    probability: float
    target: str  # "PNEUMONIA" or "NORMAL": the class whose evidence is shown
    layer: str


class GradCAM:
    """Grad-CAM for one Keras model, built once and reused (thread-safe).

    For an ensemble (``chestx.models.ensemble``) the heatmap is the mean of its members' maps on
    the image as given (not its mirrored or zoomed-out views, so the map lines up with the X-ray
    shown); the class explained is the ensemble's answer.
    """

    def __init__(self, model):
        import keras
        import tensorflow as tf

        from chestx.models.ensemble import members_of

        self.model = model
        members = members_of(model)
        self._members: list[GradCAM] = (
            [GradCAM(m) for m in members] if members[0] is not model else []
        )
        self.layer: Any
        self._lock = threading.Lock()  # held by the first call alone: it traces the graph
        self._traced = False
        if self._members:
            self.layer = self._members[0].layer
            spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
            self._prob = tf.function(lambda x: model(x, training=False), input_signature=[spec])
            return
        self.layer = feature_layer(model)
        features = _output_of(self.layer, model)
        last = model.layers[-1]
        activation = getattr(getattr(last, "activation", None), "__name__", "")
        self._dense_logit = isinstance(last, keras.layers.Dense) and activation == "sigmoid"
        head_in = last.input if self._dense_logit else model.output
        self._grad_model = keras.Model(model.inputs, [features, head_in, model.output])
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)

        @tf.function(input_signature=[spec, tf.TensorSpec((), tf.float32)], reduce_retracing=True)
        def cam(images, sign):
            with tf.GradientTape() as tape:
                fmap, head, prob = self._grad_model(images, training=False)
                tape.watch(fmap)
                if self._dense_logit:  # the pre-sigmoid logit
                    logit = tf.matmul(head, last.kernel) + last.bias
                else:
                    p = tf.clip_by_value(prob, 1e-7, 1 - 1e-7)
                    logit = tf.math.log(p) - tf.math.log(1 - p)
                score = sign * tf.reduce_sum(logit)
            grads = tape.gradient(score, fmap)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            heat = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))
            return heat, tf.reshape(prob, [-1])

        self._cam = cam

    def _call(self, fn, *args):
        """Run one of this explainer's ``tf.function``s. The first call traces the graph
        under the lock (one trace, however many requests arrive at once); a traced function
        is safe to call from many threads, so later calls run concurrently, unlocked."""
        if self._traced:
            return fn(*args)
        with self._lock:
            out = fn(*args)
            self._traced = True
        return out

    def _heat_and_prob(self, batch, sign) -> tuple[np.ndarray, np.ndarray]:
        heat, prob = self._call(self._cam, batch, sign)
        return heat.numpy()[0].astype(np.float32), prob.numpy()

    def _heat(self, batch, sign) -> np.ndarray:
        return self._heat_and_prob(batch, sign)[0]

    def explain(self, image: np.ndarray, threshold: float = 0.5) -> Explanation:
        """``image``: one (S, S, 1) model input. Explains the predicted class at ``threshold``."""
        import tensorflow as tf

        batch = tf.convert_to_tensor(np.asarray(image, np.float32)[np.newaxis])
        if self._members:
            p = float(np.asarray(self._call(self._prob, batch)).reshape(-1)[0])
            target = "PNEUMONIA" if p >= threshold else "NORMAL"
            sign = tf.constant(1.0 if target == "PNEUMONIA" else -1.0)
            maps = [member._heat(batch, sign) for member in self._members]
            h, w = maps[0].shape
            heat = np.mean(
                [cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps], axis=0
            )
        else:
            heat, prob = self._heat_and_prob(batch, tf.constant(1.0))
            p = float(prob[0])
            target = "PNEUMONIA" if p >= threshold else "NORMAL"
            if target == "NORMAL":  # evidence against pneumonia: the negated logit's gradient
                heat, _ = self._heat_and_prob(batch, tf.constant(-1.0))
        peak = float(heat.max())
        heat = heat / peak if peak > 0 else np.zeros_like(heat)
        return Explanation(heat, p, target, self.layer.name)


def overlay(
    gray: np.ndarray, heatmap: np.ndarray, *, size: int | None = None, alpha: float = 0.4
) -> np.ndarray:
    """Colour the heatmap (JET) over the grey X-ray; returns a BGR uint8 image.

    ``size`` upsamples small model inputs so the overlay is readable in a browser.
    """
    gray = np.asarray(gray)
    if gray.ndim == 3:
        gray = gray[..., 0]
    gray = gray.astype(np.uint8)
    if size and size != gray.shape[0]:
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)
    h, w = gray.shape
    heat = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    heat = np.clip(heat, 0.0, 1.0)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    weight = (alpha * heat)[..., np.newaxis]  # cold regions stay plain grey
    return (base * (1 - weight) + colour * weight).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - cv2 always encodes uint8
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def explain_png(
    model, image: np.ndarray, *, threshold: float = 0.5, size: int | None = 448
) -> tuple[bytes, Explanation]:
    """One-shot Grad-CAM overlay as PNG bytes (builds the explainer; cache ``GradCAM`` instead
    when explaining many images)."""
    exp = GradCAM(model).explain(image, threshold)
    return png_bytes(overlay(image, exp.heatmap, size=size)), exp
