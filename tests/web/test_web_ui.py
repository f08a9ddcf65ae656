"""The browser UI through the test client: the form, the no-JavaScript result page, errors."""

from __future__ import annotations

import json
import math
import re
import shutil

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_form_page(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "Research use only, not for clinical diagnosis" in html
    assert 'enctype="multipart/form-data"' in html and 'method="post"' in html
    assert re.search(r'<input type="file" id="image" name="image"', html)
    assert '<label class="drop" id="drop" for="image">' in html  # an accessible label
    assert 'name="viewport"' in html  # phones
    assert "/static/app.js" in html and "/static/style.css" in html
    assert "sensitivity 90.0%" in html and "specificity 80.0%" in html
    assert "95 % CI" not in html  # the tiny model's card predates the intervals


def test_trust_panel_shows_the_cards_intervals(app_factory, tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    card = json.loads((model / "card.json").read_text())
    card["metrics"]["test"].update(
        sensitivity_ci=[0.5958, 0.9821], specificity_ci=[0.4902, 0.9433], roc_auc_ci=[0.7, 1.0]
    )
    (model / "card.json").write_text(json.dumps(card))
    html = app_factory(MODEL_DIR=str(model)).test_client().get("/").get_data(as_text=True)
    assert "pneumonia cases flagged; 95 % CI 59.6–98.2%" in html
    assert "normal X-rays passed; 95 % CI 49.0–94.3%" in html
    assert "ROC AUC 0.850 (95 % CI 0.700–1.000)" in html
    assert "Wilson intervals" in html


def test_static_files(client):
    for name in ("app.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200


def test_result_page_without_javascript(client, xray_bytes, make_upload):
    r = client.post("/", data=make_upload(xray_bytes))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert re.search(r'class="verdict (normal|abnormal)"', html)
    assert re.search(r"P\(pneumonia\) = <b>0\.\d{3}</b>", html)
    assert "threshold 0.500" in html
    assert 'id="heatmap" src="data:image/png;base64,' in html
    assert "Grad-CAM" in html and "tiny-test" in html and "0.0-test" in html
    assert 'role="img"' in html and 'aria-label="P(pneumonia)' in html
    assert "Research use only" in html
    assert r.headers["Cache-Control"] == "no-store"


def test_result_page_shows_threshold_override_warning(app_factory, xray_bytes, make_upload):
    client = app_factory(THRESHOLD=0.3).test_client()
    html = client.post("/", data=make_upload(xray_bytes)).get_data(as_text=True)
    assert "threshold 0.300" in html
    assert "CHESTX_THRESHOLD" in html
    assert "different threshold" in html  # the card's metrics were measured at 0.5


def test_ui_errors_are_friendly_pages(client, make_upload, bomb_png):
    cases = [
        (make_upload(b"not an image"), 415),
        (make_upload(b""), 400),
        ({}, 400),
        (make_upload(bomb_png, "bomb.png"), 413),
    ]
    for data, status in cases:
        r = client.post("/", data=data)
        assert r.status_code == status
        assert r.mimetype == "text/html"
        html = r.get_data(as_text=True)
        assert 'role="alert"' in html and "Back to the upload form" in html
        assert "Traceback" not in html


def test_browser_404_is_html_and_api_404_is_json(client):
    r = client.get("/nowhere", headers=HTML)
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert "Page not found" in r.get_data(as_text=True)
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.is_json


def test_browser_gets_html_405(client):
    r = client.get("/predict", headers=HTML)
    assert r.status_code == 405  # /predict is an API route: JSON for API clients ...
    r = client.delete("/", headers=HTML)
    assert r.status_code == 405 and r.mimetype == "text/html"


def test_form_page_when_model_failed(app_factory, tmp_path):
    (tmp_path / "card.json").write_text('{"image_size": 64, "threshold": 0.5}')
    html = app_factory(MODEL_DIR=str(tmp_path)).test_client().get("/").get_data(as_text=True)
    assert "not available" in html


def test_trust_panel_shows_internal_and_other_collection_figures():
    from chestx.web.ui import performance_context

    card = {
        "threshold": 0.4,
        "metrics": {
            "val": {"n": 50, "threshold": 0.4, "sensitivity": 0.97, "specificity": 0.96},
            "test": {
                "n": 516,
                "threshold": 0.4,
                "sensitivity": 0.96,
                "specificity": 0.99,
                "roc_auc": 0.998,
            },
            "calibration:external-dev": {
                "n": 313,
                "threshold": 0.4,
                "sensitivity": 0.96,
                "specificity": 0.88,
                "roc_auc": 0.97,
            },
        },
    }
    rows = performance_context(card, 0.4)
    assert [r["split"].split(" ")[0] for r in rows] == ["the", "external-dev,"]
    assert rows[0]["note"] is None and "flatter" in rows[1]["note"]
    assert all(r["applies"] for r in rows)
    assert not performance_context(card, 0.5)[0]["applies"]
    assert performance_context({"metrics": {"val": card["metrics"]["val"]}}, 0.4)[0]["n"] == 50


def test_a_card_with_nan_serves_strict_json_and_says_not_measured(
    app_factory, tiny_model_dir, tmp_path
):
    """A card written before the rule, with NaN for a test split of one class: ``/api/model``
    answers JSON that JavaScript reads, and the trust panel says what was not measured."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    card = json.loads((model / "card.json").read_text())
    card["metrics"]["test"].update(
        sensitivity=math.nan, roc_auc=math.nan, sensitivity_ci=[math.nan, math.nan]
    )
    (model / "card.json").write_text(json.dumps(card))  # as Python's json writes it: bare NaN
    client = app_factory(MODEL_DIR=str(model)).test_client()

    text = client.get("/api/model").get_data(as_text=True)
    assert "NaN" not in text  # a bare NaN: JavaScript's JSON.parse refuses the whole body
    body = json.loads(text)
    assert body["card"]["metrics"]["test"]["sensitivity"] is None
    assert list(body["card"]) == list(card)  # the card's own order
    html = client.get("/").get_data(as_text=True)
    assert "sensitivity not measured</b> (no pneumonia X-rays among them)" in html
    assert "specificity 80.0%</b> (normal X-rays passed)" in html
    assert "nan" not in html.lower()
