"""Bayesian optimisation (Gaussian process + UCB, Keras Tuner's; needs scikit-learn and scipy).

The first ``budget.bayesian.initial_points`` trials are random (the first of them the
defaults); Keras Tuner's own default, 3 per tuned key, would spend most small budgets on
random trials, so chestx uses a third of ``max_trials`` (at least 2) unless the file says.
"""

from __future__ import annotations

from keras_tuner.oracles import BayesianOptimizationOracle as _Oracle

from chestx.tuning.engine.oracle import DefaultsFirst
from chestx.tuning.engine.tuner import SearchTuner, objective


class BayesianOptimizationOracle(DefaultsFirst, _Oracle):
    pass


class BayesianOptimization(SearchTuner):
    algorithm = "bayesian"

    def __init__(self, hypermodel, **kwargs):
        space = hypermodel.space
        budget = space.budget
        oracle = BayesianOptimizationOracle(
            objective=objective(space),
            max_trials=budget.max_trials,
            num_initial_points=budget.initial_points or max(2, budget.max_trials // 3),
            alpha=budget.alpha,
            beta=budget.beta,
            seed=space.seed,
            max_consecutive_failed_trials=budget.max_failures,
        )
        oracle.default_first = budget.default_first
        super().__init__(oracle, hypermodel, **kwargs)
