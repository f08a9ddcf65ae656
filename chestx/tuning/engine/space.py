"""A search-space file: read, validated in full, and declared to Keras Tuner.

Everything is checked before anything runs or is written: the file's format by the pydantic
models of ``space_schema`` (unknown keys and types, min > max, a log range touching 0, a
default outside its range), the keys against the model family's vocabulary and the ``when:``
conditions by ``space_params`` (a condition on an unknown parameter, a value the parent can
never take, a cycle). The first problem becomes a ``SpaceError`` naming the file, the dotted key
and, when YAML knows it, the line (``space_yaml``).

The format is documented in ``hyperparams/README.md``. Pure Python: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chestx.tuning.engine import space_schema as schema
from chestx.tuning.engine import vocabulary as vocab
from chestx.tuning.engine.space_params import Param, build_params, parents_first, pin
from chestx.tuning.engine.space_schema import OBJECTIVES
from chestx.tuning.engine.space_yaml import Where, read_yaml
from chestx.tuning.errors import SpaceError

__all__ = [
    "OBJECTIVES",
    "Budget",
    "Param",
    "SearchSpace",
    "load_space",
    "parse_space",
]


@dataclass(frozen=True)
class Budget:
    """The file's ``budget:`` flattened for the tuner (defaults: ``space_schema.Budget``)."""

    max_trials: int
    epochs: int  # per trial; hyperband: its max_epochs
    executions_per_trial: int
    patience: int | None  # EarlyStopping patience; None = off
    monitor: str
    fine_tune_epochs: int | None  # transfer, second phase (default: epochs)
    default_first: bool  # random/bayesian: trial 0 is the all-defaults configuration
    max_failures: int  # consecutive failed trials that stop the search
    trials_per_process: int  # then a fresh process continues (flat memory); 0 = never
    hyperband_factor: int
    hyperband_iterations: int
    initial_points: int | None  # bayesian
    alpha: float
    beta: float

    @classmethod
    def from_file(cls, b: schema.Budget) -> Budget:
        es, hb, by = b.early_stopping, b.hyperband or schema.Hyperband(), b.bayesian
        by = by or schema.Bayesian()
        return cls(
            max_trials=b.max_trials,
            epochs=b.epochs,
            executions_per_trial=b.executions_per_trial,
            patience=es.patience if es else None,
            monitor=es.monitor if es else schema.EarlyStopping().monitor,
            fine_tune_epochs=b.fine_tune_epochs,
            default_first=b.default_first,
            max_failures=b.max_failures,
            trials_per_process=b.trials_per_process,
            hyperband_factor=hb.factor,
            hyperband_iterations=hb.iterations,
            initial_points=by.initial_points,
            alpha=by.alpha,
            beta=by.beta,
        )


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
        where = Where(Path(origin), settings, {})
        params = dict(self.params)
        for name, value in settings.items():
            params[name] = pin(where, self.model, name, value)
        return dataclasses.replace(self, params=parents_first(where, params))

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
    data, lines = read_yaml(text, path)
    where = Where(path, data, lines)
    try:
        file = schema.SpaceFile.model_validate(data)
    except ValidationError as exc:
        where.reject(exc)
    objective = file.objective
    return SearchSpace(
        path=path,
        text=text,
        name=file.name or path.stem,
        model=file.model,
        tuner=file.tuner,
        objective=objective.name,
        direction=objective.direction or OBJECTIVES[objective.name],
        seed=file.seed,
        budget=Budget.from_file(file.budget),
        params=build_params(where, file.model, file.space),
        description=(file.description or "").strip(),
        retrain_epochs=file.retrain.epochs,
        retrain_patience=file.retrain.patience,
        lines=lines,
    )
