"""From-scratch CNNs: the seed tutorial's network as written, and chestx's default ``chestnet``."""

from __future__ import annotations

import keras
from keras import layers

from chestx.config import chestnet_filters


def seed_cnn(image_size: int = 224) -> keras.Model:
    """The tutorial's step-4 network, unchanged but for the in-model 0-1 scaling."""
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="cnn")


def _conv_bn(x, filters: int, *, strides: int = 1, name: str):
    x = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def chestnet(
    image_size: int = 224,
    *,
    filters: tuple[int, ...] = chestnet_filters(),
    convs_per_block: int = 2,
    dropout: float = 0.4,
    dense_units: int = 0,
) -> keras.Model:
    """A small BatchNorm CNN that trains on a CPU.

    A stride-2 stem halves the resolution once, each block (``convs_per_block`` 3x3 convs) ends
    with max-pooling, and global average pooling keeps the head tiny, so the network has few
    parameters to overfit the training collection with.
    """
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = _conv_bn(x, filters[0], strides=2, name="stem")
    for i, f in enumerate(filters):
        for j in range(convs_per_block):
            x = _conv_bn(x, f, name=f"block{i + 1}_{j + 1}")
        x = layers.MaxPooling2D(2, name=f"block{i + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="chestnet")
