"""The input gate in the service: 422 answers, the refusal page, CHESTX_GATE, metrics, LiteRT."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from chestx import negatives
from chestx.errors import ChestxError


@pytest.fixture(scope="module")
def gated_client(app_factory, gated_model_dir):
    return app_factory(MODEL_DIR=str(gated_model_dir)).test_client()


def assert_refused(response) -> dict:
    assert response.status_code == 422, response.data[:300]
    body = response.get_json()
    assert list(body) == ["error"]  # no probability, no label, nothing else
    error = body["error"]
    assert set(error) == {"code", "reason", "message"}
    assert error["code"] == 422 and error["reason"] == "not_a_chest_xray"
    assert error["message"].startswith("not a chest X-ray: ")
    return error


@pytest.mark.parametrize("family", negatives.FAMILIES)
def test_each_negative_family_gets_422(gated_client, negative_images, make_upload, family):
    for data in negative_images[family]:
        assert_refused(gated_client.post("/predict?explain=1", data=make_upload(data)))


def test_the_fixture_xrays_are_answered(gated_client, xray_files, make_upload):
    for path in xray_files:
        r = gated_client.post("/predict", data=make_upload(path.read_bytes()))
        assert r.status_code == 200, (path.name, r.get_json())
        assert 0 <= r.get_json()["probability"] <= 1


def test_refusals_are_counted_by_reason(app_factory, gated_model_dir, negative_images, make_upload):
    client = app_factory(MODEL_DIR=str(gated_model_dir)).test_client()
    client.post("/predict", data=make_upload(negative_images["document"][0]))
    client.post("/", data=make_upload(negative_images["photo"][0]))
    client.post("/predict", data=make_upload(b""))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'chestx_rejected_uploads_total{reason="not_a_chest_xray",status="422"} 2.0' in text
    assert 'chestx_rejected_uploads_total{reason="empty_file",status="400"} 1.0' in text


def test_gate_in_the_model_card(gated_client, client):
    gate = gated_client.get("/api/model").get_json()["serving"]["gate"]
    assert gate["status"] == "on" and gate["version"] and gate["thresholds"]["p_min"] > 0
    # The tiny model has no gate files: it still serves, with the gate marked absent.
    assert client.get("/api/model").get_json()["serving"]["gate"] == {"status": "absent"}


def test_gate_off_is_logged_shown_and_judges_anything(
    app_factory, gated_model_dir, negative_images, make_upload, caplog
):
    with caplog.at_level(logging.WARNING):
        client = app_factory(MODEL_DIR=str(gated_model_dir), GATE="off").test_client()
    assert "CHESTX_GATE=off" in caplog.text
    gate = client.get("/api/model").get_json()["serving"]["gate"]
    assert gate["status"] == "off" and gate["switched_off_by"] == "CHESTX_GATE"
    r = client.post("/predict", data=make_upload(negative_images["document"][0]))
    assert r.status_code == 200 and "probability" in r.get_json()
    # ?gate=off is not offered: a client cannot switch the gate off.
    on = app_factory(MODEL_DIR=str(gated_model_dir)).test_client()
    assert_refused(on.post("/predict?gate=off", data=make_upload(negative_images["blank"][0])))


@pytest.mark.parametrize("value", ["maybe", "2", "of"])
def test_bad_gate_setting_stops_start_up(value):
    from chestx.web.settings import Settings

    with pytest.raises(ChestxError, match="CHESTX_GATE must be on or off"):
        Settings.from_env(environ={"CHESTX_GATE": value})


def test_ui_refusal_page_shows_the_upload_and_no_heatmap(
    gated_client, negative_images, make_upload
):
    r = gated_client.post("/", data=make_upload(negative_images["document"][0], "report.png"))
    assert r.status_code == 422 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "This does not look like a frontal chest X-ray:" in html
    assert "so no result is given" in html
    assert 'id="upload" src="data:image/png;base64,' in html
    assert 'id="heatmap"' not in html and "P(pneumonia) =" not in html
    assert "Research use only" in html


def test_a_clipped_xray_is_refused_as_one_that_cannot_be_judged(
    gated_client, xray_bytes, make_upload
):
    """An X-ray exported too bright is a chest X-ray the model cannot judge, not "not one":
    the API message and both pages say so, and the page asks for a better export."""
    gray = cv2.imdecode(np.frombuffer(xray_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    bright = cv2.imencode(".png", np.clip(gray * 2.0, 0, 255).astype(np.uint8))[1].tobytes()
    error = gated_client.post("/predict", data=make_upload(bright)).get_json()["error"]
    assert error["code"] == 422 and error["reason"] == "not_a_chest_xray"
    assert error["message"].startswith("a chest X-ray the model cannot judge: ")
    assert "clipped to white" in error["message"]
    r = gated_client.post("/", data=make_upload(bright, "bright.png"))
    assert r.status_code == 422 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "This chest X-ray cannot be judged as it is:" in html
    assert "clipped to white" in html and "so no result is given" in html
    assert "does not look like a frontal chest X-ray" not in html
    assert "its For Presentation" in html  # the help asks for a better export


def test_litert_gate_matches_tensorflow_without_importing_it(
    gated_model_dir, negative_images, xray_files, tmp_path
):
    from chestx.predict import Predictor

    tf_predictor = Predictor(gated_model_dir, runtime="tensorflow")
    images = [p.read_bytes() for p in xray_files[:6]]
    images += [items[0] for items in negative_images.values()]
    expected = [tf_predictor.verdict(data) for data in images]
    assert sum(v.accepted for v in expected) == 6
    for i, data in enumerate(images):
        (tmp_path / f"{i}.img").write_bytes(data)
    code = f"""
import sys
from chestx.predict import Predictor
p = Predictor({str(gated_model_dir)!r}, runtime="litert")
for i in range({len(images)}):
    v = p.verdict(open({str(tmp_path)!r} + f"/{{i}}.img", "rb").read())
    print(v.accepted, v.check, repr(v.score))
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "[]"  # the LiteRT runtime gates without TensorFlow
    for v, line in zip(expected, lines[:-1], strict=True):
        accepted, check, score = line.split()
        assert (accepted == "True", check) == (v.accepted, v.check)
        assert float(score) == pytest.approx(v.score, abs=1e-6)


def test_snapshot_takes_the_gate_along(tmp_path, gated_model_dir):
    from chestx.web.snapshot import take_snapshot

    for runtime in ("tensorflow", "litert"):
        snap, card = take_snapshot(gated_model_dir, runtime, full_check=False, parent=tmp_path)
        assert (snap / "gate.npz").read_bytes() == (gated_model_dir / "gate.npz").read_bytes()
        assert card["gate"]["sha256"]


def test_raw_body_refused_too(gated_client, negative_images):
    r = gated_client.post(
        "/predict",
        data=io.BytesIO(negative_images["noise"][0]),
        content_type="application/octet-stream",
    )
    assert_refused(r)
