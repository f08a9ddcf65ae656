"""The JSON API through Flask's test client: every route, every bad input."""

from __future__ import annotations

import base64
import io
import logging
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest

from chestx.config import DEFAULT_MODEL_DIR

JSON = {"Accept": "application/json"}


def assert_error(response, status: int, reason: str | None = None) -> dict:
    assert response.status_code == status, response.data[:300]
    assert response.is_json
    error = response.get_json()["error"]
    assert error["code"] == status
    assert error["message"]
    if reason:
        assert error["reason"] == reason
    return error


# -- POST /predict ------------------------------------------------------------------------
def test_predict_answers_the_seed_contract(client, xray_bytes, make_upload):
    r = client.post("/predict", data=make_upload(xray_bytes))
    assert r.status_code == 200
    body = r.get_json()
    assert list(body)[:5] == ["result", "label", "probability", "threshold", "model"]
    assert body["result"] in ("Normal", "Abnormal")
    assert body["label"] in ("NORMAL", "PNEUMONIA")
    assert body["result"] == ("Abnormal" if body["label"] == "PNEUMONIA" else "Normal")
    assert 0.0 <= body["probability"] <= 1.0
    assert body["threshold"] == 0.5
    assert (body["probability"] >= body["threshold"]) == (body["label"] == "PNEUMONIA")
    assert body["model"] == {"name": "tiny-test", "version": "0.0-test", "runtime": "tensorflow"}
    assert "heatmap" not in body
    assert "research use only" in body["notice"].lower()
    assert r.headers["Cache-Control"] == "no-store"


def test_predict_matches_the_predictor(app, client, xray_files, make_upload):
    predictor = app.extensions["chestx"].predictor
    for path in xray_files[:3]:
        data = path.read_bytes()
        body = client.post("/predict", data=make_upload(data)).get_json()
        assert body["probability"] == pytest.approx(
            predictor.predict_bytes(data).probability, abs=1e-5
        )


def test_predict_explain_adds_a_png_heatmap(client, xray_bytes, make_upload):
    r = client.post("/predict?explain=1", data=make_upload(xray_bytes))
    assert r.status_code == 200
    heatmap = r.get_json()["heatmap"]
    assert heatmap["method"] == "grad-cam"
    assert heatmap["target"] == r.get_json()["label"]
    png = base64.b64decode(heatmap["png_base64"])
    assert png.startswith(b"\x89PNG")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (256, 256, 3)  # the tiny 64 px model is shown at 256 px


def test_predict_accepts_a_raw_image_body(client, xray_bytes):
    r = client.post("/predict", data=xray_bytes, content_type="image/jpeg")
    assert r.status_code == 200
    assert r.get_json()["label"] in ("NORMAL", "PNEUMONIA")


@pytest.mark.parametrize("threshold, label", [(0.0, "PNEUMONIA"), (1.0, "NORMAL")])
def test_threshold_override_is_explicit(app_factory, xray_bytes, make_upload, threshold, label):
    client = app_factory(THRESHOLD=threshold).test_client()
    body = client.post("/predict", data=make_upload(xray_bytes)).get_json()
    assert body["threshold"] == threshold
    assert body["label"] == label
    card = client.get("/api/model").get_json()
    assert card["serving"]["threshold"] == threshold
    assert card["serving"]["threshold_source"] == "CHESTX_THRESHOLD"


def test_png_bmp_and_tiff_uploads(client, xray_bytes, make_upload):
    gray = cv2.imdecode(np.frombuffer(xray_bytes, np.uint8), cv2.IMREAD_GRAYSCALE)
    for ext in (".png", ".bmp", ".tiff"):
        ok, buf = cv2.imencode(ext, gray)
        assert ok
        r = client.post("/predict", data=make_upload(buf.tobytes(), "x" + ext))
        assert r.status_code == 200, (ext, r.data)


# -- bad input never becomes a 500 ----------------------------------------------------------
def test_missing_field(client, xray_bytes, make_upload):
    assert_error(client.post("/predict", data={}), 400, "missing_field")
    err = assert_error(
        client.post("/predict", data=make_upload(xray_bytes, field="file")), 400, "missing_field"
    )
    assert "file" in err["message"]
    assert_error(client.post("/predict", json={"image": "abc"}), 400, "missing_field")
    assert_error(client.post("/predict", data={"image": "not a file"}), 400, "missing_field")


