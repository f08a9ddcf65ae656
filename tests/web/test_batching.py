"""The micro-batcher on its own: batches form under load, a lone request is not delayed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from chestx.web.batching import BatcherClosed, MicroBatcher


class SlowModel:
    def __init__(self, delay: float = 0.02):
        self.delay = delay
        self.sizes: list[int] = []

    def __call__(self, batch):
        self.sizes.append(len(batch))
        time.sleep(self.delay)
        return batch.reshape(len(batch), -1).mean(axis=1) / 255.0


def test_concurrent_images_share_model_calls():
    model = SlowModel()
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=20)
    results = {}

    def one(i):
        batcher.reserve()
        image = np.full((4, 4, 1), i, np.uint8)
        results[i] = batcher.predict(image, reserved=True, timeout=10)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert sum(model.sizes) == 24
    assert max(model.sizes) <= 8 and len(model.sizes) < 24
    for i, p in results.items():  # every caller got its own image's answer
        assert p == pytest.approx(i / 255.0)


def test_a_lone_request_is_not_held_for_the_window():
    batcher = MicroBatcher(SlowModel(0.0), max_batch=32, max_wait_ms=500)
    start = time.perf_counter()
    batcher.predict(np.zeros((2, 2, 1), np.uint8), timeout=5)
    assert time.perf_counter() - start < 0.25
    batcher.close()


def test_waits_for_announced_images():
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=300)
    batcher.reserve()
    batcher.reserve()
    first = batcher.submit(np.zeros((2, 2, 1)), reserved=True)
    time.sleep(0.05)
    second = batcher.submit(np.ones((2, 2, 1)), reserved=True)
    first.result(5), second.result(5)
    assert model.sizes == [2]
    batcher.close()


def test_release_ends_the_wait():
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=5000)
    batcher.reserve()
    batcher.reserve()
    future = batcher.submit(np.zeros((2, 2, 1)), reserved=True)
    start = time.perf_counter()
    batcher.release()  # the second upload turned out to be junk
    future.result(5)
    assert time.perf_counter() - start < 1.0
    batcher.close()


def test_model_failure_reaches_every_caller_and_the_batcher_survives():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return np.zeros(len(batch))

    batcher = MicroBatcher(flaky, max_batch=4, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.predict(np.zeros((2, 2, 1)), timeout=5)
    assert batcher.predict(np.zeros((2, 2, 1)), timeout=5) == 0.0
    batcher.close()


def test_close_drains_then_refuses():
    batcher = MicroBatcher(SlowModel(0.05), max_batch=2, max_wait_ms=0)
    futures = [batcher.submit(np.zeros((2, 2, 1))) for _ in range(4)]
    batcher.close()
    assert all(f.result(5) == 0.0 for f in futures)
    assert not batcher.alive
    with pytest.raises(BatcherClosed):
        batcher.predict(np.zeros((2, 2, 1)), timeout=1)


def test_bad_arguments():
    with pytest.raises(ValueError):
        MicroBatcher(SlowModel(), max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(SlowModel(), max_wait_ms=-1)
