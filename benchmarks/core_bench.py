"""Benchmark of the core package on this machine: training throughput (tf.data pipeline vs the
same images cached in memory, to show whether training is input-bound), single-image inference
latency through the Predictor's tf.function, and batched inference throughput.

    python benchmarks/core_bench.py [--data DIR] [--model DIR] [--images 640] [--epochs 2]

Prints a Markdown table. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import statistics
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/chest_xray/train"


def epoch_seconds(model_fn, ds, epochs: int) -> float:
    """Mean seconds per epoch after the first (which traces, decodes and fills the cache)."""
    import keras

    model = model_fn()
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(ds, epochs=epochs + 1, verbose=0, callbacks=[Timer()])
    return statistics.mean(times[1:])


def network_recipe(card: dict) -> tuple[str, dict, dict | None]:
    """Architecture, model options and augmentation of the network whose training is timed.

    A single model's card records them. An ensemble's card (the shipped model: one network
    behind a zoom-out view) records each member's ``chestx train`` command instead; the first
    member's is read back through chestx's own parser, so its recipe is timed exactly.
    """
    if card.get("arch") != "ensemble":
        recipe = card.get("training", {}).get("config", {})
        return (
            card.get("arch", "chestnet"),
            recipe.get("model_options") or {},
            recipe.get("augmentation"),
        )
    from chestx.cli import build_parser
    from chestx.train import config_from_args

    command = card["ensemble"]["members"][0]["training"]["command"]
    cfg = config_from_args(build_parser().parse_args(shlex.split(command)[1:]))
    augmentation = dataclasses.asdict(cfg.augmentation) if cfg.augmentation else None
    return cfg.arch, cfg.model_options, augmentation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", default=None, help="model directory (default: shipped)")
    parser.add_argument("--images", type=int, default=640, help="training images to time on")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after a warm one)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from chestx.data import array_dataset, augmenter, dataset, make_splits
    from chestx.models import build_model, compile_model
    from chestx.predict import Predictor

    predictor = Predictor(args.model)
    size, intensity = predictor.image_size, predictor.intensity
    arch, options, augmentation = network_recipe(predictor.card)

    splits, _ = make_splits(args.data, seed=0, limit=int(args.images / 0.7) + 1)
    records = splits["train"][: args.images]
    aug = augmenter(**augmentation, seed=0) if augmentation else None

    def fresh():
        keras.utils.set_random_seed(0)
        return compile_model(build_model(arch, size, **options))

    pipeline = dataset(
        records,
        image_size=size,
        intensity=intensity,
        batch_size=args.batch_size,
        training=True,
        augment=aug,
    )
    t_pipeline = epoch_seconds(fresh, pipeline, args.epochs)

    x = np.stack(
        [
            img
            for img, _ in dataset(records, image_size=size, intensity=intensity, batch_size=1)
            .unbatch()
            .as_numpy_iterator()
        ]
    )
    y = np.array([r.label for r in records], np.float32)[: len(x)]
    memory = array_dataset(
        x.astype(np.uint8), y, batch_size=args.batch_size, training=True, augment=aug
    )
    t_memory = epoch_seconds(fresh, memory, args.epochs)
    memory_noaug = array_dataset(x.astype(np.uint8), y, batch_size=args.batch_size, training=True)
    t_noaug = epoch_seconds(fresh, memory_noaug, args.epochs)

    one = x[:1].astype(np.float32)
    predictor.predict_batch(one)
    lat = []
    for _ in range(50):
        t = time.perf_counter()
        predictor.predict_batch(one)
        lat.append((time.perf_counter() - t) * 1000)
    batch = np.repeat(x[:1], 32, axis=0).astype(np.float32)
    predictor.predict_batch(batch)
    t = time.perf_counter()
    reps = 8
    for _ in range(reps):
        predictor.predict_batch(batch)
    batched = reps * len(batch) / (time.perf_counter() - t)

    n = len(records)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"TensorFlow {tf.__version__}, model {predictor.name} {predictor.version} "
        f"({size}x{size}, {arch})"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| training, tf.data pipeline (decode+cache+augment), s/epoch of {n} images | "
        f"{t_pipeline:.1f} ({n / t_pipeline:.0f} images/s) |"
    )
    print(
        f"| training, same images in memory + augment, s/epoch | "
        f"{t_memory:.1f} ({n / t_memory:.0f} images/s) |"
    )
    print(
        f"| training, in memory, no augmentation, s/epoch | "
        f"{t_noaug:.1f} ({n / t_noaug:.0f} images/s) |"
    )
    print(
        f"| inference, 1 image (tf.function), p50 / p95 ms | "
        f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 95):.1f} |"
    )
    print(f"| inference, batches of 32, images/s | {batched:.0f} |")


if __name__ == "__main__":
    main()
