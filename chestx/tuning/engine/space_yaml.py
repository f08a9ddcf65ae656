"""Where in a search-space file: the YAML read with the line of every key, and any refusal
(pydantic's or the vocabulary's) turned into one ``SpaceError``: ``file:line: key: message``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, get_args

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from chestx.tuning.engine.space_schema import TYPES, describe, section_at
from chestx.tuning.errors import SpaceError


def read_yaml(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    """The parsed file and the 1-based line of every key; duplicate keys are refused (PyYAML
    would keep the last one silently)."""
    lines: dict[tuple, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _line_map(node, (), lines, path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(
            str(path), "", f"not valid YAML: {problem}", mark.line + 1 if mark else None
        ) from None
    if data is None:
        raise SpaceError(str(path), "", "the file is empty")
    return data, lines


def _line_map(node, path: tuple, lines: dict, file: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key == "<<":
                continue
            here = (*path, key)
            lines[here] = key_node.start_mark.line + 1
            if key in seen:
                raise SpaceError(str(file), _dotted(here), "duplicate key", lines[here])
            seen.add(key)
            _line_map(value_node, here, lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), lines, file)


class Where:
    """Raises ``SpaceError`` for a location in ``data`` (the parsed file, or the ``--set``
    pins), with the line of the key or, when it has none, of its nearest parent."""

    def __init__(self, path: Path, data: Any, lines: dict[tuple, int]):
        self.path, self.data, self.lines = path, data, lines

    def fail(self, loc: tuple, message: str) -> NoReturn:
        key = self.key(loc)
        raise SpaceError(str(self.path), _dotted(key), message, self.line(key))

    def reject(self, exc: ValidationError, prefix: tuple = ()) -> NoReturn:
        """The first of pydantic's errors, in file order; ``prefix`` locates a value that was
        validated on its own."""
        refusals = []
        for error in exc.errors():
            loc, message = _explain(error, (*prefix, *error["loc"]))
            key = self.key(loc[:-1]) + loc[-1:] if error["type"] == "missing" else self.key(loc)
            refusals.append((key, message))
        key, message = min(refusals, key=lambda r: self.line(r[0]) or float("inf"))
        raise SpaceError(str(self.path), _dotted(key), message, self.line(key))

    def key(self, loc: tuple) -> tuple:
        """The YAML key a location means: the parts that exist in the file. A pydantic location
        also holds a union's tag (``space.dropout.float.min``), left out; below a bare value
        (``image_size: 64``, short for ``{type: fixed, value: 64}``) the value itself is meant."""
        key: list = []
        node = self.data
        for part in loc:
            if isinstance(node, dict):
                if part in node:
                    key.append(part)
                    node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                key.append(part)
                node = node[part]
            else:
                break
        return tuple(key)

    def line(self, key: tuple) -> int | None:
        for n in range(len(key), 0, -1):  # the key's own line, else its nearest parent's
            if key[:n] in self.lines:
                return self.lines[key[:n]]
        return None


def _dotted(key: tuple) -> str:
    return ".".join(str(k) for k in key)


_MESSAGES = {
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a non-empty list",
}


def _explain(error: ErrorDetails, loc: tuple) -> tuple[tuple, str]:
    """pydantic's error as (location, message), in the words the README uses."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "space":  # ours: space_schema.refuse
        return (*loc, *ctx["at"]), ctx["message"]
    if kind == "missing":
        field = section_at(loc[:-1])
        info = field.model_fields.get(loc[-1]) if field else None
        if info and info.description:
            return loc, f"required: {info.description}"
        tag = (
            get_args(field.model_fields["type"].annotation)
            if field and "type" in field.model_fields
            else ()
        )
        return loc, f"type {tag[0]} needs {loc[-1]}" if tag else "required"
    if kind == "extra_forbidden":
        field = section_at(loc[:-1])
        known = f"; expected one of {', '.join(field.model_fields)}" if field else ""
        return loc, f"unknown key{known}"
    if kind == "union_tag_invalid":
        return (*loc, "type"), f"unknown type {ctx['tag']!r}; expected one of {', '.join(TYPES)}"
    if kind == "union_tag_not_found":
        return loc, f"needs a type: one of {', '.join(TYPES)}"
    if kind == "invalid_key":  # of a model: the location is the key
        return loc[:-1], f"keys must be strings, got {value!r}"
    if kind == "string_type" and loc[-1:] == ("[key]",):  # of a dict: (..., key, "[key]")
        return loc[:-2], f"keys must be strings, got {value!r}"
    if kind == "literal_error":
        return loc, f"unknown value {value!r}; expected {ctx['expected']}"
    if kind == "too_short":
        return loc, "is empty"
    if kind == "finite_number":
        return loc, f"must be finite, got {value}"
    for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx:
            return loc, f"must be {sign} {ctx[bound]}, got {value}"
    if kind in _MESSAGES:
        return loc, f"{_MESSAGES[kind]}, got {describe(value)}"
    return loc, error["msg"]
