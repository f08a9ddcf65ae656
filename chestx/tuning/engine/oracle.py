"""What chestx adds to every Keras Tuner oracle it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chestx.tuning.engine import kt_compat

if TYPE_CHECKING:  # for the type checker, the Oracle this is mixed into (untyped: Any)
    from keras_tuner import Oracle as _MixedInto
else:
    _MixedInto = object


class DefaultsFirst(_MixedInto):
    """Mixin for an ``Oracle``: the first trial runs the file's defaults.

    The defaults of ``hyperparams/cnn.yaml`` are ``chestx train``'s recipe, so every search
    scores the default configuration against what it finds, on the same split and budget.
    Put it before the Keras Tuner oracle class: ``class X(DefaultsFirst, RandomSearchOracle)``.
    """

    default_first = True

    def populate_space(self, trial_id):
        if self.default_first and not self.start_order and self.hyperparameters.space:
            values: dict = {}
            for hp in self.hyperparameters.space:
                if _active(hp, values):  # the space lists parents first
                    values[hp.name] = hp.default
            if not kt_compat.is_duplicate(self, values):
                return {"status": "RUNNING", "values": values}
        return super().populate_space(trial_id)


def _active(hp, values: dict) -> bool:
    return all(c.is_active(values) for c in hp.conditions)
