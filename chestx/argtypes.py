"""Parsing of the values the command lines share: counts, fractions, sensitivities, rates,
strengths, HOST:PORT addresses.

``chestx``, ``chestx tune`` and ``chestx serve`` use these as argparse ``type=`` callables (a
bad value: argparse's one-line error and exit code 2); ``split_host_port`` is also what the
tuner's ``--chief`` and KERASTUNER_* variables and ``CHESTX_BIND`` go through. Pure Python, so
``chestx --help`` stays instant.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _int(text: str, lowest: int, expected: str) -> int:
    try:
        value: int | None = int(text)
    except ValueError:
        value = None
    if value is None or value < lowest:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (epochs, batch sizes, workers, trials)."""
    return _int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (patience, layers or epochs of an optional phase)."""
    return _int(text, 0, "an integer >= 0")


def _float(text: str, expected: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}") from None


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a moving average's momentum)."""
    value = _float(text, "a number between 0 and 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def proportion(text: str) -> float:
    """A number above 0 and at most 1 (a sensitivity the threshold rule must keep); a
    percentage such as 95 is refused, not read as a rule no threshold can meet."""
    value = _float(text, "a number between 0 and 1")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate, a temperature)."""
    value = _float(text, "a number above 0")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


def strength(hi: float | None = None) -> Callable[[str], float]:
    """A parser of a number from 0 to ``hi`` (no upper bound when None): an augmentation's
    strength, mixup's alpha."""

    def parse(text: str) -> float:
        value = _float(text, "a number")
        if not (math.isfinite(value) and 0 <= value <= (math.inf if hi is None else hi)):
            limit = "at least 0" if hi is None else f"between 0 and {hi:g}"
            raise argparse.ArgumentTypeError(f"must be {limit}, got {text}")
        return value

    parse.__name__ = "strength"  # argparse names the type in its error
    return parse


def _port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"port must be a number, got {text!r}") from None
    if not 0 < value < 65536:
        raise ValueError(f"port must be in 1-65535, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    try:
        return _port_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError says what is wrong."""
    host, sep, number = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host:
        raise ValueError(f"must be HOST:PORT, got {text!r}")
    return host, _port_number(number)


def join_host_port(host: str, port: int) -> str:
    """(host, port) -> ``HOST:PORT``, bracketing an IPv6 address (``[::1]:8000``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
