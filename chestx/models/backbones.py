"""The keras.applications backbones chestx offers for transfer learning, resolved from their one
declaration, ``chestx.config.BACKBONE_TABLE`` (names, builders, preprocessing modules)."""

from __future__ import annotations

from keras import applications as apps

from chestx.config import BACKBONE_TABLE

# name -> builder, e.g. "mobilenetv2" -> keras.applications.MobileNetV2
BACKBONES = {name: getattr(apps, b.builder) for name, b in BACKBONE_TABLE.items()}

# name -> the preprocess_input its weights were trained with (scales 0-255 RGB its own way)
BACKBONE_PREPROCESS = {
    name: getattr(apps, b.module).preprocess_input for name, b in BACKBONE_TABLE.items()
}
