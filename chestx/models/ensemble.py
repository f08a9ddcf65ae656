"""One Keras model that averages several trained members and test-time views.

Members of a deep ensemble (Lakshminarayanan et al. 2017) are trained apart, with other seeds or
shapes, and make partly independent errors; averaging their probabilities ranks and calibrates
X-rays from other collections better than any one of them. A horizontally mirrored view (test-time
augmentation) is averaged the same way, and ``zoom_out`` scores a more loosely framed view
instead of the image as given (a collection whose anatomy looks larger, above all taller, to the
network than the training folder's then looks like the training folder again). Everything
lives inside one graph, so the result saves as one ``model.keras`` / ``.h5`` / ``.tflite`` and
``predict``, ``evaluate``, ``serve``, Grad-CAM and LiteRT use it like any other model.
"""

from __future__ import annotations

import keras
from keras import layers

from chestx.models.layers import HorizontalFlip, ZoomOut

NAME = "ensemble"
MEMBER_PREFIX = "member_"


def ensemble(
    members: list[keras.Model], *, flip: bool = False, zoom_out: float = 0.0
) -> keras.Model:
    """Average the members' P(pneumonia) over the image (zoomed out by ``zoom_out`` of its side
    on each side, if given) and, with ``flip``, its mirror image."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    shapes = {tuple(m.input_shape[1:]) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"members take different inputs: {sorted(shapes)}")
    inputs = keras.Input(shapes.pop(), name="image")
    base = ZoomOut(zoom_out, name="zoom_out")(inputs) if zoom_out else inputs
    views = [base, HorizontalFlip(name="mirror")(base)] if flip else [base]
    outputs = []
    for i, member in enumerate(members):
        member.name = f"{MEMBER_PREFIX}{i}"  # unique names inside one saved graph
        member.trainable = False
        outputs += [member(view, training=False) for view in views]
    average = layers.Average(name="pneumonia")(outputs) if len(outputs) > 1 else outputs[0]
    return keras.Model(inputs, average, name=NAME)


def members_of(model: keras.Model) -> list[keras.Model]:
    """The member networks of an ensemble built by ``ensemble``; ``[model]`` for any other."""
    inner = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.Model) and layer.name.startswith(MEMBER_PREFIX)
    ]
    return inner if model.name == NAME and inner else [model]
