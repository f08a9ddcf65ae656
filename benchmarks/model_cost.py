"""Inference cost of model directories side by side, interleaved so that a busy machine slows
them alike: one-image latency and batched throughput of ``Predictor.predict_batch``.

    python benchmarks/model_cost.py MODEL_DIR [MODEL_DIR ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from chestx.predict import Predictor

    predictors = [Predictor(d) for d in sys.argv[1:] or [None]]
    rng = np.random.default_rng(0)
    single, batched = {}, {}
    for p in predictors:
        x1 = rng.integers(0, 256, (1, p.image_size, p.image_size, 1)).astype(np.uint8)
        single[p], batched[p] = x1, np.repeat(x1, 32, axis=0)
        p.predict_batch(x1), p.predict_batch(batched[p])  # trace
    latency = {p: [] for p in predictors}
    rate = {p: [] for p in predictors}
    for _ in range(5):
        for p in predictors:
            t = time.perf_counter()
            for _ in range(20):
                p.predict_batch(single[p])
            latency[p].append((time.perf_counter() - t) / 20 * 1000)
            t = time.perf_counter()
            for _ in range(3):
                p.predict_batch(batched[p])
            rate[p].append(96 / (time.perf_counter() - t))
    print("| model | one image (best of 5 x 20) | batched, 32 a batch (best of 5) |")
    print("|---|---|---|")
    for p in predictors:
        print(
            f"| {p.model_dir.name} {p.version} | {min(latency[p]):.1f} ms | "
            f"{max(rate[p]):.0f} img/s |"
        )


if __name__ == "__main__":
    main()
