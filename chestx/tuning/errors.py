"""Every error the hyperparameter search raises on purpose, in one place.

All are ``ChestxError``s, so the command line prints them as one line and exits with code 2.
"""

from __future__ import annotations

from chestx.errors import ChestxError


class TuningError(ChestxError):
    """A search cannot start, continue or finish."""


class SpaceError(TuningError):
    """A search-space file is malformed; the message names the file, the key and the line."""

    def __init__(self, file: str, key: str, message: str, line: int | None = None):
        self.file, self.key, self.line = file, key, line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class RunDirError(TuningError):
    """RUN_DIR does not match the request: not a search, another search, or already used."""


class DistributedError(TuningError):
    """The chief/worker settings (flags or KERASTUNER_* variables) are inconsistent."""
