"""A search-space file: parsed, validated in full, and declared to Keras Tuner.

Everything is checked before anything runs or is written: a malformed file, an unknown key or
type, min > max, a log range touching 0, a default outside its range, a condition on an unknown
parameter, a condition value the parent can never take, a condition cycle. The first problem
becomes a ``SpaceError`` naming the file, the dotted key and, when YAML knows it, the line.

The format is documented in ``hyperparams/README.md``. Pure Python: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chestx.tuning.engine import vocabulary as vocab
from chestx.tuning.errors import SpaceError

TUNERS = ("random", "hyperband", "bayesian")
TYPES = ("int", "float", "choice", "boolean", "fixed")
SAMPLINGS = ("linear", "log", "reverse_log")

# every validation metric a trial reports, and which way is better
OBJECTIVES = {
    "val_roc_auc": "max",
    "val_pr_auc": "max",
    "val_accuracy": "max",
    "val_sensitivity": "max",
    "val_specificity": "max",
    "val_precision": "max",
    "val_npv": "max",
    "val_f1": "max",
    "val_brier": "min",
    "val_ece": "min",
    "val_loss": "min",
}
# what EarlyStopping may watch (Keras' own per-epoch names, as in ``chestx train``)
MONITORS = {"val_auc": "max", "val_loss": "min", "val_accuracy": "max"}

TOP_KEYS = (
    "name",
    "description",
    "model",
    "tuner",
    "objective",
    "seed",
    "budget",
    "space",
    "retrain",
)
BUDGET_KEYS = (
    "max_trials",
    "epochs",
    "executions_per_trial",
    "early_stopping",
    "fine_tune_epochs",
    "default_first",
    "max_failures",
    "trials_per_process",
    "hyperband",
    "bayesian",
)
ENTRY_KEYS = {
    "int": ("type", "min", "max", "step", "sampling", "default", "when", "help"),
    "float": ("type", "min", "max", "step", "sampling", "default", "when", "help"),
    "choice": ("type", "values", "ordered", "default", "when", "help"),
    "boolean": ("type", "default", "when", "help"),
    "fixed": ("type", "value", "when", "help"),
}


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


@dataclass(frozen=True)
class Budget:
    max_trials: int = 10
    epochs: int = 10  # per trial; hyperband: its max_epochs
    executions_per_trial: int = 1
    patience: int | None = 3  # EarlyStopping patience; None = off
    monitor: str = "val_auc"
    fine_tune_epochs: int | None = None  # transfer, second phase (default: epochs)
    default_first: bool = True  # random/bayesian: trial 0 is the all-defaults configuration
    max_failures: int = 3  # consecutive failed trials that stop the search
    trials_per_process: int = 10  # then a fresh process continues (flat memory); 0 = never
    hyperband_factor: int = 3
    hyperband_iterations: int = 1
    initial_points: int | None = None  # bayesian
    alpha: float = 1e-4
    beta: float = 2.6


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    text: str
    name: str
    model: str  # chestnet | transfer | cnn
    tuner: str
    objective: str
    direction: str
    seed: int
    budget: Budget
    params: dict[str, Param]  # parents before children
    description: str = ""
    retrain_epochs: int | None = None
    retrain_patience: int | None = None
    lines: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def fine_tune_epochs(self) -> int:
        ft = self.budget.fine_tune_epochs
        return self.budget.epochs if ft is None else min(ft, self.budget.epochs)

    def with_caps(self, *, max_trials: int | None = None, epochs: int | None = None):
        """The same space with the command line's ``--max-trials`` / ``--epochs`` applied:
        they override the file's budget, so a quick search stays quick whatever it says."""
        changes: dict[str, Any] = {}
        if max_trials:
            changes["max_trials"] = max_trials
        if epochs:
            changes["epochs"] = epochs
        return dataclasses.replace(self, budget=dataclasses.replace(self.budget, **changes))

    def with_fixed(self, settings: dict[str, Any], origin: str = "--set"):
        """The same space with some keys pinned to one value (``--set image_size=128``), each
        checked like a bare value in the file; a pinned key drops its own condition, and keys
        that depend on it are active exactly when the pinned value meets their condition."""
        if not settings:
            return self
        known = vocab.family(self.model)
        c = _Checker(Path(origin), {})
        params = dict(self.params)
        for name, value in settings.items():
            if name not in known:
                c.fail(
                    (name,), f"unknown key for model {self.model}; known keys: {', '.join(known)}"
                )
            params[name] = Param(name, "fixed", _typed_value(c, (name,), name, value, known[name]))
        return dataclasses.replace(self, params=_parents_first(c, params))

    def declare(self, hp) -> dict[str, Any]:
        """Declare every parameter on ``hp`` (parents first, conditions as Keras Tuner
        conditional scopes); return ``{key: value}``, None for an inactive key."""
        values = {}
        for p in self.params.values():
            values[p.name] = _declare_under(hp, p, list(p.when))
        return values

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """The full configuration: the vocabulary's defaults, overridden by the active values."""
        config = {k: key.default for k, key in vocab.family(self.model).items()}
        config.update({k: v for k, v in values.items() if v is not None})
        return config

    def defaults(self) -> dict[str, Any]:
        """The values of the all-defaults configuration (inactive keys left out)."""
        values: dict[str, Any] = {}
        for p in self.params.values():
            if all(values.get(parent, _MISSING) in allowed for parent, allowed in p.when):
                values[p.name] = p.default
        return values

    def summary(self) -> dict:
        return {
            "name": self.name,
            "file": str(self.path),
            "sha256": self.sha256,
            "model": self.model,
            "tuner": self.tuner,
            "objective": {"name": self.objective, "direction": self.direction},
            "seed": self.seed,
            "budget": dataclasses.asdict(self.budget),
            "space": {n: p.spec() for n, p in self.params.items()},
        }


