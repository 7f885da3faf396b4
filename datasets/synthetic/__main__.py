"""python -m datasets.synthetic {shapes3d,mpi3d,scenes} --out DIR [options]"""
from __future__ import annotations

import argparse
import sys

from ..errors import DatasetError
from . import mpi3d_renderer
from .shapes3d_renderer import FULL_FACTOR_SIZES
from .writers import make_synthetic_mpi3d, make_synthetic_scenes, make_synthetic_shapes3d


def _factor_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def _checked_factors(parser: argparse.ArgumentParser, kind: str, sizes) -> tuple[int, ...]:
    """The grid for ``kind`` (its published one by default); a bad grid is a usage error."""
    if kind == "mpi3d":
        sizes = mpi3d_renderer.FULL_FACTOR_SIZES if sizes is None else sizes
        try:
            mpi3d_renderer.factor_values(sizes)
        except ValueError as error:
            parser.error(f"--factors: {error} (object_color<=6, object_shape<=6, object_size, "
                         f"camera_height, background_color<=6, horizontal_axis, vertical_axis)")
        return sizes
    sizes = FULL_FACTOR_SIZES if sizes is None else sizes
    if len(sizes) != 6 or min(sizes) < 1 or sizes[4] > 4:
        parser.error(f"--factors: expected six positive sizes (floor,wall,object hue,scale,"
                     f"shape<=4,orientation), got {','.join(map(str, sizes))}")
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic",
                                     description="Write synthetic ground-truth data in the real file layouts.")
    parser.add_argument("kind", choices=["shapes3d", "mpi3d", "scenes"])
    parser.add_argument("--out", required=True,
                        help="data directory (shapes3d/, mpi3d_toy/ or clevr/ is created in it)")
    parser.add_argument("--size", type=int, default=64, choices=[32, 64, 128], help="image side in pixels")
    parser.add_argument("--factors", type=_factor_list, default=None,
                        help=f"factor sizes: shapes3d (six), default {FULL_FACTOR_SIZES}; mpi3d (seven), "
                             f"default {mpi3d_renderer.FULL_FACTOR_SIZES}")
    parser.add_argument("--num", type=int, default=1000, help="scenes: number of training scenes")
    parser.add_argument("--num-test", type=int, default=None, help="scenes: test scenes (default num // 10)")
    parser.add_argument("--seed", type=int, default=0,
                        help="scenes: random seed (shapes3d and mpi3d are deterministic)")
    parser.add_argument("--overwrite", action="store_true", help="re-render even if an identical file exists")
    args = parser.parse_args(argv)
    factors = _checked_factors(parser, args.kind, args.factors) if args.kind != "scenes" else None
    try:
        if args.kind == "shapes3d":
            path = make_synthetic_shapes3d(args.out, args.size, factors, overwrite=args.overwrite)
        elif args.kind == "mpi3d":
            path = make_synthetic_mpi3d(args.out, args.size, factors, overwrite=args.overwrite)
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
