"""One Keras model that averages several trained members and test-time views.

Members of a deep ensemble (Lakshminarayanan et al. 2017) are trained apart, with other seeds or
shapes, and make partly independent errors; averaging their probabilities ranks and calibrates
X-rays from other collections better than any one of them. A horizontally mirrored view (test-time
augmentation) is averaged the same way, and ``zoom_out`` scores a more loosely framed view
instead of the image as given (a collection whose anatomy looks larger, above all taller, to the
network than the training folder's then looks like the training folder again). Everything
lives inside one graph, so the result saves as one ``model.keras`` / ``.h5`` / ``.tflite`` and
``predict``, ``evaluate``, ``serve``, Grad-CAM and LiteRT use it like any other model.

``soup`` is the other way to combine networks: several fine-tunes of one network (other seeds or
settings, the same starting weights) averaged weight by weight into one network, a uniform model
soup (Wortsman et al. 2022). It costs one network per X-ray where an ensemble costs one per member.
"""

from __future__ import annotations

import keras
import numpy as np
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


def soup(members: list[keras.Model]) -> keras.Model:
    """One network whose every weight is the mean of the members' (BatchNorm statistics
    included). Only fine-tunes of one network average into a working one: networks trained from
    different starting weights share a shape, not a solution, so the caller checks that."""
    if not members:
        raise ValueError("a soup needs at least one member")
    shapes = {tuple(tuple(w.shape) for w in m.weights) for m in members}
    if len(shapes) != 1:
        raise ValueError("members have different architectures; a soup needs one network's shape")
    net = keras.models.clone_model(members[0])
    weights = []
    for values in zip(*(m.get_weights() for m in members), strict=True):
        first = values[0]
        # integer state (a counter, a seed) is not a weight to average; keep the first member's
        weights.append(
            np.mean(values, axis=0).astype(first.dtype)
            if np.issubdtype(first.dtype, np.floating)
            else first
        )
    net.set_weights(weights)
    return net


def members_of(model: keras.Model) -> list[keras.Model]:
    """The member networks of an ensemble built by ``ensemble``; ``[model]`` for any other."""
    inner = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.Model) and layer.name.startswith(MEMBER_PREFIX)
    ]
    return inner if model.name == NAME and inner else [model]


def member_network(model: keras.Model, index: int, *, name: str) -> keras.Model:
    """A trainable copy of the ``index``-th member network of ``model`` (an ensemble built by
    ``ensemble``), detached from the ensemble's graph and named ``name`` (its architecture's
    name, as ``chestx train`` built it), for fine-tuning. The copy answers as the member does.

    ``ensemble`` froze every layer of every member, and a copy keeps each layer's flag, so each is
    unfrozen here: a functional model's ``trainable`` does not reach its layers."""
    members = members_of(model)
    if model.name != NAME or not 0 <= index < len(members):
        raise ValueError(f"{model.name} has no member network {index}")
    member = members[index]
    copy = keras.models.clone_model(member)
    copy.set_weights(member.get_weights())
    _unfreeze(copy)
    copy.name = name
    return copy


def _unfreeze(layer: keras.Layer) -> None:
    layer.trainable = True
    for inner in getattr(layer, "layers", ()):  # a functional model's, nested ones' too
        _unfreeze(inner)
