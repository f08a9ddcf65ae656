"""The LiteRT runtime: export, load, same predictions as TensorFlow, and serving on it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")


def test_litert_matches_tensorflow_on_real_xrays(tiny_model_dir, xray_files):
    from chestx.predict import Predictor

    tf_pred = Predictor(tiny_model_dir, runtime="tensorflow")
    lite = Predictor(tiny_model_dir, runtime="litert")
    images = np.stack([tf_pred.prepare(p.read_bytes()) for p in xray_files])
    expected = tf_pred.predict_batch(images)
    for batch in (images[:1], images[:5], images):  # the input tensor is resized per batch
        got = lite.predict_batch(batch)
        assert got.shape == (len(batch),)
        np.testing.assert_allclose(got, expected[: len(batch)], atol=1e-3)


def test_export_returns_none_when_conversion_fails(tmp_path, caplog):
    from chestx.litert import export_litert

    class NotAModel:
        def export(self, *args, **kwargs):
            raise TypeError("cannot export this")

    assert export_litert(NotAModel(), tmp_path) is None
    assert not (tmp_path / "model.tflite").exists()
    assert "LiteRT export failed" in caplog.text


def test_missing_or_broken_tflite(tmp_path):
    from chestx.errors import ModelError
    from chestx.litert import load_litert

    with pytest.raises(ModelError, match="no model.tflite"):
        load_litert(tmp_path)
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="cannot load"):
        load_litert(tmp_path)


def test_app_serves_on_litert(app_factory, xray_bytes, make_upload):
    app = app_factory(RUNTIME="litert")
    client = app.test_client()
    body = client.post("/predict?explain=1", data=make_upload(xray_bytes)).get_json()
    assert body["model"]["runtime"] == "litert"
    assert body["heatmap"]["png_base64"] is None and body["heatmap"]["unavailable"]
    tf_body = app_factory().test_client().post("/predict", data=make_upload(xray_bytes))
    assert body["probability"] == pytest.approx(tf_body.get_json()["probability"], abs=1e-3)
    html = client.post("/", data=make_upload(xray_bytes)).get_data(as_text=True)
    assert "runtime serves predictions only" in html


def test_litert_worker_never_imports_tensorflow(tiny_model_dir, xray_bytes, tmp_path):
    """The point of the runtime: a worker small enough for a 1 GiB host."""
    import subprocess
    import sys

    (tmp_path / "x.jpeg").write_bytes(xray_bytes)
    code = f"""
import io, sys
from chestx.web import create_app
app = create_app({{"MODEL_DIR": {str(tiny_model_dir)!r}, "RUNTIME": "litert"}})
c = app.test_client()
data = open({str(tmp_path / "x.jpeg")!r}, "rb").read()
assert c.post("/predict", data={{"image": (io.BytesIO(data), "x.jpeg")}}).status_code == 200
assert c.post("/", data={{"image": (io.BytesIO(data), "x.jpeg")}}).status_code == 200
assert c.get("/metrics").status_code == 200
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
