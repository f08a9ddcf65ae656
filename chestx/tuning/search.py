"""One ``chestx tune`` run: check everything, search, write the leaderboard, export ``best/``.

Order matters: the space file, the data folder, RUN_DIR and the distributed settings are all
checked before anything is written or TensorFlow is imported, so a mistake costs a second and
leaves no trace.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from chestx import config
from chestx.tuning import distribute
from chestx.tuning.engine.rundir import RunDir
from chestx.tuning.engine.space import load_space
from chestx.tuning.errors import TuningError

log = logging.getLogger("chestx.tuning")


@dataclass
class SearchRequest:
    space: Path
    data: Path
    out: Path
    max_trials: int | None = None
    epochs: int | None = None
    resume: bool = False
    seed: int = 42
    limit: int | None = None
    min_sensitivity: float = config.DEFAULT_MIN_SENSITIVITY
    export: bool = True
    chief: str | None = None
    worker: str | None = None
    verbose: int = 0
    command: str | None = None
    pins: dict | None = None


def run(req: SearchRequest) -> dict:
    """Run (or continue, or join) a search; returns a summary for the caller."""
    from chestx.data import find_data

    space = load_space(req.space).with_caps(max_trials=req.max_trials, epochs=req.epochs)
    space = space.with_fixed(req.pins or {})
    role = distribute.resolve_role(req.chief, req.worker)
    run_dir = RunDir(req.out)
    worker = role.kind == "worker"
    run_dir.check(space, resume=req.resume, worker=worker, data=Path(req.data), seed=req.seed,
                  limit=req.limit, pins=req.pins or {})
    find_data(req.data)  # DataError now rather than after the first trial starts
    _preflight_weights(space)

    # ---- from here on, things are written
    if not worker:
        run_dir.start(space, {
            "data": str(Path(req.data).resolve()), "seed": req.seed, "limit": req.limit,
            "pins": req.pins or {}, "role": role.kind, "max_trials": space.budget.max_trials,
            "epochs": space.budget.epochs, "command": req.command})
    distribute.apply(role)
    if worker:
        log.info("search %s: worker %s asks the chief at %s for trials (its budget applies)",
                 space.name, role.tuner_id, role.address)
    else:
        log.info("search %s: %s tuner over %d keys of %s, %s %s, up to %d trials x %d epochs%s",
                 space.name, space.tuner, len(space.params), space.model, space.direction,
                 space.objective, space.budget.max_trials, space.budget.epochs,
                 f" (chief listening on {role.address})" if role.distributed else "")

    from chestx.tuning import tuners
    from chestx.tuning.engine import leaderboard
    from chestx.tuning.engine.hypermodel import ChestHyperModel
    from chestx.tuning.engine.inputs import SearchData

    start = time.perf_counter()
    data = None if role.kind == "chief" else SearchData(req.data, seed=req.seed,
                                                        limit=req.limit)
    if data is not None:
        log.info("split by patient: %s", data.counts())
    hypermodel = ChestHyperModel(space, min_sensitivity=req.min_sensitivity, seed=req.seed,
                                 verbose=2 if req.verbose else 0)
    tuner = tuners.create(space, hypermodel, run_dir=run_dir, seed=req.seed,
                          tuner_id=role.tuner_id)
    try:
        tuner.search(data=data, epochs=space.budget.epochs, verbose=hypermodel.verbose)
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        raise TuningError(f"stopped: {space.budget.max_failures} trials in a row failed; last "
                          f"error: {str(exc).strip().splitlines()[-1]}") from None
    seconds = time.perf_counter() - start
    if worker:
        log.info("worker %s: the chief has no trial left; done in %.0f s", role.tuner_id,
                 seconds)
        return {"role": "worker", "seconds": seconds}

    rows = leaderboard.write(run_dir, space, search_seconds=_total_seconds(run_dir, seconds))
    best = leaderboard.best_row(rows)
    run_dir.finish_session(search_seconds=round(seconds, 1), trials=len(rows))
    log.info("search finished in %.0f s: %d trials, %d completed; leaderboard in %s",
             seconds, len(rows), sum(r["status"] == "COMPLETED" for r in rows),
             run_dir.leaderboard_csv)
    if best is None:
        raise TuningError(f"no trial completed; see {run_dir.leaderboard_csv}")
    log.info("best: trial %s, %s %.4f", best["trial"], space.objective, best[space.objective])
    card = None
    if req.export:
        from chestx.tuning.export import export_best

        card = export_best(run_dir, space, best, data=req.data, seed=req.seed, limit=req.limit,
                           min_sensitivity=req.min_sensitivity, epochs_cap=req.epochs,
                           command=req.command)
        run_dir.finish_session(search_seconds=round(seconds, 1), trials=len(rows),
                               export_seconds=round(time.perf_counter() - start - seconds, 1))
    return {"role": role.kind, "seconds": seconds, "rows": rows, "best": best, "card": card}


def _total_seconds(run_dir: RunDir, this_session: float) -> float:
    """Search time over every session of this RUN_DIR (a resumed search adds up)."""
    sessions = run_dir.run_info().get("sessions", [])
    earlier = sum(s.get("search_seconds", 0) for s in sessions[:-1])
    return round(earlier + this_session, 1)


def _preflight_weights(space) -> None:
    """ImageNet weights are downloaded on first use; fail now, not in every trial."""
    if space.model != "transfer":
        return
    weights = space.params.get("weights")
    wanted = weights.possible() if weights else ("none",)
    if "imagenet" not in wanted:
        return
    backbone = space.params.get("backbone")
    names = backbone.possible() if backbone else ("mobilenetv2",)
    from chestx.models.backbones import BACKBONES

    for name in names:
        try:
            BACKBONES[name](include_top=False, weights="imagenet", input_shape=(96, 96, 3))
        except Exception as exc:  # offline host, proxy, disk: say which and how to avoid it
            raise TuningError(
                f"{space.path}: space.weights: imagenet weights for {name} cannot be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); on an offline "
                "host use weights: none or a local weights file") from None
