"""Ctrl-C for long runs: the first SIGINT asks the run to stop at a safe point, the second
aborts at once.

A process inherits its SIGINT disposition. One started by a parent that ignores SIGINT (a
background job of a non-interactive shell, ``cmd &`` in a script or a CI step, gets SIG_IGN)
starts with SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all: a
plain Python program would silently ignore every Ctrl-C. ``GracefulInterrupt`` installs its own
handler for the duration of the run, whatever was inherited, and puts the previous one back
afterwards.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)


class GracefulInterrupt:
    """``with GracefulInterrupt(message) as ctrl_c:`` ... ``if ctrl_c.requested: stop()``.

    The first SIGINT only sets ``requested`` (and logs ``message``); the code polls it at safe
    points, so a Ctrl-C never lands in the middle of a file write or a model update. The second
    SIGINT raises ``KeyboardInterrupt`` (abort). Off the main thread, where Python cannot
    install signal handlers, it installs nothing and ``requested`` stays False.
    """

    def __init__(
        self, message: str = "interrupted: stopping at the next safe point (Ctrl-C again to abort)"
    ):
        self.message = message
        self.count = 0
        self._previous: Any = None  # a handler, SIG_IGN/SIG_DFL, or None
        self._installed = False

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handle(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            log.warning(self.message)
            return
        raise KeyboardInterrupt

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            # None: a handler set outside Python; the default is the safe thing to put back
            signal.signal(
                signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous
            )
            self._installed = False
