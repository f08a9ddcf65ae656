"""``chestx tune --report RUN_DIR``: the leaderboard as a table, and a PNG of the search.

The PNG has the objective against the trial number (with the running best), then one panel per
searched key: the objective against that key's values, so a key that matters shows a trend and
one that does not shows a flat cloud. Works on a finished, running or interrupted search.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from chestx.tuning.engine import leaderboard
from chestx.tuning.engine.rundir import RunDir
from chestx.tuning.errors import RunDirError

log = logging.getLogger("chestx.tuning")


def report(path, *, show: int | None = None, png: bool = True) -> dict:
    run_dir = RunDir(path)
    if not run_dir.holds_search() or not run_dir.space_copy.is_file():
        raise RunDirError(f"{run_dir.path} holds no chestx search (no search.yaml)")
    space = run_dir.stored_search()
    rows = leaderboard.write(run_dir, space)  # fresh from the trial files
    info = leaderboard_info(run_dir)
    lines = [
        f"search {space.name}: {space.tuner} over {space.model}, {space.direction} "
        f"{space.objective}; {len(rows)} trials, "
        f"{sum(r['status'] == 'COMPLETED' for r in rows)} completed"
        + (f", {info['search_seconds']:.0f} s of search" if info.get("search_seconds") else "")
    ]
    lines.append(leaderboard.format_table(rows, space, limit=show))
    print("\n".join(lines), flush=True)
    out = None
    if png and rows:
        out = plot(rows, space, run_dir.report_png)
        print(f"plots: {out}", flush=True)
    return {"rows": rows, "png": out}


def leaderboard_info(run_dir: RunDir) -> dict:
    import json

    try:
        return json.loads(run_dir.leaderboard_json.read_text())
    except (OSError, ValueError):
        return {}


def plot(rows: list[dict], space, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    objective = space.objective
    done = [r for r in rows if r["rank"] is not None]
    keys = [
        k
        for k, p in space.params.items()
        if p.type != "fixed" and len({_key(r.get(k)) for r in done}) > 1
    ]
    n = 1 + len(keys)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    axes = axes.ravel()

    ax = axes[0]
    order = sorted(done, key=lambda r: _trial_number(r["trial"]))
    xs = [_trial_number(r["trial"]) for r in order]
    ys = [r[objective] for r in order]
    ax.plot(xs, ys, "o", color="tab:blue", label="trial")
    best, running = None, []
    for y in ys:
        better = best is None or (y > best if space.direction == "max" else y < best)
        best = y if better else best
        running.append(best)
    ax.step(xs, running, where="post", color="tab:orange", label="best so far")
    failed = [_trial_number(r["trial"]) for r in rows if r["rank"] is None]
    if failed and ys:
        ax.plot(failed, [min(ys)] * len(failed), "x", color="tab:red", label="failed")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"{space.name}: {objective} per trial")
    ax.legend(fontsize=8)

    for ax, key in zip(axes[1:], keys, strict=False):
        param = space.params[key]
        pts: list[tuple[Any, Any]] = [
            (r.get(key), r[objective]) for r in done if r.get(key) is not None
        ]
        numeric = param.type in ("int", "float") or (
            param.type == "choice" and not isinstance(param.values[0], str)
        )
        if numeric:
            ax.plot([float(x) for x, _ in pts], [y for _, y in pts], "o", alpha=0.8)
            if param.sampling != "linear" and all(float(x) > 0 for x, _ in pts):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        else:
            cats = sorted({str(x) for x, _ in pts})
            ax.plot([cats.index(str(x)) for x, _ in pts], [y for _, y in pts], "o", alpha=0.8)
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(key)
        ax.set_ylabel(objective)
    for ax in axes[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _key(value):
    return str(value)


def _trial_number(trial_id) -> int:
    try:
        return int(trial_id)
    except (TypeError, ValueError):
        return 0
