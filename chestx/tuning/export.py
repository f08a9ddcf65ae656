"""``RUN_DIR/best/``: the best configuration, retrained by ``chestx train``'s own recipe.

The winning values become a ``chestx.train.TrainConfig`` by the same mapping as every trial's
(``hypermodel.train_config``), and ``chestx.train.train`` does the rest (same split, the
recipe of ``chestx.recipe`` that each trial was trained with, the threshold rule,
validation/test metrics, manifest, history, model card), so ``chestx predict/evaluate/serve
--model RUN_DIR/best`` use it as any trained model. The card gains a ``tuning`` section: the
winning hyperparameters, the trial, its search score and the whole search space; the space file
itself is copied next to the card as ``search.yaml``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from chestx.tuning.engine.hypermodel import train_config
from chestx.tuning.engine.rundir import RunDir
from chestx.tuning.engine.space import SearchSpace
from chestx.tuning.errors import TuningError

log = logging.getLogger("chestx.tuning")


def retrain_config(
    space: SearchSpace,
    values: dict,
    *,
    data: Path,
    out: Path,
    seed: int,
    limit: int | None,
    min_sensitivity: float,
    epochs_cap: int | None = None,
):
    """The ``TrainConfig`` that retrains ``values``: a trial's, with the ``retrain:`` section's
    epochs and patience where the file gives them."""
    epochs = space.retrain_epochs or space.budget.epochs
    if epochs_cap:
        epochs = min(epochs, epochs_cap)
    return train_config(
        space,
        values,
        epochs=epochs,
        patience=space.retrain_patience or space.budget.patience,
        data=data,
        out=out,
        seed=seed,
        limit=limit,
        min_sensitivity=min_sensitivity,
        verbose=2,
    )


def export_best(
    run_dir: RunDir,
    space: SearchSpace,
    best: dict,
    *,
    data: Path,
    seed: int,
    limit: int | None,
    min_sensitivity: float,
    epochs_cap: int | None = None,
    command: str | None = None,
) -> dict:
    """Retrain the leaderboard's best row into ``RUN_DIR/best``; return its card."""
    from chestx.train import train

    if best is None:
        raise TuningError(
            f"{run_dir.path}: no trial completed, so there is no best configuration to export"
        )
    values = {k: best[k] for k in space.params if best.get(k) is not None}
    cfg = retrain_config(
        space,
        values,
        data=data,
        out=run_dir.best,
        seed=seed,
        limit=limit,
        min_sensitivity=min_sensitivity,
        epochs_cap=epochs_cap,
    )
    if run_dir.best.exists():
        shutil.rmtree(run_dir.best)
    log.info(
        "retraining the best configuration (trial %s, %s %.4f) into %s for up to %d epochs",
        best["trial"],
        space.objective,
        best[space.objective],
        run_dir.best,
        cfg.epochs,
    )
    tuning = {
        "search": space.name,
        "search_file": "search.yaml",
        "search_sha256": space.sha256,
        "run_dir": str(run_dir.path),
        "trial": best["trial"],
        "tuner": space.tuner,
        "objective": {
            "name": space.objective,
            "direction": space.direction,
            "search_value": best[space.objective],
        },
        "hyperparameters": values,
        "configuration": space.resolve(values),
        "pins": run_dir.run_info().get("pins") or {},
        "space": space.summary(),
    }
    card = train(
        cfg, command=command, extra_card={"name": f"chestx-tuned-{space.name}", "tuning": tuning}
    )
    shutil.copyfile(run_dir.space_copy, run_dir.best / "search.yaml")
    return card
