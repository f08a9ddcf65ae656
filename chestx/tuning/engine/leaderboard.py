"""The leaderboard: one row per trial, read straight from the Keras Tuner project on disk.

Reading ``trial_*/trial.json`` (plus chestx's ``chestx.json`` beside it) rather than a live
oracle means the same code serves a local search, the chief of a distributed one, and
``chestx tune --report`` on a finished or interrupted RUN_DIR, without TensorFlow.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from pathlib import Path

from chestx.fileio import atomic_write_text
from chestx.tuning.engine.rundir import RunDir
from chestx.tuning.engine.space import OBJECTIVES, SearchSpace

SIDECAR = "chestx.json"  # written by the worker that ran the trial
METRICS = tuple(OBJECTIVES) + ("val_threshold",)


def _metric(trial: dict, name: str):
    history = trial.get("metrics", {}).get("metrics", {}).get(name)
    if not history or not history.get("observations"):
        return None
    values = history["observations"][-1]["value"]
    values = values if isinstance(values, list) else [values]
    return float(sum(values) / len(values)) if values else None


def read_sidecar(trial_dir: Path) -> dict:
    try:
        return json.loads((trial_dir / SIDECAR).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def last_line(message: str | None) -> str:
    """The last non-empty line of a trial's message, at most 300 characters: a traceback's
    last line is the exception itself."""
    if not message:
        return ""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def collect(run_dir: RunDir, space: SearchSpace) -> list[dict]:
    """Every trial of the search as a flat row, best first (unfinished and failed last)."""
    rows = []
    for path in sorted(run_dir.project.glob("trial_*/trial.json")):
        try:
            trial = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being written right now
        values = trial.get("hyperparameters", {}).get("values", {})
        side = read_sidecar(path.parent)
        epochs = side.get("epochs", _metric(trial, "epochs"))
        row = {"rank": None, "trial": trial.get("trial_id"), "status": trial.get("status")}
        row.update({m: _metric(trial, m) for m in METRICS})
        row.update(
            {
                "epochs": int(epochs) if epochs is not None else None,
                "seconds": side.get("seconds"),
                "worker": side.get("tuner_id"),
            }
        )
        row.update({name: values.get(name) for name in space.params})
        if "tuner/epochs" in values:  # hyperband's budget for this trial
            row["budget_epochs"] = values["tuner/epochs"]
        row["message"] = last_line(trial.get("message"))
        rows.append(row)
    return rank(rows, space.objective, space.direction)


def rank(rows: list[dict], objective: str, direction: str) -> list[dict]:
    def good(r):
        v = r.get(objective)
        return r["status"] == "COMPLETED" and v is not None and math.isfinite(v)

    done = sorted(
        (r for r in rows if good(r)), key=lambda r: r[objective], reverse=direction == "max"
    )
    rest = sorted((r for r in rows if not good(r)), key=lambda r: str(r["trial"]))
    for i, r in enumerate(done, 1):
        r["rank"] = i
    for r in rest:
        r["rank"] = None
    return done + rest


def columns(rows: list[dict], space: SearchSpace) -> list[str]:
    objective = space.objective
    cols = ["rank", "trial", "status", objective]
    cols += [m for m in METRICS if m != objective]
    cols += ["epochs", "seconds", "worker"]
    if any("budget_epochs" in r for r in rows):
        cols.append("budget_epochs")
    cols += list(space.params)
    return [*cols, "message"]


def write(
    run_dir: RunDir, space: SearchSpace, *, search_seconds: float | None = None
) -> list[dict]:
    """Write ``leaderboard.csv`` and ``leaderboard.json`` (atomically); return the rows."""
    rows = collect(run_dir, space)
    cols = columns(rows, space)
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(r.get(k)) for k in cols})
    atomic_write_text(run_dir.leaderboard_csv, out.getvalue())
    doc = {
        "search": space.name,
        "space_file": run_dir.space_copy.name,
        "model": space.model,
        "tuner": space.tuner,
        "objective": {"name": space.objective, "direction": space.direction},
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trials": len(rows),
        "completed": sum(r["status"] == "COMPLETED" for r in rows),
        "best": rows[0]["trial"] if rows and rows[0]["rank"] == 1 else None,
        "search_seconds": search_seconds,
        "columns": cols,
        "rows": rows,
    }
    if search_seconds is None and run_dir.leaderboard_json.is_file():
        try:
            doc["search_seconds"] = json.loads(run_dir.leaderboard_json.read_text()).get(
                "search_seconds"
            )
        except (OSError, json.JSONDecodeError):
            pass
    atomic_write_text(run_dir.leaderboard_json, json.dumps(doc, indent=2, default=str) + "\n")
    return rows


def best_row(rows: list[dict]) -> dict | None:
    return rows[0] if rows and rows[0]["rank"] == 1 else None


def _cell(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def format_table(rows: list[dict], space: SearchSpace, *, limit: int | None = None) -> str:
    """A plain-text table: the ranking columns, then every key of the space."""
    objective = space.objective
    cols = [
        "rank",
        "trial",
        "status",
        objective,
        "val_sensitivity",
        "val_specificity",
        "epochs",
        "seconds",
    ]
    if any(r.get("worker") not in (None, "tuner0") for r in rows):
        cols.append("worker")
    cols += [p for p in space.params if space.params[p].type != "fixed"]
    short = {
        objective: objective.removeprefix("val_"),
        "val_sensitivity": "sens",
        "val_specificity": "spec",
        "seconds": "s",
    }
    shown = rows[:limit] if limit else rows
    cells = [[_short(r.get(c)) for c in cols] for r in shown]
    heads = [short.get(c, c) for c in cols]
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h)
        for i, h in enumerate(heads)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _short(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value and (abs(value) < 1e-2 or abs(value) >= 1e4):
            return f"{value:.2g}"
        return f"{value:.4g}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)
