"""The tunable keys of a space: each declared entry checked against the model family's
vocabulary (which keys exist, their kind and range), typed, given its default, its ``when:``
conditions checked against the parents', and all ordered parents first (``graphlib``).
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chestx.tuning.engine import space_schema as schema
from chestx.tuning.engine import vocabulary as vocab
from chestx.tuning.engine.space_yaml import Where


@dataclass(frozen=True)
class Param:
    """One tunable key, as the file declares it (defaults resolved)."""

    name: str
    type: str
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    values: tuple = ()
    ordered: bool | None = None
    when: tuple[tuple[str, tuple], ...] = ()  # ((parent, allowed values), ...), all must hold

    def declare(self, hp):
        """Register this parameter on a ``keras_tuner.HyperParameters``; return its value."""
        if self.type == "int":
            assert self.min is not None and self.max is not None  # checked when loaded
            return hp.Int(
                self.name,
                int(self.min),
                int(self.max),
                step=int(self.step) if self.step else None,
                sampling=self.sampling,
                default=self.default,
            )
        if self.type == "float":
            assert self.min is not None and self.max is not None  # checked when loaded
            return hp.Float(
                self.name,
                float(self.min),
                float(self.max),
                step=self.step,
                sampling=self.sampling,
                default=self.default,
            )
        if self.type == "choice":
            return hp.Choice(
                self.name, list(self.values), ordered=self.ordered, default=self.default
            )
        if self.type == "boolean":
            return hp.Boolean(self.name, default=self.default)
        return hp.Fixed(self.name, self.default)

    def possible(self) -> tuple | None:
        """Every value the parameter can take, or None for a continuous range."""
        if self.type == "choice":
            return self.values
        if self.type == "boolean":
            return (False, True)
        if self.type == "fixed":
            return (self.default,)
        if self.type == "int" and self.sampling == "linear":
            assert self.min is not None and self.max is not None  # checked when loaded
            return tuple(range(int(self.min), int(self.max) + 1, int(self.step or 1)))
        return None

    def spec(self) -> dict:
        """The entry as plain data (for the card and the leaderboard JSON)."""
        out = {"type": self.type, "default": self.default}
        if self.type in ("int", "float"):
            out.update(min=self.min, max=self.max, sampling=self.sampling)
            if self.step:
                out["step"] = self.step
        if self.type == "choice":
            out["values"] = list(self.values)
        if self.when:
            out["when"] = {p: list(v) for p, v in self.when}
        return out


def build_params(where: Where, model: str, space: dict[str, Any]) -> dict[str, Param]:
    """The validated entries of ``space:`` as Params, parents first."""
    params = {
        name: _param(where, ("space", name), name, entry, _key(where, model, ("space", name)))
        for name, entry in space.items()
    }
    for p in params.values():
        _check_conditions(where, p, params)
    return parents_first(where, params)


def pin(where: Where, model: str, name: str, value: Any) -> Param:
    """``--set name=value``: the key fixed to one value, checked like a bare value in a file."""
    return Param(name, "fixed", typed(where, (name,), name, value, _key(where, model, (name,))))


def _key(where: Where, model: str, loc: tuple) -> vocab.Key:
    known = vocab.family(model)
    if loc[-1] not in known:
        where.fail(loc, f"unknown key for model {model}; known keys: {', '.join(known)}")
    return known[loc[-1]]


def _param(where: Where, loc: tuple, name: str, entry: schema.Entry, spec: vocab.Key) -> Param:
    when = entry.conditions()
    if isinstance(entry, schema.IntEntry | schema.FloatEntry):
        numeric = (vocab.INT, vocab.FLOAT) if entry.type == "int" else (vocab.FLOAT,)
        if spec.kind not in numeric:
            where.fail((*loc, "type"), f"{name} takes {_kind_text(spec)} values, not {entry.type}")
        lo, hi = entry.min, entry.max
        for bound, v in (("min", lo), ("max", hi)):
            _check_range(where, (*loc, bound), name, v, spec)
        default: Any = entry.default
        if default is None:  # the family's, when inside the range
            family: Any = spec.default
            default = family if family is not None and lo <= family <= hi else lo
            if entry.type == "int" and not float(default).is_integer():
                default = lo
        default = int(default) if entry.type == "int" else float(default)
        return Param(name, entry.type, default, lo, hi, entry.step, entry.sampling, when=when)

    if isinstance(entry, schema.ChoiceEntry):
        values = [
            typed(where, (*loc, "values", i), name, v, spec) for i, v in enumerate(entry.values)
        ]
        if any(isinstance(v, bool) for v in values):
            where.fail((*loc, "values"), "a choice of true/false is a type: boolean")
        if len(set(values)) != len(values):
            where.fail((*loc, "values"), "values repeat")
        default = entry.default
        if default is None:
            default = spec.default if spec.default in values else values[0]
        default = typed(where, (*loc, "default"), name, default, spec)
        if default not in values:
            where.fail((*loc, "default"), f"default {default!r} is not one of the values")
        if entry.ordered and isinstance(values[0], str):
            where.fail((*loc, "ordered"), "only numeric choices can be ordered")
        return Param(
            name, "choice", default, values=tuple(values), ordered=entry.ordered, when=when
        )

    if isinstance(entry, schema.BooleanEntry):
        if spec.kind != vocab.BOOL:
            where.fail((*loc, "type"), f"{name} takes {_kind_text(spec)} values, not boolean")
        default = bool(spec.default) if entry.default is None else entry.default
        return Param(name, "boolean", default, when=when)

    assert isinstance(entry, schema.FixedEntry)
    return Param(name, "fixed", typed(where, (*loc, "value"), name, entry.value, spec), when=when)


def _kind_text(spec: vocab.Key) -> str:
    return {
        "bool": "true/false",
        "int": "integer",
        "float": "numeric",
        "str": "text",
        "weights": "text",
    }[spec.kind]


def typed(where: Where, loc: tuple, name: str, value: Any, spec: vocab.Key) -> Any:
    """One concrete value for ``name``: the right type and inside the vocabulary's range."""
    try:
        value = schema.value_type(spec.kind).validate_python(value)
    except ValidationError as exc:
        where.reject(exc, loc)
    if spec.kind == vocab.STR and spec.choices and value not in spec.choices:
        where.fail(loc, f"unknown value {value!r}; expected {schema.alternatives(spec.choices)}")
    if spec.kind == vocab.WEIGHTS:  # none | imagenet | an existing file
        if value not in ("none", "imagenet") and not Path(value).expanduser().is_file():
            where.fail(
                loc,
                f"weights must be none, imagenet or an existing file; {value!r} is none of these",
            )
    if spec.kind in (vocab.INT, vocab.FLOAT):
        _check_range(where, loc, name, value, spec)
    return value


