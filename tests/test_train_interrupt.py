"""Ctrl-C during ``chestx train``, at every phase, made deterministic.

The SIGINTs are raised from inside the run (a Keras callback, the image reader, the checkpoint
writer) at a chosen moment, so each test interrupts exactly the phase it names, however busy
the machine is. They run in-process through ``chestx.cli.main`` (exit codes included);
``tests/test_cli.py`` sends a real Ctrl-C to a real ``chestx train`` process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading

import numpy as np
import pytest

from chestx import callbacks as chestx_callbacks
from chestx import recipe
from chestx import train as train_module
from chestx.cli import main
from chestx.fileio import leftover_temp_files
from chestx.interrupts import GracefulInterrupt

SMALL = [
    "--image-size",
    "48",
    "--batch-size",
    "4",
    "--patience",
    "100",
    "--no-augment",
    "--seed",
    "3",
]


# -- the handler on its own -----------------------------------------------------------------
def test_first_ctrl_c_asks_second_aborts_and_the_old_disposition_comes_back():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job inherits it
    try:
        with GracefulInterrupt("stopping") as ctrl_c:
            assert signal.getsignal(signal.SIGINT) == ctrl_c._handle
            signal.raise_signal(signal.SIGINT)
            assert ctrl_c.requested  # handled, not ignored, and no exception yet
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_off_the_main_thread_it_installs_nothing():
    seen = {}

    def worker():
        with GracefulInterrupt() as ctrl_c:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["requested"] = ctrl_c.requested

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"handler": before, "requested": False}


def test_the_decoder_never_turns_an_interrupt_into_a_skipped_file(monkeypatch, xray_dir):
    from chestx import data, imaging

    skipped = data.DecodeLog()
    decode = data._decoder(48, "none", skipped)
    for error in (KeyboardInterrupt, SystemExit, OSError("unreadable")):

        def read_file(path, _error=error, **kw):
            raise _error

        monkeypatch.setattr(imaging, "read_file", read_file)
        if isinstance(error, OSError):  # a real bad file is still skipped
            assert decode(b"/no/such.jpeg")[1] is False and len(skipped) == 1
        else:
            with pytest.raises(error):
                decode(str(next((xray_dir / "NORMAL").iterdir())).encode())
            assert len(skipped) == 0


# -- whole runs ------------------------------------------------------------------------------
class SigintAt:
    """Raise SIGINT ``times`` times at one Keras hook (``train`` or ``test`` batch begin) of
    one epoch, once."""

    def __init__(self, hook: str, epoch: int, times: int = 1):
        import keras

        outer = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                outer.maybe_fire("train", batch)

            def on_test_batch_begin(self, batch, logs=None):
                outer.maybe_fire("test", batch)

        self.hook, self.target, self.times = hook, epoch, times
        self.epoch, self.fired = -1, False
        self.callback = _Callback()

    def maybe_fire(self, hook: str, batch: int) -> None:
        if hook == self.hook and self.epoch == self.target and batch == 1 and not self.fired:
            self.fired = True
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)


def _with_callback(monkeypatch, extra) -> None:
    original = recipe.callbacks
    monkeypatch.setattr(recipe, "callbacks", lambda *a, **kw: [*original(*a, **kw), extra])


@pytest.fixture
def no_litert(monkeypatch):
    """The LiteRT export is not what these tests are about, and it is the slowest step."""
    monkeypatch.setattr(train_module, "_export_litert", lambda model, out: None)


@pytest.fixture
def run_train(capsys, caplog, xray_dir):
    """``run_train(out, *args)`` -> (exit code, log text + stderr) of ``chestx train``."""
    caplog.set_level(logging.INFO, logger="chestx")

    def run(out, *extra):
        code = main(["train", "--data", str(xray_dir), "--out", str(out), *SMALL, *extra])
        return code, caplog.text + capsys.readouterr().err

    return run


def _finished(out, epochs_run: int) -> dict:
    """The checks every interrupted-then-finished run must pass."""
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "complete"
    assert card["training"]["interrupted"] is True
    assert card["training"]["epochs_run"] == epochs_run
    assert 0 < card["threshold"] < 1 and card["threshold_rule"].startswith("highest")
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + epochs_run  # header + one row per epoch run
    assert leftover_temp_files(out) == []
    from chestx.predict import Predictor

    # the model it finished from loads and runs
    assert Predictor(out).predict_batch(np.zeros((1, 48, 48, 1), np.uint8)).shape == (1,)
    return card


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hook", "epoch", "epochs_run"),
    [
        ("train", 2, 3),  # in the middle of an epoch: that epoch ends after the current batch
        ("test", 1, 2),  # during validation: the validation still completes, honest metrics
    ],
)
def test_ctrl_c_during_an_epoch_or_validation(
    run_train, monkeypatch, no_litert, tmp_path, hook, epoch, epochs_run
):
    fire = SigintAt(hook, epoch)
    _with_callback(monkeypatch, fire.callback)
    code, err = run_train(tmp_path / "m", "--epochs", "50")
    assert code == 0, err
    assert fire.fired and "finishing from the best checkpoint" in err
    _finished(tmp_path / "m", epochs_run)


@pytest.mark.slow
def test_ctrl_c_while_images_are_decoded(run_train, monkeypatch, no_litert, tmp_path):
    """The first epoch decodes the X-rays in tf.data's threads; a SIGINT sent from there must
    stop the run (not be taken for an unreadable file, not be lost)."""
    from chestx import imaging

    real, calls = imaging.read_file, []

    def read_file(path, **kw):
        calls.append(path)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(path, **kw)

    monkeypatch.setattr(imaging, "read_file", read_file)
    code, err = run_train(tmp_path / "m", "--epochs", "50")
    assert code == 0, err
    card = _finished(tmp_path / "m", 1)
    assert card["data"]["skipped"] == 0


@contextlib.contextmanager
def _sigint_inside_save(times: int, on_save: int, saves: list):
    """Patch the checkpoint writer: on save number ``on_save`` raise SIGINT ``times`` times
    after the model went to the temporary file and before it replaces the checkpoint."""
    real = chestx_callbacks.atomic_path

    @contextlib.contextmanager
    def atomic_path(path):
        with real(path) as tmp:
            yield tmp
            saves.append(tmp)
            if len(saves) == on_save:
                for _ in range(times):
                    signal.raise_signal(signal.SIGINT)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chestx_callbacks, "atomic_path", atomic_path)
        # save every epoch, so that the chosen save exists whatever the metric does
        mp.setattr(chestx_callbacks.AtomicCheckpoint, "_improved", lambda self, value: True)
        yield


@pytest.mark.slow
def test_ctrl_c_while_the_checkpoint_is_written(run_train, no_litert, tmp_path):
    saves = []
    with _sigint_inside_save(times=1, on_save=2, saves=saves):
        code, err = run_train(tmp_path / "m", "--epochs", "50")
    assert code == 0, err
    assert len(saves) == 2  # the save that was interrupted completed, then training stopped
    _finished(tmp_path / "m", 2)


@pytest.mark.slow
def test_second_ctrl_c_aborts_and_keeps_the_previous_checkpoint(
    run_train, capsys, monkeypatch, no_litert, tmp_path, xray_dir
):
    """The issue's crash: Ctrl-C (twice: abort) while model.keras is written. The previous
    checkpoint survives byte for byte, and the card still says the run is not finished."""
    out = tmp_path / "m"
    saves, first = [], {}
    original = chestx_callbacks.AtomicCheckpoint.save

    def save(self):
        if saves:  # the second save is about to start: keep the first checkpoint's bytes
            first["bytes"] = (out / "model.keras").read_bytes()
        original(self)

    monkeypatch.setattr(chestx_callbacks.AtomicCheckpoint, "save", save)
    with _sigint_inside_save(times=2, on_save=2, saves=saves):
        code, err = run_train(out, "--epochs", "50")
    assert code == 130 and err.strip().splitlines()[-1] == "chestx: interrupted"
    assert len(saves) == 2 and (out / "model.keras").read_bytes() == first["bytes"]
    assert leftover_temp_files(out) == []
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "training"  # never a finished-looking card next to it
    import keras

    import chestx.models  # noqa: F401  (custom layers)

    keras.saving.load_model(out / "model.keras", compile=False)  # the good checkpoint loads
    image = next((xray_dir / "NORMAL").iterdir())
    code = main(["predict", "--model", str(out), str(image)])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a finished model" in err


@pytest.mark.slow
def test_ctrl_c_during_fine_tuning(run_train, monkeypatch, no_litert, tmp_path):
    fire = SigintAt("train", epoch=3)  # epochs 0-1 train the head, 2.. fine-tune
    _with_callback(monkeypatch, fire.callback)
    code, err = run_train(
        tmp_path / "m",
        "--arch",
        "transfer",
        "--weights",
        "none",
        "--epochs",
        "2",
        "--fine-tune-layers",
        "10",
        "--fine-tune-epochs",
        "30",
    )
    assert code == 0, err
    assert "fine-tuning the top" in err
    _finished(tmp_path / "m", 4)


# -- directories that must not be served -----------------------------------------------------
def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_predict_refuses_a_truncated_model_with_one_line(
    capsys, tmp_path, tiny_model_dir, xray_dir
):
    model = _copy_model(tiny_model_dir, tmp_path / "m")
    data = (model / "model.keras").read_bytes()
    (model / "model.keras").write_bytes(data[: len(data) // 2])
    image = next((xray_dir / "NORMAL").iterdir())
    code = main(["predict", "--model", str(model), str(image)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chestx: error: cannot load"), err


def test_predict_and_serve_refuse_an_unfinished_directory(
    capsys, monkeypatch, tmp_path, tiny_model_dir, xray_dir
):
    from chestx import modeldir
    from chestx.errors import ModelError
    from chestx.web.snapshot import check_structure

    model = _copy_model(tiny_model_dir, tmp_path / "m")
    card = json.loads((model / "card.json").read_text())
    modeldir.write_card(model, {**card, "status": "training"})
    image = next((xray_dir / "NORMAL").iterdir())
    code = main(["predict", "--model", str(model), str(image)])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a finished model" in err
    with pytest.raises(ModelError, match="not a finished model"):  # `chestx serve` refuses
        check_structure(model, "tensorflow")
    modeldir.write_card(model, card)
    assert check_structure(model, "tensorflow")["status"] == "complete"