_MISSING = object()


def _declare_under(hp, param: Param, conditions: list):
    if not conditions:
        return param.declare(hp)
    parent, allowed = conditions[0]
    with hp.conditional_scope(parent, list(allowed)):
        return _declare_under(hp, param, conditions[1:])


# ---------------------------------------------------------------------------------------------
# parsing


class _Checker:
    """Walks the parsed YAML; ``fail`` raises with file, dotted key and line."""

    def __init__(self, path: Path, lines: dict):
        self.path = path
        self.lines = lines

    def fail(self, key: tuple, message: str):
        line = None
        for n in range(len(key), -1, -1):  # the key's own line, else its nearest parent's
            if key[:n] in self.lines:
                line = self.lines[key[:n]]
                break
        raise SpaceError(str(self.path), ".".join(str(k) for k in key), message, line)

    def mapping(self, key: tuple, value, allowed: tuple | None = None) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping, got {_describe(value)}")
        for k in value:
            if not isinstance(k, str):
                self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                self.fail((*key, k), f"unknown key; expected one of {', '.join(allowed)}")
        return value

    def integer(self, key: tuple, value, lo: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {_describe(value)}")
        if lo is not None and value < lo:
            self.fail(key, f"must be >= {lo}, got {value}")
        return value

    def number(self, key: tuple, value) -> float | int:
        """An int or float; also a string such as ``1e-4`` (YAML 1.1 reads that as text)."""
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self.fail(key, f"must be a number, got {_describe(value)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"must be a number, got {_describe(value)}")
        if not math.isfinite(value):
            self.fail(key, f"must be finite, got {value}")
        return value

    def boolean(self, key: tuple, value) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {_describe(value)}")
        return value

    def string(self, key: tuple, value, choices: tuple | None = None) -> str:
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {_describe(value)}")
        if choices and value not in choices:
            self.fail(key, f"unknown value {value!r}; expected one of {', '.join(choices)}")
        return value


def _describe(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def _line_map(node, path: tuple, lines: dict, checker: _Checker) -> None:
    """Record the 1-based line of every key; refuse duplicate keys (PyYAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key == "<<":
                continue
            here = (*path, key)
            if key in seen:
                lines[here] = key_node.start_mark.line + 1
                checker.fail(here, "duplicate key")
            seen.add(key)
            lines[here] = key_node.start_mark.line + 1
            _line_map(value_node, here, lines, checker)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), lines, checker)


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate a search-space file; raise ``SpaceError`` on the first problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpaceError(str(path), "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(str(path), "", f"cannot read: {exc}") from None
    return parse_space(text, path)


def parse_space(text: str, path: str | Path = "<string>") -> SearchSpace:
    path = Path(path)
    lines: dict = {}
    c = _Checker(path, lines)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _line_map(node, (), lines, c)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpaceError(
            str(path), "", f"not valid YAML: {problem}", mark.line + 1 if mark else None
        ) from None
    if data is None:
        c.fail((), "the file is empty")
    c.mapping((), data, TOP_KEYS)

    model = (
        c.string(("model",), data.get("model"), tuple(vocab.FAMILIES))
        if "model" in data
        else c.fail(("model",), "required (chestnet, transfer or cnn)")
    )
    tuner = c.string(("tuner",), data.get("tuner", "random"), TUNERS)
    name = c.string(("name",), data.get("name", path.stem))
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        c.fail(("description",), "must be text")
    seed = c.integer(("seed",), data.get("seed", 42), 0)
    objective, direction = _objective(c, data.get("objective", "val_roc_auc"))
    budget = _budget(c, data.get("budget", {}) or {}, tuner)
    if "space" not in data:
        c.fail(("space",), "required: the mapping of tunable keys")
    params = _params(c, data["space"], model)
    retrain = c.mapping(("retrain",), data.get("retrain", {}) or {}, ("epochs", "patience"))
    r_epochs = (
        c.integer(("retrain", "epochs"), retrain["epochs"], 1) if "epochs" in retrain else None
    )
    r_patience = (
        c.integer(("retrain", "patience"), retrain["patience"], 1)
        if "patience" in retrain
        else None
    )
    return SearchSpace(
        path=path,
        text=text,
        name=name,
        model=model,
        tuner=tuner,
        objective=objective,
        direction=direction,
        seed=seed,
        budget=budget,
        params=params,
        description=description.strip(),
        retrain_epochs=r_epochs,
        retrain_patience=r_patience,
        lines=lines,
    )


def _objective(c: _Checker, value) -> tuple[str, str]:
    key: tuple[str, ...] = ("objective",)
    if isinstance(value, str):
        name, direction = value, None
    else:
        c.mapping(key, value, ("name", "direction"))
        name = value.get("name", "val_roc_auc")
        direction = value.get("direction")
        key = ("objective", "name")
    c.string(key, name, tuple(OBJECTIVES))
    if direction is None:
        direction = OBJECTIVES[name]
    c.string(("objective", "direction"), direction, ("max", "min"))
    return name, direction


def _budget(c: _Checker, value, tuner: str) -> Budget:
    b = c.mapping(("budget",), value, BUDGET_KEYS)
    k = ("budget",)
    out: dict[str, Any] = {}
    for name in ("max_trials", "epochs", "executions_per_trial", "max_failures"):
        if name in b:
            out[name] = c.integer((*k, name), b[name], 1)
    if "trials_per_process" in b:
        out["trials_per_process"] = c.integer(
            (*k, "trials_per_process"), b["trials_per_process"], 0
        )
    if "fine_tune_epochs" in b:
        out["fine_tune_epochs"] = c.integer((*k, "fine_tune_epochs"), b["fine_tune_epochs"], 0)
    if "default_first" in b:
        out["default_first"] = c.boolean((*k, "default_first"), b["default_first"])
    if "early_stopping" in b:
        es = b["early_stopping"]
        key = (*k, "early_stopping")
        if es is False:
            out["patience"] = None
        elif isinstance(es, int) and not isinstance(es, bool):
            out["patience"] = c.integer(key, es, 1)
        else:
            c.mapping(key, es, ("patience", "monitor"))
            if "patience" in es:
                out["patience"] = c.integer((*key, "patience"), es["patience"], 1)
            if "monitor" in es:
                out["monitor"] = c.string((*key, "monitor"), es["monitor"], tuple(MONITORS))
    if "hyperband" in b:
        key = (*k, "hyperband")
        if tuner != "hyperband":
            c.fail(key, f"only used with tuner: hyperband (this file says tuner: {tuner})")
        hb = c.mapping(key, b["hyperband"], ("factor", "iterations"))
        if "factor" in hb:
            out["hyperband_factor"] = c.integer((*key, "factor"), hb["factor"], 2)
        if "iterations" in hb:
            out["hyperband_iterations"] = c.integer((*key, "iterations"), hb["iterations"], 1)
    if "bayesian" in b:
        key = (*k, "bayesian")
        if tuner != "bayesian":
            c.fail(key, f"only used with tuner: bayesian (this file says tuner: {tuner})")
        by = c.mapping(key, b["bayesian"], ("initial_points", "alpha", "beta"))
        if "initial_points" in by:
            out["initial_points"] = c.integer((*key, "initial_points"), by["initial_points"], 1)
        for name in ("alpha", "beta"):
            if name in by:
                v = c.number((*key, name), by[name])
                if v <= 0:
                    c.fail((*key, name), f"must be > 0, got {v}")
                out[name] = float(v)
    return Budget(**out)


def _params(c: _Checker, value, model: str) -> dict[str, Param]:
    space = c.mapping(("space",), value)
    if not space:
        c.fail(("space",), "is empty: declare at least one key")
    known = vocab.family(model)
    params: dict[str, Param] = {}
    for name, entry in space.items():
        key = ("space", name)
        if name not in known:
            c.fail(key, f"unknown key for model {model}; known keys: {', '.join(known)}")
        params[name] = _param(c, key, name, entry, known[name])
    for p in params.values():
        _check_conditions(c, p, params)
    return _parents_first(c, params)


def _param(c: _Checker, key: tuple, name: str, entry, spec: vocab.Key) -> Param:
    if not isinstance(entry, dict):  # a bare value: a fixed setting
        entry = {"type": "fixed", "value": entry}
        tkey = key
    else:
        if "type" not in entry:
            c.fail(key, f"needs a type: one of {', '.join(TYPES)}")
        tkey = (*key, "type")
    kind = entry.get("type")
    if kind not in TYPES:
        c.fail(tkey, f"unknown type {kind!r}; expected one of {', '.join(TYPES)}")
    c.mapping(key, entry, ENTRY_KEYS[kind])
    when = _when(c, key, entry.get("when"))

    if kind in ("int", "float"):
        numeric = (vocab.INT, vocab.FLOAT) if kind == "int" else (vocab.FLOAT,)
        if spec.kind not in numeric:
            c.fail(tkey, f"{name} takes {_kind_text(spec)} values, not {kind}")
        for bound in ("min", "max"):
            if bound not in entry:
                c.fail(key, f"type {kind} needs {bound}")
        read = c.integer if kind == "int" else c.number
        lo, hi = read((*key, "min"), entry["min"]), read((*key, "max"), entry["max"])
        if lo > hi:
            c.fail((*key, "min"), f"min ({lo}) > max ({hi})")
        sampling = c.string((*key, "sampling"), entry.get("sampling", "linear"), SAMPLINGS)
        if sampling != "linear" and lo <= 0:
            c.fail((*key, "min"), f"a {sampling} range must not touch 0: min is {lo}")
        step = None
        if "step" in entry:
            step = read((*key, "step"), entry["step"])
            if step <= 0 or (sampling != "linear" and step <= 1):
                c.fail(
                    (*key, "step"),
                    f"must be > {0 if sampling == 'linear' else 1} "
                    f"({'a multiplier' if sampling != 'linear' else 'an increment'}), "
                    f"got {step}",
                )
        for bound, v in (("min", lo), ("max", hi)):
            _check_range(c, (*key, bound), name, v, spec)
        if "default" in entry:
            default = read((*key, "default"), entry["default"])
        else:
            default = _inside(spec.default, lo, hi)
            if kind == "int" and not float(default).is_integer():
                default = lo
            default = int(default) if kind == "int" else default
        if not lo <= default <= hi:
            c.fail((*key, "default"), f"default {default} is outside [{lo}, {hi}]")
        if kind == "float":
            lo, hi, default = float(lo), float(hi), float(default)
            step = float(step) if step is not None else None
        return Param(name, kind, default, lo, hi, step, sampling, when=when)

    if kind == "choice":
        if "values" not in entry:
            c.fail(key, "type choice needs values")
        values = entry["values"]
        if not isinstance(values, list) or not values:
            c.fail((*key, "values"), "must be a non-empty list")
        values = [_typed_value(c, (*key, "values", i), name, v, spec) for i, v in enumerate(values)]
        if any(isinstance(v, bool) for v in values):
            c.fail((*key, "values"), "a choice of true/false is a type: boolean")
        if len({type(v) for v in values}) > 1:
            c.fail((*key, "values"), "all values of a choice must have the same type")
        if len(set(values)) != len(values):
            c.fail((*key, "values"), "values repeat")
        default = entry.get("default", spec.default if spec.default in values else values[0])
        default = _typed_value(c, (*key, "default"), name, default, spec)
        if default not in values:
            c.fail((*key, "default"), f"default {default!r} is not one of the values")
        ordered = entry.get("ordered")
        if ordered is not None:
            c.boolean((*key, "ordered"), ordered)
            if ordered and isinstance(values[0], str):
                c.fail((*key, "ordered"), "only numeric choices can be ordered")
        return Param(name, kind, default, values=tuple(values), ordered=ordered, when=when)

    if kind == "boolean":
        if spec.kind != vocab.BOOL:
            c.fail(tkey, f"{name} takes {_kind_text(spec)} values, not boolean")
        default = c.boolean((*key, "default"), entry.get("default", bool(spec.default)))
        return Param(name, kind, default, when=when)

    # fixed
    if "value" not in entry:
        c.fail(key, "type fixed needs value")
    value = _typed_value(c, (*key, "value") if tkey != key else key, name, entry["value"], spec)
    return Param(name, kind, value, when=when)


def _inside(default, lo, hi):
    return default if default is not None and lo <= default <= hi else lo


def _kind_text(spec: vocab.Key) -> str:
    return {
        "bool": "true/false",
        "int": "integer",
        "float": "numeric",
        "str": "text",
        "weights": "text",
    }[spec.kind]


def _typed_value(c: _Checker, key: tuple, name: str, value, spec: vocab.Key):
    """One concrete value for ``name``: the right type and inside the vocabulary's range."""
    if spec.kind == vocab.BOOL:
        return c.boolean(key, value)
    if spec.kind == vocab.INT:
        value = c.integer(key, value)
    elif spec.kind == vocab.FLOAT:
        value = float(c.number(key, value))
    elif spec.kind == vocab.STR:
        return c.string(key, value, spec.choices)
    else:  # weights: none | imagenet | an existing file
        value = c.string(key, value)
        if value not in ("none", "imagenet") and not Path(value).expanduser().is_file():
            c.fail(
                key,
                f"weights must be none, imagenet or an existing file; {value!r} is none of these",
            )
        return value
    _check_range(c, key, name, value, spec)
    return value


def _check_range(c: _Checker, key: tuple, name: str, value, spec: vocab.Key) -> None:
    if spec.lo is not None and (value < spec.lo or (spec.positive and value <= spec.lo)):
        c.fail(key, f"{name} must be {'>' if spec.positive else '>='} {spec.lo}, got {value}")
    if spec.hi is not None and value > spec.hi:
        c.fail(key, f"{name} must be <= {spec.hi}, got {value}")


def _when(c: _Checker, key: tuple, value) -> tuple:
    if value is None:
        return ()
    wkey = (*key, "when")
    c.mapping(wkey, value)
    if not value:
        c.fail(wkey, "is empty")
    out = []
    for parent, allowed in value.items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if not allowed:
            c.fail((*wkey, parent), "needs at least one value")
        out.append((parent, tuple(allowed)))
    return tuple(out)


def _check_conditions(c: _Checker, p: Param, params: dict[str, Param]) -> None:
    for parent, allowed in p.when:
        key = ("space", p.name, "when", parent)
        if parent == p.name:
            c.fail(key, "a parameter cannot depend on itself")
        if parent not in params:
            c.fail(key, f"condition on unknown parameter {parent!r}; declare it in space")
        q = params[parent]
        if q.type == "float":
            c.fail(
                key, f"conditions on a float parameter ({parent}) are not supported; use a choice"
            )
        possible = q.possible()
        for v in allowed:
            ok = (
                (v in possible)
                if possible is not None
                else (
                    isinstance(v, int)
                    and not isinstance(v, bool)
                    and q.min is not None
                    and q.max is not None
                    and q.min <= v <= q.max
                )
            )
            if isinstance(v, bool) != isinstance(q.default, bool):
                ok = False
            if not ok:
                c.fail(key, f"{parent} can never be {v!r}")


def _parents_first(c: _Checker, params: dict[str, Param]) -> dict[str, Param]:
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: list[str]):
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            c.fail(("space", name, "when"), f"conditions form a cycle: {cycle}")
        state[name] = "active"
        for parent, _ in params[name].when:
            visit(parent, [*chain, name])
        state[name] = "done"
        order.append(name)

    for name in params:
        visit(name, [])
    return {n: params[n] for n in order}
