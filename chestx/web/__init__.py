"""The chestx web service: a browser UI and a JSON API over one ``Predictor``.

``create_app(config=None)`` is the app factory (``chestx.web.app``); it is imported lazily here
so that ``chestx.web.cli`` (and so ``chestx --help``) does not import Flask.

Research use only, not for clinical diagnosis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

__all__ = ["create_app", "load_model"]


def create_app(config: dict | None = None) -> Flask:
    """Build the Flask app; ``config`` keys are the CHESTX_* names without the prefix."""
    from chestx.web.app import create_app as _create_app

    return _create_app(config)


def load_model(app: Flask, model_dir: str | None = None) -> bool:
    """Load the app's model now: Gunicorn's ``post_worker_init``, once per worker after fork."""
    from chestx.web.app import load_model as _load_model

    return _load_model(app, model_dir)
