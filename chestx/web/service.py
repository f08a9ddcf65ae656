"""The model as the web app holds it: one ``Predictor``, its micro-batcher and its Grad-CAM.

One ``ModelService`` per app, in ``app.extensions["chestx"]``. It is loaded once per worker
after Gunicorn forks (``gunicorn.conf.py`` calls ``load`` in ``post_worker_init``); until then,
and if loading failed, the service is not ready and ``/readyz`` answers 503 with the reason.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chestx.web.batching import BatcherClosed, MicroBatcher
from chestx.web.errors import ServiceError
from chestx.web.settings import Settings

if TYPE_CHECKING:  # both import TensorFlow: the service loads them when the model loads
    from chestx.explain import GradCAM
    from chestx.predict import Prediction, Predictor

log = logging.getLogger(__name__)

IDLE, LOADING, READY, FAILED = "idle", "loading", "ready", "failed"


@dataclass(frozen=True)
class Served:
    """One upload through the service: the prediction, the model input it was made from (for
    display) and, when asked for, the Grad-CAM explanation (``ModelService.explain``)."""

    prediction: Prediction
    image: np.ndarray
    heatmap: dict | None = None


class ModelService:
    def __init__(self, settings: Settings, metrics=None):
        self.settings = settings
        self.metrics = metrics
        self.state = IDLE
        self.error: str | None = None
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.loaded_at: float | None = None
        self.load_seconds: float | None = None
        self._gradcam: GradCAM | None = None
        self._gradcam_lock = threading.Lock()  # builds the one GradCAM
        self._lock = threading.Lock()  # held while loading
        self._loader_lock = threading.Lock()  # starts the one background loader
        self._loader: threading.Thread | None = None
        self._warmer: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------------
    def load(self, model_dir: str | Path | None = None) -> bool:
        """Load the model (blocking); True when ready. Errors are kept, logged, not raised."""
        with self._lock:
            if self.state == READY:
                return True
            self.state, self.error = LOADING, None
            start = time.perf_counter()
            try:
                from chestx.predict import Predictor

                s = self.settings
                if not s.gate:
                    log.warning(
                        "CHESTX_GATE=off: the input gate is switched off, every upload "
                        "gets a diagnosis whatever it shows (research use only)"
                    )
                predictor = Predictor(
                    model_dir or s.model_dir,
                    runtime=s.runtime,
                    threshold=s.threshold,
                    max_pixels=s.max_pixels,
                    gate=s.gate,
                )
                predictor.warm_up()
                batcher = MicroBatcher(
                    predictor.predict_batch,
                    max_batch=s.batch_size,
                    max_wait_ms=s.batch_timeout_ms,
                    on_batch=self.metrics.observe_batch if self.metrics else None,
                )
            except Exception as exc:  # ModelError, or anything a broken file throws
                self.state, self.error = FAILED, f"{type(exc).__name__}: {exc}"
                log.error("model not loaded: %s", self.error)
                return False
            self.predictor, self.batcher = predictor, batcher
            self.load_seconds = time.perf_counter() - start
            self.loaded_at = time.time()
            self.state = READY
            if self.metrics:
                self.metrics.set_model(predictor.name, predictor.version, predictor.runtime)
            log.info(
                "model %s %s ready (%s runtime, threshold %.3f, input gate %s) in %.1f s",
                predictor.name,
                predictor.version,
                predictor.runtime,
                predictor.threshold,
                predictor.gate_info["status"],
                self.load_seconds,
            )
        if self.can_explain:  # trace Grad-CAM off the request path (the first trace is slow)
            # not a daemon: a process that exits meanwhile (a script, Ctrl-C, a server other
            # than Gunicorn, whose worker_exit calls close) waits for it rather than abort
            self._warmer = threading.Thread(
                target=self._warm_explainer, name="chestx-gradcam-warm-up"
            )
            self._warmer.start()
        return True

    def _warm_explainer(self) -> None:
        try:
            size = self.require_ready().image_size
            self.explain(np.zeros((size, size, 1), np.uint8))
        except Exception:  # an architecture Grad-CAM cannot handle: say so once, keep serving
            log.exception("Grad-CAM warm-up failed; heatmaps may be unavailable")

    def load_in_background(self) -> None:
        """Start loading without blocking the request that noticed the model is missing
        (a WSGI server other than Gunicorn with chestx's config, which loads it up front)."""
        with self._loader_lock:
            if self.state != IDLE or self._loader is not None:
                return
            # not a daemon either: a daemon killed inside TensorFlow as the process exits
            # (Ctrl-C under such a server, a script) crashes it (SIGSEGV) or hangs it
            self._loader = threading.Thread(target=self.load, name="chestx-model-loader")
        self._loader.start()

    def close(self) -> None:
        """Finish queued work; wait for the Grad-CAM warm-up (a thread killed inside
        TensorFlow at interpreter exit aborts the process: SIGABRT). Safe to call twice."""
        if self._warmer is not None:
            self._warmer.join(60)
        if self.batcher is not None:
            self.batcher.close()

    @property
    def ready(self) -> bool:
        return self.state == READY

    def require_ready(self) -> Predictor:
        if self.state == READY and self.predictor is not None:
            return self.predictor
        if self.state == FAILED:
            raise ServiceError(
                503, f"the model could not be loaded: {self.error}", headers={"Retry-After": "30"}
            )
        raise ServiceError(
            503,
            "the model is still loading; try again in a few seconds",
            headers={"Retry-After": "5"},
        )

    # -- inference ------------------------------------------------------------------------
    def predict(self, data: bytes, *, explain: bool = False) -> Served:
        """Upload bytes -> ``Served``, through the micro-batcher. A bad file raises
        ``ImageError`` (a 4xx); a full or closing batcher a 503. The batcher slot is taken
        before decoding (so concurrent uploads meet in one model call) and held by a context
        manager: whatever fails, it is consumed or given back."""
        predictor = self.require_ready()
        assert self.batcher is not None  # set together with the predictor
        with self.batcher.reservation() as slot:
            image = predictor.prepare(data)
            try:
                p = slot.predict(image, timeout=self.settings.inference_timeout)
            except TimeoutError:
                raise ServiceError(
                    503, "the model is overloaded; try again", headers={"Retry-After": "2"}
                ) from None
            except BatcherClosed:
                raise ServiceError(
                    503, "the worker is shutting down; try again", headers={"Retry-After": "1"}
                ) from None
        prediction = predictor.result(p)
        if self.metrics:
            self.metrics.predictions.labels(prediction.label).inc()
        return Served(prediction, image, self.explain(image) if explain else None)

    def model_info(self) -> dict:
        """The Predictor's ``info``; the gate is reported apart (``gate_info``)."""
        info = dict(self.require_ready().info)
        info.pop("gate")
        return info

    @property
    def threshold_source(self) -> str:
        return "CHESTX_THRESHOLD" if self.settings.threshold is not None else "model card"

    def gate_info(self) -> dict:
        """The input gate as served: on, off (``CHESTX_GATE=off``) or absent, and its version."""
        info = self.require_ready().gate_info
        if info["status"] == "off":
            info = {**info, "switched_off_by": "CHESTX_GATE"}
        return info

    # -- explanation ----------------------------------------------------------------------
    @property
    def display_size(self) -> int:
        """Pixels per side of the images shown to people (at least 256, for tiny models)."""
        return self.settings.explain_size or max(self.require_ready().image_size, 256)

    @property
    def can_explain(self) -> bool:
        return self.ready and getattr(self.predictor, "model", None) is not None

    def explain(self, image: np.ndarray) -> dict:
        """Grad-CAM of one prepared image: PNG overlay (base64) and what it shows."""
        from chestx import explain

        predictor = self.require_ready()
        if not self.can_explain:
            return {
                "method": "grad-cam",
                "png_base64": None,
                "unavailable": f"Grad-CAM needs the Keras model; the {predictor.runtime} "
                "runtime serves predictions only",
            }
        with self._gradcam_lock:
            if self._gradcam is None:
                self._gradcam = explain.GradCAM(predictor.model)
        exp = self._gradcam.explain(image, predictor.raw_threshold)
        png = explain.png_bytes(explain.overlay(image, exp.heatmap, size=self.display_size))
        return {
            "method": "grad-cam",
            "target": exp.target,
            "layer": exp.layer,
            "png_base64": base64.b64encode(png).decode("ascii"),
        }


def upload_png_base64(data: bytes, size: int) -> str:
    """An upload as a PNG at most ``size`` pixels a side, in colour when it has colour: what a
    refused upload looked like (the bytes have been decoded once already, so this succeeds)."""
    import cv2

    from chestx import imaging
    from chestx.explain import png_bytes

    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:  # DICOM, or a format OpenCV reads only as grey
        image = imaging.decode_gray(data)
    h, w = image.shape[:2]
    scale = min(1.0, size / max(h, w))
    if scale < 1.0:
        image = cv2.resize(
            image,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
    return base64.b64encode(png_bytes(image)).decode("ascii")


def input_png_base64(image: np.ndarray, size: int) -> str:
    """The model's input (after resizing and intensity normalisation) as a PNG, for display."""
    import cv2

    from chestx.explain import png_bytes

    gray = image[..., 0] if image.ndim == 3 else image
    if size and size != gray.shape[0]:
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_CUBIC)
    return base64.b64encode(png_bytes(gray)).decode("ascii")
