"""The GAN toy's figures: wall time of ``python main_gan_based.py --config toy_gan_ce.gin`` and
its direction-factor scores (learned directions vs random orthogonal ones), as a table.

    python benchmarks/bench_gan_toy.py                     # runs the toy (fresh run dir), then reports
    python benchmarks/bench_gan_toy.py --report RUN_DIR    # only reports an existing run

A fresh run trains the toy generator and probe first only when checkpoints/toy_gan/ lacks them
(delete that folder to time the whole job). Pass OMP_NUM_THREADS=1 on a busy 2-core machine.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_toy(run_dir):
    start = time.perf_counter()
    subprocess.run([sys.executable, "main_gan_based.py", "--config", "toy_gan_ce.gin", "--out", str(run_dir)],
                   cwd=ROOT, check=True)
    return time.perf_counter() - start


def matrix_table(scores, names):
    short = [name.replace("_hue", "").replace("orientation", "orient") for name in names]
    lines = ["direction  " + "  ".join(f"{name:>7}" for name in short) + "   votes -> factor"]
    for j, (row, votes) in enumerate(zip(scores["matrix"], scores["votes"])):
        best = max(range(len(votes)), key=votes.__getitem__)
        lines.append(f"{j:>9}  " + "  ".join(f"{value:7.2f}" for value in row)
                     + f"   {sum(votes):3d} -> {names[best]} ({votes[best]})")
    return "\n".join(lines)


def report(run_dir):
    path = sorted((Path(run_dir) / "metrics").glob("metrics_*.json"))[-1]
    payload = json.loads(path.read_text())
    learned, random = payload["results"]["direction_factor"], payload["results"]["direction_factor_random"]
    names = learned["factor_names"]
    print(f"{path}")
    accuracy = payload["settings"]["probe_heldout_accuracy"]
    print("probe held-out accuracy (real / reconstructions):", accuracy["real"], accuracy["reconstruction"])
    for title, scores in (("learned directions", learned), ("random orthogonal directions", random)):
        print(f"\n{title}: score {scores['score']:.3f}, active directions {scores['active_directions']}, "
              f"factors covered {scores['factors_covered']}")
        print(matrix_table(scores, names))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", default=None, metavar="RUN_DIR", help="report this run instead of running")
    args = parser.parse_args(argv)
    run_dir = args.report
    if run_dir is None:
        run_dir = ROOT / "runs" / f"bench_gan_toy-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"toy run: {run_toy(run_dir):.0f} s wall")
    report(run_dir)


if __name__ == "__main__":
    main()
