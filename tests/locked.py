"""Read the pinned requirements exported from uv.lock (requirements/*.txt) as {name: version}.

Shared by the lock tests and the deploy test, which compare an environment with the lock.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "requirements" / "app.txt"
DEV = REPO / "requirements" / "dev.txt"

# "name==version ; marker \" (hash lines and comments follow)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*(.+?))?\s*\\?$")


def locked_versions(path: Path, environment: dict[str, str] | None = None) -> dict[str, str]:
    """{canonical name: version} of the pins whose marker holds in ``environment`` (this
    interpreter's by default; keys as in ``packaging.markers``, e.g. python_full_version)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate(environment):
            pins[canonicalize_name(name)] = version
    return pins


def freeze_versions(freeze: str) -> dict[str, str]:
    """{canonical name: version} from ``pip freeze --all`` output (editable lines skipped)."""
    versions = {}
    for line in freeze.splitlines():
        if "==" in line and not line.startswith(("#", "-e")):
            name, version = line.split("==", 1)
            versions[canonicalize_name(name)] = version.strip()
    return versions
