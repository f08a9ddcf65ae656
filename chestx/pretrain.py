"""``chestx pretrain``: self-supervised pretraining of a chestnet on the training split's X-rays.

SimCLR (Chen et al. 2020): two random views of each X-ray (a crop of 35-100 % of its area at
aspect 0.7-1.43, resized back; a mirror; gamma, contrast and brightness; a blur; noise) go
through the network up to its global pooling and a small projection head, and the NT-Xent loss
teaches the network to tell each X-ray's pair of views apart from every other X-ray in the
batch. The labels are never read for training, so the network learns what the X-rays have in
common rather than the shortcuts that separate the training collection's two folders.

The result is a model directory for ``chestx train --init``: ``model.keras`` holds the chestnet
with the pretrained layers and a new, untrained head, ``manifest.csv`` the patient split it was
pretrained on (``--init`` requires the same split, so no validation X-ray was seen), and the
card has status ``"pretrained"``: ``predict``, ``serve``, ``ensemble`` and ``calibrate`` refuse
the directory, since its head classifies nothing. The card records the command verbatim, so a
model trained from it lists both commands among its ``training_commands``. On the training
split's labels, a linear probe of the frozen features (logistic regression, scored on the
validation X-rays) says how much the pretraining learnt; it is reported, never trained on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chestx import config, modeldir
from chestx.data import DecodeLog, dataset, make_splits, split_counts, write_manifest
from chestx.errors import DataError, TrainingError
from chestx.fileio import atomic_path
from chestx.interrupts import GracefulInterrupt
from chestx.train import INTENDED_USE as _TRAINED_USE
from chestx.train import library_versions

log = logging.getLogger(__name__)

INTENDED_USE = (
    "A self-supervised starting point for `chestx train --init`; its head is untrained, so it "
    f"classifies nothing. {_TRAINED_USE}"
)
ENCODER_OUTPUT = "gap"  # chestnet's global pooling: the features the projection head reads
PROJECTION = (128, 64)


@dataclass(frozen=True)
class Views:
    """How the two random views of an X-ray differ from it (SimCLR's augmentations, for grey
    0-255 X-rays)."""

    min_area: float = 0.35  # the crop keeps at least this fraction of the X-ray's area
    max_aspect: float = 1 / 0.7  # the crop's width / height lies in [1 / this, this]
    gamma: float = 0.4  # log(gamma) uniform in [-this, this]
    contrast: float = 0.4  # contrast factor in [1 - this, 1 + this]
    brightness: float = 0.15  # added, on the 0-1 scale
    blur: float = 0.5  # probability of a 3x3 box blur
    noise: float = 0.03  # Gaussian noise, its standard deviation drawn in [0, this] (0-1 scale)


@dataclass
class PretrainConfig:
    data: Path
    out: Path
    width: int = config.CHESTNET_WIDTH
    image_size: int = config.DEFAULT_IMAGE_SIZE
    intensity: str = config.DEFAULT_INTENSITY
    seed: int = 42
    split_seed: int | None = None  # the patient split's (default: seed); use chestx train's
    limit: int | None = None
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate: one epoch of linear warm-up, then cosine decay to 0
    weight_decay: float = 1e-4
    temperature: float = 0.2
    views: Views = field(default_factory=Views)
    deterministic: bool = True
    verbose: int | str = field(default_factory=lambda: 1 if sys.stdout.isatty() else 2)


def config_from_args(args) -> PretrainConfig:
    return PretrainConfig(
        data=Path(args.data),
        out=Path(args.out),
        width=args.width,
        image_size=args.image_size,
        intensity=args.intensity,
        seed=args.seed,
        split_seed=args.split_seed,
        limit=args.limit,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        temperature=args.temperature,
    )


def pretrain_from_args(args) -> dict:
    return pretrain(config_from_args(args), command=getattr(args, "command", None))


def random_views(images, views: Views):
    """One random view per image of a float batch ``(B, S, S, 1)`` on the 0-255 scale."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]

    def uniform(lo, hi, shape=None):
        return tf.random.uniform([n] if shape is None else shape, lo, hi)

    area = uniform(views.min_area, 1.0)
    log_aspect = math.log(views.max_aspect)
    aspect = tf.exp(uniform(-log_aspect, log_aspect))  # width / height
    w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    h = tf.minimum(tf.sqrt(area / aspect), 1.0)
    x0 = uniform(0.0, 1.0) * (1 - w)
    y0 = uniform(0.0, 1.0) * (1 - h)
    boxes = tf.stack([y0, x0, y0 + h, x0 + w], axis=1)
    x = tf.image.crop_and_resize(images, boxes, tf.range(n), size)
    one = [n, 1, 1, 1]
    x = tf.where(uniform(0.0, 1.0, one) < 0.5, tf.reverse(x, axis=[2]), x)
    x = tf.clip_by_value(x / 255.0, 1e-6, 1.0)
    x = tf.pow(x, tf.exp(uniform(-views.gamma, views.gamma, one)))
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * uniform(1 - views.contrast, 1 + views.contrast, one) + mean
    x = x + uniform(-views.brightness, views.brightness, one)
    blur = tf.cast(uniform(0.0, 1.0, one) < views.blur, x.dtype)
    x = blur * tf.nn.avg_pool2d(x, 3, 1, "SAME") + (1 - blur) * x
    x = x + tf.random.normal(tf.shape(x)) * uniform(0.0, views.noise, one)
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def nt_xent(z1, z2, temperature: float):
    """SimCLR's NT-Xent loss of two batches of projections, row i of each from one X-ray, and
    the fraction of views whose most similar other view is their partner."""
    import tensorflow as tf

    z = tf.math.l2_normalize(tf.concat([z1, z2], axis=0), axis=1)
    n = tf.shape(z1)[0]
    similarity = tf.matmul(z, z, transpose_b=True) / temperature
    similarity -= 1e9 * tf.eye(2 * n)  # a view is not its own partner
    partner = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=partner, logits=similarity)
    )
    hits = tf.argmax(similarity, axis=1, output_type=tf.int32) == partner
    return loss, tf.reduce_mean(tf.cast(hits, tf.float32))


