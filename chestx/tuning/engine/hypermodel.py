"""``ChestHyperModel``: chestx's models as a Keras Tuner ``HyperModel`` over a YAML space.

``build(hp)`` declares the file's keys (their names are the hyperparameter names) and builds
and compiles the model through ``chestx.models``; ``fit(hp, model, ...)`` tunes what belongs to
training (batch size, augmentation, input size, the fine-tuning phase), trains on the split's
train part and scores the validation part with ``chestx.metrics``, exactly as ``chestx train``
scores its model: ROC AUC and the clinical metrics at the threshold its rule chooses.
"""

from __future__ import annotations

import logging
import math

import keras_tuner as kt

from chestx import config
from chestx.tuning.engine import vocabulary as vocab
from chestx.tuning.engine.space import MONITORS, SearchSpace

log = logging.getLogger(__name__)

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
            "filters": tuple(int(cfg["filters"]) * 2**i for i in range(int(cfg["blocks"]))),
            "convs_per_block": int(cfg["convs_per_block"]),
            "dropout": float(cfg["dropout"]),
            "dense_units": int(cfg["dense_units"]),
        }
    if model == "transfer":
        return {
            "backbone": cfg["backbone"],
            "weights": cfg["weights"],
            "head_units": int(cfg["head_units"]),
            "dropout": float(cfg["dropout"]),
        }
    return {}


def augmentation(cfg: dict) -> dict | None:
    """``chestx.data.augmenter`` arguments, or None when augmentation is off."""
    if not cfg["augment"]:
        return None
    return {k: cfg[k] for k in vocab.AUGMENTATION_KEYS}


def fine_tune_learning_rate(cfg: dict) -> float:
    lr = cfg.get("fine_tune_learning_rate")
    return float(lr) if lr else float(cfg["learning_rate"]) / 10


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

    def build(self, hp):
        from chestx.models import build_model, compile_model

        cfg = self.configuration(hp)
        size = int(cfg["image_size"])
        if self.space.model == "chestnet" and size // 2 ** (int(cfg["blocks"]) + 1) < 1:
            raise kt.errors.FailedTrialError(
                f"image_size {size} is too small for {cfg['blocks']} blocks"
            )
        model = build_model(self.space.model, size, **model_options(self.space.model, cfg))
        compile_model(
            model,
            learning_rate=float(cfg["learning_rate"]),
            label_smoothing=float(cfg["label_smoothing"]),
            weight_decay=float(cfg["weight_decay"]) or None,
        )
        return model

    def fit(self, hp, model, *args, data=None, **kwargs):
        """Train, then score on validation; ``kwargs`` (epochs, callbacks, ...) go on to
        ``model.fit``. Returns the validation metrics (the objective among them)."""
        from chestx.data import augmenter
        from chestx.metrics import binary_metrics, choose_threshold
        from chestx.models import compile_model, unfreeze_top
        from chestx.train import class_weights, predict_dataset

        if data is None:
            raise kt.errors.FatalValueError("ChestHyperModel.fit needs data=SearchData(...)")
        cfg = self.configuration(hp)
        aug_args = augmentation(cfg)
        aug = augmenter(**aug_args, seed=self.seed) if aug_args else None
        train_ds, val_ds, y_train = data.datasets(
            image_size=int(cfg["image_size"]),
            intensity=cfg["intensity"],
            batch_size=int(cfg["batch_size"]),
            augment=aug,
            seed=self.seed,
        )
        kwargs.setdefault("class_weight", class_weights(y_train))
        kwargs.setdefault("verbose", self.verbose)
        kwargs.setdefault("shuffle", False)  # the training dataset shuffles itself
        user_callbacks = list(kwargs.pop("callbacks", None) or [])
        epochs = int(kwargs.pop("epochs", self.space.budget.epochs))

        history = model.fit(
            train_ds,
            *args,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=[*user_callbacks, *self._callbacks()],
            **kwargs,
        )
        epochs_run = len(history.epoch)
        val_losses = list(history.history.get("val_loss", []))

        ft_layers = int(cfg.get("fine_tune_layers") or 0)
        ft_epochs = min(self.space.fine_tune_epochs, epochs)
        if self.space.model == "transfer" and ft_layers and ft_epochs:
            n = unfreeze_top(model, ft_layers)
            log.debug("fine-tuning %d backbone layers for %d epochs", n, ft_epochs)
            compile_model(
                model,
                learning_rate=fine_tune_learning_rate(cfg),
                label_smoothing=float(cfg["label_smoothing"]),
                weight_decay=float(cfg["weight_decay"]) or None,
            )
            more = model.fit(
                train_ds,
                *args,
                validation_data=val_ds,
                epochs=epochs_run + ft_epochs,
                initial_epoch=epochs_run,
                callbacks=[*user_callbacks, *self._callbacks()],
                **kwargs,
            )
            epochs_run += len(more.epoch)
            val_losses += list(more.history.get("val_loss", []))

        y, p = predict_dataset(model, val_ds)
        threshold = choose_threshold(y, p, self.min_sensitivity)
        m = binary_metrics(y, p, threshold)
        results = {f"val_{k}": float(m[k]) for k in REPORTED}
        results["val_loss"] = float(min(val_losses)) if val_losses else float("nan")
        results["val_threshold"] = float(threshold)
        results["epochs"] = float(epochs_run)
        objective = self.space.objective
        if not math.isfinite(results[objective]):
            raise kt.errors.FailedTrialError(
                f"{objective} is {results[objective]} (the model diverged?)"
            )
        return results

    def _callbacks(self) -> list:
        import keras

        out = [keras.callbacks.TerminateOnNaN()]
        budget = self.space.budget
        if budget.patience:
            out.append(
                keras.callbacks.EarlyStopping(
                    monitor=budget.monitor,
                    mode=MONITORS[budget.monitor],
                    patience=budget.patience,
                    restore_best_weights=True,
                )
            )
        return out
