"""Data-loading costs: rendering, lazy Shapes3D reads (RSS), resident images, npz caching, TFRecord conversion.

    python benchmarks/bench_data.py --work-dir /tmp/vct_bench_data_io [--skip-full] [--json out.json]
    python benchmarks/bench_data.py --parts resident [--device cuda]   # images/s delivered to the step
    python benchmarks/bench_data.py --dry-run --work-dir /tmp/x      # the toy grid, seconds (tests)

Each measurement that reports memory runs in a fresh subprocess, so its peak RSS
(ru_maxrss) is its own. The full 64 px Shapes3D grid written here has the size
of the published file (480,000 x 64 x 64 x 3 = 5.9 GB of pixels); it is kept in
--work-dir and reused by later runs.

"resident": images/s that ``training.data.step_batches`` (what the trainer iterates) delivers
from that 64 px file, batch 32 and 256 in the order the trainer reads, read per batch from the
h5 versus held resident (``GroundTruthBatches.make_resident``: in RAM on the CPU, on the device
on CUDA), with the load time and the peak RSS before and after loading.
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
PARTS = ("render", "read", "resident", "npz", "tfrecord")


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

RESIDENT = """
    import torch
    from datasets import get_dataset
    from training.data import GroundTruthBatches, StepBatchSampler, step_batches
    folder, device, seconds = sys.argv[1], torch.device(sys.argv[2]), float(sys.argv[3])
    batch_sizes = [int(b) for b in sys.argv[4].split(",")]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def rate(batches, batch):
        # The trainer's own iterator, in its order (seed 0): images/s handed to the step.
        steps = step_batches(batches, StepBatchSampler(len(batches), batch, 0, 0, 10**9), device)
        next(steps)
        sync()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            count += next(steps)[0].shape[0]
        sync()
        return count / (time.perf_counter() - start)

    data = get_dataset("shapes3d", folder)
    batches = GroundTruthBatches(data)
    out = {"images": data.num_observations, "image_shape": list(data.observation_shape),
           "device": str(device), "torch_threads": torch.get_num_threads(), "baseline_peak_mb": peak_mb()}
    for batch in batch_sizes:
        out[f"file_batch{batch}_images_per_s"] = rate(batches, batch)
    out["peak_mb_before_load"] = peak_mb()
    out["placement"] = batches.make_resident("ram" if device.type == "cpu" else "device", device, 1.0,
                                             progress=False)
    out["load_s"] = batches.resident.load_seconds
    out["peak_mb_after_load"] = peak_mb()
    for batch in batch_sizes:
        out[f"resident_batch{batch}_images_per_s"] = rate(batches, batch)
        out[f"resident_over_file_batch{batch}"] = (out[f"resident_batch{batch}_images_per_s"]
                                                   / out[f"file_batch{batch}_images_per_s"])
    indices = np.random.default_rng(0).integers(0, len(batches), 256)
    resident = batches.fetch(indices, device)[0].cpu()
    batches.resident = None
    out["bit_identical_to_file_path"] = bool(torch.equal(resident, batches.fetch(indices, device)[0].cpu()))
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    out["peak_mb"] = peak_mb()
    print(json.dumps(out))
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


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/tmp/vct_bench_data_io")
    parser.add_argument("--skip-full", action="store_true", help="skip the 5.9 GB 64 px grid")
    parser.add_argument("--rerender", action="store_true", help="re-render (and time) existing grids")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="measurements to run (default all; the full grids are rendered when needed)")
    parser.add_argument("--device", default=None,
                        help="resident part: where the images are held and batches go (default cuda if available)")
    parser.add_argument("--seconds", type=float, default=5.0, help="resident part: seconds per throughput figure")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the script in seconds: render and resident parts on the toy grid only")
    parser.add_argument("--json", help="also write the results here")
    return parser.parse_args()


def full_grid(work: Path, size: int, rerender: bool, results: dict) -> Path:
    """The folder of the full grid at ``size`` px, rendered (and timed) unless it is there."""
    folder = work / f"full{size}"
    existed = (folder / "shapes3d" / "3dshapes.h5").is_file() and not rerender
    render = child(RENDER, str(size), ",".join(map(str, FULL_GRID)), str(folder), "0" if existed else "1")
    if not existed:
        results[f"render_full_{size}px"] = render
    return folder


def resident_device(name):
    if name is not None:
        return name
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def main() -> int:
    args = parse_args()
    work = Path(args.work_dir)
    parts = {"render", "resident"} if args.dry_run else set(args.parts)
    results = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"}

    toy = work / "toy"
    if "render" in parts:
        results["render_toy_32px"] = child(RENDER, "32", ",".join(map(str, TOY_GRID)), str(toy), "1")
    if args.dry_run:
        results["resident_toy_32px"] = child(RESIDENT, str(toy), resident_device(args.device), "0.3", "32,256")
    for size in () if args.dry_run else (32, 64):
        wanted = "read" in parts or (size == 64 and "resident" in parts)
        if not wanted or (size == 64 and args.skip_full):
            continue
        folder = full_grid(work, size, args.rerender, results)
        if "read" in parts:
            results[f"read_full_{size}px"] = child(READ, str(folder))
        if size == 64 and "resident" in parts:
            results["resident_full_64px"] = child(RESIDENT, str(folder), resident_device(args.device),
                                                  str(args.seconds), "32,256")

    if "npz" in parts and not args.dry_run:
        mpi_sizes = (4, 4, 2, 3, 3, 10, 10)  # 28,800 images = 354 MB of pixels
        write_mpi3d_like(work / "mpi" / "mpi3d_toy" / "mpi3d_toy.npz", mpi_sizes)
        cache = work / "mpi" / "mpi3d_toy" / "mpi3d_toy.images.npy"
        cache.unlink(missing_ok=True)
        results["npz_cache_mpi3d_28800"] = child(NPZ_CACHE, str(work / "mpi"), ",".join(map(str, mpi_sizes)))

    if "tfrecord" in parts and not args.dry_run:
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