def test_empty_file(client, make_upload):
    assert_error(client.post("/predict", data=make_upload(b"")), 400, "empty_file")
    assert_error(client.post("/predict", data=b"", content_type="image/png"), 400, "empty_file")


@pytest.mark.parametrize(
    "data",
    [
        b"hello, I am not an X-ray",
        b"%PDF-1.7\n" + b"x" * 500,
        b"GIF89a" + b"\x00" * 100,
        b"\x00" * 1000,
    ],
)
def test_not_an_image(client, make_upload, data):
    assert_error(
        client.post("/predict", data=make_upload(data, "x.jpeg")), 415, "unsupported_image"
    )


def test_corrupt_images(client, xray_bytes, make_png, make_upload):
    truncated = xray_bytes[:200]
    garbage_png = make_png(64, 64, idat=b"this is not zlib")
    for data in (truncated, garbage_png, b"\xff\xd8\xff" + b"\x00" * 50):
        r = client.post("/predict", data=make_upload(data))
        assert r.status_code in (400, 415), r.data
        assert r.is_json and r.get_json()["error"]["message"]


def test_body_over_the_limit(app_factory, xray_bytes, make_upload):
    client = app_factory(MAX_CONTENT_LENGTH=1000).test_client()
    err = assert_error(
        client.post("/predict", data=make_upload(xray_bytes)), 413, "payload_too_large"
    )
    assert "1000" in err["message"] or "0.001 MB" in err["message"]
    assert_error(client.post("/predict", data=xray_bytes, content_type="image/jpeg"), 413)


def test_chunked_raw_body_over_the_limit(app_factory):
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    app = app_factory(MAX_CONTENT_LENGTH=1000)
    for size, status in ((1001, "413"), (50_000, "413"), (1000, "415")):
        env = EnvironBuilder(
            method="POST",
            path="/predict",
            input_stream=io.BytesIO(b"x" * size),
            headers={"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"},
        ).get_environ()
        env.pop("CONTENT_LENGTH", None)
        env["wsgi.input_terminated"] = True  # what Gunicorn sets for a chunked body
        body, got, _ = run_wsgi_app(app.wsgi_app, env)
        assert got.split()[0] == status, (size, b"".join(body))


