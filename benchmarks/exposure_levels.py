"""Where chestx's exposure corrections come from: the levels of a folder of X-rays.

    python benchmarks/exposure_levels.py --data ../shared/data/chest_xray/train [--image-size 224]

Each X-ray is decoded and resized as for the model. It prints the 5th percentile of the
X-rays' 99th-percentile grey level (``config.LIFT_LEVEL``: ``lift-clahe`` brings a darker X-ray
up to it) and the interquartile range, after that lift, of the median grey level of their
pixels that are not black (``config.MID_LEVELS``: ``level-clahe`` bends an X-ray's mid-tones
into it) and the 95th percentile of their 1st-percentile grey level (``config.BLACK_LEVEL``:
``span-clahe`` stretches a washed-out X-ray's black point down to it), next to the values the
package ships.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from chestx import config, imaging
    from chestx.data import images_under

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a folder of X-rays (recursive)")
    p.add_argument("--image-size", type=int, default=config.DEFAULT_IMAGE_SIZE)
    args = p.parse_args(argv)
    paths = images_under(args.data)
    if not paths:
        print(f"error: no images under {args.data}", file=sys.stderr)
        return 2
    bright, mid, dark = [], [], []
    for path in paths:
        gray = imaging.model_input(
            imaging.decode_gray(path.read_bytes()), image_size=args.image_size, intensity="none"
        )[..., 0]
        bright.append(imaging.bright_level(gray))
        dark.append(imaging.dark_level(gray))
        mid.append(imaging.mid_level(imaging.lift_exposure(gray)))
    lift = np.percentile(bright, 5)
    low, high = np.percentile(mid, [25, 75])
    print(f"{len(paths)} X-rays under {args.data} at {args.image_size} px")
    print(
        f"lift level (5th percentile of the 99th-percentile grey level): {lift:.1f}"
        f"  (config.LIFT_LEVEL {config.LIFT_LEVEL})"
    )
    print(
        f"mid levels (interquartile range of the lifted non-black median grey level): {low:.1f} to"
        f" {high:.1f}  (config.MID_LEVELS {config.MID_LEVELS})"
    )
    print(
        f"black level (95th percentile of the 1st-percentile grey level): "
        f"{np.percentile(dark, 95):.1f}  (config.BLACK_LEVEL {config.BLACK_LEVEL})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
