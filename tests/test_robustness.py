"""The robustness report: graded corruptions change the images, and ``evaluate --robustness``
scores every corruption and level on a labelled folder."""

import json

import cv2
import numpy as np
import pytest

from chestx.robustness import CORRUPTIONS


@pytest.fixture(scope="module")
def gray(xray_dir):
    from chestx.imaging import decode_gray

    return decode_gray(sorted((xray_dir / "NORMAL").iterdir())[0].read_bytes())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_keeps_the_shape_and_grows_with_its_level(name, gray):
    fn, levels, _ = CORRUPTIONS[name]
    diffs = []
    for param in levels:
        out = fn(gray, param)
        assert out.dtype == np.uint8
        if name == "resolution":  # left small, for chestx's own resize: compared at full size
            assert max(out.shape) == param
            out = cv2.resize(out, gray.shape[::-1], interpolation=cv2.INTER_AREA)
        assert out.shape == gray.shape
        diffs.append(np.abs(out.astype(float) - gray).mean())
    assert 0 < diffs[0] <= diffs[-1]


def test_evaluate_robustness_on_a_tiny_model(capsys, tmp_path, tiny_model_dir, xray_dir):
    from chestx.cli import main

    code = main(
        [
            "evaluate",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(xray_dir),
            "--robustness",
            "--json",
            str(tmp_path / "m.json"),
            "--plots",
            str(tmp_path / "plots"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = json.loads((tmp_path / "m.json").read_text())["robustness"]
    assert len(rows) == 1 + 3 * len(CORRUPTIONS)
    assert {r["corruption"] for r in rows} == {"none", *CORRUPTIONS}
    for r in rows:
        assert 0.0 <= r["roc_auc"] <= 1.0 and 0.0 <= r["specificity"] <= 1.0
    assert "zoom_out" in out and "ROC AUC" in out
    assert (tmp_path / "plots" / "robustness.png").read_bytes()[:4] == b"\x89PNG"
