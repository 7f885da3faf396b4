"""Training-step speed under CPU contention, for several thread policies side by side in one run.

    python benchmarks/bench_contention.py                     # toy step, all policies
    python benchmarks/bench_contention.py --configs toy paper --steps 12

For every policy and scenario a fresh child process times ``--steps`` training steps (after
``--warmup``) of the named config (see bench_train_step.py: random VQ-VAE, batch 32), while the
benchmark itself runs the competitors of the scenario and stops them afterwards:
  alone   - nothing else;
  busy1   - one single-threaded busy loop (python);
  busy2   - two of them;
  torch1  - a second training job: another child running the same step with the same policy.
Policies (what the child's process starts with):
  old      - torch's defaults (one intra-op thread per core, OpenMP threads spin while waiting);
  passive  - the same threads, OMP_WAIT_POLICY=PASSIVE (waiting threads sleep);
  single   - one intra-op thread.
  spinNk   - the same threads, spinning N thousand times (GOMP_SPINCOUNT) before sleeping.
  new      - what the entry scripts now choose (training.threads.apply_thread_policy); the
             same as one spinNk policy, measured again as a check.
It prints steps/s per policy and scenario and each scenario's ratio to that policy's alone
speed (the acceptance figures), plus every policy's alone speed relative to 'old'. Competitors
are bounded in time and killed at the end.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("old", "passive", "single", "spin1k", "spin3k", "spin10k", "spin100k", "new")
SCENARIOS = ("alone", "busy1", "busy2", "torch1")
BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def policy_env(policy):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy.startswith("spin"):
        env["GOMP_SPINCOUNT"] = str(int(policy[4:-1]) * 1000)
    elif policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif policy == "single":
        env["OMP_NUM_THREADS"] = "1"
    elif policy == "new":
        env["BENCH_APPLY_POLICY"] = "1"
    return env


def child_main(config, steps, warmup, forever):
    """Time ``steps`` training steps; print one JSON line (or run until killed)."""
    sys.path.insert(0, str(ROOT))
    if os.environ.get("BENCH_APPLY_POLICY"):
        from training.threads import apply_thread_policy
        apply_thread_policy()
    import torch
    from benchmarks.bench_train_step import build
    from training.engine import limit_cpu_heap_growth, staged_forward_backward
    objective, images = build(config, torch.device("cpu"))
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    heap = limit_cpu_heap_growth()

    def step():  # the engine's step in one process
        optimizer.zero_grad(set_to_none=True)
        staged_forward_backward(objective, images, generator, None, between_stages=heap.between_stages)
        optimizer.step()

    for _ in range(warmup):
        step()
    if forever:
        while True:
            step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    print(json.dumps({"steps_per_s": steps / elapsed, "threads": torch.get_num_threads()}))


def start_competitors(scenario, policy, config, seconds):
    procs = []
    if scenario.startswith("busy"):
        for _ in range(int(scenario[-1])):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=seconds)]))
    elif scenario == "torch1":
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", config, "--forever"],
                                      env=policy_env(policy), cwd=ROOT, stdout=subprocess.DEVNULL))
        time.sleep(8)  # let it build and warm up before the timed child starts
    time.sleep(0.5)
    return procs


def measure(policy, scenario, config, steps, warmup, limit):
    procs = start_competitors(scenario, policy, config, limit)
    try:
        out = subprocess.run([sys.executable, __file__, "--child", config, "--steps", str(steps),
                              "--warmup", str(warmup)], env=policy_env(policy), cwd=ROOT,
                             capture_output=True, text=True, timeout=limit)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def report(config, table):
    scenarios = list(next(iter(table.values())))
    print(f"\n{config}: steps/s (ratio to the policy's alone speed)")
    print("policy   threads " + "".join(f"{s:>16}" for s in scenarios))
    for policy, row in table.items():
        alone = row["alone"]["steps_per_s"]
        cells = "".join(f"{row[s]['steps_per_s']:>9.2f} ({row[s]['steps_per_s'] / alone:4.2f})" for s in scenarios)
        print(f"{policy:8} {row['alone']['threads']:>7} {cells}")
    if "old" in table:
        old = table["old"]["alone"]["steps_per_s"]
        print("alone vs old: " + ", ".join(f"{p} {row['alone']['steps_per_s'] / old:.2f}" for p, row in table.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["toy"])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--limit", type=int, default=300, help="seconds a measurement may take")
    parser.add_argument("--out", default=None, help="also write the results to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--forever", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child, args.steps, args.warmup, args.forever)
    results = {}
    for config in args.configs:
        # Scenario-major order: each scenario's policies run back to back, so a change in the
        # machine's background load hits them alike.
        table = {policy: {} for policy in args.policies}
        for scenario in args.scenarios:
            for policy in args.policies:
                table[policy][scenario] = measure(policy, scenario, config, args.steps, args.warmup, args.limit)
                print(f"{config} {policy:8} {scenario:7} {table[policy][scenario]['steps_per_s']:.2f} steps/s",
                      flush=True)
        report(config, table)
        results[config] = table
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
