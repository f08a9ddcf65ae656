"""Compare trained model directories on X-rays from another collection (external-dev).

    python benchmarks/recipes.py --data ../shared/data/external-dev MODEL_DIR [MODEL_DIR ...]

Prints one Markdown row per model: internal validation ROC AUC (from its card), ROC AUC,
specificity at 95 % sensitivity and ECE on --data (through the model's own Predictor, so a
calibrated model is scored calibrated), sensitivity/specificity at the stored threshold, and
training minutes. Whatever is chosen with this table is flattered by --data: report its figures
as "external-dev (used for selection)", never as test results.
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
    args = parser.parse_args()

    from chestx.data import find_data
    from chestx.evaluate import score
    from chestx.metrics import binary_metrics, choose_threshold
    from chestx.predict import Predictor

    records = find_data(args.data)["all"]
    print(
        "| model | val AUC | dev AUC | dev spec @ 95 % sens | dev ECE | dev sens / spec at "
        "stored threshold | train min |"
    )
    print("|---|---|---|---|---|---|---|")
    for model in args.models:
        predictor = Predictor(model)
        y, p, _ = score(predictor, records)
        at95 = binary_metrics(y, p, choose_threshold(y, p, 0.95))
        stored = binary_metrics(y, p, predictor.threshold)
        card = predictor.card
        val = card.get("metrics", {}).get("val", {}).get("roc_auc", float("nan"))
        minutes = (card.get("training", {}).get("seconds") or 0) / 60
        print(
            f"| {Path(model).name} | {val:.4f} | {stored['roc_auc']:.4f} | "
            f"{at95['specificity']:.3f} | {stored['ece']:.3f} | "
            f"{stored['sensitivity']:.3f} / {stored['specificity']:.3f} | {minutes:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
