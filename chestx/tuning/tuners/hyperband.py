"""Hyperband: many configurations on few epochs, the best promoted to more epochs.

Two differences from Keras Tuner's ``Hyperband`` tuner, both deliberate:

* ``max_trials`` caps it like every other tuner (``budget.max_trials`` / ``--max-trials``),
  so a quick search stays quick; Keras Tuner's Hyperband otherwise runs its full brackets;
* a promoted configuration is retrained from scratch for its larger budget instead of
  resuming the lower round's checkpoint, because chestx keeps no per-trial checkpoints
  (bounded disk). It spends the lower round's epochs again; the ranking is unaffected.

``budget.epochs`` is Hyperband's ``max_epochs``.
"""

from __future__ import annotations

from keras_tuner.oracles import HyperbandOracle as _Oracle

from chestx.tuning.engine.tuner import SearchTuner, objective


class Hyperband(SearchTuner):
    algorithm = "hyperband"

    def __init__(self, hypermodel, **kwargs):
        space = hypermodel.space
        budget = space.budget
        oracle = _Oracle(
            objective=objective(space),
            max_epochs=budget.epochs,
            factor=budget.hyperband_factor,
            hyperband_iterations=budget.hyperband_iterations,
            seed=space.seed,
            max_consecutive_failed_trials=budget.max_failures,
        )
        oracle.max_trials = budget.max_trials  # the Oracle base class stops at this count
        super().__init__(oracle, hypermodel, **kwargs)

    def trial_epochs(self, trial, epochs: int) -> int:
        return int(trial.hyperparameters.values.get("tuner/epochs", epochs))
