"""Defaults shared by every stage, the one declaration of each option that several stages
use (augmentations, backbones), and where the shipped model lives.

Plain constants and data classes only: importing this module must stay instant.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_IMAGE_SIZE = 224
DEFAULT_MAX_PIXELS = 50_000_000  # refuse larger images before decoding them
INTENSITY_METHODS = ("none", "equalize", "clahe", "lift-clahe", "level-clahe", "span-clahe")
# The 5th percentile, over the 5,216 Kaggle training X-rays resized to 224 px, of each X-ray's
# 99th-percentile grey level (chestx.imaging.bright_level): "lift-clahe" brings a darker X-ray
# up to it before CLAHE.
LIFT_LEVEL = 173
# The interquartile range, over the same X-rays after the lift, of each X-ray's median grey level
# of its pixels at MID_FLOOR and up (chestx.imaging.mid_level; darker is black padding, not
# exposure): "level-clahe" bends a lifted X-ray's mid-tones with a gamma curve until that median
# lies in it. `python benchmarks/exposure_levels.py --data DIR` prints both levels.
MID_FLOOR = 8
MID_LEVELS = (126, 154)
# The 95th percentile, over the same X-rays, of each X-ray's 1st-percentile grey level
# (chestx.imaging.dark_level): "span-clahe" stretches a washed-out X-ray, whose blacks have
# turned grey, down to it (white staying white) before "level-clahe".
BLACK_LEVEL = 24
# An edge row or column is a frame around the X-ray, not the X-ray (chestx.imaging.trim_frame),
# when its grey levels, all at FRAME_FLOOR or above, span at most FRAME_TOLERANCE (a padded
# export's frame, any light grey), when their mean is FRAME_WHITE or above and their standard
# deviation at most FRAME_GRAIN (a white margin with grain: a scanned film's), or when they are
# all at FRAME_DARK or below within FRAME_DARK_TOLERANCE (black bars: a portrait X-ray
# letterboxed onto a wider canvas; 10 % of the training X-rays have a thin dark border, up to
# 27 px of 224, and lose it too).
FRAME_FLOOR = 48
FRAME_TOLERANCE = 4
FRAME_WHITE = 200
FRAME_GRAIN = 8.0
FRAME_DARK = 31
FRAME_DARK_TOLERANCE = 8
# A grey margin with grain (a film scanned on a grey bed, an export's textured frame) is a band
# of edge lines as even as that (standard deviation at most FRAME_GRAIN, mean FRAME_FLOOR or
# above) whose mean drifts at most FRAME_BAND_DRIFT from its first line's, over FRAME_BAND of
# the side or more. Per line alone the rule cut the soft tissue along the edge of 22 training
# X-rays; as a band of 3 %, none of the 5,216 training or 313 external-dev X-rays.
FRAME_BAND = 0.03
FRAME_BAND_DRIFT = 2.0
# Grain at the model's input size above NOISE_MAX grey levels (chestx.imaging.noise_level: the
# spread of what a 3 x 3 median takes away) is smoothed by a bilateral filter of colour sigma
# DENOISE_COLOUR x that level and space sigma DENOISE_SPACE px at 224 wide
# (chestx.imaging.quiet_noise). No training or external-dev X-ray comes above 1.5; the training
# noise (--noise 4) reaches 4.5.
NOISE_MAX = 6.0
DENOISE_COLOUR = 2.0
DENOISE_SPACE = 5.0
# A side shorter than SMALL_SIDE x the model's input (a thumbnail, a small export) is enlarged
# with a cubic kernel. INTER_AREA, which shrinks well, enlarges by repeating pixels once the
# factor grows (64 px to 224: 60 % of neighbours equal, against 11 % in an X-ray), and the
# networks read the blocks as texture (external-dev at 64 px: specificity 0.716; cubic 0.871).
# Above it, sides keep INTER_AREA, as in training: a trimmed frame leaves 575 training X-rays a
# side of 180-223 px. External-dev at 160 px scored sensitivity 0.985 by area, 0.970 cubic.
SMALL_SIDE = 0.6
# What `chestx ensemble --intensity` may serve members trained with a method, and `chestx train
# --init` may fine-tune them on: the same inputs for well-exposed X-rays, corrected ones for the
# others.
EXPOSURE_CORRECTIONS: dict[str, tuple[str, ...]] = {
    "clahe": ("lift-clahe", "level-clahe", "span-clahe")
}


def takes_intensity(trained_with: str, intensity: str) -> bool:
    """Whether a network trained with ``trained_with`` may be given ``intensity``'s inputs: the
    same normalisation, or an exposure correction in front of it (``EXPOSURE_CORRECTIONS``)."""
    return intensity == trained_with or intensity in EXPOSURE_CORRECTIONS.get(trained_with, ())


CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
ARCHITECTURES = ("chestnet", "cnn", "transfer")
DEFAULT_ARCH = "chestnet"
CHESTNET_WIDTH = 32  # filters of chestnet's first block (chestx train --width)
CHESTNET_BLOCKS = 4


def chestnet_filters(width: int = CHESTNET_WIDTH, blocks: int = CHESTNET_BLOCKS) -> tuple[int, ...]:
    """chestnet's filters per block: ``width`` in the first, doubled in each later one."""
    return tuple(width * 2**i for i in range(blocks))


