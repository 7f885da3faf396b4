"""Wall time of the VCT disentanglement protocol and where it goes.

Runs BetaVAE, FactorVAE, MIG and DCI at the protocol's sample sizes (VCT_SPEC
section 7, the defaults of evaluation.metrics) on synthetic Shapes3D (written
by datasets.synthetic, read back through datasets.get_dataset, i.e. the same
lazy HDF5 reader as the real file) with a cheap, deterministic 20-dim
representation: 4x4 average pooling of the image followed by a fixed random
projection. Nothing is learned, so the time measured is the metric protocol:
sampling the ground-truth data, calling the representation, and the metric's
own math (classifier fits, mutual information, ...).

    python benchmarks/bench_eval.py --data-dir /tmp/vct_bench_data
    python benchmarks/bench_eval.py --data-dir DIR --metrics mig dci --no-serial-dci

The first run renders the dataset (full 480,000-image grid at 32 px: ~1.5 GB,
a few minutes); later runs reuse it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation import runner  # noqa: E402
from evaluation.metrics import VCT_PROTOCOL  # noqa: E402

FULL_SHAPES3D = (10, 10, 10, 8, 4, 15)
DCI_TRAIN, DCI_TEST = 10000, 5000
QUICK = {"beta_vae": {"num_train": 100, "num_eval": 50},
         "factor_vae": {"num_train": 100, "num_eval": 50, "num_variance_estimate": 500},
         "mig": {"num_train": 1000},
         "dci": {"num_train": 300, "num_test": 100},
         "sap": {"num_train": 300, "num_test": 100},
         "modularity_explicitness": {"num_train": 300, "num_test": 100},
         "irs": {"num_train": 300}}


class Stopwatch:
    def __init__(self):
        self.seconds = 0.0
        self.calls = 0
        self.items = 0


class TimedData:
    """Ground-truth data proxy that accumulates the time spent sampling."""

    def __init__(self, data, watch: Stopwatch):
        self._data = data
        self._watch = watch

    def __getattr__(self, name):
        return getattr(self._data, name)

    def _timed(self, method, *args):
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            self._watch.seconds += time.perf_counter() - start
            self._watch.calls += 1

    def sample_factors(self, num, random_state):
        return self._timed(self._data.sample_factors, num, random_state)

    def sample_observations_from_factors(self, factors, random_state):
        return self._timed(self._data.sample_observations_from_factors, factors, random_state)

    def sample(self, num, random_state):
        return self._timed(self._data.sample, num, random_state)


class PooledProjection:
    """20-dim code: 4x4 average pooling, then a fixed Gaussian projection.

    Computed in float64 and returned as float32, so that a code does not depend
    on how many images share the call (float32 matmuls round differently for
    different batch sizes, which would make --table differ in the last bits).
    """

    def __init__(self, observation_shape, dims: int = 20, pool: int = 4, seed: int = 0):
        height, width, channels = observation_shape
        self.pool = pool
        features = (height // pool) * (width // pool) * channels
        rng = np.random.RandomState(seed)
        self.weight = rng.randn(features, dims) / np.sqrt(features)
        self.watch = Stopwatch()

    def __call__(self, observations):
        start = time.perf_counter()
        x = np.asarray(observations, dtype=np.float64)
        n, h, w, c = x.shape
        pooled = x.reshape(n, h // self.pool, self.pool, w // self.pool, self.pool, c).mean(axis=(2, 4))
        codes = (pooled.reshape(n, -1) @ self.weight).astype(np.float32)
        self.watch.seconds += time.perf_counter() - start
        self.watch.calls += 1
        self.watch.items += n
        return codes


class TimedTable:
    """A CodeTable whose lookups are timed like PooledProjection's calls."""

    def __init__(self, table):
        self.table = table
        self.watch = Stopwatch()

    def __call__(self, indices):
        start = time.perf_counter()
        codes = self.table(indices)
        self.watch.seconds += time.perf_counter() - start
        self.watch.calls += 1
        self.watch.items += len(indices)
        return codes


