"""JSON that every parser reads.

Python's ``json`` writes NaN and infinities as bare ``NaN`` and ``Infinity``, which JSON (RFC
8259) does not have: JavaScript's ``JSON.parse``, Go's ``encoding/json`` and Rust's serde refuse
the whole document. A metric that is not defined, such as sensitivity or ROC AUC on X-rays of one
class, is written ``null`` instead, in model cards and ``chestx evaluate --json`` reports; a card
written before reads back with None there (``modeldir.load_card``), so the web service answers
``null`` too.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float in it, at any depth, replaced by None (tuples
    become lists, as JSON writes them)."""
    if isinstance(obj, float):  # numpy's float64 is a float too
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(value) for value in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite` ``(obj)``; it can no longer write a bare NaN."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
