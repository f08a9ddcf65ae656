"""Release hygiene: the licence file matches the declared licence, the version lives in one
place, the changelog is in shape, and `make release` tags only a releasable checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.version import Version

import chestx

REPO = Path(__file__).resolve().parents[1]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "chestx-test",
    "GIT_AUTHOR_EMAIL": "test@chestx.invalid",
    "GIT_COMMITTER_NAME": "chestx-test",
    "GIT_COMMITTER_EMAIL": "test@chestx.invalid",
}


def test_licence_file_matches_the_declared_licence_and_names_the_data_licence():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text
    assert "CC BY 4.0" in text and "Kermany" in text and "10.17632/rscbjbr9sj.2" in text
    assert "chestx/default_model/" in text  # the shipped weights' licence is stated


def test_the_version_lives_in_one_place():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "chestx.__version__"}
    Version(chestx.__version__)  # a valid PEP 440 version


def test_the_changelog_has_an_unreleased_section_and_no_release_above_the_version():
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings[0] == "Unreleased"
    released = [Version(h) for h in headings[1:]]
    assert released == sorted(released, reverse=True)  # newest first
    assert all(v <= Version(chestx.__version__) for v in released)
    for heading in headings:  # every section has its link
        assert re.search(rf"^\[{re.escape(heading)}\]: https://", text, flags=re.M), heading


def test_pre_commit_runs_the_checks_ci_runs():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy", "ansible-lint", "uv-lock"} <= set(hooks)
    makefile = (REPO / "Makefile").read_text()
    assert "ruff format --check $(PY_SOURCES)" in makefile
    assert "$(BIN)/mypy" in makefile and "uv lock --check" in makefile
    for hook in hooks.values():  # the venv's tools, i.e. the locked versions
        tool = next(w for w in hook["entry"].split() if w.startswith(".venv/bin/"))
        assert (Path(sys.executable).parent / Path(tool).name).exists(), tool


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _make_release(cwd: Path) -> subprocess.CompletedProcess:
    # -o install-dev: the venv running the tests is installed already
    return subprocess.run(
        ["make", "--no-print-directory", "-o", "install-dev", "release", f"VENV={sys.prefix}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **GIT_ENV},
    )


def test_make_release_tags_the_version_only_when_the_changelog_has_it(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    for name in ("CHANGELOG.md", "chestx/__init__.py", "Makefile", "uv.lock", "pyproject.toml"):
        (clone / name).write_text((REPO / name).read_text())  # this checkout, committed or not
    for name in ("requirements/app.txt", "requirements/dev.txt"):
        (clone / name).write_text((REPO / name).read_text())
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "--allow-empty", "-m", "as tested")
    # a version the changelog does not describe is refused, and nothing is tagged
    init = clone / "chestx" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', '__version__ = "9.9.9"', init.read_text()))
    _git(clone, "commit", "-q", "-am", "9.9.9 without a changelog section")
    done = _make_release(clone)
    assert done.returncode != 0
    assert "CHANGELOG.md has no section [9.9.9]" in done.stdout + done.stderr
    assert _git(clone, "tag", "--list") == ""
    # with its section it is tagged v9.9.9
    changelog = clone / "CHANGELOG.md"
    changelog.write_text(
        changelog.read_text().replace(
            "## [Unreleased]", "## [Unreleased]\n\n## [9.9.9] - 2026-12-01\n\n- A test.", 1
        )
    )
    done = _make_release(clone)
    assert done.returncode != 0 and "uncommitted changes" in done.stdout + done.stderr
    _git(clone, "commit", "-q", "-am", "Release 9.9.9")
    done = _make_release(clone)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _git(clone, "tag", "--list").split() == ["v9.9.9"]
    assert _git(clone, "rev-parse", "v9.9.9^{commit}") == _git(clone, "rev-parse", "HEAD")
