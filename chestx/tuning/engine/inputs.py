"""The search's data: ``chestx train``'s patient-grouped split, decoded once and kept in memory.

Every trial of a search trains on the same split. Decoding thousands of full-size X-rays
(OpenCV + intensity normalisation) costs far more than a short trial, so the decoded uint8
images are kept per (image_size, intensity), at most ``max_cached`` such sets at a time, and
each trial feeds them through ``chestx.data.array_dataset``: the same batching, shuffling and
augmentation as ``chestx.data.dataset``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from chestx.data import DecodeLog, array_dataset, dataset, make_splits, split_counts
from chestx.errors import DataError
from chestx.scoring import collect

log = logging.getLogger(__name__)


class SearchData:
    """The train/val split of ``root`` (by patient, ``seed``, at most ``limit`` images)."""

    def __init__(
        self, root: str | Path, *, seed: int = 42, limit: int | None = None, max_cached: int = 2
    ):
        if max_cached < 1:
            raise ValueError("max_cached must be at least 1")
        self.root = Path(root)
        self.seed = seed
        self.limit = limit
        self.max_cached = max_cached
        self.splits, self.external = make_splits(root, seed=seed, limit=limit)
        for name in ("train", "val"):
            labels = {r.label for r in self.splits[name]}
            if len(labels) < 2:
                raise DataError(
                    f"{root}: the {name} split has {len(self.splits[name])} images and not both "
                    "classes; a search needs NORMAL and PNEUMONIA in train and validation "
                    "(use more data or a larger --limit)"
                )
        self.skipped = DecodeLog()
        self._cache: OrderedDict = OrderedDict()

    def counts(self) -> dict:
        return split_counts(self.splits)

    def arrays(self, image_size: int, intensity: str):
        """((x_train, y_train), (x_val, y_val)) as uint8 images and float labels."""
        key = (image_size, intensity)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        start = time.perf_counter()
        out = []
        for split in ("train", "val"):
            ds = dataset(
                self.splits[split],
                image_size=image_size,
                intensity=intensity,
                batch_size=128,
                training=False,
                skipped=self.skipped,
            )
            y, x = collect(ds, lambda x: x.numpy().astype(np.uint8))
            if not len(x):
                raise DataError(f"{self.root}: no readable image in the {split} split")
            out.append((x, y))
        self._cache[key] = tuple(out)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        log.info(
            "decoded %d train + %d validation images at %d px (%s) in %.0f s",
            len(out[0][0]),
            len(out[1][0]),
            image_size,
            intensity,
            time.perf_counter() - start,
        )
        return self._cache[key]

    def datasets(
        self, *, image_size: int, intensity: str, batch_size: int, augment=None, seed: int = 42
    ):
        """(train, val) tf.data datasets and the training labels (for class weights)."""
        (x_train, y_train), (x_val, y_val) = self.arrays(image_size, intensity)
        train = array_dataset(
            x_train, y_train, batch_size=batch_size, training=True, augment=augment, seed=seed
        )
        val = array_dataset(x_val, y_val, batch_size=max(batch_size, 64))
        return train, val, y_train
