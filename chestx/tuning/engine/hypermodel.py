"""``ChestHyperModel``: chestx's models as a Keras Tuner ``HyperModel`` over a YAML space.

``train_config`` turns a configuration of the space into the ``chestx.train.TrainConfig`` that
``chestx train`` would run: the one mapping from hyperparameters to training, used by every
trial and by the retraining of the winner into ``best/`` (``chestx.tuning.export``).
``build(hp)`` declares the file's keys (their names are the hyperparameter names) and builds
the model through ``chestx.recipe.build``; ``fit(hp, model, ...)`` trains it with
``chestx.recipe.fit`` (the callbacks, class weights and fine-tuning phase of ``chestx train``)
on the split's train part and scores the best checkpoint on the validation part, exactly as
``chestx train`` scores its model: ROC AUC and the clinical metrics at the threshold its rule
chooses.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import keras_tuner as kt

from chestx import config
from chestx.tuning.engine import vocabulary as vocab
from chestx.tuning.engine.space import SearchSpace

if TYPE_CHECKING:
    from chestx.train import TrainConfig

REPORTED = (
    "roc_auc",
    "pr_auc",
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "npv",
    "f1",
    "brier",
    "ece",
)


def model_options(model: str, cfg: dict) -> dict:
    """``chestx.models.build_model`` options for a resolved configuration."""
    if model == "chestnet":
        return {
            "filters": config.chestnet_filters(int(cfg["filters"]), int(cfg["blocks"])),
            "convs_per_block": int(cfg["convs_per_block"]),
            "dropout": float(cfg["dropout"]),
            "dense_units": int(cfg["dense_units"]),
        }
    if model == "transfer":
        return {"head_units": int(cfg["head_units"]), "dropout": float(cfg["dropout"])}
    return {}


def train_config(
    space: SearchSpace,
    values: dict,
    *,
    epochs: int,
    patience: int | None,
    data: Path = Path(),
    out: Path = Path(),
    seed: int = 42,
    limit: int | None = None,
    min_sensitivity: float = config.DEFAULT_MIN_SENSITIVITY,
    verbose: int = 2,
) -> TrainConfig:
    """The ``TrainConfig`` of the configuration ``values`` (inactive keys None or absent).

    ``epochs``/``patience`` are the trial's budget, or ``best/``'s. A trial trains on the
    search's in-memory data in a folder of its own, so ``data`` and ``out`` only matter to
    ``chestx.train.train``.
    """
    from chestx.train import Augmentation, TrainConfig

    cfg = space.resolve(values)
    transfer: dict = {}
    if space.model == "transfer":
        ft_layers = int(cfg["fine_tune_layers"])
        ft_lr = cfg.get("fine_tune_learning_rate")
        transfer = dict(
            backbone=cfg["backbone"],
            weights=cfg["weights"],
            fine_tune_layers=ft_layers,
            fine_tune_epochs=min(space.fine_tune_epochs, epochs) if ft_layers else 0,
            fine_tune_lr=float(ft_lr) if ft_lr else None,
        )
    return TrainConfig(
        data=Path(data),
        out=Path(out),
        arch=space.model,
        model_options=model_options(space.model, cfg),
        epochs=epochs,
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg["learning_rate"]),
        weight_decay=float(cfg["weight_decay"]) or None,
        image_size=int(cfg["image_size"]),
        intensity=cfg["intensity"],
        seed=seed,
        label_smoothing=float(cfg["label_smoothing"]),
        patience=patience,
        monitor=space.budget.monitor,
        min_sensitivity=min_sensitivity,
        limit=limit,
        augmentation=(
            Augmentation(**{k: cfg[k] for k in vocab.AUGMENTATION_KEYS}) if cfg["augment"] else None
        ),
        verbose=verbose,
        **transfer,
    )


class ChestHyperModel(kt.HyperModel):
    """Builds and trains the configurations of one search-space file.

    Args:
        space: the validated ``SearchSpace``.
        min_sensitivity: the threshold rule of ``chestx train``, used for the validation
            sensitivity/specificity/accuracy a trial reports.
        seed: seed of the shuffling and augmentation.
        verbose: ``model.fit`` verbosity (0 silent, 2 one line per epoch).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        min_sensitivity: float = config.DEFAULT_MIN_SENSITIVITY,
        seed: int = 42,
        verbose: int = 0,
        **kwargs,
    ):
        if not isinstance(space, SearchSpace):
            raise ValueError(f"space must be a SearchSpace, got {type(space).__name__}")
        if space.model not in vocab.FAMILIES:
            raise ValueError(f"unknown model family {space.model!r}")
        if not 0 < min_sensitivity <= 1:
            raise ValueError(f"min_sensitivity must be in (0, 1], got {min_sensitivity}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose}")
        kwargs.setdefault("name", space.name)
        super().__init__(**kwargs)
        self.space = space
        self.min_sensitivity = min_sensitivity
        self.seed = seed
        self.verbose = verbose

    def declare_hyperparameters(self, hp) -> None:
        self.space.declare(hp)

    def configuration(self, hp) -> dict:
        """The full configuration of this trial: the file's active values over the defaults."""
        return self.space.resolve(self.space.declare(hp))

    def train_config(
        self, hp, *, epochs: int | None = None, data: Path = Path(), verbose: int | None = None
    ):
        """This trial's ``TrainConfig``: the budget's epochs (or ``epochs``) and patience."""
        return train_config(
            self.space,
            self.space.declare(hp),
            epochs=epochs or self.space.budget.epochs,
            patience=self.space.budget.patience,
            data=data,
            seed=self.seed,
            min_sensitivity=self.min_sensitivity,
            verbose=self.verbose if verbose is None else verbose,
        )

    def build(self, hp):
        from chestx import recipe

        cfg = self.train_config(hp)
        blocks = len(cfg.model_options.get("filters", ()))
        if cfg.arch == "chestnet" and cfg.image_size // 2 ** (blocks + 1) < 1:
            raise kt.errors.FailedTrialError(
                f"image_size {cfg.image_size} is too small for {blocks} blocks"
            )
        return recipe.build(cfg)

    def fit(self, hp, model, *args, data=None, **kwargs):
        """Train by ``chestx.recipe.fit``, then score the best checkpoint on validation.
        ``epochs``, ``verbose`` and ``callbacks`` come from the tuner. Returns the validation
        metrics (the objective among them)."""
        from chestx import recipe
        from chestx.errors import TrainingError
        from chestx.metrics import binary_metrics, choose_threshold
        from chestx.scoring import predict_dataset

        if data is None:
            raise kt.errors.FatalValueError("ChestHyperModel.fit needs data=SearchData(...)")
        cfg = self.train_config(
            hp, epochs=kwargs.get("epochs"), data=data.root, verbose=kwargs.get("verbose")
        )
        train_ds, val_ds, y_train = data.datasets(
            image_size=cfg.image_size,
            intensity=cfg.intensity,
            batch_size=cfg.batch_size,
            augment=recipe.augment_layer(cfg),
            seed=cfg.seed,
        )
        # the checkpoint only lives as long as the trial: best/ is retrained at the end
        with tempfile.TemporaryDirectory(prefix="chestx-trial-") as workdir:
            try:
                fitted = recipe.fit(
                    model,
                    cfg,
                    train_ds,
                    val_ds,
                    class_weight=recipe.class_weights(y_train),
                    workdir=Path(workdir),
                    extra_callbacks=kwargs.get("callbacks") or (),
                )
            except TrainingError as exc:
                raise kt.errors.FailedTrialError(str(exc)) from None

        y, p = predict_dataset(fitted.model, val_ds)
        threshold = choose_threshold(y, p, self.min_sensitivity)
        m = binary_metrics(y, p, threshold)
        results = {f"val_{k}": float(m[k]) for k in REPORTED}
        val_losses = fitted.history.get("val_loss", [])
        results["val_loss"] = float(min(val_losses)) if val_losses else float("nan")
        results["val_threshold"] = float(threshold)
        results["epochs"] = float(fitted.epochs_run)
        objective = self.space.objective
        if not math.isfinite(results[objective]):
            raise kt.errors.FailedTrialError(
                f"{objective} is {results[objective]} (the model diverged?)"
            )
        return results
