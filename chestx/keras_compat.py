"""The one private Keras API chestx uses, behind one function.

``call_output``: the symbolic output of a layer's last call inside a functional model. For a
nested model (a transfer backbone inside chestx's model) ``layer.output`` is the nested
model's own output, not connected to the outer inputs; Keras 3 keeps the call's output only
on the private ``layer._inbound_nodes`` (Keras 3.3 - 3.15, see ``pyproject.toml``).
``tests/test_keras_compat.py`` checks the assumption against the installed Keras.
"""

from __future__ import annotations


def call_output(layer):
    """The output tensor of ``layer``'s last call in the graph it was called in."""
    return layer._inbound_nodes[-1].output_tensors[0]
