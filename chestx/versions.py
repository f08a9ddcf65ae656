"""Which chestx and which libraries are installed: one mapping for ``chestx --version``, the
model card (what a model was trained with) and ``/api/model`` (what serves it).

Versions come from the installed distributions' metadata, never from importing the libraries,
so ``chestx --version`` stays as instant as ``--help``. Installed from the lock (``make
install``, ``.ci/install``, the Ansible ``python_venv`` role), they are the locked versions.

Run from a git checkout (``make install`` installs chestx editable), the mapping also names the
commit: a card's commands reproduce its model only with the code they ran, and ``0.1.0`` names
every commit since the first.
"""

from __future__ import annotations

import argparse
import functools
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from chestx import __version__

# key -> the distributions that provide it, the first installed one wins
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow-cpu", "tensorflow", "tensorflow-macos", "tf-nightly"),
    "keras": ("keras",),
    "keras_tuner": ("keras-tuner",),
    "opencv": (
        "opencv-python-headless",
        "opencv-python",
        "opencv-contrib-python-headless",
        "opencv-contrib-python",
    ),
    "numpy": ("numpy",),
    "litert": ("ai-edge-litert",),  # the TFLite runtime chestx serves .tflite models with
}


# the folder above the package: a git checkout when chestx is installed editable from one
CHECKOUT = Path(__file__).resolve().parent.parent


@functools.cache
def source_revision(checkout: Path = CHECKOUT) -> str | None:
    """The commit ``checkout`` has out, ``-dirty`` after it when a tracked file differs from it
    (as ``git describe --dirty`` marks it); untracked files, such as a model written into the
    checkout, do not count. None when chestx is not run from a git checkout (a wheel, or ``pip
    install .`` as the Ansible role does) or git cannot say (not installed, a clone another user
    owns). Read once per process: a long run records the code it started with."""
    if not (checkout / ".git").exists():  # not git's search upwards: a venv inside a repository
        return None

    def git(*args: str) -> str:
        run = subprocess.run(
            ["git", "-C", str(checkout), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return run.stdout.strip()

    try:
        commit = git("rev-parse", "--verify", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if changed else "")


def distribution_version(names: Sequence[str]) -> tuple[str, str] | None:
    """(distribution, version) of the first of ``names`` that is installed, else None."""
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_versions() -> dict[str, str | None]:
    """{"chestx": ..., "chestx_source": ..., "python": ..., "tensorflow": ..., ...}; None for a
    library not installed, and for ``chestx_source`` (:func:`source_revision`) outside a git
    checkout."""
    versions: dict[str, str | None] = {
        "chestx": __version__,
        "chestx_source": source_revision(),
        "python": platform.python_version(),
    }
    for key, names in DISTRIBUTIONS.items():
        found = distribution_version(names)
        versions[key] = found[1] if found else None
    return versions


def version_report() -> str:
    """What ``chestx --version`` prints: one line per library, with the distribution when its
    name differs from the key (tensorflow-cpu, opencv-python-headless, ai-edge-litert)."""
    lines = [f"chestx {__version__}"]
    if (revision := source_revision()) is not None:
        lines.append(f"  {'source':<12} {revision}  (git checkout {CHECKOUT})")
    lines.append(f"  {'python':<12} {platform.python_version()}")
    for key, names in DISTRIBUTIONS.items():
        found = distribution_version(names)
        label = key.replace("_", "-")
        if found is None:
            lines.append(f"  {label:<12} not installed")
        else:
            dist, version = found
            lines.append(f"  {label:<12} {version}" + (f"  ({dist})" if dist != label else ""))
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """``--version``: print :func:`version_report` and exit (metadata is read only then)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str = argparse.SUPPRESS,
        default: str = argparse.SUPPRESS,
        help: str | None = None,
    ) -> None:
        super().__init__(
            option_strings,
            dest=dest,
            default=default,
            nargs=0,
            help=help or "show chestx's version and its libraries' and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(version_report() + "\n")
        parser.exit()
