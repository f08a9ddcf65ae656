"""The micro-batcher on its own: batches form under load, a lone request is not delayed.

No test here measures time. Batching windows are made far longer than any test (10 min) so
that a wrong wait shows up as a missed deadline or a wrong batch, never as "too slow"; every
``result`` has a deadline generous enough for a machine with both cores busy.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import pytest

from chestx.web.batching import BatcherClosed, MicroBatcher

LONG_WINDOW_MS = 600_000  # 10 minutes: never reached by a correct batcher in these tests
DEADLINE = 120  # seconds any single result may take on a very busy machine


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
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=LONG_WINDOW_MS)
    results = {}
    for _ in range(24):  # 24 requests announced (they are "decoding"), as the web app does
        batcher.reserve()

    def one(i):
        image = np.full((4, 4, 1), i, np.uint8)
        results[i] = batcher.predict(image, reserved=True, timeout=DEADLINE)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    # announced images are waited for, so every model call is full, however slow the threads
    assert model.sizes == [8, 8, 8]
    for i, p in results.items():  # every caller got its own image's answer
        assert p == pytest.approx(i / 255.0)


def test_a_lone_request_is_not_held_for_the_window():
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_batch=32, max_wait_ms=LONG_WINDOW_MS)
    # held for the window, it would miss this deadline by minutes
    assert batcher.predict(np.zeros((2, 2, 1), np.uint8), timeout=DEADLINE) == 0.0
    assert model.sizes == [1]
    batcher.close()


def test_waits_for_announced_images():
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=LONG_WINDOW_MS)
    batcher.reserve()
    batcher.reserve()
    first = batcher.submit(np.zeros((2, 2, 1)), reserved=True)
    with pytest.raises(FutureTimeout):  # the second image is announced: the first waits
        first.result(0.2)
    second = batcher.submit(np.ones((2, 2, 1)), reserved=True)
    first.result(DEADLINE), second.result(DEADLINE)
    assert model.sizes == [2]
    batcher.close()


def test_release_ends_the_wait():
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=LONG_WINDOW_MS)
    batcher.reserve()
    batcher.reserve()
    future = batcher.submit(np.zeros((2, 2, 1)), reserved=True)
    batcher.release()  # the second upload turned out to be junk
    assert future.result(DEADLINE) == 0.0  # without the release it would wait 10 minutes
    assert model.sizes == [1]
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
        batcher.predict(np.zeros((2, 2, 1)), timeout=DEADLINE)
    assert batcher.predict(np.zeros((2, 2, 1)), timeout=DEADLINE) == 0.0
    batcher.close()


def test_close_drains_then_refuses():
    batcher = MicroBatcher(SlowModel(0.05), max_batch=2, max_wait_ms=0)
    futures = [batcher.submit(np.zeros((2, 2, 1))) for _ in range(4)]
    batcher.close(timeout=DEADLINE)
    assert all(f.result(DEADLINE) == 0.0 for f in futures)
    assert not batcher.alive
    with pytest.raises(BatcherClosed):
        batcher.predict(np.zeros((2, 2, 1)), timeout=DEADLINE)


def test_bad_arguments():
    with pytest.raises(ValueError):
        MicroBatcher(SlowModel(), max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(SlowModel(), max_wait_ms=-1)


def test_a_reservation_is_given_back_whatever_fails():
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=LONG_WINDOW_MS)
    with pytest.raises(ValueError, match="bad upload"):
        with batcher.reservation():
            assert batcher.pending == 1
            raise ValueError("bad upload")
    assert batcher.pending == 0
    with batcher.reservation() as slot:
        assert slot.predict(np.zeros((2, 2, 1)), timeout=DEADLINE) == 0.0
        assert batcher.pending == 0  # consumed by the submit
        with pytest.raises(RuntimeError, match="one image"):
            slot.predict(np.zeros((2, 2, 1)))
    assert batcher.pending == 0 and model.sizes == [1]
    batcher.close()


def test_a_timed_out_image_is_withdrawn():
    release = threading.Event()
    calls = []

    def blocked(batch):
        calls.append(len(batch))
        release.wait(DEADLINE)
        return np.zeros(len(batch))

    batcher = MicroBatcher(blocked, max_batch=1, max_wait_ms=0)
    first = batcher.submit(np.zeros((2, 2, 1)))  # occupies the model until released
    with batcher.reservation() as slot:
        with pytest.raises(TimeoutError):
            slot.predict(np.ones((2, 2, 1)), timeout=0.01)
    release.set()
    assert first.result(DEADLINE) == 0.0
    batcher.close(timeout=DEADLINE)
    assert calls == [1]  # the withdrawn image never reached the model
