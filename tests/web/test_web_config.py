"""Configuration from CHESTX_* variables, validated at start-up; the serve command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from chestx.errors import ChestxError


def test_prefixed_environment(monkeypatch, tiny_model_dir):
    from chestx.web import create_app

    monkeypatch.setenv("CHESTX_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("CHESTX_MAX_CONTENT_LENGTH", "12345")
    monkeypatch.setenv("CHESTX_THRESHOLD", "0.25")
    monkeypatch.setenv("CHESTX_MAX_PIXELS", "1000000")
    monkeypatch.setenv("CHESTX_BATCH_SIZE", "4")
    monkeypatch.setenv("CHESTX_BATCH_TIMEOUT_MS", "2.5")
    app = create_app({"LOAD_MODEL": False})
    settings = app.extensions["chestx"].settings
    assert app.config["MAX_CONTENT_LENGTH"] == 12345
    assert settings.threshold == 0.25
    assert settings.max_pixels == 1_000_000
    assert settings.batch_size == 4 and settings.batch_timeout_ms == 2.5
    assert settings.model_dir == str(tiny_model_dir)
    assert (
        create_app({"LOAD_MODEL": False, "THRESHOLD": 0.75}).extensions["chestx"].settings.threshold
        == 0.75
    )  # the mapping wins


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("THRESHOLD", "1.5", "between 0.0 and 1.0"),
        ("THRESHOLD", '"high"', "must be a number"),
        ("RUNTIME", '"pytorch"', "tensorflow, litert"),
        ("BATCH_SIZE", "0", "between 1"),
        ("MAX_CONTENT_LENGTH", "-1", "at least 1"),
        ("MAX_PIXELS", "2.5", "must be an integer"),
        ("INFERENCE_TIMEOUT", "nan", "must be a number"),
    ],
)
def test_bad_settings_stop_start_up(monkeypatch, key, value, words):
    from chestx.web import create_app

    monkeypatch.setenv(f"CHESTX_{key}", value)
    with pytest.raises(ChestxError, match=f"CHESTX_{key}") as info:
        create_app({"LOAD_MODEL": False})
    assert words in str(info.value)


def test_help_lists_serve_and_loads_no_heavy_module():
    # "instant" is checked by what --help imports, not by a stopwatch a busy machine beats
    out = subprocess.run(
        [sys.executable, "-m", "chestx", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--host", "--port", "--model", "--workers", "--dev", "--runtime"):
        assert option in out
    probe = (
        "import sys, chestx.cli; chestx.cli.build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'flask', 'gunicorn', 'keras') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_serve_options_become_environment(tmp_path, monkeypatch):
    from chestx.cli import build_parser
    from chestx.web.cli import serve_env

    monkeypatch.delenv("CHESTX_BIND", raising=False)
    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "9001",
            "--model",
            str(tmp_path),
            "--workers",
            "3",
            "--runtime",
            "litert",
        ]
    )
    env = serve_env(args)
    assert env["CHESTX_BIND"] == "127.0.0.1:9001"
    assert env["CHESTX_MODEL_DIR"] == str(tmp_path.resolve())
    assert env["CHESTX_WORKERS"] == "3" and env["CHESTX_RUNTIME"] == "litert"
    monkeypatch.setenv("CHESTX_BIND", "0.0.0.0:8080")
    assert (
        serve_env(build_parser().parse_args(["serve", "--port", "81"]))["CHESTX_BIND"]
        == "0.0.0.0:81"
    )
    assert serve_env(build_parser().parse_args(["serve"]))["CHESTX_BIND"] == "0.0.0.0:8080"


def _gunicorn_conf(monkeypatch, **env):
    import runpy
    from pathlib import Path

    import chestx

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(Path(chestx.__file__).parent / "gunicorn.conf.py"))


def test_gunicorn_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = _gunicorn_conf(monkeypatch)
    assert conf["bind"] == ["127.0.0.1:8000"] and conf["preload_app"] is False
    assert conf["worker_class"] == "gthread" and conf["max_requests_jitter"] > 0
    conf = _gunicorn_conf(
        monkeypatch,
        CHESTX_BIND="0.0.0.0:9000",
        CHESTX_WORKERS="3",
        CHESTX_TIMEOUT="120",
        CHESTX_MAX_REQUESTS="100",
    )
    assert conf["bind"] == ["0.0.0.0:9000"] and conf["workers"] == 3
    assert conf["timeout"] == 120 and conf["max_requests"] == 100
    assert conf["max_requests_jitter"] == 10
    with pytest.raises(SystemExit, match="CHESTX_WORKERS"):
        _gunicorn_conf(monkeypatch, CHESTX_WORKERS="many")
    with pytest.raises(SystemExit, match="CHESTX_LOG_LEVEL"):
        _gunicorn_conf(monkeypatch, CHESTX_WORKERS="2", CHESTX_LOG_LEVEL="loud")


@pytest.mark.parametrize(
    "value, on",
    [("off", False), ("0", False), ("no", False), ("False", False), ("on", True), ("1", True)],
)
def test_access_log_switch_reads_the_same_in_server_and_app(monkeypatch, tmp_path, value, on):
    # CHESTX_ACCESS_LOG=off once turned the access log on in the Gunicorn config while the
    # app's parser read "off" as off: both now read the one Settings object
    from chestx.web import create_app

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    conf = _gunicorn_conf(monkeypatch, CHESTX_ACCESS_LOG=value, CHESTX_GATE=value)
    assert (conf["accesslog"] == "-") is on
    access = conf["logconfig_dict"]["loggers"]["gunicorn.access"]["level"]
    assert access == ("INFO" if on else "CRITICAL")
    assert conf["settings"].access_log is on
    app = create_app({"LOAD_MODEL": False})  # the same spelling reads the same in the app
    assert app.extensions["chestx"].settings.gate is on


def test_bad_switch_stops_the_server_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="CHESTX_ACCESS_LOG must be on or off"):
        _gunicorn_conf(monkeypatch, CHESTX_ACCESS_LOG="quiet")
    with pytest.raises(SystemExit, match="CHESTX_THRESHOLD must be between"):
        _gunicorn_conf(monkeypatch, CHESTX_ACCESS_LOG="1", CHESTX_THRESHOLD="2")


def test_settings_defaults_and_overrides():
    from chestx.web.settings import Settings

    assert Settings.from_env(environ={}) == Settings()
    s = Settings.from_env(
        environ={
            "CHESTX_BIND": "0.0.0.0:80, unix:/run/chestx.sock",
            "CHESTX_MAX_CONTENT_LENGTH": "2e7",
            "CHESTX_RUNTIME": "LiteRT",
            "CHESTX_THRESHOLD": "",  # empty: the default
            "CHESTX_GATE": "off",
        },
        overrides={"GATE": True, "BATCH_SIZE": 4},
    )
    assert s.bind == ("0.0.0.0:80", "unix:/run/chestx.sock")
    assert s.max_content_length == 20_000_000 and s.runtime == "litert"
    assert s.threshold is None and s.gate is True and s.batch_size == 4
    assert Settings().jitter == 500 and Settings(max_requests_jitter=0).jitter == 0
    assert set(Settings.keys()) >= {"ACCESS_LOG", "MAX_REQUESTS_JITTER", "GATE", "MODEL_DIR"}


def test_every_setting_is_documented():
    # the README's configuration table and Settings declare the same variables
    import re
    from pathlib import Path

    from chestx.web.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("### Configuration") : readme.index("### How it is built")]
    documented = set(re.findall(r"`CHESTX_([A-Z_]+)`", table))
    documented |= {"MAX_REQUESTS_JITTER"}  # "`CHESTX_MAX_REQUESTS` / `_JITTER`"
    assert documented == set(Settings.keys())


def _no_exec(monkeypatch):
    """Make ``chestx serve`` record what it would become instead of becoming Gunicorn."""
    started = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: started.append(argv))
    return started


def test_serve_on_a_busy_port_fails_in_one_line(monkeypatch, capsys):
    from chestx.cli import main

    monkeypatch.delenv("CHESTX_BIND", raising=False)
    started = _no_exec(monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert main(["serve", "--port", str(busy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"chestx: error: 127.0.0.1:{busy} is already in use (another chestx serve?); "
        "stop it or choose --port"
    )
    assert started == []  # Gunicorn never started
    assert main(["serve", "--port", str(busy)]) == 0  # freed: now it starts
    assert started and "chestx.wsgi:app" in started[0]


def test_serve_refuses_an_address_not_of_this_machine_and_bad_settings(monkeypatch, capsys):
    from chestx.cli import main

    monkeypatch.delenv("CHESTX_BIND", raising=False)
    started = _no_exec(monkeypatch)
    assert main(["serve", "--host", "192.0.2.1", "--port", "8000"]) == 2  # TEST-NET-1
    assert "192.0.2.1 is not an address of this machine" in capsys.readouterr().err
    monkeypatch.setenv("CHESTX_WORKERS", "0")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == (
        "chestx: error: CHESTX_WORKERS must be at least 1, got '0'"
    )
    assert started == []


def test_check_bind_leaves_sockets_and_unparsed_addresses_to_gunicorn(tmp_path):
    from chestx.web.cli import check_bind

    check_bind([f"unix:{tmp_path / 'chestx.sock'}", "fd://3", "localhost"])
    assert not (tmp_path / "chestx.sock").exists()
