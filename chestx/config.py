"""Defaults shared by every stage, and where the shipped model lives.

Plain constants only: importing this module must stay instant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_IMAGE_SIZE = 224
DEFAULT_MAX_PIXELS = 50_000_000  # refuse larger images before decoding them
INTENSITY_METHODS = ("none", "equalize", "clahe")

CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
ARCHITECTURES = ("chestnet", "cnn", "transfer")
DEFAULT_ARCH = "chestnet"
BACKBONES = ("resnet50", "mobilenetv2", "efficientnetb0", "densenet121")
DEFAULT_INTENSITY = "clahe"
DEFAULT_EPOCHS = 20
DEFAULT_MIN_SENSITIVITY = 0.95
# The augmentation the shipped model was trained with: the tutorial's rotation, zoom and flip,
# plus shift and the intensity changes a different scanner or exposure brings.
DEFAULT_AUGMENTATION: dict[str, Any] = {
    "rotation": 10.0,
    "zoom": 0.15,
    "shift": 0.08,
    "flip": True,
    "brightness": 0.15,
    "contrast": 0.3,
    "gamma": 0.3,
    "blur": 1.0,
    "noise": 4.0,
    "crop": 0.0,
}
DEFAULT_MIXUP = 0.0
DEFAULT_LABEL_SMOOTHING = 0.1
DEFAULT_WEIGHT_DECAY = 1e-4
DEFAULT_LEARNING_RATE = 1e-3  # Adam(W), every architecture
SPLIT_RATIOS = {"train": 0.7, "val": 0.2, "test": 0.1}

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def model_dir(path: str | os.PathLike | None = None) -> Path:
    """The model directory to use: the argument, else $CHESTX_MODEL_DIR, else the shipped one."""
    if path:
        return Path(path)
    return Path(os.environ.get("CHESTX_MODEL_DIR") or DEFAULT_MODEL_DIR)
