"""Every error answer of the service, in one place.

API clients get ``{"error": {"code": <HTTP status>, "reason": <slug>, "message": <text>}}``;
browsers (the UI blueprint, or an ``Accept`` header that prefers HTML) get a friendly page.
Client mistakes are 4xx; a 500 only ever means a bug, and its details stay in the log.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from chestx.errors import (
    ChestxError,
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    NotAChestXrayError,
    UnsupportedImageError,
)

log = logging.getLogger(__name__)

REASONS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "model_not_ready",
}

_IMAGE_REASONS = {
    EmptyImageError: "empty_file",
    UnsupportedImageError: "unsupported_image",
    CorruptImageError: "corrupt_image",
    ImageTooLargeError: "image_too_large",
    NotAChestXrayError: "not_a_chest_xray",
}


class ServiceError(Exception):
    """An error the service answers on purpose, with its HTTP status and a reason slug."""

    def __init__(
        self, status: int, message: str, reason: str | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or REASONS.get(status, "error")
        self.headers = headers or {}


def wants_html() -> bool:
    """True for the UI and for browsers; API clients (curl, requests, fetch) get JSON."""
    if request.blueprint == "ui":
        return True
    if request.blueprint == "api":
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "text/html"
        and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]
    )


def note_reason(reason: str) -> None:
    """Remember why this request was refused, for ``chestx_rejected_uploads_total{reason}``."""
    g.chestx_error_reason = reason


def error_response(
    status: int, message: str, reason: str | None = None, headers: dict | None = None
) -> Response:
    reason = reason or REASONS.get(status, "error")
    note_reason(reason)
    if wants_html():
        body = render_template("error.html", status=status, reason=reason, message=message)
        response = Response(body, status=status, mimetype="text/html")
    else:
        response = jsonify(error={"code": status, "reason": reason, "message": message})
        response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def image_error_reason(exc: ImageError) -> str:
    for cls, reason in _IMAGE_REASONS.items():
        if isinstance(exc, cls):
            return reason
    return "bad_image"


def _http_message(exc: HTTPException) -> str:
    if exc.code == 413:
        limit = request.max_content_length
        if limit:
            return f"the upload is larger than the limit of {limit / 1e6:g} MB"
    if exc.code == 405:
        allowed = ", ".join(getattr(exc, "valid_methods", None) or [])
        return f"{request.method} is not allowed here" + (f"; use {allowed}" if allowed else "")
    if exc.code == 404:
        return f"no such page or endpoint: {request.path}"
    return exc.description or exc.name


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        return error_response(exc.status, exc.message, exc.reason, exc.headers)

    @app.errorhandler(ImageError)
    def _image_error(exc: ImageError):
        return error_response(getattr(exc, "status", 400), str(exc), image_error_reason(exc))

    @app.errorhandler(ChestxError)
    def _chestx_error(exc: ChestxError):
        return error_response(400, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        headers = {}
        allowed = getattr(exc, "valid_methods", None)  # a MethodNotAllowed's
        if exc.code == 405 and allowed:
            headers["Allow"] = ", ".join(allowed)
        return error_response(exc.code or 500, _http_message(exc), headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # a bug: log it, tell the client nothing internal
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the service logged the details")
