"""The lock: uv.lock is current with pyproject.toml (a changed range without a re-lock fails),
requirements/*.txt are current with uv.lock, and installing from it gives exactly its versions.

Needs PyPI (or uv's warm cache) for the stale-lock check: uv re-resolves to report the
difference. `make check-lock` runs the same checks on the real files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from locked import APP, DEV, REPO, freeze_versions, locked_versions
from packaging.utils import canonicalize_name

BIN = Path(sys.executable).parent
UV = str(BIN / "uv")


def _project_copy(tmp_path: Path) -> Path:
    """What uv needs to lock the project: pyproject.toml, the lock, the readme and the version."""
    for name in ("pyproject.toml", "uv.lock", "README.md", "chestx/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def _uv_lock_check(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [UV, "lock", "--check", "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_lock_is_current():
    done = _uv_lock_check(REPO)
    assert done.returncode == 0, done.stderr


def test_a_changed_range_without_a_re_lock_fails(tmp_path):
    project = _project_copy(tmp_path)
    lock_before = (project / "uv.lock").read_text()
    assert _uv_lock_check(project).returncode == 0
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"flask>=3.0",' in text
    pyproject.write_text(text.replace('"flask>=3.0",', '"flask>=3.0,<3.1",'))
    done = _uv_lock_check(project)
    assert done.returncode != 0
    assert "needs to be updated" in done.stderr, done.stderr
    assert (project / "uv.lock").read_text() == lock_before  # --check never rewrites it


def test_a_new_dependency_without_a_re_lock_fails(tmp_path):
    project = _project_copy(tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6",', '"pyyaml>=6",\n    "six",'))
    done = _uv_lock_check(project)
    assert done.returncode != 0
    assert "needs to be updated" in done.stderr, done.stderr


def test_the_exported_requirements_match_the_lock():
    # -o install-dev: this venv is installed already (make would reinstall the checkout)
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", "install-dev", "check-lock", f"VENV={sys.prefix}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_requirements_pin_every_package_with_hashes():
    for path in (APP, DEV):
        text = path.read_text()
        assert text.startswith("# Exported from uv.lock")
        entries = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
        assert entries and all("==" in line for line in entries), path
        assert text.count("==") <= text.count("--hash=sha256:")
    app, dev = locked_versions(APP), locked_versions(DEV)
    assert "tensorflow-cpu" in app and "pytest" not in app and "ansible" not in app
    assert all(dev[name] == version for name, version in app.items())  # one resolution
    assert {"pytest", "ruff", "mypy", "pre-commit", "uv", "ansible", "ansible-lint"} <= set(dev)


def test_the_lock_installs_what_the_shipped_model_was_trained_with():
    card = json.loads((REPO / "chestx" / "default_model" / "card.json").read_text())
    trained = card["versions"]
    app = locked_versions(APP)

    def minor(version: str) -> str:
        return ".".join(version.split(".")[:2])

    assert minor(app["tensorflow-cpu"]) == minor(trained["tensorflow"])
    assert minor(app["keras"]) == minor(trained["keras"])
    assert minor(app["numpy"]) == minor(trained["numpy"])
    assert app["opencv-python-headless"].startswith(trained["opencv"])


def test_pyproject_bounds_what_chestx_was_tested_with():
    """The library keeps ranges, but not past the minors chestx was tested with: keras-tuner's
    private APIs (chestx.tuning) and the saved models' Keras/TensorFlow format."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    by_name = {re.split(r"[<>=!~; ]", d, maxsplit=1)[0]: d for d in deps}
    assert "<1.5" in by_name["keras-tuner"]
    assert "<3.16" in by_name["keras"]
    assert "<2.22" in by_name["tensorflow-cpu"] and "<2.22" in by_name["tensorflow"]


def test_this_environment_has_the_locked_versions():
    """The venv running the tests (made by .ci/install or `make install-dev`) is the lock's."""
    wrong = {}
    for name, version in locked_versions(DEV).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"(locked, installed): {wrong}; run make install-dev"


@pytest.mark.slow
def test_a_fresh_venv_from_the_lock_matches_it_exactly(tmp_path):
    """pip installs requirements/app.txt (what the server gets) into an empty venv: `pip freeze`
    equals the lock, with nothing missing and nothing extra but pip itself. Uses pip's cache."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    # away from the checkout: python -m puts the working directory (and its chestx.egg-info)
    # on sys.path, and so would PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--require-hashes", "-r", str(APP)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    installed = freeze_versions(freeze)
    installed.pop(canonicalize_name("pip"))
    assert installed == locked_versions(APP)
