"""The command line: exit codes and one-line messages for bad input, and a real end-to-end run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chestx.cli import main
from chestx.versions import source_revision


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_instant_and_imports_no_tensorflow():
    code = (
        "import sys; from chestx.cli import build_parser; build_parser(); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras')))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "chestx", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "evaluate", "predict", "data", "serve", "tune"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "/no/such/folder", "--out", "/tmp/x"],
        ["pretrain", "--data", "/no/such/folder", "--out", "/tmp/x"],
        ["evaluate", "--data", "/no/such/folder", "--model", "/no/such/model"],
        ["predict", "--model", "/no/such/model", "/no/such.png"],
        ["predict", "/no/such.png"],
    ],
)
def test_bad_paths_exit_2_with_one_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chestx: error: ")


def test_train_on_one_class_is_refused_and_leaves_out_as_it_was(capsys, tmp_path, xray_dir):
    data = tmp_path / "normals"
    shutil.copytree(xray_dir / "NORMAL", data / "NORMAL")
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.keras").write_bytes(b"an earlier run's model")
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(out))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "both NORMAL and PNEUMONIA" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["model.keras"]  # no manifest, nothing lost
    assert (out / "model.keras").read_bytes() == b"an earlier run's model"


def test_predict_reads_folders_in_order(capsys, tmp_path, xray_dir):
    """A folder stands for the image files under it, sorted; one without any gets an error
    line in its place; the shipped model answers the rest."""
    (tmp_path / "empty").mkdir()
    normals = sorted((xray_dir / "NORMAL").iterdir())
    single = sorted((xray_dir / "PNEUMONIA").iterdir())[0]
    argv = ["predict", str(single), str(xray_dir / "NORMAL"), str(tmp_path / "empty")]
    code, out, err = run(capsys, *argv)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(single), *map(str, normals), str(tmp_path / "empty")]
    assert all("probability" in r for r in rows[:-1])
    assert "no JPEG, PNG" in rows[-1]["error"]
    assert code == 1 and f"1 of {len(rows)} images" in err


def test_model_dir_without_card(capsys, tmp_path, xray_dir):
    image = next((xray_dir / "NORMAL").iterdir())
    code, _, err = run(capsys, "predict", "--model", str(tmp_path), str(image))
    assert code == 2 and "not a chestx model directory" in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x", "--out", "y", "--epochs", "0"])
    assert exc.value.code == 2


def test_data_download_without_credentials(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle"))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(capsys, "data", "download", "--dest", str(tmp_path / "d"))
    assert code == 2 and "Kaggle credentials" in err


def _zip(path: Path, members: dict[str, bytes], xrays: Path | None = None) -> Path:
    """A zip of ``members``, after the fixture X-rays laid out as Kaggle's
    (``chest_xray/train/NORMAL/…``) when ``xrays`` is their folder."""
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(xrays.rglob("*.jpeg")) if xrays else []:
            zf.write(f, f"chest_xray/train/{f.parent.name}/{f.name}")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_data_download_from_local_archive(capsys, tmp_path, xray_dir):
    archive = _zip(tmp_path / "chest-xray-pneumonia.zip", {"__MACOSX/._junk": b""}, xray_dir)
    code, out, _ = run(
        capsys, "data", "download", "--dest", str(tmp_path / "d"), "--archive", str(archive)
    )
    assert code == 0
    assert out.strip().endswith("chest_xray")
    assert len(list((tmp_path / "d" / "chest_xray" / "train" / "NORMAL").iterdir())) == 12
    assert not (tmp_path / "d" / "__MACOSX").exists()
    # a second run finds the data and does nothing
    code, out2, _ = run(
        capsys, "data", "download", "--dest", str(tmp_path / "d"), "--archive", str(archive)
    )
    assert code == 0 and out2 == out


def test_data_download_from_a_missing_archive_makes_nothing(capsys, tmp_path):
    code, _, err = run(
        capsys, "data", "download", "--dest", str(tmp_path / "d"), "--archive", "nope.zip"
    )
    assert code == 2 and err.strip() == "chestx: error: archive nope.zip does not exist"
    assert not (tmp_path / "d").exists()


def test_a_wrong_archive_leaves_dest_as_it_was(capsys, tmp_path, xray_dir):
    """Another data set's zip unpacks nothing into --dest; one that would overwrite a file there
    is refused before anything moves."""
    cats = _zip(tmp_path / "cats.zip", {"cats/tabby.jpeg": b"\xff\xd8 not an X-ray"})
    code, _, err = run(
        capsys, "data", "download", "--dest", str(tmp_path / "d"), "--archive", str(cats)
    )
    assert code == 2 and "not the chest X-ray data set" in err
    assert not (tmp_path / "d").exists()  # made for this run, and left empty: gone

    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("my notes")
    xrays = _zip(tmp_path / "xrays.zip", {"notes.txt": b"the archive's"}, xray_dir)
    code, _, err = run(capsys, "data", "download", "--dest", str(dest), "--archive", str(xrays))
    assert code == 2 and "notes.txt exists" in err
    assert sorted(p.name for p in dest.iterdir()) == ["notes.txt"]
    assert (dest / "notes.txt").read_text() == "my notes"


def test_zip_slip_is_refused(capsys, tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"../../outside.txt": b"x"})
    code, _, err = run(
        capsys, "data", "download", "--dest", str(tmp_path / "d"), "--archive", str(archive)
    )
    assert code == 2 and "outside" in err
    assert not (tmp_path / "outside.txt").exists()


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--arch", "cnn"], "--arch cnn has none"),
        (["--init", "/some/model"], "--init keeps its source's width"),
    ],
)
def test_width_that_cannot_apply_is_refused(capsys, tmp_path, xray_dir, extra, says):
    out = tmp_path / "model"
    code, _, err = run(
        capsys, "train", "--data", str(xray_dir), "--out", str(out), "--width", "8", *extra
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_width_scales_chestnets_filters(capsys, tmp_path, xray_dir):
    import keras

    out = tmp_path / "narrow"
    argv = ["--data", str(xray_dir), "--out", str(out), "--epochs", "1", "--image-size", "32"]
    code, _, _ = run(capsys, "train", *argv, "--batch-size", "8", "--width", "4")
    assert code == 0
    network = keras.saving.load_model(out / "model.keras")
    convs = [layer.filters for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [4, 4, 4, 8, 8, 16, 16, 32, 32]  # the stem, then two convs per block
    card = json.loads((out / "card.json").read_text())
    assert card["parameters"] == network.count_params()
    assert card["training"]["command"].endswith("--width 4")


@pytest.mark.slow
def test_train_evaluate_predict_end_to_end(capsys, tmp_path, xray_dir):
    out = tmp_path / "model"
    code, _, _ = run(
        capsys,
        "train",
        "--data",
        str(xray_dir),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--seed",
        "1",
    )
    assert code == 0
    for name in ("model.keras", "model.h5", "card.json", "manifest.csv", "history.csv"):
        assert (out / name).is_file(), name
    card = json.loads((out / "card.json").read_text())
    assert card["image_size"] == 64 and card["intensity"] == "clahe"
    assert 0 < card["threshold"] < 1
    assert card["training"]["command"].startswith(f"chestx train --data {xray_dir}")
    assert card["metrics"]["val"]["n"] > 0
    assert len(card["data"]["manifest_sha256"]) == 64
    assert card["versions"]["keras_tuner"] and card["versions"]["litert"]  # chestx.versions
    assert card["versions"]["chestx_source"] == source_revision()  # the commit, in a checkout

    report = tmp_path / "metrics.json"
    code, text, _ = run(
        capsys,
        "evaluate",
        "--model",
        str(out),
        "--data",
        str(xray_dir),
        "--json",
        str(report),
        "--plots",
        str(tmp_path / "plots"),
    )
    assert code == 0 and "sensitivity" in text
    metrics = json.loads(report.read_text())
    for key in (
        "accuracy",
        "roc_auc",
        "sensitivity",
        "specificity",
        "n",
        "confusion_matrix",
        "threshold",
    ):
        assert key in metrics
    assert metrics["n"] == 24 and metrics["threshold"] == card["threshold"]
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    assert tn + fp == 12 and fn + tp == 12
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {
        "confusion_matrix.png",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
    }

    good = sorted((xray_dir / "PNEUMONIA").iterdir())[0]
    bad = tmp_path / "notes.txt"
    bad.write_text("not an x-ray")
    code, text, err = run(capsys, "predict", "--model", str(out), str(good), str(bad))
    assert code == 1  # one failed; the other is still answered
    rows = [json.loads(line) for line in text.strip().splitlines()]
    assert rows[0]["path"] == str(good) and rows[0]["label"] in ("NORMAL", "PNEUMONIA")
    assert 0 <= rows[0]["probability"] <= 1 and rows[0]["threshold"] == card["threshold"]
    assert rows[1]["path"] == str(bad) and "error" in rows[1]


def _train_argv(xray_dir, out, *extra) -> list[str]:
    """``chestx train`` on the fixture X-rays at 48 px, as a child process's argv."""
    data = ["--data", str(xray_dir), "--out", str(out), "--image-size", "48"]
    return [sys.executable, "-m", "chestx", "train", *data, *extra]


