"""Every ``CHESTX_*`` setting of the web service, declared once and read in one place.

``Settings.from_env()`` reads and checks them all; the Gunicorn config (``chestx/gunicorn.conf.py``,
the master: this module imports neither Flask nor TensorFlow) and ``create_app`` both call it,
so the server and the app cannot read a variable two ways. Each field below is one variable:
``CHESTX_`` + its name in capitals, its default, and the parser that checks it (the README's
configuration table lists the same). A bad value raises ``ChestxError`` naming the variable;
an empty value means the default. Switches take ``on/off``, ``1/0``, ``true/false``, ``yes/no``.

``create_app(config)`` passes its mapping as ``overrides`` (keys without the prefix: ``THRESHOLD``),
checked by the same parsers; it wins over the environment.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chestx.config import DEFAULT_MAX_PIXELS
from chestx.errors import ChestxError

PREFIX = "CHESTX_"
RUNTIMES = ("tensorflow", "litert")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_ON = ("on", "1", "true", "yes")
_OFF = ("off", "0", "false", "no")

Parser = Callable[[str, Any], Any]  # (variable name, raw value) -> checked value


def _bounded(name: str, value, raw, low, high):
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ChestxError(f"{name} must be {bounds}, got {raw!r}")
    return value


def integer(low: int | None = None, high: int | None = None) -> Parser:
    def parse(name: str, raw) -> int:
        try:
            if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw) if not isinstance(raw, str) else _int_text(raw)
        except (TypeError, ValueError, OverflowError):
            raise ChestxError(f"{name} must be an integer, got {raw!r}") from None
        return _bounded(name, value, raw, low, high)

    return parse


def _int_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # "2e7" and "16.0" are integers too
        if not value.is_integer():
            raise
        return int(value)


def number(low: float | None = None, high: float | None = None) -> Parser:
    def parse(name: str, raw) -> float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
        except (TypeError, ValueError):
            raise ChestxError(f"{name} must be a number, got {raw!r}") from None
        return _bounded(name, value, raw, low, high)

    return parse


def switch(name: str, raw) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise ChestxError(f"{name} must be on or off, got {raw!r}")


def choice(options: tuple[str, ...]) -> Parser:
    def parse(name: str, raw) -> str:
        value = str(raw).strip().lower()
        if value not in options:
            raise ChestxError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def text(name: str, raw) -> str:
    return str(raw)


def addresses(name: str, raw) -> tuple[str, ...]:
    parts = raw.split(",") if isinstance(raw, str) else [str(item) for item in raw]
    found = tuple(p.strip() for p in parts if p.strip())
    if not found:
        raise ChestxError(f"{name} must name at least one address, got {raw!r}")
    return found


def _var(default, parse: Parser):
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True)
class Settings:
    """The checked settings; ``Settings()`` holds the defaults."""

    # -- the app: model and inference (chestx.web.app, chestx.web.service) ----------------
    model_dir: str | None = _var(None, text)  # None: $CHESTX_MODEL_DIR unset, the shipped model
    runtime: str = _var("tensorflow", choice(RUNTIMES))
    threshold: float | None = _var(None, number(0.0, 1.0))  # None: the model card's
    max_content_length: int = _var(20_000_000, integer(1))  # bytes per request body; more: 413
    max_pixels: int = _var(DEFAULT_MAX_PIXELS, integer(1))  # declared pixels; more: 413
    batch_size: int = _var(16, integer(1, 1024))  # micro-batching: images per model call
    batch_timeout_ms: float = _var(5.0, number(0.0, 10_000.0))  # ... longest wait for more
    inference_timeout: float = _var(30.0, number(0.1))  # seconds to wait for a batch; then 503
    explain_size: int = _var(0, integer(0, 2048))  # Grad-CAM overlay side; 0: the model's
    gate: bool = _var(True, switch)  # off: the model's input gate is switched off
    # -- the server (chestx/gunicorn.conf.py) -------------------------------------------
    bind: tuple[str, ...] = _var(("127.0.0.1:8000",), addresses)
    workers: int = _var(2, integer(1))
    threads: int = _var(16, integer(1))
    timeout: int = _var(60, integer(1))  # a silent worker is killed after this (model load incl.)
    graceful_timeout: int = _var(30, integer(1))
    max_requests: int = _var(5000, integer(0))  # recycle a worker after this many; 0: never
    max_requests_jitter: int | None = _var(None, integer(0))  # None: max_requests / 10
    access_log: bool = _var(True, switch)
    log_level: str = _var("info", choice(LOG_LEVELS))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The variable names without the prefix (``THRESHOLD``...)."""
        return tuple(f.name.upper() for f in dataclasses.fields(cls))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Read every variable from ``environ`` (default ``os.environ``); ``overrides`` (keys
        without the prefix) win. Unknown override keys are not settings: the caller's."""
        environ = os.environ if environ is None else environ
        overrides = overrides or {}
        values = {}
        for f in dataclasses.fields(cls):
            key = f.name.upper()
            raw = overrides[key] if key in overrides else environ.get(PREFIX + key)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue  # the default
            values[f.name] = f.metadata["parse"](PREFIX + key, raw)
        return cls(**values)

    @property
    def jitter(self) -> int:
        """Gunicorn's ``max_requests_jitter``: as set, else a tenth of ``max_requests``."""
        if self.max_requests_jitter is not None:
            return self.max_requests_jitter
        return max(1, self.max_requests // 10)
