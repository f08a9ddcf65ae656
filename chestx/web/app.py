"""The app factory and what it wires together (re-exported by ``chestx.web``).

``create_app`` builds the Flask app; its settings are ``chestx.web.settings.Settings``: the
``CHESTX_*`` environment variables, then the ``config`` mapping, which wins. Under Gunicorn
(``chestx/gunicorn.conf.py``) the app is created with ``LOAD_MODEL=False`` and the model is
loaded in each worker after the fork; elsewhere ``create_app`` loads it.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Mapping

from flask import Flask, Request, g, request
from werkzeug.exceptions import NotFound

from chestx.web.errors import register_error_handlers
from chestx.web.metrics import Metrics
from chestx.web.service import ModelService
from chestx.web.settings import Settings, switch

log = logging.getLogger(__name__)


class InMemoryRequest(Request):
    """Uploads stay in memory (bounded by MAX_CONTENT_LENGTH) and never touch the disk."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        return io.BytesIO()


def create_app(config: Mapping | None = None) -> Flask:
    """Build the app. ``config`` keys are the env names without ``CHESTX_`` (``MODEL_DIR``...);
    ``LOAD_MODEL=False`` defers the model, and keys that are no setting go to Flask's config."""
    overrides = dict(config or {})
    load_now = switch("LOAD_MODEL", overrides.pop("LOAD_MODEL", True))
    settings = Settings.from_env(overrides=overrides)  # a bad value: ChestxError, naming it

    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config.update({k: v for k, v in overrides.items() if k not in Settings.keys()})
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider's

    metrics = Metrics()
    service = ModelService(settings, metrics)
    app.extensions["chestx"] = service
    app.extensions["chestx_metrics"] = metrics

    register_blueprints(app)
    register_error_handlers(app)
    register_request_hooks(app, metrics, deferred=not load_now)

    if load_now:
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


def register_request_hooks(app: Flask, metrics: Metrics, *, deferred: bool) -> None:
    service: ModelService = app.extensions["chestx"]

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