def _train(tmp_path, xray_dir, name, *extra):
    argv = _train_argv(xray_dir, tmp_path / name, "--batch-size", "8", *extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(tmp_path, xray_dir):
    import numpy as np

    from chestx.predict import Predictor

    for name in ("a", "b"):
        run = _train(tmp_path, xray_dir, name, "--epochs", "2", "--seed", "5")
        assert run.returncode == 0, run.stderr[-3000:]
        # Keras' false alarm on a dataset of unknown length (chestx.logs) is not shown
        assert "ran out of data" not in run.stderr
    batch = np.stack(
        [
            Predictor(tmp_path / "a").prepare(f.read_bytes())
            for f in sorted(xray_dir.rglob("*.jpeg"))
        ]
    )
    pa = Predictor(tmp_path / "a").predict_batch(batch)
    pb = Predictor(tmp_path / "b").predict_batch(batch)
    np.testing.assert_array_equal(pa, pb)
    ca = json.loads((tmp_path / "a" / "card.json").read_text())
    cb = json.loads((tmp_path / "b" / "card.json").read_text())
    assert ca["threshold"] == cb["threshold"]
    assert ca["data"]["manifest_sha256"] == cb["data"]["manifest_sha256"]


def _sigint_caught(pid: int) -> bool:
    """Whether process ``pid`` has a handler for SIGINT (Linux: SigCgt in /proc/PID/status)."""
    import signal
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    return False


@pytest.mark.slow
def test_ctrl_c_leaves_a_usable_model(tmp_path, xray_dir):
    """A real Ctrl-C (SIGINT) to a real ``chestx train`` process.

    The child starts with SIGINT *ignored*, as every background job of a non-interactive shell
    does (``make test &`` in a script or CI step): Python then installs no KeyboardInterrupt
    handler, and before issue 12 the SIGINT was silently dropped and training ran all its
    epochs (the card said, truthfully, "interrupted": false). ``chestx train`` now installs its
    own handler whatever it inherited. Every wait is on a file or the process, with deadlines
    far beyond any machine's speed.
    """
    import signal
    import time

    out, log_path = tmp_path / "m", tmp_path / "train.log"
    argv = _train_argv(xray_dir, out, "--batch-size", "4", "--epochs", "500", "--patience", "500")
    with log_path.open("w") as log_file:  # a file, not a pipe nobody reads while we wait
        proc = subprocess.Popen(
            ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *argv],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 900
        history = out / "history.csv"  # rewritten atomically after each epoch
        while not history.is_file() or len(history.read_text().splitlines()) < 3:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no two epochs in 15 min"
            time.sleep(0.2)
        assert _sigint_caught(proc.pid), "chestx train left SIGINT ignored"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=900)
    finally:
        proc.kill()
        proc.wait()
    log = log_path.read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "finishing from the best checkpoint" in log
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "complete" and card["training"]["interrupted"] is True
    epochs_run = card["training"]["epochs_run"]
    assert 2 <= epochs_run < 500
    assert len((out / "history.csv").read_text().splitlines()) == 1 + epochs_run
    image = sorted((xray_dir / "NORMAL").iterdir())[0]
    done = subprocess.run(
        [sys.executable, "-m", "chestx", "predict", "--model", str(out), str(image)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["label"] in ("NORMAL", "PNEUMONIA")
