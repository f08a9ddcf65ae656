"""Compare trained model directories on X-rays from another collection (external-dev).

    python benchmarks/recipes.py --data ../shared/data/external-dev MODEL_DIR [MODEL_DIR ...]

Prints one Markdown row per model: internal validation ROC AUC (from its card), ROC AUC,
specificity at 95 % sensitivity and ECE on --data (through the model's own Predictor, so a
calibrated model is scored calibrated), sensitivity/specificity at the stored threshold, and
training minutes. Whatever is chosen with this table is flattered by --data: report its figures
as "external-dev (used for selection)", never as test results.

    python benchmarks/recipes.py --data ../shared/data/external-dev --bootstrap 1000 REF MODEL ...

adds a second table: each model against the first (REF), scored on the same X-rays, with the
ROC AUC and specificity at 95 / 96 / 97 / 98 % sensitivity and the 95 % interval of each
difference from a paired bootstrap (1000 resamples of the X-rays). An interval that holds 0 is a
difference these X-rays cannot see.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", required=True, help="NORMAL/ + PNEUMONIA/ folder")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="also compare every model with the first, N paired bootstrap resamples",
    )
    args = parser.parse_args()

    from chestx.data import find_data
    from chestx.evaluate import score
    from chestx.metrics import binary_metrics, specificity_at
    from chestx.predict import Predictor

    records = find_data(args.data)["all"]
    print(
        "| model | val AUC | dev AUC | dev spec @ 95 % sens | dev ECE | dev sens / spec at "
        "stored threshold | train min |"
    )
    print("|---|---|---|---|---|---|---|")
    scored = []
    for model in args.models:
        predictor = Predictor(model)
        y, p, _ = score(predictor, records)
        scored.append((model, y, p))
        spec95 = specificity_at(y, p, 0.95)
        stored = binary_metrics(y, p, predictor.threshold)
        card = predictor.card
        val = card.get("metrics", {}).get("val", {}).get("roc_auc", float("nan"))
        minutes = (card.get("training", {}).get("seconds") or 0) / 60
        print(
            f"| {Path(model).name} | {val:.4f} | {stored['roc_auc']:.4f} | "
            f"{spec95:.3f} | {stored['ece']:.3f} | "
            f"{stored['sensitivity']:.3f} / {stored['specificity']:.3f} | {minutes:.0f} |",
            flush=True,
        )
    if args.bootstrap:
        compare(scored, args.bootstrap)


SENSITIVITIES = (0.95, 0.96, 0.97, 0.98)


def compare(scored, resamples: int) -> None:
    """The second table: every model against the first, on the same X-rays."""
    from sklearn.metrics import roc_auc_score

    from chestx.metrics import paired_bootstrap, specificity_at

    ref_name, y, ref = scored[0]
    for _, other_y, _ in scored[1:]:
        if len(other_y) != len(y) or (other_y != y).any():
            sys.exit("the models scored different X-rays (an input gate refused some?)")
    statistics = {"AUC": roc_auc_score}
    for s in SENSITIVITIES:
        statistics[f"spec @ {s * 100:.0f} %"] = lambda y, p, s=s: specificity_at(y, p, s)
    print(f"\nAgainst {Path(ref_name).name}, {resamples} paired bootstrap resamples of the X-rays")
    print("| model | " + " | ".join(statistics) + " |")
    print("|---" * (len(statistics) + 1) + "|")
    for i, (model, _, p) in enumerate(scored):
        cells = []
        for statistic in statistics.values():
            value = statistic(y, p)
            if i == 0:
                cells.append(f"{value:.3f}")
                continue
            diff, lo, hi = paired_bootstrap(y, p, ref, statistic, resamples=resamples)
            cells.append(f"{value:.3f} ({diff:+.3f}, {lo:+.3f} to {hi:+.3f})")
        print(f"| {Path(model).name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
