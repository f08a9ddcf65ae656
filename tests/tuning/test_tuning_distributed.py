"""Distributed search on loopback: a chief and two workers (Keras Tuner's gRPC oracle) share
one RUN_DIR; every trial runs exactly once and the leaderboard is complete. Every process is
killed, whatever happens."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chestx.tuning.distribute import Role, apply, parse_address, resolve_role
from chestx.tuning.errors import DistributedError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "hyperparams" / "smoke.yaml"
TRIALS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **(extra_env or {}))
    fh = log.open("w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "chestx", *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    finally:
        fh.close()  # the child keeps its own descriptor


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait(timeout=30)


@pytest.mark.slow
def test_chief_and_two_workers_on_loopback(tmp_path, xray_dir):
    port = free_port()
    out = tmp_path / "run"
    common = ["tune", "--space", str(SMOKE), "--data", str(xray_dir), "--out", str(out)]
    logs = {name: tmp_path / f"{name}.log" for name in ("chief", "w1", "w2")}
    procs = []
    try:
        procs.append(
            start(
                [*common, "--chief", f"127.0.0.1:{port}", "--max-trials", str(TRIALS), "--no-best"],
                logs["chief"],
            )
        )
        procs.append(start([*common, "--worker", "w1", "--chief", f"127.0.0.1:{port}"], logs["w1"]))
        # the second worker is configured the Ansible way: environment variables only
        procs.append(
            start(
                common,
                logs["w2"],
                {
                    "KERASTUNER_TUNER_ID": "w2",
                    "KERASTUNER_ORACLE_IP": "127.0.0.1",
                    "KERASTUNER_ORACLE_PORT": str(port),
                },
            )
        )
        deadline = time.monotonic() + 900  # a deadline, not a speed check
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.5)
        codes = [p.poll() for p in procs]
    finally:
        stop(procs)
    text = {name: path.read_text() for name, path in logs.items()}
    assert codes == [0, 0, 0], "\n".join(f"== {n}\n{t[-2500:]}" for n, t in text.items())

    started = []
    for name in ("w1", "w2"):
        started += [(m, name) for m in re.findall(rf"trial (\d+) start \[{name}\]", text[name])]
    ids = sorted(trial for trial, _ in started)
    assert ids == [str(i) for i in range(TRIALS)], started  # each trial ran exactly once
    for i in range(TRIALS):  # the chief reports every trial as it ends
        assert re.search(rf"trial {i} end \[w[12]\]: COMPLETED", text["chief"]), text["chief"]

    with (out / "leaderboard.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["trial"] for r in rows) == [str(i) for i in range(TRIALS)]
    assert all(r["status"] == "COMPLETED" for r in rows)
    by_worker = {r["trial"]: r["worker"] for r in rows}
    assert by_worker == {trial: name for trial, name in started}
    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["trials"] == doc["completed"] == TRIALS
    assert not (out / "best").exists()
    assert sorted(p.name for p in (out / "search").glob("*.json")) == [
        "chief.json",
        "oracle.json",
        "w1.json",
        "w2.json",
    ]


def test_role_from_flags_and_environment():
    assert resolve_role(environ={}) == Role("local")
    assert resolve_role("0.0.0.0:8470", environ={}) == Role("chief", "chief", "0.0.0.0", 8470)
    assert resolve_role("10.0.0.5:8470", "w1", environ={}) == Role("worker", "w1", "10.0.0.5", 8470)
    env = {
        "KERASTUNER_TUNER_ID": "w3",
        "KERASTUNER_ORACLE_IP": "10.0.0.5",
        "KERASTUNER_ORACLE_PORT": "9000",
    }
    assert resolve_role(environ=env) == Role("worker", "w3", "10.0.0.5", 9000)
    assert resolve_role(environ={**env, "KERASTUNER_TUNER_ID": "chief"}).kind == "chief"
    assert parse_address("[::1]:8000") == ("::1", 8000)


@pytest.mark.parametrize(
    "chief, worker, env, phrase",
    [
        ("localhost", None, {}, "HOST:PORT"),
        ("localhost:http", None, {}, "port must be a number"),
        ("localhost:70000", None, {}, "1-65535"),
        (None, "w1", {}, "--worker needs --chief"),
        ("h:1", "chief-2", {}, "must not contain 'chief'"),
        ("h:1", "w 1", {}, "letters, digits"),
        (None, None, {"KERASTUNER_ORACLE_IP": "h"}, "KERASTUNER_ORACLE_PORT and"),
    ],
)
def test_bad_distributed_settings(chief, worker, env, phrase):
    with pytest.raises(DistributedError, match=re.escape(phrase)):
        resolve_role(chief, worker, environ=env)


def test_apply_sets_and_clears_the_variables():
    env = {"KERASTUNER_TUNER_ID": "stale"}
    apply(Role("worker", "w1", "h", 1), env)
    assert env == {
        "KERASTUNER_TUNER_ID": "w1",
        "KERASTUNER_ORACLE_IP": "h",
        "KERASTUNER_ORACLE_PORT": "1",
    }
    apply(Role("local"), env)
    assert env == {}
