"""Consistency training: the same score for an X-ray whatever its proportions.

Trained on the Kaggle folder alone, a network learns that a normal child's X-ray has typical
height-to-width proportions, and scores another collection's normals (framed differently) as
pneumonia. Stretching the height at random (``--stretch``) only blurs that cue: each class keeps
its average proportions. ``ConsistencyTraining`` removes it instead. Each training batch goes
through the network twice in one call, as given and with its height alone divided by a random
factor in ``[1 - stretch, 1 + stretch]`` (Keras's zoom; black fill) and, where asked, its
contrast lowered or raised by up to ``contrast`` and blurred by up to ``blur`` px (a flatter or
softer film: the robustness report's corruptions that push normal X-rays over the threshold);
the compiled loss scores the first view and ``weight * mean((logit_a - logit_b) ** 2)`` joins
it (``add_loss``), so the gradient pulls the two scores together (the "Π-model" consistency of
Laine & Aila 2017, with a geometric view).

The wrapper exists only while fitting: at inference it is the network, and ``save`` writes the
network alone, so every checkpoint and the shipped ``model.keras`` are the plain functional
model (nothing to register, nothing extra in the serving graph).
"""

from __future__ import annotations

import keras
from keras import ops

from chestx.models.layers import RandomBlur, layer_seed

EPSILON = 1e-6  # probabilities are clipped this far from 0 and 1 before their logit


def probability_logit(p):
    p = ops.clip(p, EPSILON, 1 - EPSILON)
    return ops.log(p) - ops.log1p(-p)


class ConsistencyTraining(keras.Model):
    """``network`` for ``fit``, with the consistency term added to its loss."""

    def __init__(
        self,
        network: keras.Model,
        *,
        weight: float,
        stretch: float,
        contrast: float = 0.0,
        blur: float = 0.0,
        seed=None,
    ):
        super().__init__(name=network.name)
        if weight <= 0 or not 0 < stretch < 1:
            raise ValueError(f"need weight > 0 and 0 < stretch < 1, got {weight}, {stretch}")
        if not 0 <= contrast <= 1 or blur < 0:
            raise ValueError(f"need 0 <= contrast <= 1 and blur >= 0, got {contrast}, {blur}")
        self.network = network
        self.weight = float(weight)
        self.stretch = float(stretch)
        # each draws apart from the others and from the augmentation (layers.layer_seed)
        self.stretcher = keras.layers.RandomZoom(
            height_factor=(-self.stretch, self.stretch),
            width_factor=(0.0, 0.0),
            fill_mode="constant",
            seed=layer_seed(seed, "consistency_stretch"),
        )
        # the second view's film: flatter or harsher, then softer (0 = left as it is)
        self.film = []
        if contrast:
            self.film.append(
                keras.layers.RandomContrast(
                    contrast, value_range=(0, 255), seed=layer_seed(seed, "consistency_contrast")
                )
            )
        if blur:
            self.film.append(RandomBlur(blur, seed=layer_seed(seed, "consistency_blur")))
        # logged per epoch as "consistency": how far apart the two views' logits still are
        self.gap_tracker = keras.metrics.Mean(name="consistency")

    def build(self, input_shape):
        """The network is built already; the second view's layers have no weights to make."""
        for layer in (self.stretcher, *self.film):
            layer.build(input_shape)
        self.built = True

    def second_view(self, x):
        """The copy the network must score alike: stretched, then given another film."""
        view = self.stretcher(x, training=True)
        for layer in self.film:
            view = layer(view, training=True)
        return view

    def call(self, x, training=False):
        if not training:
            return self.network(x, training=False)
        # one batch of both views, so batch normalisation's statistics span the two
        both = self.network(ops.concatenate([x, self.second_view(x)], axis=0), training=True)
        given, other = ops.split(both, 2, axis=0)
        gap = probability_logit(given) - probability_logit(other)
        squared_gap = ops.mean(ops.square(gap))
        self.gap_tracker.update_state(squared_gap)
        self.add_loss(self.weight * squared_gap)
        return given

    def save(self, filepath, *args, **kwargs):
        """Save the network alone (the wrapper is a training device, not part of the model)."""
        return self.network.save(filepath, *args, **kwargs)
