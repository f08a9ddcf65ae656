"""The one ``chestx`` command line.

Each sub-command's arguments are declared here or by the sub-package that owns it
(``chestx.web.cli``, ``chestx.tuning.cli``); handlers import TensorFlow lazily so ``--help`` is
instant. Any ``ChestxError`` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from chestx.argtypes import (
    non_negative_int,
    open_fraction,
    positive_float,
    positive_int,
    proportion,
    strength,
)
from chestx.errors import ChestxError
from chestx.logs import configure_logging
from chestx.versions import VersionAction

log = logging.getLogger("chestx")


def _add_train(sub) -> None:
    from chestx import config

    p = sub.add_parser("train", help="train a model on a data folder and write a model directory")
    p.add_argument("--data", required=True, help="NORMAL/ + PNEUMONIA/ folder, or a Kaggle root")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--arch", default=config.DEFAULT_ARCH, choices=config.ARCHITECTURES)
    p.add_argument(
        "--backbone",
        default=config.DEFAULT_BACKBONE,
        choices=config.BACKBONES,
        help="keras.applications backbone for --arch transfer",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="transfer weights: imagenet | none | PATH (default imagenet)",
    )
    p.add_argument(
        "--width",
        type=positive_int,
        default=None,
        metavar="FILTERS",
        help="chestnet: filters of the first block, doubled in each later block (32); "
        "16 gives a quarter of the computation",
    )
    p.add_argument(
        "--fine-tune-layers",
        type=non_negative_int,
        default=0,
        help="transfer: unfreeze this many top backbone layers for a second phase",
    )
    p.add_argument("--fine-tune-epochs", type=non_negative_int, default=0)
    p.add_argument(
        "--fine-tune-lr",
        type=positive_float,
        default=None,
        help="learning rate of the fine-tuning phase (default: --lr / 10)",
    )
    p.add_argument("--epochs", type=positive_int, default=config.DEFAULT_EPOCHS)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help=f"learning rate ({config.DEFAULT_LEARNING_RATE:g})",
    )
    p.add_argument("--image-size", type=positive_int, default=config.DEFAULT_IMAGE_SIZE)
    p.add_argument(
        "--intensity",
        default=config.DEFAULT_INTENSITY,
        choices=config.INTENSITY_METHODS,
        help="intensity normalisation applied before the model, at train and serve time",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of the weights, shuffling and augmentation (and of the split)",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the patient split alone (default: --seed); members of one ensemble share it",
    )
    p.add_argument("--label-smoothing", type=strength(0.5), default=config.DEFAULT_LABEL_SMOOTHING)
    p.add_argument(
        "--weight-decay",
        type=strength(),
        default=config.DEFAULT_WEIGHT_DECAY,
        help="AdamW weight decay (0 = plain Adam)",
    )
    p.add_argument(
        "--patience", type=non_negative_int, default=6, help="EarlyStopping patience (epochs)"
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="MODEL_DIR",
        help="distil: train on the labels blended with this model's probabilities "
        "(e.g. an ensemble too slow to serve)",
    )
    p.add_argument(
        "--teacher-weight",
        type=strength(1),
        default=0.5,
        help="fraction of each training target that is the teacher's (0.5)",
    )
    p.add_argument(
        "--teacher-temperature",
        type=positive_float,
        default=1.0,
        help="soften the teacher's probabilities: sigmoid(logit(p) / T) (1)",
    )
    p.add_argument(
        "--ema",
        type=open_fraction,
        default=None,
        metavar="MOMENTUM",
        help="validate, checkpoint and ship an exponential moving average of the weights "
        "(e.g. 0.995) instead of the last step's",
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="MODEL_DIR",
        help="fine-tune: start from this chestx train model's network (same --arch, input and "
        "patient split) instead of new weights",
    )
    p.add_argument(
        "--init-member",
        type=positive_int,
        default=None,
        metavar="N",
        help="--init is an ensemble (chestx ensemble or calibrate, the shipped model too): start "
        "from its N-th network (1 = the first of its card's ensemble.members)",
    )
    p.add_argument(
        "--consistency",
        type=strength(),
        default=0.0,
        metavar="WEIGHT",
        help="add WEIGHT x the squared gap between the logits of each X-ray and of a copy with "
        "its height rescaled (0 = off): the score must not follow the proportions",
    )
    p.add_argument(
        "--consistency-stretch",
        type=open_fraction,
        default=0.3,
        help="the copy's height is divided by a random factor in [1 - this, 1 + this] (0.3)",
    )
    p.add_argument(
        "--consistency-contrast",
        type=strength(1),
        default=0.0,
        metavar="F",
        help="the copy's contrast is also scaled by a random factor in [1 - F, 1 + F] (0 = off): "
        "the score must not follow a flatter film",
    )
    p.add_argument(
        "--consistency-blur",
        type=strength(config.MAX_BLUR),
        default=0.0,
        metavar="SIGMA",
        help="the copy is also blurred by a random sigma of up to SIGMA px (0 = off): the score "
        "must not follow a softer film",
    )
    p.add_argument(
        "--keep",
        choices=("best", "last"),
        default="best",
        help="the epoch whose weights the run keeps: the best by validation ROC AUC, or the last "
        "(fine-tuning for an invariance the training hospital's validation cannot reward)",
    )
    p.add_argument(
        "--min-sensitivity",
        type=proportion,
        default=config.DEFAULT_MIN_SENSITIVITY,
        help="threshold rule: highest-specificity threshold with at least this "
        "validation sensitivity",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use at most this many images (quick runs and tests)",
    )
    aug = p.add_argument_group("augmentation (Keras preprocessing layers; 0 switches one off)")
    for option in config.AUGMENTATION_OPTIONS:  # one flag per declared augmentation
        kind: dict = (
            {"action": argparse.BooleanOptionalAction}
            if isinstance(option.default, bool)
            else {"type": strength(option.metadata["hi"])}
        )
        aug.add_argument(
            f"--{option.name}", **kind, default=option.default, help=option.metadata["help"]
        )
    aug.add_argument(
        "--mixup",
        type=strength(),
        default=config.DEFAULT_MIXUP,
        help="mixup Beta(alpha, alpha) of training batches (0 = off)",
    )
    aug.add_argument("--no-augment", action="store_true", help="switch all augmentation off")
    p.set_defaults(handler=_run_train)


def _run_train(args) -> int:
    from chestx import train

    train.train_from_args(args)
    return 0


def _add_pretrain(sub) -> None:
    from chestx import config

    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining (SimCLR) of a chestnet on a data folder's training "
        "X-rays, labels unread; its directory is a start for chestx train --init",
    )
    p.add_argument("--data", required=True, help="NORMAL/ + PNEUMONIA/ folder, or a Kaggle root")
    p.add_argument("--out", required=True, help="directory to write (new or empty)")
    p.add_argument(
        "--width",
        type=positive_int,
        default=config.CHESTNET_WIDTH,
        metavar="FILTERS",
        help=f"chestnet's filters in its first block ({config.CHESTNET_WIDTH})",
    )
    p.add_argument("--image-size", type=positive_int, default=config.DEFAULT_IMAGE_SIZE)
    p.add_argument(
        "--intensity", default=config.DEFAULT_INTENSITY, choices=config.INTENSITY_METHODS
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the weights and the views")
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the patient split (default: --seed); chestx train --init from this "
        "directory must use the same",
    )
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=128,
        help="X-rays per batch; each is told apart from the batch's others (128)",
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=2e-3,
        help="peak learning rate: one epoch's warm-up, then cosine decay (0.002)",
    )
    p.add_argument(
        "--temperature", type=positive_float, default=0.2, help="NT-Xent temperature (0.2)"
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use at most this many images (quick runs and tests; chestx train --init needs "
        "the same)",
    )
    p.set_defaults(handler=_run_pretrain)


def _run_pretrain(args) -> int:
    from chestx import pretrain

    pretrain.pretrain_from_args(args)
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="clinical metrics of a model on labelled X-rays")
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--data", required=True, help="NORMAL/ + PNEUMONIA/ folder, or a Kaggle root")
    p.add_argument(
        "--split",
        default=None,
        help="for a Kaggle root: which split to score (default test/ if present)",
    )
    p.add_argument("--json", default=None, help="write the metrics to this JSON file")
    p.add_argument("--plots", default=None, help="write PNG plots into this folder")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--robustness",
        action="store_true",
        help="also score graded corruptions (gamma, contrast, exposure, blur, noise, JPEG, "
        "rotation, crop, zoom-out, white frame, low resolution): ROC AUC and specificity "
        "per level",
    )
    p.set_defaults(handler=_run_evaluate)


def _run_evaluate(args) -> int:
    from chestx import evaluate

    evaluate.evaluate_from_args(args)
    return 0


def _add_calibrate(sub) -> None:
    from chestx import config

    p = sub.add_parser(
        "calibrate",
        help="site calibration: temperature and threshold fitted on "
        "a site's labelled X-rays, written as a new model",
    )
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument(
        "--data",
        required=True,
        help="NORMAL/ + PNEUMONIA/ folder of the site's labelled X-rays (at least 20 of each)",
    )
    p.add_argument("--out", required=True, help="new model directory to write")
    p.add_argument(
        "--min-sensitivity",
        type=proportion,
        default=None,
        help="threshold rule: highest threshold keeping at least this sensitivity "
        f"on --data (default: the card's, else {config.DEFAULT_MIN_SENSITIVITY})",
    )
    p.add_argument(
        "--internal-data",
        default=None,
        help="the folder the model was trained on: re-score its internal "
        "validation and test splits under the new calibration",
    )
    p.add_argument(
        "--bias",
        action="store_true",
        help="also fit a logit offset (Platt scaling): for a site whose scores are "
        "all shifted one way, which one temperature cannot correct",
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.set_defaults(handler=_run_calibrate)


def _run_calibrate(args) -> int:
    from chestx import calibrate

    calibrate.calibrate_from_args(args)
    return 0


def _add_ensemble(sub) -> None:
    from chestx import config

    p = sub.add_parser("ensemble", help="combine trained models (same split) into one model")
    p.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="MODEL_DIR",
        help="a member's model directory (repeat)",
    )
    p.add_argument("--data", required=True, help="the folder the members were trained on")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument(
        "--flip",
        action="store_true",
        help="also average over the left-right mirrored X-ray (test-time augmentation)",
    )
    p.add_argument(
        "--zoom-out",
        type=strength(0.4),
        default=0.0,
        metavar="FRACTION",
        help="score the X-ray shrunk by FRACTION of its side on each side and padded "
        "black (a looser framing) instead of as given",
    )
    p.add_argument(
        "--soup",
        action="store_true",
        help="average the members' weights into one network (a model soup) instead of their "
        "answers: one network's serving cost; members must be fine-tunes of one --init model",
    )
    p.add_argument("--min-sensitivity", type=proportion, default=config.DEFAULT_MIN_SENSITIVITY)
    p.add_argument(
        "--intensity",
        choices=config.INTENSITY_METHODS,
        help="serve the members with an exposure correction in front of their intensity "
        "normalisation: 'lift-clahe' for 'clahe' brings an under-exposed X-ray up to the "
        "training X-rays' exposure first, 'level-clahe' also their mid-tones, 'span-clahe' "
        "also a washed-out X-ray's black point (default: the members' own)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.set_defaults(handler=_run_ensemble)


def _run_ensemble(args) -> int:
    from chestx import ensemble

    ensemble.ensemble_from_args(args)
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="classify X-ray files; one JSON line per image")
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="X-ray files, or folders of them (recursive)"
    )
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.set_defaults(handler=_run_predict)


def _run_predict(args) -> int:
    from chestx import predict

    return predict.predict_from_args(args)


def _add_gate(sub) -> None:
    p = sub.add_parser("gate", help="the input gate that refuses images that are not chest X-rays")
    gsub = p.add_subparsers(dest="gate_command", required=True, metavar="COMMAND")
    f = gsub.add_parser("fit", help="fit the gate on a training folder, into a model directory")
    f.add_argument(
        "--data", required=True, help="the training folder (NORMAL/ + PNEUMONIA/); never a test set"
    )
    f.add_argument("--model", required=True, help="model directory to write the gate into")
    f.add_argument(
        "--negatives",
        type=positive_int,
        default=400,
        help="rendered or packaged negatives per family",
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use at most this many training X-rays (quick runs and tests)",
    )
    f.set_defaults(handler=_run_gate_fit)
    c = gsub.add_parser("copy", help="copy the gate of one model directory into another")
    c.add_argument("src", help="model directory with a gate")
    c.add_argument("dst", help="model directory to copy it into")
    c.set_defaults(handler=_run_gate_copy)


def _run_gate_fit(args) -> int:
    from chestx import gate_fit

    return gate_fit.fit_from_args(args)


def _run_gate_copy(args) -> int:
    from chestx.gate import copy_gate

    print(copy_gate(args.src, args.dst))
    return 0


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="get the Kaggle chest X-ray data set")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    d = dsub.add_parser("download", help="download and unpack the Kaggle data set")
    d.add_argument("--dest", required=True, help="folder to unpack into")
    d.add_argument("--dataset", default="paultimothymooney/chest-xray-pneumonia")
    d.add_argument(
        "--archive",
        default=None,
        help="unpack this local zip instead of downloading (offline hosts)",
    )
    d.set_defaults(handler=_run_download)


def _run_download(args) -> int:
    from chestx import download

    download.download_from_args(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chestx",
        description="Pneumonia detection on chest X-rays. Research use only, not for clinical use.",
    )
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_pretrain(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_calibrate(sub)
    _add_ensemble(sub)
    _add_gate(sub)
    _add_data(sub)
    from chestx.tuning.cli import add_tune
    from chestx.web.cli import add_serve

    add_serve(sub)
    add_tune(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.command = "chestx " + shlex.join(args.argv)  # recorded verbatim in model cards
    configure_logging(args.verbose)
    try:
        return args.handler(args)
    except ChestxError as exc:
        print(f"chestx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chestx: interrupted", file=sys.stderr)
        return 130
