"""The search-space file format, declared as pydantic models: the one statement of which keys a
file may hold, of what type, with which defaults, and the rules inside one section.

Every model refuses unknown keys (``extra="forbid"``) and converts nothing silently
(``strict``: ``2.5`` is not an integer, ``"yes"`` is not a boolean); a hyperparameter entry is
one of five models picked by its ``type``. What depends on the model family (which keys exist,
their kinds and ranges: ``vocabulary.py``) and on other entries (``when:``) is checked in
``space_params.py``; ``space_yaml.py`` turns an error here into ``file:line: key: message``.
The format is documented for users in ``hyperparams/README.md``.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chestx import config
from chestx.tuning.engine import vocabulary as vocab

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

Tuner = Literal["random", "hyperband", "bayesian"]
Sampling = Literal["linear", "log", "reverse_log"]
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def refuse(message: str, *at: str | int) -> PydanticCustomError:
    """A validation error; ``at`` names the key it is about, below where pydantic reports it (a
    model's own validator is reported at the model, but ``min > max`` is about ``min``)."""
    return PydanticCustomError("space", "{message}", {"message": message, "at": at})


def describe(value: Any) -> str:
    """A value as an error message quotes it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"


def alternatives(choices) -> str:
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def one_of(choices) -> AfterValidator:
    """Only these names (kept as data elsewhere: OBJECTIVES, the vocabulary's families)."""
    allowed = tuple(choices)

    def check(value: str) -> str:
        if value not in allowed:
            raise refuse(f"unknown value {value!r}; expected {alternatives(allowed)}")
        return value

    return AfterValidator(check)


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise refuse(f"must be a non-empty string, got {describe(value)}")
    return value


def _yaml11_number(value: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``1e-4`` as text; the file means the number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _named(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def _empty_is_default(value: Any) -> Any:
    return {} if value is None else value


def _patience_or_off(value: Any) -> Any:
    """``early_stopping: 3`` is a patience, ``false`` turns it off (None)."""
    if value is False:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return {"patience": value}
    return value


def _bare_is_fixed(value: Any) -> Any:
    """``image_size: 128`` is short for ``{type: fixed, value: 128}``."""
    return value if isinstance(value, dict) else {"type": "fixed", "value": value}


def _one_or_more(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


Text = Annotated[str, BeforeValidator(_text)]
Number = Annotated[float, BeforeValidator(_yaml11_number)]
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
# ``when: {PARENT: VALUE or [VALUE, ...], ...}``: active only when every parent takes one of them
Conditions = Annotated[
    dict[str, Annotated[list[Any], BeforeValidator(_one_or_more), Field(min_length=1)]],
    Field(min_length=1),
]


class Section(BaseModel):
    """A mapping of the file. A key written with no value (null) is refused unless it is one of
    ``nullable``: ``step:`` left empty is a slip, not a request for the default."""

    model_config = STRICT
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _no_empty_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key in cls.model_fields and key not in cls.nullable:
                    raise refuse("has no value (null); give one or leave the key out", key)
        return data


class Objective(Section):
    name: Annotated[str, one_of(OBJECTIVES)] = "val_roc_auc"
    direction: Literal["max", "min"] | None = None  # default: the metric's own


class EarlyStopping(Section):
    patience: Count = 3
    # what EarlyStopping may watch: Keras' own per-epoch names, as in ``chestx train``
    monitor: Annotated[str, one_of(config.MONITORS)] = "val_auc"


class Hyperband(Section):
    factor: Annotated[int, Field(ge=2)] = 3
    iterations: Count = 1


class Bayesian(Section):
    initial_points: Count | None = None
    alpha: Annotated[Number, Field(gt=0)] = 1e-4
    beta: Annotated[Number, Field(gt=0)] = 2.6


class Budget(Section):
    max_trials: Count = 10
    epochs: Count = 10  # per trial; hyperband: its max_epochs
    executions_per_trial: Count = 1
    early_stopping: Annotated[EarlyStopping | None, BeforeValidator(_patience_or_off)] = (
        EarlyStopping()
    )
    fine_tune_epochs: NonNegative | None = None  # transfer, second phase (default: epochs)
    default_first: bool = True  # random/bayesian: trial 0 is the all-defaults configuration
    max_failures: Count = 3  # consecutive failed trials that stop the search
    trials_per_process: NonNegative = 10  # then a fresh process continues; 0 = never
    hyperband: Hyperband | None = None
    bayesian: Bayesian | None = None


class Retrain(Section):
    epochs: Count | None = None
    patience: Count | None = None


# ---------------------------------------------------------------------------------------------
# hyperparameter entries


class Entry(Section):
    """What every entry may carry besides its type's own keys."""

    nullable = frozenset({"when", "help", "ordered"})
    type: str  # each entry type narrows it to its own Literal: the union's discriminator
    when: Conditions | None = None
    help: str | None = None

    def conditions(self) -> tuple[tuple[str, tuple], ...]:
        return tuple((parent, tuple(allowed)) for parent, allowed in (self.when or {}).items())


class _Range(Entry):
    """int and float: ``[min, max]``, optionally on a ``step`` grid, sampled linearly or in log
    scale (then the range must stay above 0 and the step is a multiplier)."""

    min: float
    max: float
    step: float | None = None
    sampling: Sampling = "linear"
    default: float | None = None

    @model_validator(mode="after")
    def _sane(self):
        lo, hi, step = self.min, self.max, self.step
        if lo > hi:
            raise refuse(f"min ({lo}) > max ({hi})", "min")
        linear = self.sampling == "linear"
        if not linear and lo <= 0:
            raise refuse(f"a {self.sampling} range must not touch 0: min is {lo}", "min")
        if step is not None and (step <= 0 or (not linear and step <= 1)):
            what = "an increment" if linear else "a multiplier"
            raise refuse(f"must be > {0 if linear else 1} ({what}), got {step}", "step")
        if self.default is not None and not lo <= self.default <= hi:
            raise refuse(f"default {self.default} is outside [{lo}, {hi}]", "default")
        return self


class IntEntry(_Range):
    type: Literal["int"]
    min: int
    max: int
    step: int | None = None
    default: int | None = None


class FloatEntry(_Range):
    type: Literal["float"]
    min: Number
    max: Number
    step: Number | None = None
    default: Number | None = None


class ChoiceEntry(Entry):
    """One of a list of values, each typed against the vocabulary later (``1e-4`` is a number
    for a float key), so repeats, booleans and ``ordered`` are judged on the typed values."""

    type: Literal["choice"]
    values: Annotated[list[Any], Field(min_length=1)]
    ordered: bool | None = None  # numeric values only: Bayesian optimisation sees a scale
    default: Any = None  # default: the family default when listed, else the first value


class BooleanEntry(Entry):
    type: Literal["boolean"]
    default: bool | None = None


class FixedEntry(Entry):
    type: Literal["fixed"]
    value: Any


ENTRIES = (IntEntry, FloatEntry, ChoiceEntry, BooleanEntry, FixedEntry)
TYPES = tuple(get_args(e.model_fields["type"].annotation)[0] for e in ENTRIES)
AnyEntry = Annotated[
    IntEntry | FloatEntry | ChoiceEntry | BooleanEntry | FixedEntry,
    Field(discriminator="type"),
    BeforeValidator(_bare_is_fixed),
]


class SpaceFile(Section):
    """A whole search-space file, in the order of ``hyperparams/README.md``."""

    nullable = frozenset({"description", "budget", "retrain"})
    name: Text | None = None  # default: the file's name
    description: str | None = None
    model: Annotated[str, one_of(vocab.FAMILIES)] = Field(
        description=f"one of {', '.join(vocab.FAMILIES)}"
    )
    tuner: Tuner = "random"
    objective: Annotated[Objective, BeforeValidator(_named)] = Objective()
    seed: NonNegative = 42  # the tuner's sampling seed
    budget: Annotated[Budget, BeforeValidator(_empty_is_default)] = Budget()
    retrain: Annotated[Retrain, BeforeValidator(_empty_is_default)] = Retrain()
    space: Annotated[dict[str, AnyEntry], Field(min_length=1)] = Field(
        description="the mapping of tunable keys"
    )

    @model_validator(mode="after")
    def _sections_match_tuner(self):
        for tuner in ("hyperband", "bayesian"):
            if getattr(self.budget, tuner) is not None and self.tuner != tuner:
                raise refuse(
                    f"only used with tuner: {tuner} (this file says tuner: {self.tuner})",
                    "budget",
                    tuner,
                )
        return self


# ---------------------------------------------------------------------------------------------
# one concrete value of a vocabulary key (a choice's values, a fixed value, a --set pin)

_VALUE_TYPES: dict[str, Any] = {
    vocab.BOOL: bool,
    vocab.INT: int,
    vocab.FLOAT: Number,
    vocab.STR: Text,
    vocab.WEIGHTS: Text,
}


@cache
def value_type(kind: str) -> TypeAdapter:
    """The strict pydantic type of a value of a vocabulary kind (its range is the vocabulary's
    business: ``space_params``)."""
    return TypeAdapter(_VALUE_TYPES[kind], config=ConfigDict(strict=True, allow_inf_nan=False))


# ---------------------------------------------------------------------------------------------
# the schema at an error's location (for messages that list the keys a mapping allows)


def section_at(loc: tuple) -> type[BaseModel] | None:
    """The model of the mapping at ``loc``, a pydantic error location such as
    ``("space", "dropout", "float")`` (a discriminated union puts the tag in the location)."""
    node: Any = SpaceFile
    for part in loc:
        node = _inside(node, part)
        if node is None:
            return None
    return next((m for m in _members(node) if _is_model(m)), None)


def _members(annotation: Any) -> list:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_model(node: Any) -> bool:
    return isinstance(node, type) and issubclass(node, BaseModel)


def _inside(node: Any, part: str | int) -> Any:
    for member in _members(node):
        if _is_model(member):
            if part in member.model_fields:
                return member.model_fields[part].annotation
            tag = member.model_fields.get("type")
            if tag is not None and get_args(tag.annotation) == (part,):
                return member
        elif get_origin(member) is dict:
            return get_args(member)[1]
    return None
