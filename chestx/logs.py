"""Logging set-up of every chestx process (the command line and the search's child processes).

Its own module so that a library module (``chestx.tuning.search``) can configure logging without
importing the command line that imports it.
"""

from __future__ import annotations

import logging
import sys


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,  # stdout carries results (JSON lines); journald collects both
    )
