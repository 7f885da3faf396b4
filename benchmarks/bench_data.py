"""Data-loading costs: rendering, lazy Shapes3D reads (RSS), npz caching, TFRecord conversion.

    python benchmarks/bench_data.py --work-dir /tmp/vct_bench_data_io [--skip-full] [--json out.json]

Each measurement that reports memory runs in a fresh subprocess, so its peak RSS
(ru_maxrss) is its own. The full 64 px Shapes3D grid written here has the size
of the published file (480,000 x 64 x 64 x 3 = 5.9 GB of pixels); it is kept in
--work-dir and reused by later runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOY_GRID = (4, 4, 4, 3, 4, 5)
FULL_GRID = (10, 10, 10, 8, 4, 15)


def child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line with its results."""
    prelude = textwrap.dedent("""
        import json, resource, sys, time
        import numpy as np
        from common.memory import peak_rss_mb as peak_mb
    """)
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


RENDER = """
    from datasets import make_synthetic_shapes3d
    size, grid, out = int(sys.argv[1]), tuple(int(s) for s in sys.argv[2].split(",")), sys.argv[3]
    start = time.perf_counter()
    make_synthetic_shapes3d(out, size=size, factor_sizes=grid, overwrite=sys.argv[4] == "1", progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start, "images": int(np.prod(grid)),
                      "peak_mb": peak_mb()}))
"""

READ = """
    from datasets import get_dataset
    baseline = peak_mb()
    start = time.perf_counter()
    data = get_dataset("shapes3d", sys.argv[1])
    opened = time.perf_counter() - start
    view = data.as_torch_dataset()
    rng = np.random.default_rng(0)
    items = rng.integers(0, len(view), 2000)
    start = time.perf_counter()
    for index in items:
        view[int(index)]
    per_item = (time.perf_counter() - start) / len(items)
    state = np.random.RandomState(0)
    timings = {}
    for batch in (32, 64, 10000):
        if batch == 10000:
            peak_small = peak_mb()  # the 10,000-image float32 batch itself is 123-491 MB
        repeats = 50 if batch < 1000 else 2
        start = time.perf_counter()
        for _ in range(repeats):
            data.sample(batch, state)
        timings[batch] = (time.perf_counter() - start) / repeats
    print(json.dumps({"images": data.num_observations, "open_s": opened, "item_ms": per_item * 1e3,
                      "batch32_ms": timings[32] * 1e3, "batch64_ms": timings[64] * 1e3,
                      "batch10000_s": timings[10000], "baseline_mb": baseline,
                      "peak_before_10000_mb": peak_small, "peak_mb": peak_mb()}))
"""

NPZ_CACHE = """
    from datasets import get_dataset
    baseline = peak_mb()
    start = time.perf_counter()
    data = get_dataset("mpi3d_toy", sys.argv[1], factor_sizes=[int(s) for s in sys.argv[2].split(",")])
    convert = time.perf_counter() - start
    start = time.perf_counter()
    get_dataset("mpi3d_toy", sys.argv[1], factor_sizes=[int(s) for s in sys.argv[2].split(",")])
    reopen = time.perf_counter() - start
    state = np.random.RandomState(0)
    start = time.perf_counter()
    for _ in range(50):
        data.sample(64, state)
    batch64 = (time.perf_counter() - start) / 50
    print(json.dumps({"convert_s": convert, "reopen_s": reopen, "batch64_ms": batch64 * 1e3,
                      "baseline_mb": baseline, "peak_mb": peak_mb()}))
"""

TFRECORD = """
    from datasets import get_dataset
    start = time.perf_counter()
    scenes = get_dataset("clevr_with_masks", sys.argv[1])
    convert = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(len(scenes)):
        scenes[i]
    per_item = (time.perf_counter() - start) / len(scenes)
    print(json.dumps({"scenes": len(scenes), "convert_s": convert, "item_ms": per_item * 1e3,
                      "peak_mb": peak_mb()}))
"""


def write_mpi3d_like(path: Path, sizes) -> int:
    """A compressible MPI3D-format npz (smooth images, like renders) of prod(sizes) rows."""
    n = int(np.prod(sizes))
    if path.is_file():
        return n
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.arange(n, dtype=np.int64)
    ramp = np.linspace(0, 200, 64, dtype=np.float32)
    images = np.empty((n, 64, 64, 3), np.uint8)
    images[:] = ramp[None, :, None, None].astype(np.uint8)
    images[:, 20:40, 20:40, :] = (rows % 251).astype(np.uint8)[:, None, None, None]
    np.savez_compressed(path, images=images)
    return n


def write_clevr_records(path: Path, count: int) -> None:
    import gzip
    from tests.datasets.ds_fixtures import framed, tf_example
    if path.is_file():
        return
    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(count):
        image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        labels = rng.integers(0, 11, (240, 320))
        masks = (labels[None] == np.arange(11)[:, None, None]).astype(np.uint8) * 255
        payloads.append(tf_example({"image": ([bytes([b]) for b in image.ravel()], "byte"),
                                    "mask": ([bytes([b]) for b in masks.ravel()], "byte")}))
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(framed(payloads))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/tmp/vct_bench_data_io")
    parser.add_argument("--skip-full", action="store_true", help="skip the 5.9 GB 64 px grid")
    parser.add_argument("--rerender", action="store_true", help="re-render (and time) existing grids")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    work = Path(args.work_dir)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"}

    results["render_toy_32px"] = child(RENDER, "32", ",".join(map(str, TOY_GRID)), str(work / "toy"), "1")
    for size in (32, 64):
        if size == 64 and args.skip_full:
            continue
        folder = work / f"full{size}"
        existed = (folder / "shapes3d" / "3dshapes.h5").is_file() and not args.rerender
        render = child(RENDER, str(size), ",".join(map(str, FULL_GRID)), str(folder), "0" if existed else "1")
        if not existed:
            results[f"render_full_{size}px"] = render
        results[f"read_full_{size}px"] = child(READ, str(folder))

    mpi_sizes = (4, 4, 2, 3, 3, 10, 10)  # 28,800 images = 354 MB of pixels
    write_mpi3d_like(work / "mpi" / "mpi3d_toy" / "mpi3d_toy.npz", mpi_sizes)
    cache = work / "mpi" / "mpi3d_toy" / "mpi3d_toy.images.npy"
    cache.unlink(missing_ok=True)
    results["npz_cache_mpi3d_28800"] = child(NPZ_CACHE, str(work / "mpi"), ",".join(map(str, mpi_sizes)))

    records = work / "clevr" / "clevr_with_masks" / "clevr_with_masks_train.tfrecords"
    write_clevr_records(records, 100)
    for stale in records.parent.glob("*.npy"):
        stale.unlink()
    results["tfrecord_clevr_100"] = child(TFRECORD, str(work / "clevr"))

    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
