"""The JSON API: the seed tutorial's ``POST /predict``, probes, metrics, model card, OpenAPI."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from chestx import __version__
from chestx.versions import installed_versions
from chestx.web.errors import ServiceError
from chestx.web.uploads import NOTICE, classify_upload, read_upload, service

bp = Blueprint("api", __name__)


def flag_arg(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    value = value.strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ServiceError(400, f"query parameter {name} must be 1 or 0, got {value!r}")


@bp.post("/predict")
def predict():
    """``image`` (multipart) -> Normal/Abnormal, P(pneumonia), threshold, model."""
    explain = flag_arg("explain")
    body, _ = classify_upload(read_upload("image"), explain=explain)
    return jsonify(body)


@bp.get("/healthz")
def healthz():
    """The process is alive (says nothing about the model)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """200 once this worker's model is loaded; 503 (with the reason) before or on failure."""
    svc = service()
    if svc.ready:
        return jsonify(status="ready", model=svc.model_info())
    status = "failed" if svc.state == "failed" else "loading"
    response = jsonify(status=status, error=svc.error)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions["chestx_metrics"]
    return Response(
        registry.render(),
        mimetype=registry.content_type.split(";")[0],
        headers={"Content-Type": registry.content_type},
    )


@bp.get("/api/model")
def model_card():
    """The model card (training data, preprocessing, threshold rule, test metrics)."""
    svc = service()
    predictor = svc.require_ready()
    return jsonify(
        card=predictor.card,
        serving={
            **svc.model_info(),
            "explain": svc.can_explain,
            "threshold_source": svc.threshold_source,
            "versions": installed_versions(),
            "gate": svc.gate_info(),
        },
    )


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec())


def _error_schema() -> dict:
    return {"$ref": "#/components/schemas/Error"}


def openapi_spec() -> dict:
    def err(description: str) -> dict:
        return {
            "description": description,
            "content": {"application/json": {"schema": _error_schema()}},
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chestx",
            "version": __version__,
            "description": "Pneumonia detection on chest X-rays. " + NOTICE,
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Classify one chest X-ray",
                    "parameters": [
                        {
                            "name": "explain",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "enum": [0, 1]},
                            "description": "1 adds a Grad-CAM heatmap (PNG, base64)",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": {
                                            "type": "string",
                                            "format": "binary",
                                            "description": "JPEG, PNG, BMP, TIFF or DICOM (.dcm)",
                                        }
                                    },
                                }
                            },
                            "image/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The prediction",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Prediction"}
                                }
                            },
                        },
                        "400": err("Missing field, empty, corrupt or undecodable file"),
                        "405": err("Method not allowed"),
                        "413": err("Body over the upload limit, or more pixels than allowed"),
                        "415": err("Not an image format chestx reads"),
                        "422": err(
                            "Not a frontal chest X-ray, or one the model cannot judge as "
                            "sent (reason not_a_chest_xray): the input gate refused it, and "
                            "no probability is given"
                        ),
                        "503": err("Model not loaded yet, or overloaded"),
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: the model is loaded",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format)",
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
            "/api/model": {
                "get": {
                    "summary": "The model card and serving settings",
                    "responses": {"200": {"description": "card"}, "503": err("Model not loaded")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": {"description": "OpenAPI"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Prediction": {
                    "type": "object",
                    "required": ["result", "label", "probability", "threshold", "model"],
                    "properties": {
                        "result": {
                            "type": "string",
                            "enum": ["Normal", "Abnormal"],
                            "description": "the seed tutorial's answer",
                        },
                        "label": {"type": "string", "enum": ["NORMAL", "PNEUMONIA"]},
                        "probability": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "description": "P(pneumonia) from the model",
                        },
                        "threshold": {
                            "type": "number",
                            "description": "probability >= threshold is reported as PNEUMONIA",
                        },
                        "model": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "version": {"type": "string"},
                                "runtime": {"type": "string", "enum": ["tensorflow", "litert"]},
                            },
                        },
                        "notice": {"type": "string"},
                        "heatmap": {
                            "type": "object",
                            "properties": {
                                "method": {"type": "string"},
                                "target": {"type": "string", "enum": ["NORMAL", "PNEUMONIA"]},
                                "layer": {"type": "string"},
                                "png_base64": {"type": ["string", "null"]},
                                "unavailable": {"type": "string"},
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "integer"},
                                "reason": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            }
        },
    }