def _check_range(where: Where, loc: tuple, name: str, value, spec: vocab.Key) -> None:
    if spec.lo is not None and (value < spec.lo or (spec.positive and value <= spec.lo)):
        where.fail(loc, f"{name} must be {'>' if spec.positive else '>='} {spec.lo}, got {value}")
    if spec.hi is not None and value > spec.hi:
        where.fail(loc, f"{name} must be <= {spec.hi}, got {value}")


def _check_conditions(where: Where, p: Param, params: dict[str, Param]) -> None:
    for parent, allowed in p.when:
        loc = ("space", p.name, "when", parent)
        if parent == p.name:
            where.fail(loc, "a parameter cannot depend on itself")
        if parent not in params:
            where.fail(loc, f"condition on unknown parameter {parent!r}; declare it in space")
        q = params[parent]
        if q.type == "float":
            where.fail(
                loc, f"conditions on a float parameter ({parent}) are not supported; use a choice"
            )
        possible = q.possible()
        for v in allowed:
            if possible is not None:
                ok = v in possible
            else:  # an int range sampled in log scale: any whole number inside it
                assert q.min is not None and q.max is not None  # checked when loaded
                ok = isinstance(v, int) and not isinstance(v, bool) and q.min <= v <= q.max
            if not ok or isinstance(v, bool) != isinstance(q.default, bool):
                where.fail(loc, f"{parent} can never be {v!r}")


def parents_first(where: Where, params: dict[str, Param]) -> dict[str, Param]:
    """The params in the file's order, except that a parent moves up to just before the first
    key whose ``when:`` needs it (directly or through others); a cycle of conditions is refused."""
    graph = {p.name: [parent for parent, _ in p.when] for p in params.values()}
    try:
        order = list(TopologicalSorter(graph).static_order())  # every parent before its keys
    except CycleError as exc:
        cycle = exc.args[1]  # [a, b, ..., a]: each is a parent of the next
        where.fail(
            ("space", cycle[1], "when", cycle[0]),
            f"conditions form a cycle: {' -> '.join(cycle)} (each key's when: names the one "
            "before it)",
        )
    first_needed = {name: i for i, name in enumerate(params)}
    for name in reversed(order):  # keys before their parents
        for parent in graph[name]:
            first_needed[parent] = min(first_needed[parent], first_needed[name])
    level = {name: i for i, name in enumerate(order)}
    return {
        name: params[name] for name in sorted(params, key=lambda n: (first_needed[n], level[n]))
    }
