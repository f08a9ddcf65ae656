"""``chestx evaluate``: clinical metrics and plots of a model directory on labelled X-rays."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from chestx import strictjson
from chestx.data import DecodeLog, Record, dataset, find_data
from chestx.errors import DataError
from chestx.fileio import atomic_write_text
from chestx.metrics import binary_metrics
from chestx.modeldir import MANIFEST
from chestx.predict import Predictor
from chestx.scoring import collect

log = logging.getLogger(__name__)

INTERNAL = ("internal-train", "internal-val", "internal-test")


def records_for(data: str | Path, split: str | None, model_dir: Path) -> list[Record]:
    """The labelled images to score.

    A NORMAL/ + PNEUMONIA/ folder is scored whole. In a Kaggle root, ``split`` names a sub-folder
    (default ``test``); ``internal-val``/``internal-test`` re-score the model's own
    patient-grouped split from its manifest, with paths taken relative to ``data``.
    """
    data = Path(data)
    if split in INTERNAL:
        return _manifest_records(data, model_dir, split.removeprefix("internal-"))
    found = find_data(data)
    if "all" in found:
        if split:
            raise DataError(f"{data} is a NORMAL/ + PNEUMONIA/ folder; it has no split {split!r}")
        return found["all"]
    split = split or "test"
    if split not in found:
        have = ", ".join(list(found) + list(INTERNAL))
        raise DataError(f"{data} has no {split}/ split; choose one of: {have}")
    return found[split]


def _manifest_records(data: Path, model_dir: Path, split: str) -> list[Record]:
    manifest = model_dir / MANIFEST
    if not manifest.is_file():
        raise DataError(f"{model_dir} has no {MANIFEST} to take the internal split from")
    with manifest.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    records = [
        Record(data / r["path"], int(r["label"] == "PNEUMONIA"), r["patient"], split) for r in rows
    ]
    missing = [r.path for r in records if not r.path.is_file()]
    if not records or len(missing) == len(records):
        raise DataError(
            f"the manifest's {split} images are not under {data} "
            "(pass the --data folder the model was trained on)"
        )
    if missing:
        log.warning(
            "%d of %d manifest images are missing under %s", len(missing), len(records), data
        )
    return [r for r in records if r.path.is_file()]


def score(predictor: Predictor, records: list[Record], batch_size: int = 64):
    """(labels, probabilities, log) through the same pipeline and model call as serving: each
    file is read once, prepared by ``Predictor.prepare`` (so its input gate checks it) and
    classified in batches. ``log.failures``: unreadable files; ``log.refused``: what the gate
    refused (errors of the gate, left out like the service leaves them undiagnosed)."""
    skipped = DecodeLog()
    ds = dataset(
        records,
        image_size=predictor.image_size,
        intensity=predictor.intensity,
        batch_size=batch_size,
        skipped=skipped,
        prepare=predictor.prepare,
    )
    y, p = collect(ds, lambda x: predictor.predict_batch(x.numpy()))
    if not len(y):
        if records and len(skipped.refused) == len(records):
            path, verdict = next(iter(skipped.refused.items()))
            raise DataError(
                f"the input gate refused all {len(records)} images, e.g. {path}: {verdict.reason}"
            )
        raise DataError("none of the images could be read")
    return y.astype(int), p, skipped


def internal_scores(
    predictor: Predictor, data: str | Path, model_dir: Path, batch_size: int = 64
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, probabilities) of the model's own validation and internal test splits, from
    ``model_dir``'s manifest with images under ``data``: ``{"val": ..., "test": ...}``."""
    return {
        key: score(predictor, records_for(data, f"internal-{key}", model_dir), batch_size)[:2]
        for key in ("val", "test")
    }


def evaluate(
    model_dir,
    data,
    *,
    split=None,
    batch_size=64,
    json_path=None,
    plots=None,
    robustness: bool = False,
) -> dict:
    predictor = Predictor(model_dir)
    records = records_for(data, split, predictor.model_dir)
    y, p, skipped = score(predictor, records, batch_size)
    refused = [
        {"path": str(r.path), "label": r.label, "check": v.check, "reason": v.reason}
        for r in records
        if (v := skipped.refused.get(str(r.path))) is not None
    ]
    result = binary_metrics(y, p, predictor.threshold)
    result.update(
        {
            "model": predictor.info,
            "data": str(data),
            "split": split,
            "patients": len({r.patient for r in records}),
            "skipped": len(skipped),
            "skipped_files": skipped.failures,
            "gate": {
                **predictor.gate_info,
                "images": len(records),
                "refused": len(refused),
                "refused_files": refused,
            },
        }
    )
    if robustness:
        from chestx.robustness import robustness as graded

        scored = [r for r in records if str(r.path) not in skipped.refused]
        result["robustness"] = graded(predictor, scored, batch_size=batch_size)
    if json_path:
        # an undefined metric (one class: no sensitivity, no ROC AUC) is null, not a bare NaN
        atomic_write_text(json_path, strictjson.dumps(result, indent=2) + "\n")
    if plots:
        from chestx.plots import write_plots

        write_plots(y, p, predictor.threshold, Path(plots))
        if robustness:
            from chestx.robustness import plot

            plot(result["robustness"], Path(plots) / "robustness.png")
    return result


def summary(m: dict) -> str:
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    lines = [
        f"model {m['model']['name']} {m['model']['version']}  threshold {m['threshold']:.3f}",
        f"images {m['n']} ({m['n_normal']} normal, {m['n_pneumonia']} pneumonia), "
        f"skipped {m['skipped']}",
    ]
    gate = m.get("gate") or {}
    if gate.get("status") == "on":
        lines.append(
            f"input gate: refused {gate['refused']} of {gate['images']} labelled X-rays "
            f"({100 * gate['refused'] / max(gate['images'], 1):.2f} %), errors of the "
            "gate, left out of the metrics below"
        )
        lines += [f"  gate error: {f['path']}: {f['reason']}" for f in gate["refused_files"][:10]]
    else:
        lines.append(f"input gate: {gate.get('status', 'absent')}")
    for key in (
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "npv",
        "f1",
        "roc_auc",
        "pr_auc",
        "brier",
        "ece",
    ):
        ci = m.get(f"{key}_ci")
        interval = f"  (95 % CI {ci[0]:.4f} to {ci[1]:.4f})" if ci and ci[0] == ci[0] else ""
        lines.append(f"  {key:<12} {m[key]:.4f}{interval}")
    lines += [
        "  confusion matrix   pred NORMAL  pred PNEUMONIA",
        f"    true NORMAL      {tn:>11}  {fp:>14}",
        f"    true PNEUMONIA   {fn:>11}  {tp:>14}",
    ]
    return "\n".join(lines)


def evaluate_from_args(args) -> dict:
    result = evaluate(
        args.model,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        json_path=args.json,
        plots=args.plots,
        robustness=args.robustness,
    )
    print(summary(result))
    if args.robustness:
        from chestx.robustness import table

        print("\nrobustness (graded corruptions; metrics at the stored threshold)")
        print(table(result["robustness"]))
    return result
