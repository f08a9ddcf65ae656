"""JSON every parser reads: an undefined metric is null, never a bare NaN (``chestx.strictjson``),
in ``chestx evaluate --json`` reports and model cards (the web service's: test_web_ui.py)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from chestx import strictjson
from chestx.cli import main
from chestx.modeldir import CARD, load_card, write_card


def strict_loads(text: str):
    """``json.loads`` as JavaScript's ``JSON.parse`` reads: NaN and Infinity are errors."""

    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_finite_replaces_every_non_finite_float_at_any_depth():
    value = {
        "roc_auc": math.nan,
        "ci": (np.float64("nan"), 1.0),
        "rows": [{"x": math.inf}, {"x": -math.inf}, {"x": 0.25}],
        "n": 3,
        "label": "NaN",
    }
    assert strictjson.finite(value) == {
        "roc_auc": None,
        "ci": [None, 1.0],
        "rows": [{"x": None}, {"x": None}, {"x": 0.25}],
        "n": 3,
        "label": "NaN",
    }
    assert strict_loads(strictjson.dumps(value))["rows"][2] == {"x": 0.25}
    with pytest.raises(ValueError):
        strict_loads(json.dumps(value))  # what Python's json writes by itself


def test_evaluate_json_of_one_class_is_strict_json(capsys, tmp_path, tiny_model_dir, xray_dir):
    """A site checking its normal X-rays alone: no pneumonia, so no sensitivity and no ROC AUC;
    the report says null where it wrote NaN, which strict parsers refuse."""
    normals = tmp_path / "normals"
    shutil.copytree(xray_dir / "NORMAL", normals / "NORMAL")
    report = tmp_path / "report.json"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(normals)]
    assert main([*args, "--json", str(report), "--robustness"]) == 0
    capsys.readouterr()
    result = strict_loads(report.read_text())
    assert result["n_pneumonia"] == 0 and result["n_normal"] == 12
    assert result["sensitivity"] is None and result["roc_auc"] is None
    assert result["sensitivity_ci"] == [None, None]
    assert 0.0 <= result["specificity"] <= 1.0
    assert all(row["roc_auc"] is None for row in result["robustness"])


def test_a_card_is_written_as_strict_json(tmp_path):
    write_card(tmp_path, {"status": "complete", "metrics": {"test": {"roc_auc": math.nan}}})
    assert strict_loads((tmp_path / CARD).read_text())["metrics"]["test"]["roc_auc"] is None
    assert load_card(tmp_path)["metrics"]["test"]["roc_auc"] is None