def contrastive_model(encoder, *, temperature: float, views: Views):
    """``encoder`` (images -> features) with a projection head, trained by ``fit`` on batches
    of images (labels, if the dataset yields any, are ignored)."""
    import keras
    import tensorflow as tf

    class Contrastive(keras.Model):
        def __init__(self):
            super().__init__(name="simclr")
            self.encoder = encoder
            self.projector = keras.Sequential(
                [
                    keras.layers.Dense(PROJECTION[0], activation="relu"),
                    keras.layers.Dense(PROJECTION[1]),
                ],
                name="projector",
            )
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

        @property
        def metrics(self):
            return [self.loss_tracker, self.accuracy_tracker]

        def call(self, images, training=False):
            return self.projector(self.encoder(images, training=training), training=training)

        def train_step(self, data):
            images = data[0] if isinstance(data, tuple) else data
            pair = tf.concat([random_views(images, views), random_views(images, views)], 0)
            n = tf.shape(images)[0]
            with tf.GradientTape() as tape:
                z = self(pair, training=True)
                loss, accuracy = nt_xent(z[:n], z[n:], temperature)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=True))
            self.loss_tracker.update_state(loss)
            self.accuracy_tracker.update_state(accuracy)
            return {m.name: m.result() for m in self.metrics}

    return Contrastive()


def linear_probe(encoder, train_ds, val_ds) -> float:
    """Validation ROC AUC of a logistic regression fitted on the frozen features of the
    training X-rays: how far the features separate the classes without any fine-tuning."""
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from chestx.scoring import collect

    features = tf.function(lambda x: encoder(x, training=False))
    y_train, f_train = collect(train_ds, lambda x: features(x).numpy())
    y_val, f_val = collect(val_ds, lambda x: features(x).numpy())
    if len(set(y_train)) < 2 or len(set(y_val)) < 2:
        return float("nan")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(f_train, y_train)
    return float(roc_auc_score(y_val, probe.predict_proba(f_val)[:, 1]))


def pretrain(cfg: PretrainConfig, *, command: str | None = None) -> dict:
    """Pretrain as ``cfg`` says; write ``cfg.out`` (whole, or not at all) and return its card.
    A first Ctrl-C ends the run after the current batch and still writes the directory, with
    ``"interrupted": true``; a second aborts and writes nothing."""
    modeldir.check_new(cfg.out)  # before any work: never overwrite, never waste an hour
    message = "interrupted: writing the network as it is now (Ctrl-C again to abort)"
    with GracefulInterrupt(message) as ctrl_c:
        return _pretrain(cfg, ctrl_c, command)


