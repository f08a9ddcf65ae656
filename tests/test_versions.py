"""``chestx --version``, the model card's and ``/api/model``'s versions: one mapping, read from
the installed packages' metadata without importing TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from chestx import __version__
from chestx.versions import (
    CHECKOUT,
    DISTRIBUTIONS,
    distribution_version,
    installed_versions,
    source_revision,
)


def test_version_prints_the_package_and_library_versions():
    done = subprocess.run(
        [sys.executable, "-m", "chestx", "--version"], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0] == f"chestx {__version__}"
    by_name = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    revision = source_revision()
    assert set(by_name) == {
        *(["source"] if revision else []),
        "python",
        "tensorflow",
        "keras",
        "keras-tuner",
        "opencv",
        "numpy",
        "litert",
    }
    assert by_name["keras"][0] == metadata.version("keras")
    assert by_name["keras-tuner"][0] == metadata.version("keras-tuner")
    assert by_name["numpy"][0] == metadata.version("numpy")
    # the distribution is named when it differs from the library: tensorflow-cpu, the runtime
    tf_dist, tf_version = distribution_version(DISTRIBUTIONS["tensorflow"])
    assert by_name["tensorflow"][0] == tf_version
    if tf_dist != "tensorflow":
        assert by_name["tensorflow"][1] == f"({tf_dist})"
    assert by_name["litert"] == [metadata.version("ai-edge-litert"), "(ai-edge-litert)"]
    assert by_name["opencv"][0] == metadata.version("opencv-python-headless")
    if revision:
        assert by_name["source"] == [revision, "(git", "checkout", f"{CHECKOUT})"]


def test_version_imports_no_tensorflow():
    code = (
        "import sys; from chestx.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras', 'cv2')))\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_installed_versions_match_the_modules():
    import cv2
    import keras
    import keras_tuner
    import numpy as np
    import tensorflow as tf

    versions = installed_versions()
    assert versions["chestx"] == __version__
    assert versions["keras"] == keras.__version__
    assert versions["keras_tuner"] == keras_tuner.__version__
    assert versions["numpy"] == np.__version__
    assert versions["tensorflow"] == tf.__version__
    # opencv-python's distribution version carries a build number: 5.0.0.93 for cv2 5.0.0
    assert versions["opencv"].startswith(cv2.__version__)
    assert versions["litert"] == metadata.version("ai-edge-litert")


def test_a_missing_library_is_reported_as_missing(monkeypatch, capsys):
    from chestx import versions

    monkeypatch.setitem(versions.DISTRIBUTIONS, "keras_tuner", ("no-such-distribution-chestx",))
    assert versions.installed_versions()["keras_tuner"] is None
    assert "  keras-tuner  not installed" in versions.version_report().splitlines()


def test_the_card_records_the_same_versions():
    from chestx.train import library_versions

    assert library_versions() == installed_versions()


def _git(repo, *args: str) -> str:
    who = ["-c", "user.name=chestx tests", "-c", "user.email=tests@chestx.invalid"]
    done = subprocess.run(
        ["git", *who, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A git repository with one commit of one file."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("EPOCHS = 25\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_source_revision_names_the_commit_and_marks_edited_code(checkout):
    read = source_revision.__wrapped__  # past the once-per-process cache
    head = _git(checkout, "rev-parse", "HEAD")
    assert read(checkout) == head
    (checkout / "model.keras").write_text("a model written into the checkout")  # untracked
    assert read(checkout) == head
    (checkout / "train.py").write_text("EPOCHS = 30\n")
    assert read(checkout) == f"{head}-dirty"
    _git(checkout, "commit", "-q", "-am", "second")
    assert read(checkout) == _git(checkout, "rev-parse", "HEAD") != head


def test_source_revision_is_none_outside_a_checkout_or_without_git(checkout, monkeypatch):
    read = source_revision.__wrapped__
    inside = checkout / "site-packages"  # a venv inside a repository is not a checkout of chestx
    inside.mkdir()
    assert read(inside) is None
    assert read(checkout.parent) is None
    monkeypatch.setenv("PATH", str(checkout / "no-bin"))  # git not installed
    assert read(checkout) is None


def test_this_checkout_records_its_commit():
    """Run from the repository (``make install`` installs chestx editable), as training is, the
    card's and ``/api/model``'s versions name the commit: what the card's commands ran with."""
    if not (CHECKOUT / ".git").exists():
        pytest.skip(f"chestx is installed from {CHECKOUT}, not run from a git checkout")
    head = _git(CHECKOUT, "rev-parse", "HEAD")
    assert installed_versions()["chestx_source"] in (head, f"{head}-dirty")