class Backbone(NamedTuple):
    """Where a keras.applications backbone lives: ``keras.applications.<builder>`` and the
    ``keras.applications.<module>.preprocess_input`` that its weights expect."""

    builder: str
    module: str


# The transfer-learning backbones: the CLI's --backbone choices, the tuner's ``backbone``
# values and ``chestx.models.backbones`` all come from this table.
BACKBONE_TABLE = {
    "resnet50": Backbone("ResNet50", "resnet50"),
    "mobilenetv2": Backbone("MobileNetV2", "mobilenet_v2"),
    "efficientnetb0": Backbone("EfficientNetB0", "efficientnet"),
    "densenet121": Backbone("DenseNet121", "densenet"),
}
BACKBONES = tuple(BACKBONE_TABLE)
DEFAULT_BACKBONE = "mobilenetv2"

DEFAULT_INTENSITY = "clahe"
DEFAULT_EPOCHS = 20
DEFAULT_MIN_SENSITIVITY = 0.95


def _strength(default, help: str, hi: float | None = None, *, tuned: bool = True) -> Any:
    """A field of ``Augmentation``: its default, its help text (``chestx train --help`` and
    the tuner's vocabulary), the largest sane value (the tuner refuses more) and whether a
    search space may tune it."""
    return dataclasses.field(default=default, metadata={"help": help, "hi": hi, "tuned": tuned})


MAX_BLUR = 10  # px: the strongest --blur, and the bound of the layer that applies it


@dataclass(frozen=True)
class Augmentation:
    """Strengths of each augmentation; 0 (or False) switches one off.

    The one declaration of the augmentation options: ``chestx train``'s flags, the tuner's
    vocabulary and the card's ``augmentation`` entry are derived from these fields, and
    ``chestx.data.augmenter`` builds one Keras layer per field. The defaults are the recipe
    of the shipped model: the tutorial's rotation, zoom and flip, plus shift and the intensity
    changes a different scanner or exposure brings.
    """

    rotation: float = _strength(10.0, "max rotation, degrees", 180)
    zoom: float = _strength(0.15, "max zoom fraction", 0.9)
    shift: float = _strength(0.08, "max shift fraction", 0.5)
    flip: bool = _strength(True, "random horizontal flip")
    brightness: float = _strength(0.15, "max brightness change, fraction of 255", 1)
    contrast: float = _strength(0.3, "max contrast factor change", 1)
    gamma: float = _strength(0.3, "max gamma change: 0.3 means gamma in [1/1.3, 1.3]", 2)
    blur: float = _strength(1.0, "max Gaussian blur sigma, pixels", MAX_BLUR)
    noise: float = _strength(4.0, "Gaussian noise std, grey levels", 50)
    # crop and stretch came after the tuner's vocabulary was fixed (a contract): chestx train only
    crop: float = _strength(
        0.0,
        "random tighter framing: zoom in by up to this fraction (aspect varies)",
        0.9,
        tuned=False,
    )
    stretch: float = _strength(
        0.0,
        "random aspect change: stretch or squash the height alone by up to this fraction",
        0.9,
        tuned=False,
    )


AUGMENTATION_OPTIONS = dataclasses.fields(Augmentation)
DEFAULT_AUGMENTATION: dict[str, Any] = dataclasses.asdict(Augmentation())
DEFAULT_MIXUP = 0.0
DEFAULT_LABEL_SMOOTHING = 0.1
DEFAULT_WEIGHT_DECAY = 1e-4
# what a training run may watch for checkpoints, early stopping and the plateau, and which way
# is better (chestx.recipe, and the search-space files' budget.early_stopping.monitor)
MONITORS = {"val_auc": "max", "val_loss": "min", "val_accuracy": "max"}
DEFAULT_LEARNING_RATE = 1e-3  # Adam(W), every architecture
SPLIT_RATIOS = {"train": 0.7, "val": 0.2, "test": 0.1}

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def model_dir(path: str | os.PathLike | None = None) -> Path:
    """The model directory to use: the argument, else $CHESTX_MODEL_DIR, else the shipped one."""
    if path:
        return Path(path)
    return Path(os.environ.get("CHESTX_MODEL_DIR") or DEFAULT_MODEL_DIR)
