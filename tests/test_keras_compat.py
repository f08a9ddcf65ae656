"""``chestx.keras_compat.call_output`` against the installed Keras: a nested model's call output
is connected to the outer model's inputs (what Grad-CAM needs of a transfer backbone)."""

from __future__ import annotations

import numpy as np


def test_call_output_of_a_nested_model_is_connected_to_the_outer_inputs():
    import keras

    from chestx.keras_compat import call_output

    inner_in = keras.Input((8, 8, 1))
    inner = keras.Model(inner_in, keras.layers.Conv2D(2, 3, padding="same")(inner_in), name="inner")
    outer_in = keras.Input((8, 8, 1))
    features = inner(keras.layers.Rescaling(0.5)(outer_in))
    outer = keras.Model(outer_in, keras.layers.GlobalAveragePooling2D()(features))

    out = call_output(outer.get_layer("inner"))
    probe = keras.Model(outer.inputs, out)  # raises if not connected to the outer inputs
    x = np.ones((1, 8, 8, 1), np.float32)
    assert np.allclose(probe.predict(x, verbose=0), inner.predict(x * 0.5, verbose=0))
