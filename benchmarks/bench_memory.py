"""Peak resident memory and step time of the paper-config training step, per memory policy,
each in a fresh process, the processes of all policies interleaved round by round.

    python benchmarks/bench_memory.py                          # paper config, all policies
    python benchmarks/bench_memory.py --policies before default --rounds 3 --steps 3
    python benchmarks/bench_memory.py --config toy --steps 20  # the README's toy step

The step is the one bench_train_step.py times (64 px, VQ-VAE d=256 / k=128, 20 concepts,
batch 32, dis loss on, fp32). Policies:
  before   - what the engine did before the lean defaults: one backward pass of the summed
             loss, every activation kept, glibc's own (dynamic) mmap threshold;
  staged   - the loss stages backpropagated one at a time (training/engine.py), nothing else;
  elementwise - staged, and element-wise recomputation in every VCT block;
  default  - what main_vct.py now runs: staged, element-wise recomputation in the large
             blocks (VCT_Encoder/VCT_Decoder.activation_checkpointing = 'auto': every block of
             the paper config, none of the toy's) and limit_cpu_heap_growth's 'auto' (mmap
             threshold fixed at 8 MiB and the heap trimmed between stages, once a stage leaves
             >= 256 MiB free in the heap: the paper config's stages do, the toy's do not);
  heap_always - the default with limit_cpu_heap_growth.enabled = True (from the first step);
  lowmem   - the documented low-memory mode: the default with full activation checkpointing
             (activation_checkpointing = True), which recomputes whole blocks;
  mmap1    - heap_always with a 1 MiB threshold (limit_cpu_heap_growth.mmap_threshold_mb = 1);
  mmap4, mmap16 - the default with a 4 or 16 MiB threshold;
  keep     - the default with limit_cpu_heap_growth.enabled = 'keep' (no tensor mapped on its
             own, the heap never trimmed: freed memory is reused, not faulted in again);
  keep_lowmem - lowmem with 'keep';
  staged_keep - staged with 'keep' (no recomputation);
  keep_decoder_blocks, keep_encoder_blocks - 'keep' with whole-block recomputation in the
             decoder (encoder) only and element-wise recomputation in the other.
Peak RSS is the child's VmHWM after its steps, so it holds the build and the steps; s/step,
minor page faults and system CPU time per step are medians over rounds of each child's median
step after its first (warm-up) step (a fault brings in a freshly zeroed page: the cost of
handing freed memory back to the OS).
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

POLICIES = {
    #  (staged, VCT activation_checkpointing, limit_cpu_heap_growth.enabled, its mmap_threshold_mb)
    "before": (False, False, False, 8),
    "staged": (True, False, False, 8),
    "elementwise": (True, "elementwise", False, 8),
    "default": (True, "auto", "auto", 8),
    "heap_always": (True, "auto", True, 8),
    "lowmem": (True, True, "auto", 8),
    "mmap1": (True, "auto", True, 1),
    "mmap4": (True, "auto", "auto", 4),
    "mmap16": (True, "auto", "auto", 16),
    "keep": (True, "auto", "keep", 8),
    "keep_lowmem": (True, True, "keep", 8),
    "staged_keep": (True, False, "keep", 8),
    # (encoder, decoder) recomputation: whole blocks in one of them only, element-wise in the other
    "keep_decoder_blocks": (True, ("auto", True), "keep", 8),
    "keep_encoder_blocks": (True, (True, "auto"), "keep", 8),
}


def child(policy, config, steps):
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks.bench_train_step import build
    from common.memory import peak_rss_mb
    from training.engine import limit_cpu_heap_growth, staged_forward_backward

    staged, recompute, heap, threshold = POLICIES[policy]
    heap = limit_cpu_heap_growth(enabled=heap, mmap_threshold_mb=threshold)
    device = torch.device("cpu")
    objective, images = build(config, device)
    encoder_recompute, decoder_recompute = recompute if isinstance(recompute, tuple) else (recompute,) * 2
    objective.encoder.activation_checkpointing = encoder_recompute
    objective.decoder.activation_checkpointing = decoder_recompute
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    times, faults, system = [], [], []
    for _ in range(steps):
        start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        optimizer.zero_grad(set_to_none=True)
        if staged:
            loss, logs = staged_forward_backward(objective, images, generator, None,
                                                 between_stages=heap.between_stages)
        else:
            loss, logs = objective(images, generator)
            loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(after.ru_minflt - usage.ru_minflt)
        system.append(after.ru_stime - usage.ru_stime)
        if not torch.isfinite(loss) or int(logs["swaps_kept"]) != images.shape[0]:
            raise SystemExit(f"{policy}: not a full training step (loss {loss.item()}), timing refused")
    print(json.dumps({"policy": policy, "peak_rss_gib": peak_rss_mb() / 1024, "step_times_s": times,
                      "minor_faults": faults, "system_s": system, "loss": float(loss)}))


def run_child(policy, config, steps, threads):
    command = [sys.executable, __file__, "--child", policy, "--config", config, "--steps", str(steps)]
    env = None
    if threads:
        import os
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{policy}: child failed\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["before", "staged", "default", "lowmem"],
                        choices=sorted(POLICIES))
    parser.add_argument("--config", default="paper", choices=["paper", "toy"])
    parser.add_argument("--steps", type=int, default=3, help="steps per child (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="children per policy, interleaved")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the children")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.config, args.steps)
    if args.steps < 2:
        raise SystemExit("--steps must be >= 2 (the first step of each child is warm-up)")
    runs = {policy: [] for policy in args.policies}
    for round_ in range(args.rounds):
        for policy in args.policies:
            runs[policy].append(run_child(policy, args.config, args.steps, args.threads))
            r = runs[policy][-1]
            print(f"round {round_ + 1} {policy:8s} peak {r['peak_rss_gib']:.2f} GiB, steps "
                  + " ".join(f"{t:.2f}" for t in r["step_times_s"]) + " s", flush=True)
    results = {}
    for policy, rs in runs.items():
        results[policy] = {
            "peak_rss_gib": max(r["peak_rss_gib"] for r in rs),
            "s_per_step": statistics.median(statistics.median(r["step_times_s"][1:]) for r in rs),
            "faults_per_step": statistics.median(statistics.median(r["minor_faults"][1:]) for r in rs),
            "system_s_per_step": statistics.median(statistics.median(r["system_s"][1:]) for r in rs),
            "losses": sorted({round(r["loss"], 6) for r in rs})}
    base = results[args.policies[0]]["s_per_step"]
    print(f"\n{args.config} config, {args.rounds} rounds x {args.steps} steps per policy "
          f"(time ratios against {args.policies[0]})")
    print("| policy | peak RSS | s/step | time ratio | page faults/step | system CPU s/step |\n|---|---|---|---|---|---|")
    for policy, r in results.items():
        print(f"| {policy} | {r['peak_rss_gib']:.2f} GiB | {r['s_per_step']:.2f} | {r['s_per_step'] / base:.3f} "
              f"| {r['faults_per_step']:,.0f} | {r['system_s_per_step']:.1f} |")
    if len({tuple(r["losses"]) for r in results.values()}) > 1:
        print("note: the policies' last losses differ: " + ", ".join(f"{p} {r['losses']}" for p, r in results.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "runs": runs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
