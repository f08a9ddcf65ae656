"""``chestx calibrate``: site calibration of a trained model on a hospital's own labelled X-rays.

Two things change, nothing else: one temperature ``T`` (Guo et al. 2017, "On Calibration of
Modern Neural Networks") that rescales the model's logit, ``p' = sigmoid(logit(p) / T)``, fitted
by maximum likelihood so that probabilities mean what they say on that site; and the decision
threshold, re-chosen by the card's rule (highest threshold keeping the requested sensitivity) on
the calibrated probabilities. ``--bias`` also fits an offset of the logit,
``p' = sigmoid(logit(p) / T + b)`` (Platt scaling): a site whose share of pneumonia or whose
images shift every score one way needs it, which one temperature cannot express. The weights are
untouched; ``T`` (and ``b``) live in the card and the ``Predictor`` applies them for every
runtime. The new directory's card records the calibration set, the rule and the metrics before
and after, next to a reliability diagram.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from pathlib import Path

from chestx import config, modeldir
from chestx.calibration import Calibration, fit_temperature
from chestx.errors import DataError
from chestx.versions import source_revision

log = logging.getLogger(__name__)

MIN_PER_CLASS = 20
RELIABILITY_PNG = "reliability.png"


def file_list_sha256(root: Path, paths: list[Path]) -> str:
    """SHA-256 of the sorted lines ``<path relative to root>  <SHA-256 of its bytes>``: names
    the exact calibration set without copying it."""
    lines = sorted(
        f"{p.relative_to(root).as_posix()}  {hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in paths
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _check_out(src: Path, out: Path) -> None:
    if out.resolve() == src.resolve():
        raise DataError("--out must be a new directory: calibration never changes its source")
    modeldir.check_new(out)


def calibrate(
    model: str | Path | None,
    data: str | Path,
    out: str | Path,
    *,
    min_sensitivity: float | None = None,
    internal_data: str | Path | None = None,
    bias: bool = False,
    batch_size: int = 64,
    command: str | None = None,
) -> dict:
    """Fit ``T`` and the threshold on the labelled folder ``data``; write model ``out``."""
    # the stage's own needs, imported when it runs
    from chestx.data import find_data
    from chestx.evaluate import score
    from chestx.metrics import binary_metrics, choose_threshold
    from chestx.predict import Predictor

    source = source_revision()  # first: the code as the run starts
    src = config.model_dir(model)
    out = Path(out)
    card = modeldir.load_card(src)
    _check_out(src, out)
    data = Path(data)
    found = find_data(data)
    if "all" not in found:
        raise DataError(f"{data}: give a NORMAL/ + PNEUMONIA/ folder of the site's X-rays")
    records = found["all"]
    counts = [sum(r.label == c for r in records) for c in (0, 1)]
    if min(counts) < MIN_PER_CLASS:
        raise DataError(
            f"{data} has {counts[0]} NORMAL and {counts[1]} PNEUMONIA X-rays; "
            f"calibration needs at least {MIN_PER_CLASS} of each"
        )
    rule_sens = float(
        min_sensitivity
        if min_sensitivity is not None
        else card.get("min_sensitivity", config.DEFAULT_MIN_SENSITIVITY)
    )

    raw = Predictor(src, temperature=1.0, bias=0.0)
    y, p_raw, skipped = score(raw, records, batch_size)
    old = Calibration.from_card(card)
    before = binary_metrics(y, old.apply(p_raw), float(card["threshold"]))
    new_cal = Calibration(*fit_temperature(y, p_raw, bias=bias))
    temperature = new_cal.temperature
    p_new = new_cal.apply(p_raw)
    threshold = choose_threshold(y, p_new, rule_sens)
    after = binary_metrics(y, p_new, threshold)
    log.info(
        "temperature %.3f, logit bias %.3f (were %.3f, %.3f); threshold %.3f (was %.3f); "
        "ECE %.3f -> %.3f",
        temperature,
        new_cal.bias,
        old.temperature,
        old.bias,
        threshold,
        card["threshold"],
        before["ece"],
        after["ece"],
    )
    log.info(
        "on these %d X-rays at the new threshold: sensitivity %.3f (95 %% CI %.3f to %.3f), "
        "specificity %.3f (95 %% CI %.3f to %.3f); the intervals say how far so few X-rays can "
        "vouch for the threshold",
        after["n"],
        after["sensitivity"],
        *after["sensitivity_ci"],
        after["specificity"],
        *after["specificity_ci"],
    )
    if after["ece"] > before["ece"]:
        log.warning(
            "ECE rose on %s (%.3f -> %.3f): the model's own calibration fitted these X-rays "
            "better%s",
            data.name,
            before["ece"],
            after["ece"],
            "" if bias else "; --bias also fits a logit offset, for scores shifted one way",
        )

    read = [
        r.path
        for r in records
        if str(r.path) not in skipped.failures and str(r.path) not in skipped.refused
    ]
    calib_set = {
        "name": data.name,
        "n": int(len(y)),
        "n_normal": int((y == 0).sum()),
        "n_pneumonia": int((y == 1).sum()),
        "skipped": len(skipped),
        "refused_by_gate": len(skipped.refused),
        "files_sha256": file_list_sha256(data, read),
        "files_sha256_of": "sorted lines '<relative path>  <sha256 of file>'",
    }
    rule = (
        f"highest threshold keeping sensitivity >= {rule_sens} on the calibration set "
        f"'{data.name}' (screening favours sensitivity)"
    )
    new = {
        **card,
        modeldir.STATUS: modeldir.COMPLETE,
        "temperature": temperature,
        "logit_bias": new_cal.bias,
        "threshold": threshold,
        "threshold_rule": rule,
        "min_sensitivity": rule_sens,
    }
    new["calibration"] = {
        "method": (
            "temperature and logit bias (Platt scaling), maximum likelihood"
            if bias
            else "temperature scaling (one scalar on the logit), maximum likelihood"
        ),
        "temperature": temperature,
        "logit_bias": new_cal.bias,
        "previous_temperature": old.temperature,
        "previous_logit_bias": old.bias,
        "previous_threshold": float(card["threshold"]),
        "rule": rule,
        "set": calib_set,
        "before": before,
        "after": after,
        "reliability_diagram": RELIABILITY_PNG,
        "source_model": card.get("version"),
        "command": command,
        "chestx_source": source,  # the commit it ran at (in a git checkout): with the command
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    metrics = dict(card.get("metrics", {}))
    metrics[f"calibration:{data.name}"] = {
        **after,
        "note": "the calibration set itself: T and the threshold were chosen on it, "
        "so these figures are flattered (used for selection, not a test)",
    }
    if internal_data is not None:
        metrics.update(_internal_metrics(raw, src, internal_data, new_cal, threshold, batch_size))
    new["metrics"] = metrics
    # two calibrations of one model on one day (another set, another rule) must not share a name
    fitted = json.dumps([temperature, new_cal.bias, threshold, calib_set["files_sha256"]])
    digest = hashlib.sha256(fitted.encode()).hexdigest()[:8]
    new["version"] = f"{card.get('version', 'model')}-cal{dt.date.today():%Y%m%d}-{digest}"

    with modeldir.new_model_dir(out) as staging:
        for f in src.iterdir():
            if f.is_file() and f.name != modeldir.CARD:
                shutil.copy2(f, staging / f.name)
        _reliability_png(y, old.apply(p_raw), p_new, staging / RELIABILITY_PNG, old, new_cal)
        modeldir.write_card(staging, new)
    log.info("wrote %s", out)
    return new


def _internal_metrics(
    raw, src: Path, data, cal: Calibration, threshold: float, batch_size: int
) -> dict:
    """The model's own validation and internal test split, re-scored under the calibration."""
    from chestx.evaluate import internal_scores
    from chestx.metrics import binary_metrics

    return {
        key: binary_metrics(y, cal.apply(p), threshold)
        for key, (y, p) in internal_scores(raw, data, src, batch_size).items()
    }


def _reliability_png(
    y, p_before, p_after, path: Path, before: Calibration, after: Calibration
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    from chestx.metrics import expected_calibration_error as ece

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls=":", c="grey", label="perfect")
    for p, cal, when in ((p_before, before, "before"), (p_after, after, "after")):
        label = f"{when} (T={cal.temperature:.2f}, b={cal.bias:+.2f}, ECE {ece(y, p):.3f})"
        frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
        ax.plot(mean, frac, marker="o", label=label)
    ax.set_xlabel("predicted P(pneumonia)")
    ax.set_ylabel("observed fraction pneumonia")
    ax.set_title("Reliability on the calibration set")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def calibrate_from_args(args) -> dict:
    command = getattr(args, "command", None)  # set by chestx.cli.main
    card = calibrate(
        args.model,
        args.data,
        args.out,
        min_sensitivity=args.min_sensitivity,
        internal_data=args.internal_data,
        bias=args.bias,
        batch_size=args.batch_size,
        command=command,
    )
    return card
