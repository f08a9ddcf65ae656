"""Custom layers that must survive a save/load round trip (.keras and .h5)."""

from __future__ import annotations

import hashlib
import math

import keras

from chestx.config import MAX_BLUR
from chestx.models.backbones import BACKBONE_PREPROCESS


def layer_seed(seed: int | None, name: str) -> int | None:
    """The seed of the random layer ``name`` in a run seeded ``seed`` (None stays None).

    Keras random layers given one integer seed draw the same numbers, call after call. Given a
    run's ``--seed`` alike, a rotation, a zoom, a brightness and a contrast change would all
    follow one uniform draw per image (brighter always meant harsher and more zoomed in), so the
    augmentations would explore a line, not the box of their strengths. Each layer gets a
    stream of its own instead, derived from the run's seed and the layer's name: still one
    result per ``--seed``, and a layer added or removed leaves the others' draws as they were."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # below 2**31, as Keras's seeds are


@keras.saving.register_keras_serializable(package="chestx")
class BackbonePreprocess(keras.layers.Layer):
    """Apply a keras.applications backbone's own ``preprocess_input`` to 0-255 RGB pixels."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        if backbone not in BACKBONE_PREPROCESS:
            raise ValueError(f"unknown backbone {backbone!r}")
        self.backbone = backbone

    def call(self, inputs):
        return BACKBONE_PREPROCESS[self.backbone](inputs)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="chestx")
class HorizontalFlip(keras.layers.Layer):
    """Mirror images left-right, always (a test-time view, unlike ``RandomFlip``)."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)


@keras.saving.register_keras_serializable(package="chestx")
class ZoomOut(keras.layers.Layer):
    """Shrink square images by ``fraction`` of their side on every side and pad with black: the
    same X-ray, framed more loosely (a test-time view; ``chestx evaluate --robustness`` measures
    what framing does to a model)."""

    def __init__(self, fraction: float, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < fraction < 0.5:
            raise ValueError(f"fraction must be in (0, 0.5), not {fraction}")
        self.fraction = float(fraction)

    def call(self, inputs):
        size = inputs.shape[1]
        pad = round(size * self.fraction)
        inner = size - 2 * pad
        small = keras.ops.image.resize(
            inputs, (inner, inner), interpolation="bilinear", antialias=False
        )
        return keras.ops.pad(small, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction}


@keras.saving.register_keras_serializable(package="chestx")
class RandomGamma(keras.layers.Layer):
    """Random gamma on 0-255 images, one draw per image: ``255 * (x / 255) ** g`` with
    ``log(g)`` uniform in ``[-log(1 + factor), log(1 + factor)]`` (factor 0.3: g in
    [1/1.3, 1.3]), so brighter and darker exposures are equally likely. A training-time
    augmentation: identity when called with ``training=False``."""

    def __init__(self, factor: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not factor >= 0:
            raise ValueError(f"factor must be >= 0, not {factor}")
        self.factor = float(factor)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or not self.factor:
            return images
        ops = keras.ops
        bound = math.log1p(self.factor)
        log_g = keras.random.uniform(
            (ops.shape(images)[0], 1, 1, 1), -bound, bound, seed=self.seed_generator
        )
        scaled = ops.clip(images / 255.0, 1e-6, 1.0)
        return 255.0 * ops.power(scaled, ops.exp(log_g))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package="chestx")
class RandomBlur(keras.layers.RandomGaussianBlur):
    """Keras's ``RandomGaussianBlur`` on 0-255 images with a sigma of up to ``MAX_SIGMA`` px
    (``config.MAX_BLUR``, the bound ``--blur`` and the tuner take; Keras bounds it to 1) and a
    kernel wide enough for it: ±2 sigma, and never narrower than Keras's 5 taps, so a sigma up
    to 1 px blurs exactly as ``RandomGaussianBlur`` does. A blurrier scanner or a soft film is
    what ``--blur`` above 1 imitates (the robustness report's blur goes to 3 px)."""

    MAX_SIGMA = MAX_BLUR
    _FACTOR_BOUNDS = (0, MAX_SIGMA)  # the bound Keras checks ``sigma`` (and ``factor``) against

    def __init__(
        self,
        sigma: float | tuple[float, float],
        seed: int | None = None,
        *,
        factor: tuple[float, float] = (0.0, 1.0),  # each image blurred with probability U(0, 1)
        kernel_size: int | tuple[int, int] | None = None,
        value_range: tuple[float, float] = (0, 255),
        **kwargs,
    ):
        if kernel_size is None:
            widest = max(sigma) if isinstance(sigma, tuple | list) else sigma
            kernel_size = max(5, 2 * math.ceil(2 * widest) + 1)
        super().__init__(
            factor=factor,
            kernel_size=kernel_size,
            sigma=sigma,
            value_range=value_range,
            seed=seed,
            **kwargs,
        )
