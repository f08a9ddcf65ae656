"""The app factory and what it wires together (re-exported by ``chestx.web``).

``create_app`` builds the Flask app; configuration comes from ``CHESTX_*`` environment
variables (``app.config.from_prefixed_env``) and then the ``config`` mapping, which wins.
Under Gunicorn (``chestx/gunicorn.conf.py``) the app is created with ``LOAD_MODEL=False`` and
the model is loaded in each worker after the fork; elsewhere ``create_app`` loads it.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Mapping

from flask import Flask, Request, g, request
from werkzeug.exceptions import NotFound

from chestx import config as chestx_config
from chestx.errors import ChestxError
from chestx.web.errors import register_error_handlers
from chestx.web.metrics import Metrics
from chestx.web.service import ModelService, Settings

log = logging.getLogger(__name__)

RUNTIMES = ("tensorflow", "litert")

DEFAULTS = {
    "MODEL_DIR": None,  # None: $CHESTX_MODEL_DIR, else the shipped chestx/default_model
    "RUNTIME": "tensorflow",
    "THRESHOLD": None,  # None: the model card's threshold
    "MAX_CONTENT_LENGTH": 20_000_000,  # bytes per request body (20 MB); larger -> 413
    "MAX_PIXELS": chestx_config.DEFAULT_MAX_PIXELS,  # declared pixels; larger -> 413
    "BATCH_SIZE": 16,  # micro-batching: at most this many images per model call
    "BATCH_TIMEOUT_MS": 5.0,  # ... waiting at most this long for more to arrive
    "INFERENCE_TIMEOUT": 30.0,  # seconds a request waits for its batch before a 503
    "EXPLAIN_SIZE": 0,  # pixels per side of the Grad-CAM overlay; 0: the model's input size
    "GATE": "on",  # the model directory's input gate; off: research use, logged and shown
    "LOAD_MODEL": True,
}


class InMemoryRequest(Request):
    """Uploads stay in memory (bounded by MAX_CONTENT_LENGTH) and never touch the disk."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        return io.BytesIO()


def _number(config: Mapping, key: str, kind, low=None, high=None, optional=False):
    value = config.get(key)
    if value is None or value == "":
        if optional:
            return None
        raise ChestxError(f"CHESTX_{key} must be set")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value)
        if kind is int and number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise ChestxError(f"CHESTX_{key} must be a {kind.__name__}, got {value!r}") from None
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ChestxError(f"CHESTX_{key} must be {bounds}, got {value!r}")
    return number


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def _switch(config: Mapping, key: str) -> bool:
    value = config.get(key)
    text = str(value).strip().lower()
    if isinstance(value, bool) or text in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        return _flag(value)
    raise ChestxError(f"CHESTX_{key} must be on or off, got {value!r}")


def settings_from_config(config: Mapping) -> Settings:
    """Validate the app config; a bad value stops start-up with a message naming the variable."""
    runtime = str(config.get("RUNTIME") or "tensorflow").lower()
    if runtime not in RUNTIMES:
        raise ChestxError(f"CHESTX_RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    model_dir = config.get("MODEL_DIR")
    return Settings(
        model_dir=str(model_dir) if model_dir else None,
        runtime=runtime,
        threshold=_number(config, "THRESHOLD", float, 0.0, 1.0, optional=True),
        max_pixels=_number(config, "MAX_PIXELS", int, 1),
        batch_size=_number(config, "BATCH_SIZE", int, 1, 1024),
        batch_timeout_ms=_number(config, "BATCH_TIMEOUT_MS", float, 0.0, 10_000.0),
        inference_timeout=_number(config, "INFERENCE_TIMEOUT", float, 0.1),
        explain_size=_number(config, "EXPLAIN_SIZE", int, 0, 2048),
        gate=_switch(config, "GATE"),
    )


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app. ``config`` keys are the env names without ``CHESTX_`` (``MODEL_DIR``...)."""
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("CHESTX")
    if config:
        app.config.update(config)
    app.config["MAX_CONTENT_LENGTH"] = _number(app.config, "MAX_CONTENT_LENGTH", int, 1)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's
    settings = settings_from_config(app.config)

    metrics = Metrics()
    service = ModelService(settings, metrics)
    app.extensions["chestx"] = service
    app.extensions["chestx_metrics"] = metrics

    register_blueprints(app)
    register_error_handlers(app)
    register_request_hooks(app, metrics)

    if _flag(app.config["LOAD_MODEL"]):
        service.load()
    return app


def load_model(app: Flask, model_dir: str | os.PathLike | None = None) -> bool:
    """Load the app's model now (Gunicorn's ``post_worker_init``: once per worker, after fork)."""
    return app.extensions["chestx"].load(model_dir)


def register_blueprints(app: Flask) -> None:
    from chestx.web.api import bp as api_bp
    from chestx.web.ui import bp as ui_bp

    app.register_blueprint(ui_bp)
    app.register_blueprint(api_bp)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}


def register_request_hooks(app: Flask, metrics: Metrics) -> None:
    service: ModelService = app.extensions["chestx"]
    deferred = not _flag(app.config["LOAD_MODEL"])

    @app.before_request
    def _start_timer():
        g.chestx_start = time.perf_counter()
        if deferred and service.state == "idle":
            service.load_in_background()

    @app.after_request
    def _finish(response):
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.endpoint in ("api.predict", "ui.classify"):
            response.headers.setdefault("Cache-Control", "no-store")  # medical results
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if isinstance(getattr(request, "routing_exception", None), NotFound):
            rule = "unmatched"
        status = str(response.status_code)
        metrics.requests.labels(request.method, rule, status).inc()
        start = g.get("chestx_start")
        if start is not None and rule != "/metrics":
            metrics.latency.labels(rule).observe(time.perf_counter() - start)
        if response.status_code in (400, 413, 415, 422) and request.endpoint in (
            "api.predict",
            "ui.classify",
        ):
            metrics.image_errors.labels(status, g.get("chestx_error_reason", "")).inc()
        return response