def dci_breakdown(data, parallel_scores, num_train=DCI_TRAIN, num_test=DCI_TEST):
    """Refit DCI's per-factor GBTs one by one, timing each; check the scores are identical.

    CPU time (time.process_time) is what a fit costs whatever else runs on the
    machine; the ideal 2-process wall time is the best split of those costs.
    """
    from evaluation.metrics import dci, utils

    representation = PooledProjection(data.observation_shape)
    random_state = np.random.RandomState(0)
    mus_train, ys_train = utils.generate_batch_factor_code(data, representation, num_train,
                                                           random_state, 16)
    mus_test, ys_test = utils.generate_batch_factor_code(data, representation, num_test,
                                                         random_state, 16)
    importance = np.zeros((mus_train.shape[0], ys_train.shape[0]))
    train_acc, test_acc, cpu = [], [], []
    print("DCI per-factor GBT fits, serial:")
    for i, classes in enumerate(data.factors_num_values):
        start_cpu, start_wall = time.process_time(), time.perf_counter()
        importance[:, i], train, test = dci._fit_factor(mus_train.T, ys_train[i], mus_test.T,
                                                        ys_test[i], 0)
        cpu.append(time.process_time() - start_cpu)
        train_acc.append(train)
        test_acc.append(test)
        print(f"  factor {i} ({classes} classes): {cpu[-1]:.1f} s CPU, "
              f"{time.perf_counter() - start_wall:.1f} s wall", flush=True)
    serial = {"informativeness_train": float(np.mean(train_acc)),
              "informativeness_test": float(np.mean(test_acc)),
              "disentanglement": float(dci.disentanglement(importance)),
              "completeness": float(dci.completeness(importance))}
    same = serial == parallel_scores
    loads = [0.0, 0.0]
    for cost in sorted(cpu, reverse=True):
        loads[loads.index(min(loads))] += cost
    print(f"  total {sum(cpu):.1f} s CPU; best 2-process split {max(loads):.1f} s; "
          f"identical to the parallel run: {same}")
    if not same:
        print(f"ERROR: serial {serial} != parallel {parallel_scores}")
        return None
    return {"cpu_per_factor_s": cpu, "cpu_total_s": sum(cpu), "two_process_makespan_s": max(loads)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.path.join("/tmp", "vct_bench_data"))
    parser.add_argument("--size", type=int, default=32, choices=[32, 64])
    parser.add_argument("--factors", default=",".join(map(str, FULL_SHAPES3D)))
    parser.add_argument("--metrics", nargs="+", default=list(VCT_PROTOCOL))
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for DCI's per-factor fits")
    parser.add_argument("--no-serial-dci", action="store_true",
                        help="skip the serial per-factor DCI fits (CPU time per factor, and a "
                             "check that they give the same numbers as the parallel run)")
    parser.add_argument("--json", default=None, help="also write results + timings here")
    parser.add_argument("--table", action="store_true",
                        help="encode every image once into a code table and run the metrics on "
                             "grid indices (evaluation.representation's IndexedGroundTruthView + "
                             "CodeTable, the published protocol); same numbers, less encoding")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sample sizes, to smoke-test this script (not the protocol)")
    args = parser.parse_args(argv)

    from datasets import get_dataset, make_synthetic_shapes3d

    factor_sizes = tuple(int(s) for s in args.factors.split(","))
    start = time.perf_counter()
    make_synthetic_shapes3d(args.data_dir, size=args.size, factor_sizes=factor_sizes)
    data = get_dataset("shapes3d", args.data_dir)
    print(f"dataset: {data!r} ready in {time.perf_counter() - start:.1f} s; load average "
          f"{os.getloadavg()[0]:.1f}")

    metric_data, table = data, None
    if args.table:
        from evaluation.representation import CodeTable, IndexedGroundTruthView, GridObservations
        start = time.perf_counter()
        projection = PooledProjection(data.observation_shape)
        grid = GridObservations(data)
        codes = np.concatenate([projection(grid[i:i + 1024]) for i in range(0, len(grid), 1024)])
        table = CodeTable(codes)
        metric_data = IndexedGroundTruthView(data)
        print(f"code table {codes.shape} built in {time.perf_counter() - start:.1f} s "
              f"(representation {projection.watch.seconds:.1f} s)", flush=True)

    rows = []
    results = {}
    for name in args.metrics:
        sampling = Stopwatch()
        timed = TimedData(metric_data, sampling)
        representation = PooledProjection(data.observation_shape)
        if table is not None:
            representation = TimedTable(table)
        overrides = dict(QUICK[name]) if args.quick else {}
        if name == "dci":
            overrides["n_jobs"] = args.n_jobs
        overrides = {name: overrides} if overrides else {}
        timings = {}
        cpu_start = time.process_time()
        scores = runner.run_metrics(timed, representation, metrics=(name,), timings=timings,
                                    **overrides)
        cpu = time.process_time() - cpu_start
        results[name] = scores[name]
        total = timings[name]
        rest = total - sampling.seconds - representation.watch.seconds
        rows.append((name, total, cpu, sampling.seconds, sampling.calls,
                     representation.watch.seconds, representation.watch.calls,
                     representation.watch.items, rest))
        print(f"{name}: {total:.1f} s  {scores[name]}", flush=True)

    breakdown = None
    if "dci" in args.metrics and not args.no_serial_dci and not args.table:
        sizes = (QUICK["dci"]["num_train"], QUICK["dci"]["num_test"]) if args.quick else ()
        breakdown = dci_breakdown(data, results["dci"], *sizes)
        if breakdown is None:
            return 1

    import sklearn
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"python {platform.python_version()}, numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}; DCI n_jobs={args.n_jobs}")
    header = ("metric", "wall s", "main-process CPU s", "sampling s", "calls",
              "representation s", "calls", "images", "metric math s")
    print(" | ".join(header))
    for name, total, cpu, samp, samp_calls, rep_s, rep_calls, images, rest in rows:
        print(f"{name} | {total:.1f} | {cpu:.1f} | {samp:.1f} | {samp_calls} | {rep_s:.1f} | "
              f"{rep_calls} | {images} | {rest:.1f}")
    print(f"protocol total: {sum(r[1] for r in rows):.1f} s; load average now "
          f"{os.getloadavg()[0]:.1f}")
    print()
    print(runner.format_table(results))
    if args.json:
        runner.write_results_json(args.json, results, settings={
            "benchmark": "bench_eval", "factor_sizes": factor_sizes, "size": args.size,
            "n_jobs": args.n_jobs, "dci_breakdown": breakdown, "table": args.table,
            "timings": {r[0]: {"wall_s": r[1], "main_cpu_s": r[2], "sampling_s": r[3],
                               "representation_s": r[5], "metric_math_s": r[8]} for r in rows}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
