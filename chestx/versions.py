"""Which chestx and which libraries are installed: one mapping for ``chestx --version``, the
model card (what a model was trained with) and ``/api/model`` (what serves it).

Versions come from the installed distributions' metadata, never from importing the libraries,
so ``chestx --version`` stays as instant as ``--help``. Installed from the lock (``make
install``, ``.ci/install``, the Ansible ``python_venv`` role), they are the locked versions.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

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


def distribution_version(names: Sequence[str]) -> tuple[str, str] | None:
    """(distribution, version) of the first of ``names`` that is installed, else None."""
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_versions() -> dict[str, str | None]:
    """{"chestx": ..., "python": ..., "tensorflow": ..., ...}; None for a library not installed."""
    versions: dict[str, str | None] = {"chestx": __version__, "python": platform.python_version()}
    for key, names in DISTRIBUTIONS.items():
        found = distribution_version(names)
        versions[key] = found[1] if found else None
    return versions


def version_report() -> str:
    """What ``chestx --version`` prints: one line per library, with the distribution when its
    name differs from the key (tensorflow-cpu, opencv-python-headless, ai-edge-litert)."""
    lines = [f"chestx {__version__}", f"  {'python':<12} {platform.python_version()}"]
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
