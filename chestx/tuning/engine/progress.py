"""The one line a finished trial logs, with the running best.

One writer for both places a trial can end: ``SearchTuner.on_trial_end`` (a local search or a
worker) and the chief of a distributed search (``chestx.tuning.distribute.serve``), which sees
the workers' trials end in its oracle.
"""

from __future__ import annotations

import logging

from chestx.tuning.engine import leaderboard

log = logging.getLogger("chestx.tuning")


def log_trial_end(oracle, trial_id: str, space, run_dir, tuner_id: str | None = None) -> None:
    """``trial 03 end [worker-1]: COMPLETED val_roc_auc=0.9612 (...) | best ...``, plus the
    last line of the error when the trial failed. ``tuner_id`` defaults to the one in the
    trial's sidecar (the worker that ran it)."""
    trial = oracle.get_trial(trial_id)
    best = oracle.get_best_trials(1)
    side = leaderboard.read_sidecar(run_dir.project / f"trial_{trial_id}")
    log.info(
        "trial %s end [%s]: %s",
        trial_id,
        tuner_id or side.get("tuner_id", "?"),
        describe(trial, space, best[0] if best else None, side),
    )
    if trial.status != "COMPLETED" and trial.message:
        log.warning("trial %s failed: %s", trial_id, leaderboard.last_line(trial.message))


def describe(trial, space, best, side: dict | None = None) -> str:
    """``COMPLETED val_roc_auc=0.9612 (3 epochs, 41 s) | best 0.9701 (trial 01)``."""
    name = space.objective
    text = trial.status
    if trial.score is not None:
        text += f" {name}={trial.score:.4f}"
    if side:
        text += f" ({side.get('epochs')} epochs, {side.get('seconds', 0):.0f} s)"
    if best is not None and best.score is not None:
        text += f" | best {best.score:.4f} (trial {best.trial_id})"
    return text
