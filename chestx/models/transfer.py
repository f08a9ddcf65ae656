"""Transfer learning on keras.applications backbones (the tutorial's step 5)."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
from keras import layers

from chestx.config import DEFAULT_BACKBONE
from chestx.errors import ModelError
from chestx.models.backbones import BACKBONES
from chestx.models.layers import BackbonePreprocess

log = logging.getLogger(__name__)


def transfer_model(
    image_size: int = 224,
    *,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = "imagenet",
    head_units: int = 128,
    dropout: float = 0.3,
) -> keras.Model:
    """Grey X-ray -> 3 channels -> the backbone's own preprocessing -> frozen backbone -> head.

    ``weights`` is ``"imagenet"`` (downloaded by Keras; needs internet), ``"none"``/``None``
    (random init), or a path to a local weights file for the backbone without its top.
    """
    if backbone not in BACKBONES:
        raise ModelError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    local = None
    if weights in (None, "none"):
        init = None
    elif weights == "imagenet":
        init = "imagenet"
    else:
        local = Path(weights)
        if not local.is_file():
            raise ModelError(f"weights file {weights} does not exist")
        init = None
    base = BACKBONES[backbone](
        include_top=False, weights=init, input_shape=(image_size, image_size, 3)
    )
    if local is not None:
        base.load_weights(str(local))
        log.info("loaded %s weights from %s", backbone, local)
    base.trainable = False

    inputs = keras.Input((image_size, image_size, 1), name="image")
    rgb = layers.Concatenate(name="grey_to_rgb")([inputs, inputs, inputs])
    x = BackbonePreprocess(backbone, name="backbone_preprocess")(rgb)
    x = base(x, training=False)  # BatchNorm stays in inference mode, also when fine-tuning
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if head_units:
        x = layers.Dense(head_units, activation="relu", name="head")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name=f"transfer_{backbone}")


def unfreeze_top(model: keras.Model, n_layers: int) -> int:
    """Make the top ``n_layers`` of the backbone trainable (BatchNorm layers stay frozen)."""
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    base.trainable = True
    count = 0
    for layer in base.layers[:-n_layers] if n_layers else base.layers:
        layer.trainable = False
    for layer in base.layers[-n_layers:] if n_layers else []:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
        elif layer.weights:
            count += 1
    return count
