"""``chestx tune``: argument definitions only; the handler imports the search lazily, so
``chestx --help`` stays instant."""

from __future__ import annotations

import argparse

from chestx import config
from chestx.argtypes import positive_int, proportion

EPILOG = """\
examples:
  chestx tune --space hyperparams/cnn.yaml --data DATA --out runs/cnn
  chestx tune --space hyperparams/cnn.yaml --data DATA --out runs/cnn --resume
  chestx tune --space hyperparams/smoke.yaml --data DATA --out runs/quick --max-trials 3 --epochs 1
  chestx tune --report runs/cnn
  chestx tune --check --space hyperparams/transfer.yaml

distributed (RUN_DIR on a folder every machine shares):
  chief:   chestx tune --space S --data DATA --out RUN_DIR --chief 0.0.0.0:8470
  workers: chestx tune --space S --data DATA --out RUN_DIR --worker w1 --chief CHIEF_HOST:8470
  or set KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT and omit the flags.
"""


def add_tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="Keras Tuner search from a hyperparams/ YAML file",
        description="Search hyperparameters declared in a YAML file (see hyperparams/README.md)"
        ", write RUN_DIR/leaderboard.csv and retrain the best into RUN_DIR/best/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", metavar="FILE", help="search-space YAML file (hyperparams/*.yaml)")
    p.add_argument("--data", metavar="DIR", help="NORMAL/ + PNEUMONIA/ folder, or a Kaggle root")
    p.add_argument("--out", metavar="RUN_DIR", help="the search's folder")
    p.add_argument(
        "--max-trials",
        type=positive_int,
        metavar="N",
        help="at most N trials, for every tuner (overrides budget.max_trials)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        metavar="E",
        help="at most E epochs per trial and for best/ (overrides budget.epochs)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in RUN_DIR without redoing finished trials",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="pins",
        help="pin a key of the space to one value for this search, e.g. "
        "--set image_size=128 (repeatable; --resume needs the same pins)",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help="use at most N images (a quick search on a subset)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=42,
        help="split and training seed, as in chestx train (default 42)",
    )
    p.add_argument(
        "--min-sensitivity",
        type=proportion,
        default=config.DEFAULT_MIN_SENSITIVITY,
        help="threshold rule for the validation metrics, as in chestx train",
    )
    p.add_argument(
        "--no-best",
        dest="export",
        action="store_false",
        help="skip retraining the best configuration into RUN_DIR/best/",
    )
    p.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="distributed: the chief's address (alone: be the chief, listening there)",
    )
    p.add_argument(
        "--worker", metavar="ID", help="distributed: be worker ID of the chief given by --chief"
    )
    p.add_argument(
        "--report",
        metavar="RUN_DIR",
        help="print RUN_DIR's leaderboard and write RUN_DIR/report.png; no search",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate --space and exit (nothing runs, nothing is written)",
    )
    p.set_defaults(handler=_run_tune)


def _run_tune(args) -> int:
    from chestx.errors import ChestxError

    if args.report:
        from chestx.tuning.report import report

        report(args.report)
        return 0
    if args.check:
        if not args.space:
            raise ChestxError("tune --check needs --space FILE")
        from chestx.tuning.engine.space import load_space

        space = load_space(args.space)
        print(
            f"{args.space}: ok ({space.tuner} search over {len(space.params)} keys of "
            f"{space.model}, {space.direction} {space.objective}, up to "
            f"{space.budget.max_trials} trials x {space.budget.epochs} epochs)"
        )
        return 0
    missing = [f"--{n}" for n in ("space", "data", "out") if not getattr(args, n)]
    if missing:
        raise ChestxError(f"tune needs {', '.join(missing)} (or --report RUN_DIR)")
    if not 0 < args.min_sensitivity <= 1:
        raise ChestxError(f"--min-sensitivity must be in (0, 1], got {args.min_sensitivity}")

    pins = {}
    for item in args.pins:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ChestxError(f"--set expects KEY=VALUE, got {item!r}")
        import yaml

        try:
            pins[key.strip()] = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            pins[key.strip()] = value

    from chestx.tuning.search import SearchRequest, run

    run(
        SearchRequest(
            pins=pins,
            space=args.space,
            data=args.data,
            out=args.out,
            max_trials=args.max_trials,
            epochs=args.epochs,
            resume=args.resume,
            seed=args.seed,
            limit=args.limit,
            min_sensitivity=args.min_sensitivity,
            export=args.export,
            chief=args.chief,
            worker=args.worker,
            verbose=int(bool(getattr(args, "verbose", False))),
            command=getattr(args, "command", None),  # set by chestx.cli.main
        )
    )
    return 0
