"""The keys a search space may tune, per model family: their kind, default and sane range.

A YAML key that is not listed here for the file's ``model`` is an error, so a typo cannot
silently tune nothing. A key the file leaves out keeps the default below, which is the
default of ``chestx train`` (so a space that fixes nothing searches around the shipped recipe).

Pure Python: validation runs before TensorFlow is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from chestx import config

BOOL, INT, FLOAT, STR, WEIGHTS = "bool", "int", "float", "str", "weights"


@dataclass(frozen=True)
class Key:
    kind: str  # bool | int | float | str | weights
    default: object
    help: str
    lo: float | None = None  # inclusive bounds every value of the key must respect
    hi: float | None = None
    choices: tuple = ()  # for str keys: the values allowed
    positive: bool = False  # strictly > lo (learning rates)


# keys every family understands: input, optimiser, augmentation
COMMON = {
    "image_size": Key(INT, config.DEFAULT_IMAGE_SIZE, "input side in pixels", 32, 1024),
    "intensity": Key(
        STR,
        config.DEFAULT_INTENSITY,
        "intensity normalisation before the model",
        choices=config.INTENSITY_METHODS,
    ),
    "batch_size": Key(INT, 32, "training batch size (tuned through HyperModel.fit)", 1, 1024),
    "learning_rate": Key(
        FLOAT, config.DEFAULT_LEARNING_RATE, "Adam(W) learning rate", 0, 1, positive=True
    ),
    "weight_decay": Key(
        FLOAT, config.DEFAULT_WEIGHT_DECAY, "AdamW weight decay; 0 = plain Adam", 0, 1
    ),
    "label_smoothing": Key(
        FLOAT, config.DEFAULT_LABEL_SMOOTHING, "binary cross-entropy label smoothing", 0, 0.5
    ),
    "augment": Key(BOOL, True, "augmentation on/off (the strengths below apply when on)"),
    # one key per augmentation that config.Augmentation declares tunable
    **{
        option.name: (
            Key(BOOL, option.default, option.metadata["help"])
            if isinstance(option.default, bool)
            else Key(FLOAT, option.default, option.metadata["help"], 0, option.metadata["hi"])
        )
        for option in config.AUGMENTATION_OPTIONS
        if option.metadata["tuned"]
    },
}

AUGMENTATION_KEYS = tuple(o.name for o in config.AUGMENTATION_OPTIONS if o.metadata["tuned"])

CHESTNET = {
    **COMMON,
    "blocks": Key(INT, 4, "number of conv blocks (each ends with max-pooling)", 1, 6),
    "filters": Key(INT, 32, "filters of the first block; each further block doubles them", 4, 512),
    "convs_per_block": Key(INT, 2, "3x3 convolutions per block", 1, 4),
    "dense_units": Key(INT, 0, "units of a dense layer before the output; 0 = none", 0, 4096),
    "dropout": Key(FLOAT, 0.4, "dropout before the output", 0, 0.95),
}

TRANSFER = {
    **COMMON,
    "backbone": Key(
        STR, config.DEFAULT_BACKBONE, "keras.applications backbone", choices=config.BACKBONES
    ),
    "weights": Key(
        WEIGHTS,
        "none",
        "backbone weights: none | imagenet (needs internet once) | path to a local weights file",
    ),
    "head_units": Key(INT, 128, "units of the dense head; 0 = none", 0, 4096),
    "dropout": Key(FLOAT, 0.3, "dropout before the output", 0, 0.95),
    "fine_tune_layers": Key(
        INT, 0, "top backbone layers unfrozen for a second phase; 0 = none", 0, 1000
    ),
    "fine_tune_learning_rate": Key(
        FLOAT,
        None,
        "learning rate of the fine-tuning phase (default: learning_rate / 10)",
        0,
        1,
        positive=True,
    ),
}

# the seed tutorial's fixed network: only the input, optimiser and augmentation are tunable
CNN = dict(COMMON)

FAMILIES = {"chestnet": CHESTNET, "transfer": TRANSFER, "cnn": CNN}


def family(model: str) -> dict[str, Key]:
    return FAMILIES[model]
