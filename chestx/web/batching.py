"""Micro-batching: concurrent requests in one worker share one model call.

Request threads decode their upload, then ``submit`` the pixels and wait; one batcher thread
collects up to ``max_batch`` images and calls the model once, as TF Serving's and TorchServe's
batchers do. It waits up to ``max_wait_ms`` for more images only while other requests are
known to be on their way (a request takes a ``reservation`` before decoding), so a lone request
is never delayed by the batching window.

    with batcher.reservation() as slot:       # announced: the batcher waits for it
        image = decode(upload)                # a bad upload leaves the block: slot given back
        probability = slot.predict(image, timeout=30)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher was shut down (worker exit or model reload) before this image ran."""


class Reservation:
    """One announced image (``MicroBatcher.reservation``): ``predict`` it once, or leave the
    ``with`` block without it and the batcher stops waiting for it."""

    def __init__(self, batcher: MicroBatcher):
        self._batcher = batcher
        self.used = False

    def predict(self, image: np.ndarray, *, timeout: float | None = None) -> float:
        """``MicroBatcher.predict`` of the reserved image."""
        if self.used:
            raise RuntimeError("a reservation predicts one image")
        self.used = True
        return self._batcher.predict(image, timeout=timeout, reserved=True)


class MicroBatcher:
    """Collect up to ``max_batch`` images or ``max_wait_ms``, then one ``infer`` call.

    ``infer`` maps float32/uint8 ``(N, S, S, 1)`` to ``(N,)`` probabilities. ``on_batch`` is
    called with ``(batch_size, seconds)`` after each model call (for metrics).
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        self.infer = infer
        self.max_batch = int(max_batch)
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: deque[tuple[np.ndarray, Future]] = deque()
        self._cond = threading.Condition()
        self._expected = 0  # requests that reserved a slot but have not submitted yet
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"chestx-{name}", daemon=True)
        self._thread.start()

    # -- request side ---------------------------------------------------------------------
    @contextlib.contextmanager
    def reservation(self) -> Iterator[Reservation]:
        """Announce an image before decoding it; the slot is consumed by ``predict`` or given
        back when the block ends without it (a bad upload, any error): it never leaks."""
        self.reserve()
        slot = Reservation(self)
        try:
            yield slot
        finally:
            if not slot.used:
                self.release()

    @property
    def pending(self) -> int:
        """Reserved images not submitted yet."""
        with self._cond:
            return self._expected

    def reserve(self) -> None:
        """Announce an image that is being decoded and will be submitted (or ``release``d)."""
        with self._cond:
            self._expected += 1

    def release(self) -> None:
        """The reserved image will not come (bad upload)."""
        with self._cond:
            self._expected = max(0, self._expected - 1)
            self._cond.notify_all()

    def submit(self, image: np.ndarray, *, reserved: bool = False) -> Future:
        future: Future = Future()
        with self._cond:
            if reserved:
                self._expected = max(0, self._expected - 1)
            if self._closed:
                future.set_exception(BatcherClosed("the model is shutting down"))
                return future
            self._queue.append((image, future))
            self._cond.notify_all()
        return future

    def predict(
        self, image: np.ndarray, *, timeout: float | None = None, reserved: bool = False
    ) -> float:
        """The image's probability; ``TimeoutError`` after ``timeout`` s (the image is then
        withdrawn if it has not reached the model yet), ``BatcherClosed`` on shut-down."""
        future = self.submit(image, reserved=reserved)
        try:
            return float(future.result(timeout))
        except TimeoutError:
            future.cancel()  # still queued: the batcher thread skips it
            raise

    # -- batcher thread -------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[np.ndarray, Future]]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return []
            batch = [self._queue.popleft()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                remaining = deadline - time.monotonic()
                if self._expected <= 0 or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                return  # closed and drained
            live = [(img, fut) for img, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            start = time.perf_counter()
            try:
                probs = np.asarray(self.infer(np.stack([img for img, _ in live]))).reshape(-1)
                if len(probs) != len(live):
                    raise RuntimeError(f"model returned {len(probs)} outputs for {len(live)}")
            except BaseException as exc:  # hand the failure to every waiting request
                log.exception("inference failed for a batch of %d", len(live))
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            elapsed = time.perf_counter() - start
            for (_, fut), p in zip(live, probs, strict=True):
                fut.set_result(float(p))
            if self.on_batch is not None:
                try:
                    self.on_batch(len(live), elapsed)
                except Exception:  # metrics must never break inference
                    log.exception("on_batch callback failed")

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish queued images, then stop the thread; later submits fail with BatcherClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
