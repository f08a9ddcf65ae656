"""Fixtures for the web service tests: apps on the tiny model, hostile uploads, a live server."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def png_bytes(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A grey 8-bit PNG whose header declares ``width`` x ``height``.

    With ``idat=None`` the pixel data is a few compressed zero rows: a decompression bomb
    when the declared size is huge (the file stays tiny).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\x00" * (min(width, 4096) + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    """100,000 x 100,000 pixels declared (10 GB decoded) in a file of a few hundred bytes."""
    return png_bytes(100_000, 100_000)


@pytest.fixture(scope="session")
def xray_files(xray_dir: Path) -> list[Path]:
    return sorted(xray_dir.glob("*/*.jpeg"))


@pytest.fixture(scope="session")
def app_factory(tiny_model_dir):
    """``make(**config)`` -> a Flask app on the tiny model (closed after the session)."""
    from chestx.web import create_app

    apps = []

    def make(**config):
        config.setdefault("MODEL_DIR", str(tiny_model_dir))
        app = create_app(config)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["chestx"].close()


@pytest.fixture(scope="session")
def app(app_factory):
    return app_factory()


@pytest.fixture()
def client(app):
    return app.test_client()


def upload(data: bytes, name: str = "xray.jpeg", field: str = "image") -> dict:
    return {field: (io.BytesIO(data), name)}


# -- a real server ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``chestx serve`` in a child process (it execs into the Gunicorn master)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        workers: int = 1,
        env: dict | None = None,
        log_path: Path | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            "CHESTX_MODEL_DIR": str(model_dir),
            "CHESTX_WORKERS": str(workers),
            "CHESTX_THREADS": "16",
            "CHESTX_BIND": f"127.0.0.1:{self.port}",
            "CHESTX_ACCESS_LOG": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chestx", "serve"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def get(self, path: str, **kw):
        import requests

        return requests.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw):
        import requests

        return requests.post(self.url + path, timeout=kw.pop("timeout", 60), **kw)

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Seconds from start until /readyz answered 200."""
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return time.monotonic() - self.started
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server not ready in {timeout} s: {self.log()}")

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def worker_pids(self) -> set[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return {int(p) for p in out.split()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()


@pytest.fixture(scope="session")
def live_server(gated_model_dir, tmp_path_factory):
    """One server for the HTTP and browser tests: 2 workers, the tiny model with the shipped
    model's input gate."""
    model = tmp_path_factory.mktemp("served") / "model"
    shutil.copytree(gated_model_dir, model)
    logs = tmp_path_factory.mktemp("logs")
    # a long batch window: concurrent uploads meet in one model call however slow the
    # machine (a lone request never waits for it), and a generous inference deadline
    server = LiveServer(
        model,
        workers=2,
        log_path=logs / "live_server.log",
        env={"CHESTX_BATCH_TIMEOUT_MS": "10000", "CHESTX_INFERENCE_TIMEOUT": "600"},
    )
    try:
        server.ready_after = server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def make_upload():
    """``make_upload(bytes, name="xray.jpeg", field="image")`` -> test-client form data."""
    return upload


@pytest.fixture(scope="session")
def make_png():
    """``make_png(width, height, idat=None)`` -> PNG bytes with that declared size."""
    return png_bytes


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory):
    """``start(model_dir, workers=1, env=None)`` -> a started ``LiveServer`` (stopped after)."""
    servers = []

    def start(model_dir, **kw):
        kw.setdefault("log_path", tmp_path_factory.mktemp("logs") / "server.log")
        server = LiveServer(model_dir, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
