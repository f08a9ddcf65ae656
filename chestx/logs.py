"""Logging set-up of every chestx process (the command line and the search's child processes).

Its own module so that a library module (``chestx.tuning.search``) can configure logging without
importing the command line that imports it.
"""

from __future__ import annotations

import logging
import sys
import warnings

# Keras 3 warns "Your input ran out of data; interrupting training" on the first epoch of every
# fit() whose dataset length is unknown (chestx's: unreadable files are filtered out), although
# nothing was interrupted: iterating to the end is how it learns the epoch's length. Fixed
# upstream (keras-team/keras#23360); chestx never sets steps_per_epoch, where it would matter.
KERAS_END_OF_DATA = r"Your input ran out of data"


def configure_logging(verbose: bool = False) -> None:
    warnings.filterwarnings("ignore", message=KERAS_END_OF_DATA, category=UserWarning)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,  # stdout carries results (JSON lines); journald collects both
    )