def test_default_upload_limit_is_20_mb(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 20_000_000


def test_decompression_bomb_is_refused_before_decoding(client, bomb_png, make_upload, monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    assert len(bomb_png) < 1000
    assert_error(
        client.post("/predict", data=make_upload(bomb_png, "bomb.png")), 413, "image_too_large"
    )


def test_max_pixels_limit(app_factory, make_png, xray_bytes, make_upload):
    client = app_factory(MAX_PIXELS=100 * 100).test_client()
    assert_error(
        client.post("/predict", data=make_upload(make_png(101, 100))), 413, "image_too_large"
    )
    assert_error(client.post("/predict", data=make_upload(xray_bytes)), 413)  # 224 x 224


def test_bad_explain_value(client, xray_bytes, make_upload):
    assert_error(client.post("/predict?explain=maybe", data=make_upload(xray_bytes)), 400)


def test_wrong_method_and_unknown_path(client):
    err = assert_error(client.get("/predict"), 405, "method_not_allowed")
    assert "POST" in err["message"]
    r = client.put("/healthz")
    assert_error(r, 405)
    assert "GET" in r.headers["Allow"]
    assert_error(client.get("/no/such/thing"), 404, "not_found")
    assert_error(client.post("/predict/extra"), 404)


def test_worker_keeps_serving_after_bad_input(client, xray_bytes, bomb_png, make_upload):
    for data in (b"", b"junk", bomb_png, xray_bytes[:100], xray_bytes[:5000]):
        assert client.post("/predict", data=make_upload(data)).status_code in (400, 413, 415)
    assert client.post("/predict", data=make_upload(xray_bytes)).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_uploads_never_touch_the_disk(client, xray_bytes, make_upload, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was spooled to disk")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = xray_bytes + b"\x00" * 3_000_000  # Werkzeug spools bodies over 500 kB by default
    r = client.post("/predict", data=make_upload(big))
    assert r.status_code == 200


def test_logs_carry_no_image_data_or_file_name(client, xray_bytes, make_upload, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post("/predict", data=make_upload(xray_bytes, "Jane_Doe_1970-01-01.jpeg"))
        client.post("/predict", data=make_upload(b"junk", "John_Roe.jpeg"))
    text = caplog.text
    assert "predict label=" in text
    assert "Jane_Doe" not in text and "John_Roe" not in text
    assert repr(xray_bytes[:16])[2:-1] not in text


# -- probes, metrics, card, OpenAPI --------------------------------------------------------
def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_readyz_ready(client):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready"
    assert body["model"]["version"] == "0.0-test"


def test_not_ready_before_the_model_loads(app_factory, xray_bytes, make_upload, monkeypatch):
    app = app_factory(LOAD_MODEL=False)
    service = app.extensions["chestx"]
    monkeypatch.setattr(service, "load_in_background", lambda: None)  # hold it unloaded
    client = app.test_client()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.get_json()["status"] == "loading"
    assert client.get("/healthz").status_code == 200
    assert_error(client.post("/predict", data=make_upload(xray_bytes)), 503, "model_not_ready")
    assert_error(client.get("/api/model"), 503)
    from chestx.web import load_model

    assert load_model(app)
    assert client.get("/readyz").status_code == 200


def test_deferred_load_starts_on_first_request(app_factory):
    app = app_factory(LOAD_MODEL=False)
    client = app.test_client()
    client.get("/healthz")
    service = app.extensions["chestx"]
    service._loader.join(60)
    assert client.get("/readyz").status_code == 200


def test_exiting_during_a_deferred_load_waits_for_it(tmp_path):
    """A process that exits while the deferred load (a WSGI server other than Gunicorn,
    ``LOAD_MODEL=False``) runs waits for the loader and exits normally. Before, the loader
    was a daemon thread, killed mid-load at exit: exiting 4-6 s after the first request
    crashed the process (SIGSEGV, exit code 139) or hung it until killed. Now the loader
    ends first: ready, or failed when TensorFlow's import meets the interpreter's shutdown
    ("can't register atexit after shutdown"), which this immediate exit gets."""
    script = tmp_path / "exit_while_loading.py"
    script.write_text(
        "import atexit, sys\n"
        "from chestx.web import create_app\n"
        "app = create_app({'MODEL_DIR': sys.argv[1], 'LOAD_MODEL': False})\n"
        "service = app.extensions['chestx']\n"
        "app.test_client().get('/healthz')  # starts the load in the background\n"
        "assert service.state == 'loading'\n"
        "atexit.register(lambda: print('at exit:', service.state))  # after threads end\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(DEFAULT_MODEL_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    state = done.stdout.partition("at exit: ")[2].strip()
    assert state in ("ready", "failed"), done.stdout + done.stderr[-2000:]  # not "loading"


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_a_script_that_exits_at_once_exits_cleanly(tmp_path, delay):
    """A script (or Ctrl-C under a WSGI server other than Gunicorn) that builds the app and
    exits while the Grad-CAM warm-up is still inside TensorFlow exits normally: before, that
    thread was killed at interpreter exit and the process aborted (SIGABRT, exit code 134,
    "terminate called without an active exception") in most runs that exited 0.3-1 s after
    the app was built."""
    script = tmp_path / "quick_exit.py"
    script.write_text(
        "import sys\n"
        "from chestx.web import create_app\n"
        "app = create_app({'MODEL_DIR': sys.argv[1]})\n"
        "assert app.extensions['chestx'].ready\n"
        "import time; time.sleep(float(sys.argv[2]))  # the warm-up is inside TensorFlow\n"
    )
    done = subprocess.run(
        # the shipped model: its Grad-CAM warm-up takes long enough to still run at exit
        [sys.executable, str(script), str(DEFAULT_MODEL_DIR), str(delay)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr


def test_broken_model_dir_gives_503_not_a_crash(app_factory, tmp_path, xray_bytes, make_upload):
    (tmp_path / "card.json").write_text('{"image_size": 64, "intensity": "none", "threshold": 0.5}')
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    client = app_factory(MODEL_DIR=str(tmp_path)).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["status"] == "failed" and "model.keras" in r.get_json()["error"]
    assert_error(client.post("/predict", data=make_upload(xray_bytes)), 503)
    assert client.get("/").status_code == 200  # the UI still explains what is wrong


def test_metrics(client, xray_bytes, make_upload):
    client.post("/predict", data=make_upload(xray_bytes))
    client.post("/predict", data=make_upload(b"junk"))
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.get_data(as_text=True)
    assert 'chestx_http_requests_total{endpoint="/predict",method="POST",status="200"}' in text
    assert 'status="415"' in text
    assert "chestx_http_request_duration_seconds_bucket" in text
    assert "chestx_inference_batch_size_count" in text
    assert 'chestx_model_info{name="tiny-test",runtime="tensorflow",version="0.0-test"} 1.0' in text
    assert "chestx_predictions_total{label=" in text


def test_model_card(client):
    body = client.get("/api/model").get_json()
    assert body["card"]["name"] == "tiny-test"
    assert body["card"]["image_size"] == 64
    assert body["serving"]["runtime"] == "tensorflow"
    assert body["serving"]["threshold_source"] == "model card"
    assert body["serving"]["explain"] is True


def test_openapi_describes_every_route(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    api_rules = {r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("api.")}
    assert api_rules <= set(spec["paths"])
    props = spec["components"]["schemas"]["Prediction"]["properties"]
    assert {"result", "label", "probability", "threshold", "model", "heatmap"} <= set(props)
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "DICOM" in body["multipart/form-data"]["schema"]["properties"]["image"]["description"]
    from chestx.web.uploads import RAW_IMAGE_TYPES

    for kind in RAW_IMAGE_TYPES:  # every raw body type read_upload accepts is described
        assert any(t.startswith(kind.rstrip("/")) for t in body), kind


def test_security_headers(client):
    r = client.get("/healthz")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_concurrent_requests_are_batched(app_factory, xray_files, make_upload):
    from concurrent.futures import ThreadPoolExecutor

    app = app_factory(BATCH_SIZE=8, BATCH_TIMEOUT_MS=50)
    datas = [p.read_bytes() for p in xray_files[:16]]
    sizes = []
    service = app.extensions["chestx"]
    original = service.batcher.on_batch
    service.batcher.on_batch = lambda n, s: (sizes.append(n), original(n, s))

    def one(data):
        return app.test_client().post("/predict", data=make_upload(data))

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(one, datas))
    assert all(r.status_code == 200 for r in responses)
    assert sum(sizes) == 16 and max(sizes) > 1 and max(sizes) <= 8
    predictor = service.predictor
    for data, r in zip(datas, responses, strict=True):
        expected = predictor.predict_bytes(data).probability
        assert r.get_json()["probability"] == pytest.approx(expected, abs=1e-5)


def test_failing_requests_give_their_batcher_slot_back(app, client, xray_bytes, monkeypatch):
    batcher = app.extensions["chestx"].batcher
    assert_error(client.post("/predict", data={"image": (io.BytesIO(b"junk"), "x.jpeg")}), 415)
    assert batcher.pending == 0
    predictor = app.extensions["chestx"].predictor

    def broken(data):  # a failure nobody planned for, after the slot was taken
        raise RuntimeError("decoder crashed")

    monkeypatch.setattr(predictor, "prepare", broken)
    assert_error(client.post("/predict", data={"image": (io.BytesIO(xray_bytes), "x.jpeg")}), 500)
    assert batcher.pending == 0  # a leaked slot would hold every later batch for the window


def test_overloaded_batcher_answers_503(app_factory, xray_bytes, make_upload):
    import threading

    app = app_factory(INFERENCE_TIMEOUT=0.1)
    batcher = app.extensions["chestx"].batcher
    model, release = batcher.infer, threading.Event()
    batcher.infer = lambda batch: release.wait(300) and model(batch)  # the model is busy
    client = app.test_client()
    try:
        r = client.post("/predict", data=make_upload(xray_bytes))
        error = assert_error(r, 503, "model_not_ready")
        assert "overloaded" in error["message"] and r.headers["Retry-After"] == "2"
    finally:
        release.set()
    assert client.post("/predict", data=make_upload(xray_bytes)).status_code == 200
    assert batcher.pending == 0


def test_in_memory_stream_used_for_files(app):
    from chestx.web.app import InMemoryRequest

    assert app.request_class is InMemoryRequest
    assert isinstance(InMemoryRequest({})._get_file_stream(10**7, "image/png"), io.BytesIO)
