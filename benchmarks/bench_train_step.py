"""Seconds per VCT training step (forward, disentangling loss, backward, Adam), measured side by
side with the straightforward formulation and the machine's fp32 matmul peak, in one run.

    python benchmarks/bench_train_step.py                    # paper + toy config, CPU or CUDA
    python benchmarks/bench_train_step.py --configs toy --steps 20
    python benchmarks/bench_train_step.py --configs paper --precision fp32 bf16   # (CUDA)
    python benchmarks/bench_train_step.py --profile paper    # torch.profiler table of one step
    python benchmarks/bench_train_step.py --configs paper --variants optimised compiled --warmup 3

"paper": 64x64 images, VQ-VAE d=256 / k=128 (random weights: the cost does not depend on them),
256 image tokens, 20 concepts, default VCT widths, batch 32, dis loss on.
"toy": the README's toy config (configs/toy_ce.gin: 32x32, VQ d=64 / k=32, 10 concepts, small
widths), batch 32.

Per variant it prints s/step (median over --steps after --warmup), images/s, the step's
arithmetic (counted by torch.utils.flop_counter over one step), GFLOP/s and that rate as a
fraction of the matmul peak measured at the start of the run. Variants:
  optimised     - training.objectives.VCTObjective as main_vct.py's engine runs it in one
                  process: the loss stages backpropagated one at a time, the VCT blocks'
                  default recomputation ('auto'), the CPU heap policy between the stages;
  checkpointed  - the same with full activation checkpointing in the VCT encoder and decoder
                  (VCT_Encoder/VCT_Decoder.activation_checkpointing = True: the low-memory
                  mode; same gradients, one more forward of each layer);
  compiled      - the optimised step with torch.compile of the VCT encoder and decoder (compiled
                  during the --warmup steps, which should be >= 2; FLOPs counted before compiling);
  straightforward - tests/training/reference_step.py: the published formulation (separate
                  passes for the original and swapped sets, per-head einsum attention,
                  materialised VQ distances, one-hot @ codebook), same weights and inputs.
"""
import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import gin
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.visual_concept_tokenizor import VCT_Decoder, VCT_Encoder  # noqa: E402
from models.vqvae import VQ_CVAE  # noqa: E402
from tests.training.reference_step import ReferenceVCTStep, make_random_vqvae_informative  # noqa: E402
from training.cli import load_gin, resolve_config  # noqa: E402
from training.engine import cpu_heap_policy, limit_cpu_heap_growth, staged_forward_backward  # noqa: E402
from training.objectives import VCTObjective  # noqa: E402
from training.tokenizers.vq import VQTokenizer  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype=torch.float32, seconds=2.0):
    """Best GFLOP/s of square matmuls (sizes 1024-4096) in ``dtype``."""
    best = 0.0
    for n in (1024, 2048, 3072, 4096):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync(device)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            t = time.perf_counter()
            a @ b
            sync(device)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
            reps += 1
    return best


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker, whose hooks fail on tensors that
    enter a module under no_grad (the disentangling loss); we only need the total."""
    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_flops(fn):
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return counter.get_total_flops()


def build(config, device, seed=0):
    """(VCTObjective, images) for the named configuration."""
    gin.clear_config()
    torch.manual_seed(seed)
    if config == "paper":
        vqvae, size, concepts = VQ_CVAE(d=256, k=128), 64, 20
        encoder = VCT_Encoder(z_index_dim=concepts, dim=256)
        decoder = VCT_Decoder(index_num=128, z_index_dim=256, ce_loss=True)
    elif config == "toy":
        load_gin([resolve_config("toy_ce.gin")], [])
        vqvae, size, concepts = VQ_CVAE(d=64, k=32), 32, 10
        encoder = VCT_Encoder(z_index_dim=concepts, dim=64)
        decoder = VCT_Decoder(dim=64, index_num=32, z_index_dim=64, ce_loss=True)
    else:
        raise SystemExit(f"unknown config {config!r} (paper, toy)")
    images = torch.rand(32, 3, size, size, device=device) * 2 - 1
    make_random_vqvae_informative(vqvae.to(device).eval(), images)
    objective = VCTObjective(encoder, decoder, VQTokenizer(vqvae)).to(device).train()
    return objective, images


class OptimisedStep:
    """What main_vct.py's engine runs in one process: the loss stages backpropagated one at a
    time, with the CPU heap policy between them (training/engine.py)."""
    name = "optimised"

    def __init__(self, objective, device, heap=None):
        self.objective = objective
        # heap: a limit_cpu_heap_growth.enabled value for this run (process-wide in glibc)
        self.heap = cpu_heap_policy(device) if heap is None else limit_cpu_heap_growth(enabled=heap)
        self.last_kept = None

    def __call__(self, images, generator, autocast):
        loss, logs = staged_forward_backward(self.objective, images, generator, None, autocast,
                                             self.heap.between_stages)
        self.last_kept = int(logs["swaps_kept"])
        return loss


class StraightforwardStep:
    def __init__(self, objective):
        self.step = ReferenceVCTStep(objective.encoder, objective.decoder, objective.tokenizer.vqvae)

    @property
    def last_kept(self):
        return self.step.last_kept

    def __call__(self, images, generator, autocast):
        with autocast():
            loss = self.step(images, generator)
        loss.backward()
        return loss


def make_step(variant, objective, device, heap=None):
    if variant in ("optimised", "checkpointed", "compiled"):
        mode = True if variant == "checkpointed" else "auto"  # the default: what main_vct.py runs
        objective.encoder.activation_checkpointing = mode
        objective.decoder.activation_checkpointing = mode
        return OptimisedStep(objective, device, heap)
    return StraightforwardStep(objective)


def train_step(step_fn, optimizer, images, generator, precision, device):
    optimizer.zero_grad(set_to_none=True)
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    loss = step_fn(images, generator, autocast)  # forward and backward
    optimizer.step()
    # A timing is only valid for the full step: finite loss, every swap kept (a NaN would make
    # later steps drop every swap and skip the detokenise / re-tokenise half of the work).
    if not torch.isfinite(loss) or step_fn.last_kept != images.shape[0]:
        raise SystemExit(f"{type(step_fn).__name__}: loss {loss.item()}, swaps kept {step_fn.last_kept} "
                         f"of {images.shape[0]}: not a full training step, timing refused")
    return loss


def measure_side_by_side(config, variants, precision, device, steps, warmup, heap=None):
    """{variant: result}. Every variant has its own copy of the model (same seed); their timed
    steps alternate (A, B, A, B, ...), each round next to a short matmul-peak measurement, so
    a change in machine load hits all of them alike. Median over the rounds."""
    runs = {}
    for variant in variants:
        objective, images = build(config, device)
        optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=1e-4)
        step_fn = make_step(variant, objective, device, heap)
        generator = torch.Generator(device=device).manual_seed(0)
        run = functools.partial(train_step, step_fn, optimizer, images, generator, precision, device)
        runs[variant] = (run, count_flops(run), images.shape[0])
        if variant == "compiled":  # the step calls these modules' forward, which compile wraps
            objective.encoder = torch.compile(objective.encoder)
            objective.decoder = torch.compile(objective.decoder)
        for _ in range(warmup):
            run()
    times = {variant: [] for variant in variants}
    peaks = []
    for _ in range(steps):
        peaks.append(matmul_peak(device, seconds=1.0))
        for variant, (run, _, _) in runs.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[variant].append(time.perf_counter() - start)
    peak = statistics.median(peaks)
    results = {}
    for variant, (_, flops, batch) in runs.items():
        seconds = statistics.median(times[variant])
        results[variant] = {"config": config, "variant": variant, "precision": precision,
                            "s_per_step": seconds, "images_per_s": batch / seconds,
                            "gflop_per_step": flops / 1e9, "gflop_per_s": flops / seconds / 1e9,
                            "matmul_peak_gflop_per_s": peak,
                            "fraction_of_fp32_peak": flops / seconds / 1e9 / peak,
                            "step_times_s": times[variant]}
        if device.type == "cuda":
            results[variant]["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    return results


def profile(config, device, precision):
    objective, images = build(config, device)
    optimizer = torch.optim.Adam(objective.trainable_parameters(), lr=1e-4)
    step_fn = OptimisedStep(objective, device)
    generator = torch.Generator(device=device).manual_seed(0)
    train_step(step_fn, optimizer, images, generator, precision, device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        train_step(step_fn, optimizer, images, generator, precision, device)
        sync(device)
    sort = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=30))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["paper", "toy"], choices=["paper", "toy"])
    parser.add_argument("--variants", nargs="+", default=["optimised", "straightforward"],
                        choices=["optimised", "checkpointed", "compiled", "straightforward"])
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default paper 3, toy 20)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--profile", choices=["paper", "toy"], default=None,
                        help="print a torch.profiler table of one optimised step and exit")
    parser.add_argument("--cpu_heap", default=None, choices=["auto", "keep", "True", "False"],
                        help="limit_cpu_heap_growth.enabled for the optimised step (default: the "
                             "engine's); glibc's setting is per process, so compare policies in "
                             "separate runs or with bench_memory.py")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.cpu_heap in ("True", "False"):
        args.cpu_heap = args.cpu_heap == "True"
    if args.cpu_heap is not None and args.device != "cpu":
        raise SystemExit("--cpu_heap is a CPU setting")
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.profile, device, args.precision[0])
        return
    peaks = {"fp32": matmul_peak(device)}
    if "bf16" in args.precision:
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    print(f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}) "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    print("matmul peak at start: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    results = []
    for config in args.configs:
        steps = args.steps or (3 if config == "paper" and device.type == "cpu" else 20)
        for precision in args.precision:
            row = measure_side_by_side(config, args.variants, precision, device, steps, args.warmup,
                                       args.cpu_heap)
            for variant, r in row.items():
                results.append(r)
                print(f"{config:5s} {precision} {variant:15s} {r['s_per_step']:8.3f} s/step "
                      f"{r['images_per_s']:8.1f} images/s {r['gflop_per_step']:8.0f} GFLOP/step "
                      f"{r['gflop_per_s']:7.1f} GFLOP/s = {r['fraction_of_fp32_peak']:.2f} of the fp32 "
                      f"matmul peak ({r['matmul_peak_gflop_per_s']:.0f} GFLOP/s, measured between steps)",
                      flush=True)
            if "straightforward" in row and "optimised" in row:
                ratio = row["straightforward"]["s_per_step"] / row["optimised"]["s_per_step"]
                print(f"{config:5s} {precision} speed-up (straightforward / optimised): {ratio:.2f}x")
        if len(args.precision) == 2 and "optimised" in args.variants:
            fp32, bf16 = (next(r for r in results if r["config"] == config and r["precision"] == p
                               and r["variant"] == "optimised") for p in ("fp32", "bf16"))
            print(f"{config:5s} bf16 / fp32 images/s (optimised): "
                  f"{bf16['images_per_s'] / fp32['images_per_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"peaks_gflop_per_s": peaks, "results": results}, indent=2))


if __name__ == "__main__":
    main()
