"""One search algorithm per file; ``create`` picks the one a space file names."""

from __future__ import annotations


def create(space, hypermodel, *, run_dir, seed: int = 42, **kwargs):
    """The tuner for ``space.tuner`` (random | hyperband | bayesian)."""
    if space.tuner == "random":
        from chestx.tuning.tuners.random import RandomSearch as cls
    elif space.tuner == "hyperband":
        from chestx.tuning.tuners.hyperband import Hyperband as cls
    elif space.tuner == "bayesian":
        from chestx.tuning.tuners.bayesian import BayesianOptimization as cls
    else:  # the space file was validated, so this is a programming error
        raise ValueError(f"unknown tuner {space.tuner!r}")
    return cls(hypermodel, run_dir=run_dir, seed=seed, **kwargs)