def _pretrain(cfg: PretrainConfig, ctrl_c: GracefulInterrupt, command: str | None) -> dict:
    import keras

    from chestx.callbacks import AtomicHistory, StopOnInterrupt
    from chestx.models import build_model

    versions = library_versions()  # first: the code as the run starts
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    splits, external = make_splits(cfg.data, seed=split_seed, limit=cfg.limit)
    if not splits["train"] or not splits["val"]:
        raise DataError(f"{cfg.data}: too few patients for a train/validation split")
    manifest = {**splits, **({"external": external} if external else {})}
    skipped = DecodeLog()
    common: dict[str, Any] = dict(
        image_size=cfg.image_size, intensity=cfg.intensity, skipped=skipped
    )
    train_ds = dataset(
        splits["train"], training=True, seed=cfg.seed, batch_size=cfg.batch_size, **common
    )
    network = build_model(
        "chestnet", cfg.image_size, filters=config.chestnet_filters(cfg.width)
    )  # its head stays as initialised: chestx train --init trains it
    encoder = keras.Model(network.input, network.get_layer(ENCODER_OUTPUT).output)
    model = contrastive_model(encoder, temperature=cfg.temperature, views=cfg.views)
    steps = math.ceil(len(splits["train"]) / cfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, steps * (cfg.epochs - 1)),
        warmup_target=cfg.lr,
        warmup_steps=steps,
    )
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay))
    log.info(
        "pretraining on the %d training X-rays of the patient split (labels unread)",
        len(splits["train"]),
    )
    with modeldir.new_model_dir(cfg.out) as tmp:
        manifest_sha = write_manifest(manifest, tmp / modeldir.MANIFEST, root=Path(cfg.data))
        done = keras.callbacks.History()
        start = time.perf_counter()
        model.fit(
            train_ds,
            epochs=cfg.epochs,
            shuffle=False,  # the dataset shuffles itself
            callbacks=[
                AtomicHistory(tmp / modeldir.HISTORY),
                keras.callbacks.TerminateOnNaN(),
                StopOnInterrupt(ctrl_c),
                done,
            ],
            verbose=cfg.verbose,
        )
        seconds = time.perf_counter() - start
        if not math.isfinite(done.history["loss"][-1]):
            raise TrainingError(
                f"the contrastive loss became {done.history['loss'][-1]} in epoch "
                f"{len(done.epoch)}; nothing written (try a lower --lr)"
            )
        plain: dict[str, Any] = dict(batch_size=256, **common)
        probe = linear_probe(
            encoder, dataset(splits["train"], **plain), dataset(splits["val"], **plain)
        )
        log.info("linear probe of the frozen features: validation ROC AUC %.3f", probe)
        with atomic_path(tmp / modeldir.MODEL_FILE) as path:
            network.save(path)
        digest = hashlib.sha256((tmp / modeldir.MODEL_FILE).read_bytes()).hexdigest()[:8]
        n_train = len({str(r.path) for r in splits["train"]} - skipped.failures.keys())
        card = {
            modeldir.STATUS: modeldir.PRETRAINED,
            "name": f"chestx-{network.name}-simclr",
            "version": f"{dt.date.today():%Y.%m.%d}-{digest}",
            "arch": "chestnet",
            "image_size": cfg.image_size,
            "intensity": cfg.intensity,
            "parameters": int(network.count_params()),
            "intended_use": INTENDED_USE,
            "data": {
                "root": Path(cfg.data).resolve().name,
                "manifest": modeldir.MANIFEST,
                "manifest_sha256": manifest_sha,
                "split": "by patient, stratified, 70/20/10",
                "counts": split_counts(splits),
                "pretrained_on": f"the {n_train} training X-rays, labels unread",
                "skipped": len(skipped),
            },
            "pretraining": {
                "method": "SimCLR (Chen et al. 2020): NT-Xent between two random views",
                "views": dataclasses.asdict(cfg.views),
                "projection": list(PROJECTION),
                "temperature": cfg.temperature,
                "final_loss": round(float(done.history["loss"][-1]), 4),
                "final_accuracy": round(float(done.history["accuracy"][-1]), 4),
                "linear_probe_val_roc_auc": round(probe, 4) if math.isfinite(probe) else None,
            },
            "training": {
                "command": command,
                "seed": cfg.seed,
                "split_seed": split_seed,
                "epochs_run": len(done.epoch),
                "interrupted": bool(ctrl_c.requested and model.stop_training),
                "seconds": round(seconds, 1),
                "images_per_second": round(n_train * len(done.epoch) / seconds, 1),
                "learning_rate": cfg.lr,
                "config": {
                    k: (Path(v).resolve().name if isinstance(v, Path) else v)
                    for k, v in dataclasses.asdict(cfg).items()
                },
            },
            "versions": versions,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        modeldir.write_card(tmp, card)
    log.info("wrote %s: train with `chestx train --init %s`", cfg.out, cfg.out)
    return card
