"""The chance that a test set like --data meets the issue's targets, threshold by threshold.

    python benchmarks/targets.py --data ../shared/data/external-dev [--model M]
        [--sensitivity 0.95] [--specificity 0.87] [--n-pneumonia 193] [--n-normal 118]

Scores --data with the model's own Predictor (calibrated, gated) and, for the stored threshold
and the thresholds the card's rule gives at 93 to 99 % sensitivity, prints --data's own
sensitivity and specificity and how often a new sample of the held-out set's size, drawn like
--data (stratified bootstrap, 2000 resamples), meets each target and both. The threshold was
chosen on external-dev, so these chances are optimistic there: they say how much of a pass the
sample size alone leaves to luck, not how the model does on another collection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="NORMAL/ + PNEUMONIA/ folder")
    parser.add_argument("--model", default=None, help="model directory (default: the shipped)")
    parser.add_argument("--sensitivity", type=float, default=0.95, help="target (0.95)")
    parser.add_argument("--specificity", type=float, default=0.87, help="target (0.87)")
    parser.add_argument("--n-pneumonia", type=int, default=193, help="test set size (193)")
    parser.add_argument("--n-normal", type=int, default=118, help="test set size (118)")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()

    from chestx.config import DEFAULT_MODEL_DIR
    from chestx.data import find_data
    from chestx.evaluate import score
    from chestx.metrics import choose_threshold, target_chance
    from chestx.predict import Predictor

    predictor = Predictor(args.model or DEFAULT_MODEL_DIR)
    y, p, _ = score(predictor, find_data(args.data)["all"])
    rows = [("stored", predictor.threshold)]
    rows += [(f"rule {s}", choose_threshold(y, p, s / 100)) for s in range(93, 100)]
    print(
        f"{predictor.card.get('name')} {predictor.card.get('version')} on {args.data} "
        f"({int((y == 0).sum())} normal / {int(y.sum())} pneumonia); targets sensitivity >= "
        f"{args.sensitivity}, specificity >= {args.specificity} on {args.n_pneumonia} + "
        f"{args.n_normal} X-rays, {args.resamples} stratified resamples"
    )
    print("| threshold | from | sensitivity | specificity | P(sens ok) | P(spec ok) | P(both) |")
    print("|---|---|---|---|---|---|---|")
    for source, threshold in rows:
        c = target_chance(
            y,
            p,
            threshold,
            min_sensitivity=args.sensitivity,
            min_specificity=args.specificity,
            n_pneumonia=args.n_pneumonia,
            n_normal=args.n_normal,
            resamples=args.resamples,
        )
        print(
            f"| {threshold:.3f} | {source} | {c['sensitivity']:.3f} | {c['specificity']:.3f} | "
            f"{c['p_sensitivity']:.2f} | {c['p_specificity']:.2f} | {c['p_both']:.2f} |"
        )


if __name__ == "__main__":
    main()
