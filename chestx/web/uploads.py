"""An upload's way through either blueprint: read it from the request, run it through the
model service, build the answer. The JSON API (``api.py``) and the browser UI (``ui.py``) both
import it, so a prediction reads the same in both.
"""

from __future__ import annotations

import logging
import time

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from chestx.web.errors import ServiceError
from chestx.web.service import ModelService, Served

log = logging.getLogger(__name__)

NOTICE = "Research use only, not for clinical diagnosis."
SEED_RESULT = {"NORMAL": "Normal", "PNEUMONIA": "Abnormal"}  # the tutorial's wording
RAW_IMAGE_TYPES = ("image/", "application/octet-stream", "application/dicom")


def service() -> ModelService:
    return current_app.extensions["chestx"]


def read_upload(field: str = "image") -> bytes:
    """The uploaded file's bytes: multipart field ``field``, or a raw image body.

    Raises 400 with a message that says what to send; a body over the limit is a 413 raised
    by Werkzeug while parsing.
    """
    mimetype = request.mimetype or ""
    if mimetype.startswith(RAW_IMAGE_TYPES):
        limit = request.max_content_length
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            # a chunked body has no Content-Length and Werkzeug silently cuts it at the
            # limit: read the server's stream one byte past the limit to tell them apart
            data = request.environ["wsgi.input"].read(limit + 1 if limit else -1)
            if limit and len(data) > limit:
                raise RequestEntityTooLarge()
            return data
        return request.get_data(cache=False)  # over the limit: Werkzeug raises the 413
    if mimetype != "multipart/form-data":
        raise ServiceError(
            400,
            f'send the X-ray as multipart/form-data field "{field}" '
            f"(got {mimetype or 'no content type'})",
            "missing_field",
        )
    upload = request.files.get(field)
    if upload is None:
        others = ", ".join(sorted(request.files)) or "none"
        raise ServiceError(
            400, f'no file in form field "{field}" (file fields sent: {others})', "missing_field"
        )
    return upload.read()


def classify_upload(data: bytes, *, explain: bool) -> tuple[dict, Served]:
    """Upload bytes -> the API's answer, and what the service served (the UI shows its
    model input)."""
    svc = service()
    start = time.perf_counter()
    served = svc.predict(data, explain=explain)
    prediction = served.prediction
    info = svc.model_info()
    body = {
        "result": SEED_RESULT[prediction.label],
        "label": prediction.label,
        "probability": round(prediction.probability, 6),
        "threshold": prediction.threshold,
        "model": {"name": info["name"], "version": info["version"], "runtime": info["runtime"]},
        "notice": NOTICE,
    }
    if explain:
        body["heatmap"] = served.heatmap
    log.info(
        "predict label=%s p=%.4f bytes=%d explain=%d ms=%.1f",
        prediction.label,
        prediction.probability,
        len(data),
        explain,
        (time.perf_counter() - start) * 1e3,
    )
    return body, served
