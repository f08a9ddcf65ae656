"""Random search: every trial samples the space independently (after the defaults trial)."""

from __future__ import annotations

from keras_tuner.oracles import RandomSearchOracle as _Oracle

from chestx.tuning.engine.oracle import DefaultsFirst
from chestx.tuning.engine.tuner import SearchTuner, objective


class RandomSearchOracle(DefaultsFirst, _Oracle):
    pass


class RandomSearch(SearchTuner):
    algorithm = "random"

    def __init__(self, hypermodel, **kwargs):
        space = hypermodel.space
        oracle = RandomSearchOracle(
            objective=objective(space),
            max_trials=space.budget.max_trials,
            seed=space.seed,
            max_consecutive_failed_trials=space.budget.max_failures,
        )
        oracle.default_first = space.budget.default_first
        super().__init__(oracle, hypermodel, **kwargs)
