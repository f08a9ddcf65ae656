"""The browser UI: an upload form that works without JavaScript and is nicer with it.

``GET /`` shows the form; the form posts to ``POST /`` which renders the result page
(verdict, P(pneumonia) against the threshold, Grad-CAM, model and its measured performance).
With JavaScript, ``static/app.js`` adds drag and drop and a preview, and renders the same
result from ``POST /predict?explain=1`` without leaving the page.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from chestx.errors import NotAChestXrayError
from chestx.gate import UNJUDGEABLE
from chestx.web.errors import image_error_reason, note_reason
from chestx.web.service import input_png_base64, upload_png_base64
from chestx.web.uploads import NOTICE, classify_upload, read_upload, service

bp = Blueprint("ui", __name__)  # templates/ and static/ are the app's (chestx/web/)

ACCEPT = ".jpg,.jpeg,.png,.bmp,.tif,.tiff,.dcm,image/jpeg,image/png,image/bmp,image/tiff"


def _interval(ci) -> tuple[float, float] | None:
    """A stored ``[low, high]`` interval, or None where there is none (or a bound is None)."""
    try:
        low, high = (float(v) for v in ci)
    except (TypeError, ValueError):
        return None
    return low, high


def _row(m: dict, title: str, card: dict, threshold: float, note: str | None = None) -> dict:
    measured_at = m.get("threshold", card.get("threshold"))
    return {
        "split": title,
        "note": note,
        "n": m.get("n"),
        "sensitivity": m.get("sensitivity"),
        "specificity": m.get("specificity"),
        "roc_auc": m.get("roc_auc"),
        # 95 % intervals; cards written before they were recorded have none
        "sensitivity_ci": _interval(m.get("sensitivity_ci")),
        "specificity_ci": _interval(m.get("specificity_ci")),
        "roc_auc_ci": _interval(m.get("roc_auc_ci")),
        "threshold": measured_at,
        "applies": measured_at is None or abs(float(measured_at) - threshold) < 1e-9,
    }


def performance_context(card: dict, threshold: float) -> list[dict]:
    """What the model card reports, one row per data set: the internal test split, any
    calibration set from another collection (flagged: chosen on it, so flattered) and an
    external test set; the validation split only when nothing else is there."""
    metrics = {
        k: m
        for k, m in (card.get("metrics") or {}).items()
        if isinstance(m, dict) and "sensitivity" in m and "specificity" in m
    }
    rows = []
    if "test" in metrics:
        rows.append(
            _row(
                metrics["test"],
                "the internal test split (patients held out, same hospital as the training data)",
                card,
                threshold,
            )
        )
    for key, m in metrics.items():
        if key.startswith("calibration:"):
            rows.append(
                _row(
                    m,
                    f"{key.split(':', 1)[1]}, X-rays from another collection",
                    card,
                    threshold,
                    note="used to calibrate this model and choose "
                    "its threshold, so these figures flatter it; they are not a test",
                )
            )
    if "external" in metrics:
        rows.append(_row(metrics["external"], "an external test set", card, threshold))
    if not rows and "val" in metrics:
        rows.append(_row(metrics["val"], "the validation split", card, threshold))
    return rows


def page_context() -> dict:
    svc = service()
    ctx = {
        "notice": NOTICE,
        "accept": ACCEPT,
        "ready": svc.ready,
        "model": None,
        "max_mb": current_app.config["MAX_CONTENT_LENGTH"] / 1e6,
        "load_error": svc.error,
    }
    if svc.ready:
        p = svc.require_ready()
        ctx["model"] = {
            **svc.model_info(),
            "threshold_source": svc.threshold_source,
            "threshold_rule": p.card.get("threshold_rule"),
            "performance": performance_context(p.card, p.threshold),
            "explain": svc.can_explain,
        }
    return ctx


@bp.get("/")
def index():
    return render_template("index.html", **page_context())


@bp.post("/")
def classify():
    """The no-JavaScript path: the form posts here and gets a result page."""
    svc = service()
    data = read_upload("image")
    try:
        body, served = classify_upload(data, explain=True)
    except NotAChestXrayError as exc:  # the gate refused it: say so, show it, no result
        note_reason(image_error_reason(exc))
        html = render_template(
            "refused.html",
            reason=exc.verdict.reason,
            unjudgeable=exc.verdict.headline == UNJUDGEABLE,
            upload_png=upload_png_base64(data, svc.display_size),
            **page_context(),
        )
        return html, 422
    size = svc.display_size
    return render_template(
        "result.html",
        result=body,
        input_png=input_png_base64(served.image, size),
        **page_context(),
    )
