"""Fixtures for the deployment tests (helpers live in deploy_helpers.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deploy_helpers import free_port


@pytest.fixture(scope="session")
def moto_url():
    """A moto server (EC2, ELBv2 and friends) on loopback, for the whole session (moto_server.py:
    moto's own server with AWS's default ALB idle timeout added)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("moto_server.py")), "-H", "127.0.0.1"]
        + ["-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("moto_server exited at start")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
