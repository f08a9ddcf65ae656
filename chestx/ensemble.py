"""``chestx ensemble``: one model directory from several trained members (and a mirrored view).

Members must come from ``chestx train`` runs on the same patient split (same ``--split-seed``
and data, so the same manifest): the ensemble's threshold is then chosen on a validation split
that none of its members trained on, by the same rule as ``chestx train``.

With ``--soup`` the members' weights are averaged into one network (a model soup) before the
views are applied, so the result serves at one network's cost. Its members must be fine-tunes of
one model (``chestx train --init`` of the same source, other seeds or settings): averaging
networks trained from different starting weights gives a broken network, so they are refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from pathlib import Path

from chestx import config, imaging, modeldir
from chestx.calibration import Calibration
from chestx.errors import ModelError
from chestx.litert import save_litert
from chestx.metrics import binary_metrics, choose_threshold
from chestx.train import INTENDED_USE
from chestx.versions import installed_versions

log = logging.getLogger(__name__)


def _member(path: Path) -> tuple[dict, object]:
    card = modeldir.load_card(path)
    modeldir.check_finished(card, path)  # never a run still writing, nor a pretrained network
    return card, modeldir.load_keras(path)


def build_ensemble(
    members: list[str | Path],
    data: str | Path,
    out: str | Path,
    *,
    flip: bool = False,
    zoom_out: float = 0.0,
    soup: bool = False,
    min_sensitivity: float = 0.95,
    intensity: str | None = None,
    batch_size: int = 64,
    command: str | None = None,
) -> dict:
    """``intensity`` serves the members with an exposure correction in front of the normalisation
    they were trained with (``config.EXPOSURE_CORRECTIONS``: ``lift-clahe``, ``level-clahe``
    or ``span-clahe`` for ``clahe``). Members trained with different ones (a ``clahe`` network
    beside one fine-tuned on ``span-clahe``) need an ``intensity`` that each takes."""
    from chestx.evaluate import internal_scores
    from chestx.models import ensemble as combine
    from chestx.predict import Predictor

    versions = installed_versions()  # first: the code as the run starts
    paths = [Path(m) for m in members]
    loaded = [_member(p) for p in paths]
    cards = [c for c, _ in loaded]
    first_with: dict[str, Path] = {}  # a typo'd --member, or one network copied twice
    for path, card in zip(paths, cards, strict=True):
        version = str(card.get("version") or path.resolve())
        if version in first_with:
            raise ModelError(
                f"--member {first_with[version]} and --member {path} are the same network "
                f"(version {version}); an ensemble needs different ones"
            )
        first_with[version] = path
    sizes = {c["image_size"] for c in cards}
    if len(sizes) != 1:
        raise ModelError(f"members differ in image_size: {sorted(sizes)}")
    trained_with = sorted({c["intensity"] for c in cards})
    if intensity is None:
        if len(trained_with) != 1:
            raise ModelError(
                f"members differ in intensity: {trained_with}; give --intensity, which each "
                "must take (its own, or an exposure correction in front of it)"
            )
        intensity = trained_with[0]
    for path, card in zip(paths, cards, strict=True):
        if not config.takes_intensity(card["intensity"], intensity):
            corrections = config.EXPOSURE_CORRECTIONS.get(card["intensity"], ())
            raise ModelError(
                f"--member {path} was trained with intensity '{card['intensity']}'; "
                f"--intensity can only add an exposure correction to it "
                f"({', '.join(corrections) or 'none exists'})"
            )
    shas = {c.get("data", {}).get("manifest_sha256") for c in cards}
    if len(shas) != 1 or None in shas:
        raise ModelError(
            "members were trained on different patient splits (manifests differ); "
            "train them with the same --data and --split-seed"
        )
    for c in cards:
        if not Calibration.from_card(c).identity:
            raise ModelError("members must be uncalibrated; calibrate the ensemble instead")
    if soup:
        _check_soup(cards)
    modeldir.check_new(out)

    networks = [m for _, m in loaded]
    if soup:
        networks = [combine.soup(networks)]
    model = combine.ensemble(networks, flip=flip, zoom_out=zoom_out)
    first = cards[0]
    with modeldir.new_model_dir(out) as staging:
        shutil.copy2(paths[0] / modeldir.MANIFEST, staging / modeldir.MANIFEST)
        model.save(staging / modeldir.MODEL_FILE)
        provisional = {
            "name": "chestx-ensemble",
            "image_size": first["image_size"],
            "intensity": intensity,
            "threshold": 0.5,
        }
        modeldir.write_card(staging, provisional)
        predictor = Predictor(staging)
        scores = internal_scores(predictor, data, staging, batch_size)
        y_val, p_val = scores["val"]
        threshold = choose_threshold(y_val, p_val, min_sensitivity)
        metrics = {k: binary_metrics(y, p, threshold) for k, (y, p) in scores.items()}
        for name, m in metrics.items():
            log.info(
                "%s: sensitivity %.3f  specificity %.3f  ROC AUC %.3f (n=%d)",
                name,
                m["sensitivity"],
                m["specificity"],
                m["roc_auc"],
                m["n"],
            )
        model.save(staging / modeldir.H5_FILE)
        save_litert(model, staging)
        digest = hashlib.sha256((staging / modeldir.MODEL_FILE).read_bytes()).hexdigest()[:8]
        base = f"zoomed out {zoom_out:g} of its side per side" if zoom_out else "as given"
        views = [base, f"{base}, mirrored left-right"] if flip else [base]
        card = {
            "name": "chestx-ensemble",
            "version": f"{dt.date.today():%Y.%m.%d}-{digest}",
            modeldir.STATUS: modeldir.COMPLETE,
            "arch": "ensemble",
            "image_size": first["image_size"],
            "intensity": intensity,
            "threshold": threshold,
            "threshold_rule": f"highest threshold keeping validation sensitivity >= "
            f"{min_sensitivity} (screening favours sensitivity)",
            "min_sensitivity": min_sensitivity,
            "intended_use": INTENDED_USE,
            "backbone": None,
            "parameters": int(model.count_params()),
            "input": first.get("input"),
            "preprocessing": imaging.describe(first["image_size"], intensity),
            "ensemble": {
                "combination": (
                    "members' weights averaged into one network (uniform model soup), "
                    "then the mean of P(pneumonia) over views, inside one graph"
                    if soup
                    else "mean of P(pneumonia) over members x views, inside one graph"
                ),
                "soup": soup,
                "views": views,
                "members_intensity": ", ".join(trained_with),
                "members": [
                    {
                        "arch": c.get("arch"),
                        "version": c.get("version"),
                        "intensity": c["intensity"],
                        "parameters": c.get("parameters"),
                        "val_roc_auc": c.get("metrics", {}).get("val", {}).get("roc_auc"),
                        "training": {
                            k: c.get("training", {}).get(k)
                            for k in (
                                "command",
                                "seed",
                                "split_seed",
                                "epochs_run",
                                "interrupted",
                                "seconds",
                            )
                        },
                    }
                    for c in cards
                ],
            },
            "metrics": metrics,
            "data": {
                **first.get("data", {}),
                "root": Path(first.get("data", {}).get("root", "")).name,
            },
            "training": {
                "command": command,
                # each member's commands, an --init source's first (once, if members share it)
                "member_commands": list(
                    dict.fromkeys(c for card in cards for c in modeldir.training_commands(card))
                ),
                "seconds": round(sum(c.get("training", {}).get("seconds") or 0 for c in cards), 1),
            },
            "versions": versions,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        modeldir.write_card(staging, card)
    log.info(
        "wrote %s (%d members%s, %d views, threshold %.3f)",
        out,
        len(cards),
        " in one soup" if soup else "",
        len(views),
        threshold,
    )
    return card


def _check_soup(cards: list[dict]) -> None:
    """Refuse members that cannot be averaged weight by weight: fewer than two, an ensemble,
    or not all fine-tuned from the same model version."""
    if len(cards) < 2:
        raise ModelError("--soup needs at least two members")
    if any(c.get("arch") == "ensemble" for c in cards):
        raise ModelError("--soup averages networks, not ensembles; use the members' directories")
    sources = {((c.get("training") or {}).get("init") or {}).get("version") for c in cards}
    if len(sources) != 1 or None in sources:
        raise ModelError(
            "--soup averages fine-tunes of one model: train every member with the same "
            f"--init source (members start from {sorted(map(str, sources))})"
        )


def ensemble_from_args(args) -> dict:
    command = getattr(args, "command", None)  # set by chestx.cli.main
    return build_ensemble(
        args.member,
        args.data,
        args.out,
        flip=args.flip,
        zoom_out=args.zoom_out,
        soup=args.soup,
        min_sensitivity=args.min_sensitivity,
        intensity=args.intensity,
        batch_size=args.batch_size,
        command=command,
    )
