"""Helpers for the deployment tests: run ansible-playbook the way a user does."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
XRAYS = REPO / "tests" / "resources" / "xrays"
TOKEN = (
    "test-token-" + uuid.uuid4().hex[:8]
)  # the fake GitHub API's (deploy_testhost.FakeGitHubAPI)
GITHUB_OWNER, GITHUB_REPO = "chestx-org", "chestx"


def dataset_zip(path: Path) -> Path:
    """A tiny data set in the Kaggle layout, from the repository's real X-rays."""
    with zipfile.ZipFile(path, "w") as zf:
        for label in ("NORMAL", "PNEUMONIA"):
            images = sorted((XRAYS / label).glob("*.jpeg"))
            for split, chunk in (
                ("train", images[:6]),
                ("val", images[6:8]),
                ("test", images[8:10]),
            ):
                for image in chunk:
                    zf.write(image, f"chest_xray/{split}/{label}/{image.name}")
    return path


def app_source_vars(git, api, work: Path) -> dict:
    """group_vars that deploy the app from the test git server (``deploy_testhost.GitServer``)
    and its fake GitHub API, with a tiny data set archive in ``work``, on one Gunicorn worker."""
    return {
        "chestx_repo_url": git.url,
        "chestx_version": "main",
        "chestx_github_token": TOKEN,
        "chestx_github_api_url": api.url,
        "chestx_github_repo": f"{GITHUB_OWNER}/{GITHUB_REPO}",
        "chestx_git_known_hosts": [git.known_hosts_line],
        "chestx_dataset_source": "archive",
        "chestx_dataset_archive": str(dataset_zip(work / "chest_xray.zip")),
        "gunicorn_workers": 1,
    }


def tool(name: str) -> str:
    """A tool of this venv (ansible-playbook, moto_server...), else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run bash .ci/deploy-setup .venv")
    return found


@dataclass
class PlaybookRun:
    rc: int
    output: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host: {'host': {'ok': 3, 'changed': 0, ...}}."""
        hosts = {}
        block = self.output.rsplit("PLAY RECAP", 1)[-1]
        for line in block.splitlines():
            m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
            if m:
                hosts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        return hosts

    def changed(self) -> int:
        return sum(h.get("changed", 0) for h in self.recap().values())

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change (for a readable failure message)."""
        names, current = [], None
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed:") and current:
                names.append(current)
        return names


def ansible_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "AWS_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCAL_TEMP": str(
                Path(os.environ.get("TMPDIR", "/tmp")) / "chestx-ansible-local"
            ),
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
            # never ask the instance metadata service (an address outside this machine)
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    env.update(extra)
    return env


def run_playbook(args: list[str], env: dict[str, str], timeout: float = 1800) -> PlaybookRun:
    start = time.monotonic()
    done = subprocess.run(
        [tool("ansible-playbook"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return PlaybookRun(done.returncode, done.stdout + done.stderr, time.monotonic() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
