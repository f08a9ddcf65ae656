"""Site calibration: temperature scaling recovers a known temperature, and ``chestx calibrate``
writes a new model directory (card, threshold rule, reliability diagram) without touching its
source, and refuses a folder too small to calibrate on."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from chestx.calibration import apply_temperature, fit_temperature, logit
from chestx.cli import main
from chestx.metrics import binary_metrics, choose_threshold
from chestx.versions import source_revision


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(true_t):
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 3.0, 20_000)  # well-calibrated logits of a sharp model
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    reported = 1 / (1 + np.exp(-z * true_t))  # a model whose logits are T times too large
    assert fit_temperature(y, reported)[0] == pytest.approx(true_t, rel=0.05)
    t, b = fit_temperature(y, 1 / (1 + np.exp(-(z * true_t - 1.5))), bias=True)
    assert t == pytest.approx(true_t, rel=0.05) and b == pytest.approx(1.5 / true_t, abs=0.1)


def test_temperature_is_monotone_and_identity_at_one():
    p = np.array([0.01, 0.3, 0.5, 0.8, 0.999])
    assert np.allclose(apply_temperature(p, 1.0), p)
    for t in (0.5, 2.0):
        q = apply_temperature(p, t)
        assert np.all(np.diff(q) > 0) and q[2] == pytest.approx(0.5)
    assert np.allclose(1 / (1 + np.exp(-logit(p))), p, atol=1e-6)


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory, xray_dir, resources_dir) -> Path:
    """20 NORMAL + 20 PNEUMONIA real X-rays: the fixtures and the extra fixtures together."""
    site = tmp_path_factory.mktemp("site") / "hospital-b"
    for folder in (xray_dir, resources_dir / "xrays-extra"):
        for cls in ("NORMAL", "PNEUMONIA"):
            (site / cls).mkdir(parents=True, exist_ok=True)
            for f in (folder / cls).iterdir():
                shutil.copy2(f, site / cls / f.name)
    assert len(list((site / "NORMAL").iterdir())) == 20
    return site


def _digest(folder: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


@pytest.mark.slow
def test_calibrate_end_to_end(capsys, caplog, tmp_path, site_dir):
    from chestx.config import DEFAULT_MODEL_DIR
    from chestx.predict import Predictor

    caplog.set_level(logging.INFO, logger="chestx.calibrate")

    source = tmp_path / "source"
    shutil.copytree(DEFAULT_MODEL_DIR, source)
    before = _digest(source)
    out = tmp_path / "calibrated"
    code = main(
        [
            "calibrate",
            "--model",
            str(source),
            "--data",
            str(site_dir),
            "--out",
            str(out),
            "--min-sensitivity",
            "0.9",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert _digest(source) == before  # the source model is untouched

    card = json.loads((out / "card.json").read_text())
    cal = card["calibration"]
    # a calibration that fits the set worse than the model's own says so, and names --bias
    assert ("ECE rose" in caplog.text) == (cal["after"]["ece"] > cal["before"]["ece"])
    assert ("--bias" in caplog.text) == ("ECE rose" in caplog.text)
    assert card["temperature"] == cal["temperature"] > 0
    assert cal["set"]["n_normal"] == 20 and cal["set"]["n_pneumonia"] == 20
    assert len(cal["set"]["files_sha256"]) == 64
    assert "0.9" in card["threshold_rule"] and cal["command"].startswith("chestx calibrate")
    assert cal["chestx_source"] == source_revision()  # with the command, what reproduces it
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # 20 normal X-rays vouch for little, and the card and the run both say how little
    low, high = cal["after"]["specificity_ci"]
    assert low <= cal["after"]["specificity"] <= high and high - low > 0.15
    said = f"specificity {cal['after']['specificity']:.3f} (95 % CI {low:.3f} to {high:.3f})"
    assert said in caplog.text
    for name in ("model.keras", "model.tflite", "manifest.csv"):
        assert (out / name).read_bytes() == (source / name).read_bytes()

    # the threshold rule, re-checked from the raw model: T applied, then the rule on the set
    raw = Predictor(source, temperature=1.0, bias=0.0)
    calibrated = Predictor(out)
    files = sorted(site_dir.rglob("*.jpeg"))
    y = np.array([f.parent.name == "PNEUMONIA" for f in files], int)
    batch = np.stack([raw.prepare(f.read_bytes()) for f in files])
    p_raw = raw.predict_batch(batch)
    p_cal = calibrated.predict_batch(batch)
    assert np.allclose(p_cal, apply_temperature(p_raw, card["temperature"]), atol=1e-6)
    assert card["logit_bias"] == 0.0

    def nll(p):
        p = np.clip(p.astype(float), 1e-7, 1 - 1e-7)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    assert nll(p_cal) <= nll(p_raw) + 1e-6  # maximum likelihood: never worse than T = 1
    assert card["threshold"] == pytest.approx(choose_threshold(y, p_cal, 0.9))
    assert binary_metrics(y, p_cal, card["threshold"])["sensitivity"] >= 0.9
    # same decisions whichever side of the temperature one reads them on (Grad-CAM does)
    assert np.array_equal(p_cal >= calibrated.threshold, p_raw >= calibrated.raw_threshold)

    # another rule on the same day is another model, and its version says so
    other = tmp_path / "other"
    argv = ["calibrate", "--model", str(source), "--data", str(site_dir), "--out", str(other)]
    assert main([*argv, "--min-sensitivity", "0.99"]) == 0
    other_card = json.loads((other / "card.json").read_text())
    assert other_card["threshold"] != card["threshold"]
    source_version = json.loads((source / "card.json").read_text())["version"]
    for version in (card["version"], other_card["version"]):
        assert version.startswith(f"{source_version}-cal")
    assert other_card["version"] != card["version"]


def test_calibrate_refuses_a_small_folder_and_writes_nothing(capsys, tmp_path, xray_dir):
    out = tmp_path / "never"
    code = main(["calibrate", "--data", str(xray_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "at least 20 of each" in err[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_calibrate_refuses_to_overwrite(capsys, tmp_path, site_dir):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    code = main(["calibrate", "--data", str(site_dir), "--out", str(tmp_path / "busy")])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
