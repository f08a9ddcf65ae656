"""``chestx train``: fit a model on a patient-grouped split and write a full model directory.

Checkpoints go straight into the model directory, each written atomically, so a run stopped
at any moment still leaves the best model so far. A first Ctrl-C (SIGINT) stops training after
the current batch (that epoch's validation and checkpoint still run) and finishes the run
properly from the best checkpoint: threshold, metrics, a card with ``"interrupted": true``. A
second Ctrl-C aborts (exit 130); the card then still says ``"status": "training"``, so nothing
serves the unfinished directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chestx import config, imaging, modeldir, recipe
from chestx.config import Augmentation
from chestx.data import (
    DecodeLog,
    dataset,
    make_splits,
    manifest_sha256,
    split_counts,
    write_manifest,
)
from chestx.distill import check_teacher, soft_targets
from chestx.errors import ChestxError, DataError, ModelError
from chestx.fileio import atomic_path
from chestx.interrupts import GracefulInterrupt
from chestx.litert import save_litert
from chestx.metrics import binary_metrics, choose_threshold
from chestx.scoring import predict_dataset

log = logging.getLogger(__name__)

INTENDED_USE = "Research and education only. Not a medical device; not for clinical diagnosis."


@dataclass
class TrainConfig:
    data: Path
    out: Path
    arch: str = config.DEFAULT_ARCH
    backbone: str = config.DEFAULT_BACKBONE
    weights: str | None = None  # transfer only: imagenet | none | PATH
    model_options: dict = field(default_factory=dict)
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0
    fine_tune_lr: float | None = None  # default: a tenth of lr
    epochs: int = config.DEFAULT_EPOCHS
    batch_size: int = 32
    lr: float | None = None
    weight_decay: float | None = config.DEFAULT_WEIGHT_DECAY
    image_size: int = config.DEFAULT_IMAGE_SIZE
    intensity: str = config.DEFAULT_INTENSITY
    seed: int = 42
    split_seed: int | None = None  # the patient split's (default: seed); ensemble members share it
    label_smoothing: float = config.DEFAULT_LABEL_SMOOTHING
    mixup: float = config.DEFAULT_MIXUP  # Beta(alpha, alpha) mixup of training batches; 0 = off
    teacher: Path | None = None  # a model directory whose soft targets blend with the labels
    teacher_weight: float = 0.5  # fraction of each target that is the teacher's
    teacher_temperature: float = 1.0  # the teacher's probabilities softened by this temperature
    ema: float | None = None  # momentum of the weights' moving average that is validated and kept
    init: Path | None = None  # a finished model directory whose network is fine-tuned
    init_member: int | None = None  # which network of an ensemble --init (1 = its first)
    consistency: float = 0.0  # weight of the two-view consistency term (chestx.models.consistency)
    consistency_stretch: float = 0.3  # the second view's height is rescaled by up to this
    consistency_contrast: float = 0.0  # ... its contrast changed by up to this fraction
    consistency_blur: float = 0.0  # ... and it is blurred by a sigma of up to this (px)
    patience: int | None = 6  # EarlyStopping; ReduceLROnPlateau at a third; None: neither
    monitor: str = "val_auc"  # what the checkpoint, EarlyStopping and ReduceLROnPlateau watch
    keep: str = "best"  # the epoch whose weights the run keeps: best by monitor, or last
    min_sensitivity: float = config.DEFAULT_MIN_SENSITIVITY
    limit: int | None = None
    augmentation: Augmentation | None = field(default_factory=Augmentation)
    deterministic: bool = True  # same seed, same data -> same weights (TF op determinism)
    verbose: int | str = field(default_factory=lambda: 1 if sys.stdout.isatty() else 2)


def config_from_args(args) -> TrainConfig:
    aug = (
        None
        if args.no_augment
        else Augmentation(**{o.name: getattr(args, o.name) for o in config.AUGMENTATION_OPTIONS})
    )
    return TrainConfig(
        data=Path(args.data),
        out=Path(args.out),
        arch=args.arch,
        backbone=args.backbone,
        model_options=width_options(args.arch, args.width, args.init),
        weights=args.weights,
        fine_tune_layers=args.fine_tune_layers,
        fine_tune_epochs=args.fine_tune_epochs,
        fine_tune_lr=args.fine_tune_lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        image_size=args.image_size,
        intensity=args.intensity,
        seed=args.seed,
        split_seed=args.split_seed,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        teacher=Path(args.teacher) if args.teacher else None,
        teacher_weight=args.teacher_weight,
        teacher_temperature=args.teacher_temperature,
        ema=args.ema,
        init=Path(args.init) if args.init else None,
        init_member=init_member(args.init, args.init_member),
        consistency=consistency(args),
        consistency_stretch=args.consistency_stretch,
        consistency_contrast=args.consistency_contrast,
        consistency_blur=args.consistency_blur,
        keep=args.keep,
        patience=args.patience,
        min_sensitivity=args.min_sensitivity,
        limit=args.limit,
        augmentation=aug,
        weight_decay=args.weight_decay,
    )


def consistency(args) -> float:
    """``--consistency``; the film of its copy (``--consistency-contrast``, ``-blur``) is refused
    (one line) without it, as it would change nothing."""
    film = [f"--consistency-{o}" for o in ("contrast", "blur") if getattr(args, f"consistency_{o}")]
    if film and not args.consistency:
        verb = "shapes" if len(film) == 1 else "shape"
        raise ChestxError(
            f"{' and '.join(film)} {verb} the consistency term's copy; give --consistency"
        )
    return args.consistency


def init_member(init: str | None, member: int | None) -> int | None:
    """``--init-member``, refused (one line) without an ``--init`` to pick it from."""
    if member is not None and not init:
        raise ChestxError("--init-member picks a network of an --init ensemble; give --init")
    return member


def width_options(arch: str, width: int | None, init: str | None) -> dict:
    """``build_model`` options of ``chestx train --width`` (``ChestxError`` if it cannot apply)."""
    if width is None:
        return {}
    if arch != "chestnet":
        raise ChestxError(f"--width sets chestnet's filters; --arch {arch} has none")
    if init:
        raise ChestxError("--width builds a new network; --init keeps its source's width")
    return {"filters": config.chestnet_filters(width)}


def train_from_args(args) -> dict:
    command = getattr(args, "command", None)  # set by chestx.cli.main
    return train(config_from_args(args), command=command)


def library_versions() -> dict:
    """chestx (its commit, in a git checkout), Python and the libraries this model is trained
    with (for the card)."""
    from chestx.versions import installed_versions

    return installed_versions()


def check_init(source: Path, cfg: TrainConfig, manifest: dict) -> dict:
    """The card entry of ``source`` (``cfg.init``), if this run may fine-tune its network
    (``ModelError``, one line, if not): a finished ``chestx train`` model, or a ``chestx
    pretrain`` network, with this run's architecture and input, trained on this run's patient
    split file for file, or its validation patients would be trained on here and the checkpoint
    chosen on X-rays the network has learnt. ``manifest``: this run's split, as
    ``write_manifest`` takes it."""
    card = modeldir.load_card(source)
    if modeldir.card_status(card) != modeldir.PRETRAINED:  # chestx pretrain's are for --init
        modeldir.check_finished(card, source)
    member = None
    if card.get("ensemble"):
        card, member = _init_member(source, card, cfg.init_member)
    elif cfg.init_member is not None:
        raise ModelError(f"--init {source} is one network; --init-member picks one of an ensemble")
    for key, mine in (
        ("arch", cfg.arch),
        ("image_size", cfg.image_size),
        ("intensity", cfg.intensity),
    ):
        # an exposure correction in front of the source's normalisation is a fine-tune on the
        # inputs an ensemble serves it (chestx ensemble --intensity), not another input
        corrected = key == "intensity" and config.takes_intensity(str(card.get(key)), str(mine))
        if card.get(key) != mine and not corrected:
            raise ModelError(
                f"--init {source} has {key} {card.get(key)!r}, this run {mine!r}; "
                f"pass --{key.replace('_', '-')} {card.get(key)}"
            )
    if (card.get("data") or {}).get("manifest_sha256") != manifest_sha256(manifest, Path(cfg.data)):
        recorded = "training.config" if member is None else "ensemble.members[].training"
        raise ModelError(
            f"--init {source} was trained on another patient split; use the --data, "
            f"--split-seed and --limit it was trained with (its card's {recorded})"
        )
    directory = Path(source).resolve().name
    if member is not None:
        return {**member, "directory": directory}
    return {
        "model": card.get("name"),
        "version": card.get("version"),
        "directory": directory,
        "commands": modeldir.training_commands(card),
    }


def _init_member(source: Path, card: dict, number: int | None) -> tuple[dict, dict]:
    """The ensemble ``card`` as its network ``number`` (1 = the first): a card with that
    network's architecture and intensity for ``check_init`` to check, and what ``training.init``
    records of it but its directory (``version`` is the network's, which ``chestx ensemble
    --soup`` compares)."""
    ensemble = card["ensemble"]
    members = ensemble.get("members") or []
    if ensemble.get("soup"):
        raise ModelError(
            f"--init {source} averaged its members' weights into one network (--soup); "
            "start from one of its members' directories"
        )
    if number is None:
        raise ModelError(
            f"--init {source} is an ensemble of {len(members)} networks; "
            f"pick one with --init-member (1 to {len(members)})"
        )
    if not 1 <= number <= len(members):
        raise ModelError(
            f"--init {source} has {len(members)} member networks; "
            f"--init-member {number} is not one of 1 to {len(members)}"
        )
    entry = members[number - 1]
    if entry.get("arch") not in ("chestnet", "cnn"):  # a transfer network's frozen layers
        raise ModelError(  # are not recorded in an ensemble
            f"--init-member {number} of {source} is a {entry.get('arch')} network; only chestnet "
            "and cnn members can be fine-tuned from an ensemble (use its own directory)"
        )
    intensity = entry.get("intensity") or ensemble.get("members_intensity")  # older cards
    network = {**card, "arch": entry["arch"], "intensity": intensity}
    fields = {
        "model": f"chestx-{entry['arch']}",  # the network's name, as its own card had it
        "ensemble_version": card.get("version"),
        "member": number,
        "version": entry.get("version"),
        "commands": modeldir.member_training_commands(card, number - 1),
    }
    return network, fields


def train(cfg: TrainConfig, *, command: str | None = None, extra_card: dict | None = None) -> dict:
    """Train as ``cfg`` says; write and return the model card."""
    message = "interrupted: finishing from the best checkpoint (Ctrl-C again to abort)"
    with GracefulInterrupt(message) as ctrl_c:
        return _train(cfg, ctrl_c, command=command, extra_card=extra_card)


def _train(
    cfg: TrainConfig, ctrl_c: GracefulInterrupt, *, command: str | None, extra_card: dict | None
) -> dict:
    import keras

    versions = library_versions()  # first: the code as the run starts
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if cfg.teacher is not None:  # a bad teacher is refused before the output is touched
        check_teacher(
            cfg.teacher,
            image_size=cfg.image_size,
            intensity=cfg.intensity,
            weight=cfg.teacher_weight,
            temperature=cfg.teacher_temperature,
        )
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    splits, external = make_splits(cfg.data, seed=split_seed, limit=cfg.limit)
    if not splits["train"] or not splits["val"]:
        raise DataError(f"{cfg.data}: too few patients for a train/validation split")
    weights = recipe.class_weights([r.label for r in splits["train"]])  # refuses one class
    manifest = {**splits, **({"external": external} if external else {})}
    init = None if cfg.init is None else check_init(cfg.init, cfg, manifest)
    # nothing above touched --out: a refused run leaves an earlier model there as it was
    cfg.out.mkdir(parents=True, exist_ok=True)
    for stale in (modeldir.HISTORY, modeldir.MODEL_FILE, modeldir.H5_FILE, modeldir.LITERT_FILE):
        (cfg.out / stale).unlink(missing_ok=True)  # an earlier run's: never finish from those
    manifest_sha = write_manifest(manifest, cfg.out / modeldir.MANIFEST, root=Path(cfg.data))
    counts = split_counts(splits)
    log.info("split by patient: %s", counts)

    skipped = DecodeLog()
    common: dict[str, Any] = dict(
        image_size=cfg.image_size,
        intensity=cfg.intensity,
        batch_size=cfg.batch_size,
        skipped=skipped,
    )
    targets, teacher = None, None
    if cfg.teacher is not None:
        targets, teacher = soft_targets(
            cfg.teacher,
            splits["train"],
            image_size=cfg.image_size,
            intensity=cfg.intensity,
            weight=cfg.teacher_weight,
            temperature=cfg.teacher_temperature,
        )
    if targets is not None or cfg.mixup:
        log.info(
            "soft training targets: the training-batch accuracy, auc, precision and sensitivity "
            "Keras logs treat any target above 0 as pneumonia and mean nothing; the val_ "
            "metrics (true labels) choose the checkpoint"
        )
    aug = recipe.augment_layer(cfg)
    train_ds = dataset(
        splits["train"],
        training=True,
        augment=aug,
        seed=cfg.seed,
        mixup=cfg.mixup,
        targets=targets,
        **common,
    )
    val_ds = dataset(splits["val"], **common)
    model = recipe.build(cfg)
    base_card = {
        modeldir.STATUS: modeldir.TRAINING,
        "name": f"chestx-{model.name}",
        "version": "training",
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "intensity": cfg.intensity,
        "threshold": 0.5,
        "threshold_rule": "provisional (training in progress)",
        "intended_use": INTENDED_USE,
    }
    modeldir.write_card(cfg.out, base_card)  # "training": predict/serve refuse it until done

    start = time.perf_counter()
    fitted = recipe.fit(model, cfg, train_ds, val_ds, class_weight=weights, interrupt=ctrl_c)
    seconds = time.perf_counter() - start
    best, epochs_run, interrupted = fitted.model, fitted.epochs_run, fitted.interrupted
    y_val, p_val = predict_dataset(best, val_ds)
    threshold = choose_threshold(y_val, p_val, cfg.min_sensitivity)
    metrics = {"val": binary_metrics(y_val, p_val, threshold)}
    if splits["test"]:
        y, p = predict_dataset(best, dataset(splits["test"], **common))
        metrics["test"] = binary_metrics(y, p, threshold)
    if external:
        y, p = predict_dataset(best, dataset(external, **common))
        metrics["external"] = binary_metrics(y, p, threshold)
    for name, m in metrics.items():
        log.info(
            "%s: accuracy %.3f  sensitivity %.3f  specificity %.3f  ROC AUC %.3f (n=%d)",
            name,
            m["accuracy"],
            m["sensitivity"],
            m["specificity"],
            m["roc_auc"],
            m["n"],
        )

    n_train = len({str(r.path) for r in splits["train"]} - skipped.failures.keys())
    digest = hashlib.sha256((cfg.out / modeldir.MODEL_FILE).read_bytes()).hexdigest()[:8]
    card = {
        **base_card,
        modeldir.STATUS: modeldir.COMPLETE,
        "version": f"{dt.date.today():%Y.%m.%d}-{digest}",
        "backbone": cfg.backbone if cfg.arch == "transfer" else None,
        "parameters": int(best.count_params()),
        "input": f"grey uint8 pixels, shape ({cfg.image_size}, {cfg.image_size}, 1); "
        "the model scales them to 0-1 itself",
        "preprocessing": imaging.describe(cfg.image_size, cfg.intensity),
        "threshold": threshold,
        "threshold_rule": f"highest threshold keeping validation sensitivity >= "
        f"{cfg.min_sensitivity} (screening favours sensitivity)",
        "metrics": metrics,
        # the data by folder name and manifest hash: no path of the machine that trained it
        "data": {
            "root": Path(cfg.data).resolve().name,
            "manifest": modeldir.MANIFEST,
            "manifest_sha256": manifest_sha,
            "split": "by patient, stratified, 70/20/10",
            "counts": counts,
            "external_test": len(external),
            "skipped": len(skipped),
            "skipped_files": dict(list(skipped.failures.items())[:50]),
        },
        "training": {
            "command": command,
            "seed": cfg.seed,
            "split_seed": split_seed,
            "epochs_run": epochs_run,
            "interrupted": interrupted,
            "seconds": round(seconds, 1),
            "images_per_second": round(n_train * epochs_run / seconds, 1) if seconds else None,
            "class_weight": weights,
            "teacher": teacher,
            "init": init,
            "learning_rate": recipe.learning_rate(cfg),
            "config": {
                k: (Path(v).resolve().name if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(cfg).items()
            },
        },
        "versions": versions,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **(extra_card or {}),
    }
    for name in (modeldir.MODEL_FILE, modeldir.H5_FILE):  # without the optimizer: 3x smaller
        with atomic_path(cfg.out / name) as tmp:
            best.save(tmp)
    _export_litert(best, cfg.out)
    modeldir.write_card(cfg.out, card)  # last: the card marks the directory finished
    log.info("wrote %s (threshold %.3f)", cfg.out, threshold)
    return card


_export_litert = save_litert  # a module name, so tests can stub the slow export
