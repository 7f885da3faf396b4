"""python -m datasets.synthetic {shapes3d,scenes} --out DIR [options]"""
from __future__ import annotations

import argparse
import sys

from ..errors import DatasetError
from .shapes3d_renderer import FULL_FACTOR_SIZES
from .writers import make_synthetic_scenes, make_synthetic_shapes3d


def _factor_list(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected six comma-separated integers, got '{text}'") from None
    if len(sizes) != 6 or min(sizes) < 1 or sizes[4] > 4:
        raise argparse.ArgumentTypeError(
            f"expected six positive sizes (floor,wall,object hue,scale,shape<=4,orientation), got '{text}'")
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic",
                                     description="Write synthetic ground-truth data in the real file layouts.")
    parser.add_argument("kind", choices=["shapes3d", "scenes"])
    parser.add_argument("--out", required=True, help="data directory (shapes3d/ or clevr/ is created in it)")
    parser.add_argument("--size", type=int, default=64, choices=[32, 64, 128], help="image side in pixels")
    parser.add_argument("--factors", type=_factor_list, default=FULL_FACTOR_SIZES,
                        help="shapes3d factor sizes, default %(default)s")
    parser.add_argument("--num", type=int, default=1000, help="scenes: number of training scenes")
    parser.add_argument("--num-test", type=int, default=None, help="scenes: test scenes (default num // 10)")
    parser.add_argument("--seed", type=int, default=0, help="scenes: random seed (shapes3d is deterministic)")
    parser.add_argument("--overwrite", action="store_true", help="re-render even if an identical file exists")
    args = parser.parse_args(argv)
    try:
        if args.kind == "shapes3d":
            path = make_synthetic_shapes3d(args.out, args.size, args.factors, overwrite=args.overwrite)
        else:
            path = make_synthetic_scenes(args.out, args.num, args.size, args.seed, args.num_test,
                                         overwrite=args.overwrite)
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
