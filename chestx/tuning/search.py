"""One ``chestx tune`` run: check everything, search, write the leaderboard, export ``best/``.

Order matters: the space file, the data folder, RUN_DIR and the distributed settings are all
checked before anything is written or TensorFlow is imported, so a mistake costs a second and
leaves no trace.

Trials run in child processes of at most ``budget.trials_per_process`` trials each (default
10). TensorFlow keeps every traced training graph for the life of the process, even across
``keras.backend.clear_session()`` (tensorflow/tensorflow#61791): measured here, 20-50 MB more
resident memory per trial. A fresh process every few trials keeps memory flat however long the
search; each new process resumes the search from RUN_DIR exactly as ``--resume`` does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chestx import config
from chestx.tuning import distribute
from chestx.tuning.engine.rundir import RunDir
from chestx.tuning.engine.space import SearchSpace, load_space
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

    def to_json(self) -> str:
        return json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}
        )


def load_request_space(req: SearchRequest) -> SearchSpace:
    space = load_space(req.space).with_caps(max_trials=req.max_trials, epochs=req.epochs)
    return space.with_fixed(req.pins or {})


def run(req: SearchRequest) -> dict:
    """Run (or continue, or join) a search; returns a summary for the caller."""
    from chestx.data import find_data

    space = load_request_space(req)
    role = distribute.resolve_role(req.chief, req.worker)
    run_dir = RunDir(req.out)
    worker = role.kind == "worker"
    run_dir.check(
        space,
        resume=req.resume,
        worker=worker,
        data=Path(req.data),
        seed=req.seed,
        limit=req.limit,
        pins=req.pins or {},
    )
    find_data(req.data)  # DataError now rather than after the first trial starts
    _preflight_weights(space)

    # ---- from here on, things are written
    if not worker:
        run_dir.start(
            space,
            {
                "data": str(Path(req.data).resolve()),
                "seed": req.seed,
                "limit": req.limit,
                "pins": req.pins or {},
                "role": role.kind,
                "max_trials": space.budget.max_trials,
                "epochs": space.budget.epochs,
                "command": req.command,
            },
        )
    distribute.apply(role)
    if worker:
        log.info(
            "search %s: worker %s asks the chief at %s for trials (its budget applies)",
            space.name,
            role.tuner_id,
            role.address,
        )
    else:
        log.info(
            "search %s: %s tuner over %d keys of %s, %s %s, up to %d trials x %d epochs%s",
            space.name,
            space.tuner,
            len(space.params),
            space.model,
            space.direction,
            space.objective,
            space.budget.max_trials,
            space.budget.epochs,
            f" (chief listening on {role.address})" if role.distributed else "",
        )

    start = time.perf_counter()
    per_process = space.budget.trials_per_process
    if role.kind == "chief" or not per_process:
        session(req, space, role, run_dir)
    else:
        _sessions_in_children(req)
    seconds = time.perf_counter() - start
    if worker:
        log.info("worker %s: the chief has no trial left; done in %.0f s", role.tuner_id, seconds)
        return {"role": "worker", "seconds": seconds}

    from chestx.tuning.engine import leaderboard

    rows = leaderboard.write(run_dir, space, search_seconds=_total_seconds(run_dir, seconds))
    best = leaderboard.best_row(rows)
    run_dir.finish_session(search_seconds=round(seconds, 1), trials=len(rows))
    log.info(
        "search finished in %.0f s: %d trials, %d completed; leaderboard in %s",
        seconds,
        len(rows),
        sum(r["status"] == "COMPLETED" for r in rows),
        run_dir.leaderboard_csv,
    )
    if best is None:
        raise TuningError(f"no trial completed; see {run_dir.leaderboard_csv}")
    log.info("best: trial %s, %s %.4f", best["trial"], space.objective, best[space.objective])
    card = None
    if req.export:
        from chestx.tuning.export import export_best

        card = export_best(
            run_dir,
            space,
            best,
            data=req.data,
            seed=req.seed,
            limit=req.limit,
            min_sensitivity=req.min_sensitivity,
            epochs_cap=req.epochs,
            command=req.command,
        )
        run_dir.finish_session(
            search_seconds=round(seconds, 1),
            trials=len(rows),
            export_seconds=round(time.perf_counter() - start - seconds, 1),
        )
    return {"role": role.kind, "seconds": seconds, "rows": rows, "best": best, "card": card}


def session(
    req: SearchRequest, space: SearchSpace, role, run_dir: RunDir, max_trials: int | None = None
) -> bool:
    """Search in this process, at most ``max_trials`` trials; True when the search is over."""
    from chestx.tuning import tuners
    from chestx.tuning.engine.hypermodel import ChestHyperModel
    from chestx.tuning.engine.inputs import SearchData
    from chestx.tuning.engine.tuner import SessionFull

    data = None
    if role.kind != "chief":
        data = SearchData(req.data, seed=req.seed, limit=req.limit)
        log.info("split by patient: %s", data.counts())
    hypermodel = ChestHyperModel(
        space, min_sensitivity=req.min_sensitivity, seed=req.seed, verbose=2 if req.verbose else 0
    )
    try:
        tuner = tuners.create(
            space,
            hypermodel,
            run_dir=run_dir,
            seed=req.seed,
            tuner_id=role.tuner_id,
            session_trials=max_trials,
        )
    except json.JSONDecodeError as exc:  # edited by hand, or emptied by a kill before this fix
        raise TuningError(
            f"cannot resume: a saved search state file under {run_dir.path} is not valid JSON"
            f" ({exc.msg} at line {exc.lineno}); start the search again in a new --out folder"
        ) from None
    try:
        tuner.search(data=data, epochs=space.budget.epochs, verbose=hypermodel.verbose)
    except SessionFull:
        return False
    except RuntimeError as exc:
        if "consecutive failures" not in str(exc):
            raise
        raise TuningError(
            f"stopped: {space.budget.max_failures} trials in a row failed; last "
            f"error: {str(exc).strip().splitlines()[-1]}"
        ) from None
    return True


_CHILD = "import chestx.tuning.search as s; raise SystemExit(s.child_main())"


def _sessions_in_children(req: SearchRequest) -> None:
    """Run sessions in fresh Python processes until the search is over."""
    n = 0
    while True:
        n += 1
        with tempfile.TemporaryDirectory(prefix="chestx-tune-") as tmp:
            result_path = Path(tmp) / "result.json"
            argv = [sys.executable, "-c", _CHILD, str(result_path)]
            proc = subprocess.run(argv, input=req.to_json(), text=True, check=False)
            try:
                result = json.loads(result_path.read_text())
            except (OSError, json.JSONDecodeError):
                result = {}
        if result.get("status") == "error":
            raise TuningError(result["message"])
        if proc.returncode != 0 or result.get("status") not in ("done", "more"):
            raise TuningError(
                f"search process {n} stopped with exit code {proc.returncode}"
                " (see its output above)"
            )
        if result["status"] == "done":
            return
        log.info("starting a fresh process for the next trials (memory stays flat)")


def child_main() -> int:
    """A child process: one session of the request read from stdin."""
    from chestx.errors import ChestxError
    from chestx.logs import configure_logging

    result_path = Path(sys.argv[1])
    fields = json.loads(sys.stdin.read())
    req = SearchRequest(**fields)
    configure_logging(bool(req.verbose))
    try:
        space = load_request_space(req)
        role = distribute.resolve_role(req.chief, req.worker)
        distribute.apply(role)
        done = session(
            req, space, role, RunDir(req.out), max_trials=space.budget.trials_per_process
        )
        result = {"status": "done" if done else "more"}
    except ChestxError as exc:
        result = {"status": "error", "message": str(exc)}
    except KeyboardInterrupt:
        return 130
    result_path.write_text(json.dumps(result))
    return 0


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
    names = backbone.possible() if backbone else (config.DEFAULT_BACKBONE,)
    from chestx.models.backbones import BACKBONES

    for name in names:
        try:
            BACKBONES[name](include_top=False, weights="imagenet", input_shape=(96, 96, 3))
        except Exception as exc:  # offline host, proxy, disk: say which and how to avoid it
            raise TuningError(
                f"{space.path}: space.weights: imagenet weights for {name} cannot be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); on an offline "
                "host use weights: none or a local weights file"
            ) from None
