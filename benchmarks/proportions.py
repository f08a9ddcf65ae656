"""Does a model read the anatomy's proportions? The proportions probe behind the README's figures.

    python benchmarks/proportions.py --data ../shared/data/chest_xray/train MODEL_DIR [...]
    python benchmarks/proportions.py --data ../shared/data/external-dev --split all MODEL_DIR

The Kaggle X-rays are squashed to a square from originals of many shapes, so the proportions of
the anatomy carry the original's shape, and a network can learn them as a sign of disease. This
prints, per model, the mean P(pneumonia) of normal X-rays as given, with the height alone
scaled by 0.8 (padded black) and by 1.2 (centre-cropped), on the prepared 224-px input, through
the model's network(s) alone: no test-time view, no calibration. A model that ignores the
proportions scores the three alike. ``--split val`` (default) takes the normal X-rays of the
model's internal validation split of a training folder (``--split-seed``, as trained);
``--split all`` every normal X-ray of the folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FACTORS = (0.8, 1.2)


def scale_height(images: np.ndarray, factor: float) -> np.ndarray:
    """``images`` (N, H, W, 1) with the height alone scaled by ``factor``, back to H: padded
    black top and bottom when shrunk, centre-cropped when stretched."""
    import cv2

    _, side, width, _ = images.shape
    height = int(round(side * factor))
    shrink = factor < 1
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    top = abs(side - height) // 2
    out = np.zeros_like(images)
    for i, image in enumerate(images[..., 0]):
        scaled = cv2.resize(image, (width, height), interpolation=interpolation)
        if shrink:
            out[i, top : top + height, :, 0] = scaled
        else:
            out[i, :, :, 0] = scaled[top : top + side]
    return out


def mean_score(networks, images: np.ndarray) -> float:
    """Mean P(pneumonia) of ``images`` over every network."""
    return float(np.mean([net.predict(images, batch_size=32, verbose=0) for net in networks]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", required=True, help="NORMAL/ + PNEUMONIA/ folder")
    parser.add_argument("--split", choices=("val", "all"), default="val")
    parser.add_argument("--split-seed", type=int, default=42)
    args = parser.parse_args()

    from chestx.data import dataset, find_data, make_splits, manifest_sha256
    from chestx.modeldir import load_card, load_keras
    from chestx.models.ensemble import members_of

    if args.split == "val":
        splits, _ = make_splits(args.data, seed=args.split_seed)
        records = splits["val"]
        digest = manifest_sha256(splits, Path(args.data))
    else:
        records, digest = find_data(args.data)["all"], None
    normals = [r for r in records if r.label == 0]
    print(
        f"{len(normals)} normal X-rays ({args.split}); mean P(pneumonia) as given, height "
        + " / ".join(f"x {f}" for f in FACTORS)
    )
    for model_dir in args.models:
        card = load_card(model_dir)
        if digest and card.get("data", {}).get("manifest_sha256") != digest:
            print(f"{model_dir}: trained on another split (pass its --split-seed); skipped")
            continue
        batches = dataset(
            normals, image_size=card["image_size"], intensity=card["intensity"], batch_size=64
        )
        images = np.concatenate([np.asarray(x) for x, _ in batches])
        networks = members_of(load_keras(model_dir))
        scores = [mean_score(networks, images)]
        scores += [mean_score(networks, scale_height(images, f)) for f in FACTORS]
        print(f"{model_dir}: " + " / ".join(f"{s:.2f}" for s in scores), flush=True)


if __name__ == "__main__":
    main()
