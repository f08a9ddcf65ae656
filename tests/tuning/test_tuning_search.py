"""Real searches on real X-rays (tiny: 64 px, 1 epoch): the smoke search end to end, the
exported model in ``chestx predict``, the report, Hyperband's cap, and resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chestx.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "hyperparams" / "smoke.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:All-NaN:RuntimeWarning")]


def read_leaderboard(run: Path) -> list[dict]:
    with (run / "leaderboard.csv").open() as fh:
        return list(csv.DictReader(fh))


def tune_argv(space, data, out, *extra):
    return ["tune", "--space", str(space), "--data", str(data), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, xray_dir):
    """One real smoke search (2 trials x 1 epoch) with its best model exported."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert main(tune_argv(SMOKE, xray_dir, out)) == 0
    return out


def test_smoke_search_writes_a_complete_leaderboard(smoke_run):
    rows = read_leaderboard(smoke_run)
    assert [r["trial"] for r in sorted(rows, key=lambda r: r["trial"])] == ["0", "1"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    assert [r["rank"] for r in rows] == ["1", "2"]
    scores = [float(r["val_roc_auc"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    header = rows[0].keys()
    for column in (
        "trial",
        "status",
        "val_roc_auc",
        "val_sensitivity",
        "val_specificity",
        "val_pr_auc",
        "epochs",
        "seconds",
        "blocks",
        "filters",
        "learning_rate",
        "batch_size",
        "augment",
        "rotation",
        "image_size",
    ):
        assert column in header, column
    assert all(r["epochs"] == "1" and float(r["seconds"]) > 0 for r in rows)
    # trial 0 is the file's defaults
    trial0 = next(r for r in rows if r["trial"] == "0")
    assert (trial0["blocks"], trial0["filters"], trial0["batch_size"]) == ("2", "8", "8")
    doc = json.loads((smoke_run / "leaderboard.json").read_text())
    assert doc["trials"] == doc["completed"] == 2 and doc["search_seconds"] > 0
    assert doc["objective"] == {"name": "val_roc_auc", "direction": "max"}


def test_no_checkpoints_are_kept(smoke_run):
    files = {p.name for p in (smoke_run / "search").rglob("*") if p.is_file()}
    assert files <= {
        "oracle.json",
        "tuner0.json",
        "trial.json",
        "chestx.json",
        "build_config.json",
    }, files
    assert sum(p.stat().st_size for p in (smoke_run / "search").rglob("*") if p.is_file()) < 200_000


def test_best_is_a_full_model_directory(smoke_run):
    best = smoke_run / "best"
    for name in ("model.keras", "model.h5", "card.json", "search.yaml", "manifest.csv"):
        assert (best / name).is_file(), name
    card = json.loads((best / "card.json").read_text())
    for key in ("image_size", "intensity", "threshold", "name", "version", "metrics"):
        assert key in card, key
    assert card["image_size"] == 64 and card["name"] == "chestx-tuned-smoke"
    tuning = card["tuning"]
    rows = read_leaderboard(smoke_run)
    assert tuning["trial"] == rows[0]["trial"]
    assert tuning["hyperparameters"]["blocks"] == int(rows[0]["blocks"])
    assert tuning["space"]["space"]["blocks"]["type"] == "int"
    assert (best / "search.yaml").read_text() == SMOKE.read_text()
    assert "val" in card["metrics"]


def test_best_loads_in_chestx_predict(smoke_run, xray_dir, capsys):
    images = sorted(str(p) for p in xray_dir.rglob("*.jpeg"))[:3]
    capsys.readouterr()
    assert main(["predict", "--model", str(smoke_run / "best"), *images]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 3
    assert all(0 <= x["probability"] <= 1 and x["label"] in ("NORMAL", "PNEUMONIA") for x in lines)


def test_report_prints_table_and_writes_png(smoke_run, capsys):
    capsys.readouterr()
    assert main(["tune", "--report", str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert "search smoke: random over chestnet" in out and "roc_auc" in out
    assert len([ln for ln in out.splitlines() if ln.startswith(("1 ", "2 "))]) == 2
    png = smoke_run / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_search_into_same_dir_needs_resume(smoke_run, xray_dir, capsys):
    assert main(tune_argv(SMOKE, xray_dir, smoke_run)) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_hyperband_obeys_max_trials_and_epochs(tmp_path, xray_dir):
    space = tmp_path / "hb.yaml"
    space.write_text(
        SMOKE.read_text()
        .replace("tuner: random", "tuner: hyperband")
        .replace("  default_first: true\n", "  hyperband: {factor: 3}\n")
    )
    out = tmp_path / "run"
    # max_epochs 3, factor 3: Hyperband alone would run 6 trials (3 x 1 epoch, then 3 x 3)
    assert (
        main(tune_argv(space, xray_dir, out, "--max-trials", "3", "--epochs", "3", "--no-best"))
        == 0
    )
    rows = read_leaderboard(out)
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    assert all(r["budget_epochs"] == "1" and int(r["epochs"]) == 1 for r in rows)
    assert not (out / "best").exists()


def test_bayesian_search_in_a_fresh_process_per_trial(tmp_path, xray_dir):
    space = tmp_path / "bo.yaml"
    space.write_text(
        SMOKE.read_text()
        .replace("tuner: random", "tuner: bayesian")
        .replace("  default_first: true\n", "  trials_per_process: 1\n")
    )
    out = tmp_path / "run"
    assert main(tune_argv(space, xray_dir, out, "--max-trials", "3", "--no-best")) == 0
    rows = read_leaderboard(out)
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    # each trial ran in its own process (TensorFlow's per-fit memory is returned to the OS)
    pids = {json.loads(p.read_text())["pid"] for p in (out / "search").glob("trial_*/chestx.json")}
    assert len(pids) == 3 and os.getpid() not in pids


def _tune_process(argv, log_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        env.pop(name, None)
    log = open(log_path, "w")  # noqa: SIM115  (closed by the caller through the process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chestx", *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    proc.log = log
    return proc


def _wait_for(path: Path, text: str, proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared:\n{path.read_text()[-3000:]}")


def test_resume_after_a_killed_search(tmp_path, xray_dir, capsys):
    out = tmp_path / "run"
    argv = tune_argv(SMOKE, xray_dir, out, "--max-trials", "3", "--no-best")
    first = _tune_process(argv, tmp_path / "first.log")
    try:
        _wait_for(tmp_path / "first.log", "trial 0 end", first, timeout=600)
        os.killpg(first.pid, signal.SIGKILL)  # a crash: no clean-up at all
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        first.log.close()
    trial0 = (out / "search" / "trial_0" / "trial.json").read_text()

    second = _tune_process([*argv, "--resume"], tmp_path / "second.log")
    try:
        assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait()
        second.log.close()
    log = (tmp_path / "second.log").read_text()
    assert "trial 0 start" not in log  # the finished trial is not redone
    assert "trial 2 end" in log
    assert (out / "search" / "trial_0" / "trial.json").read_text() == trial0
    rows = read_leaderboard(out)
    assert sorted(r["trial"] for r in rows) == ["0", "1", "2"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    sessions = json.loads((out / "run.json").read_text())["sessions"]
    assert len(sessions) == 2

    # killed between a new trial's trial.json and oracle.json (Keras Tuner writes them in that
    # order): the half-created trial is created again, not counted and left RUNNING forever
    half = json.loads((out / "search" / "trial_2" / "trial.json").read_text())
    half.update(trial_id="3", status="RUNNING", score=None, metrics={"metrics": {}})
    (out / "search" / "trial_3").mkdir()
    (out / "search" / "trial_3" / "trial.json").write_text(json.dumps(half))
    more = tune_argv(SMOKE, xray_dir, out, "--max-trials", "4", "--no-best", "--resume")
    assert main(more) == 0  # (a session runs in a child process: its log is not captured)
    rows = read_leaderboard(out)
    assert sorted(r["trial"] for r in rows) == ["0", "1", "2", "3"]
    assert all(r["status"] == "COMPLETED" for r in rows)

    # a state file emptied by a kill mid-write (Keras Tuner's own, non-atomic save did that)
    # is refused with one line, not a JSON traceback
    (out / "search" / "oracle.json").write_text("")
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("chestx: error: cannot resume: a saved search state file under")
    assert "Traceback" not in "\n".join(err)


def test_a_search_where_every_trial_fails_exits_2(tmp_path, xray_dir, capsys):
    out = tmp_path / "run"
    code = main(tune_argv(SMOKE, xray_dir, out, "--set", "image_size=32", "--set", "blocks=5"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("chestx: error: no trial completed")
    rows = read_leaderboard(out)
    assert [r["status"] for r in rows] == ["FAILED", "FAILED"]
    assert "too small for 5 blocks" in rows[0]["message"]
    assert not (out / "best").exists()
