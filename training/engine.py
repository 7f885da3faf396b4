"""The one training loop every entry script runs.

It owns: device and distributed set-up (torchrun -> DistributedDataParallel, gloo on CPU,
nccl on CUDA), the deterministic batch order, bf16 autocast, the optimiser step, logging
(tqdm, tensorboard, scalars.jsonl), periodic hooks (evaluation, image grids) and atomic,
resumable checkpoints. What is optimised comes in as an objective module (objectives.py).
"""
import contextlib
import ctypes
import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional

import gin
import torch
from tqdm import tqdm

from common.memory import peak_rss_mb
from training import checkpoint as ckpt
from training.config import RESIDENT_DEFAULT, RESIDENT_FRACTION_DEFAULT
from training.data import StepBatchSampler, step_batches
from training.errors import UserError
from training.run_log import RunLog


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


@gin.configurable
def limit_cpu_heap_growth(enabled="auto", mmap_threshold_mb=8, auto_from_free_mb=256):
    """How a CPU run hands freed memory back to the OS (gin: ``limit_cpu_heap_growth.<name>``).

    glibc raises its mmap threshold each time a large block is freed, after which big tensors
    come from the heap and fragment it: the peak RSS of a CPU run creeps up step after step,
    and one loss stage's activations land beside the last one's leftovers. The remedy is to fix
    the threshold at ``mmap_threshold_mb`` (every tensor over it gets its own mapping, returned
    when freed) and to trim the heap (malloc_trim) after each loss stage's backward pass. Both
    cost page faults, which a small model's short steps feel (benchmarks/RESULTS.md), so:
    ``enabled=True``, from the start and after every stage; False, never; 'auto' (default),
    from the first stage that leaves at least ``auto_from_free_mb`` free in the heap (a model
    whose activations are large), and then trimming only after stages that do. 'keep' is the
    opposite trade, for a machine with memory to spare: no tensor gets its own mapping and the
    heap is never trimmed, so each step reuses the memory the last one freed instead of
    faulting in freshly zeroed pages (faster; the heap's fragmentation raises the peak RSS).
    No effect with other C libraries or platforms. Returns the CPUHeap the engine consults."""
    if enabled not in (True, False, "auto", "keep"):
        raise UserError(f"limit_cpu_heap_growth.enabled = {enabled!r}: one of True, False, 'auto' or 'keep'")
    return CPUHeap(enabled, mmap_threshold_mb, auto_from_free_mb)


def cpu_heap_policy(device):
    """limit_cpu_heap_growth's policy for a step on ``device``; off the CPU it does nothing."""
    return limit_cpu_heap_growth() if device.type == "cpu" else CPUHeap(False, 0, 0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


@functools.lru_cache(maxsize=None)
def _glibc():
    """glibc's malloc controls, or None (another C library or platform)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 -- both must exist
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype = _MallInfo2
    return libc


class CPUHeap:
    """limit_cpu_heap_growth's policy, applied (see there)."""

    def __init__(self, enabled, mmap_threshold_mb, auto_from_free_mb):
        self.libc = _glibc()
        self.enabled = enabled if self.libc is not None else False
        self.mmap_threshold = int(mmap_threshold_mb * 2**20)
        self.auto_from = auto_from_free_mb * 2**20
        self.threshold_fixed = False
        if self.enabled is True:
            self._fix_threshold()
        elif self.enabled == "keep":
            M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
            self.libc.mallopt(M_MMAP_MAX, 0)
            self.libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # the largest value mallopt takes
        elif self.enabled == "auto" and not hasattr(self.libc, "mallinfo2"):
            self.enabled = False  # cannot see the heap's free bytes: leave it alone

    def _fix_threshold(self):
        M_MMAP_THRESHOLD = -3
        self.libc.mallopt(M_MMAP_THRESHOLD, self.mmap_threshold)
        self.threshold_fixed = True

    def free_bytes(self):
        info = self.libc.mallinfo2()
        return info.fordblks + info.fsmblks

    def between_stages(self):
        if self.enabled in (False, "keep"):
            return
        if self.enabled == "auto" and self.free_bytes() < self.auto_from:
            return
        if not self.threshold_fixed:
            self._fix_threshold()
        self.libc.malloc_trim(0)


def staged_forward_backward(objective, images, generator, indices, autocast=contextlib.nullcontext,
                            between_stages=None):
    """(loss, logs) of one step of an objective with ``loss_stages`` (VCTObjective), each stage
    backpropagated as it comes, so its activations are freed before the next stage allocates
    its own: the gradients of the summed loss, for the largest stage's memory instead of the
    sum. ``autocast()`` wraps each stage's forward work (not the backward, as autocast wants);
    ``between_stages()`` runs after each backward."""
    logs, loss = {}, 0.0
    terms = objective.loss_stages(images, generator, indices, logs)
    while True:
        with autocast():
            term = next(terms, None)
        if term is None:
            break
        loss = loss + term.detach()
        if not term.requires_grad:  # a stage with nothing to learn (no swap kept): a constant 0
            continue
        term.backward()
        if between_stages is not None:
            between_stages()
    logs["loss"] = loss
    return loss, logs


def init_distributed(device: torch.device):
    """Join the process group torchrun describes in the environment (if any). Returns the
    DistInfo and the device this process uses (cuda:LOCAL_RANK under torchrun on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank), device


@dataclasses.dataclass
class Hook:
    """``fn(step)`` run on rank 0 every ``interval`` steps and after the last step."""
    interval: Optional[int]
    fn: Callable[[int], None]
    at_end: bool = True


@dataclasses.dataclass
class LoopSettings:
    total_steps: int
    log_interval: int = 10
    save_interval: int = 5000
    keep_checkpoints: int = 3
    precision: str = "fp32"
    num_workers: int = 0
    batch_size: int = 32
    seed: int = 0
    resident_data: str = RESIDENT_DEFAULT                     # see get_args.resident_data
    resident_memory_fraction: float = RESIDENT_FRACTION_DEFAULT  # see get_args.resident_memory_fraction


class Trainer:
    def __init__(self, objective, optimizer, batches, run_dir: Path, device, settings: LoopSettings,
                 dist: DistInfo = DistInfo(), scheduler=None, checkpoint_extra: dict = None,
                 desc: str = "train"):
        self.objective = objective.to(device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches
        self.run_dir = Path(run_dir)
        self.device = device
        self.settings = settings
        self.dist = dist
        self.checkpoint_extra = checkpoint_extra or {}
        self.desc = desc
        self.hooks = []
        self.step = 0
        # All the step's randomness (swap choices, Gumbel noise) comes from this generator,
        # whose state is checkpointed; each process gets its own stream.
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(settings.seed * 1000 + dist.rank)
        self.model = objective
        if dist.enabled:
            self.model = torch.nn.parallel.DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False)
        self.log = None
        self._heap = None  # run() sets it: cpu_heap_policy

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self):
        state = {
            "format_version": ckpt.FORMAT_VERSION,
            "step": self.step,
            "optimizer_state_dict": self.optimizer.state_dict(),
            "rng": ckpt.rng_state({"train": self.generator}),
            **self.objective.model_state(),
            **self.checkpoint_extra,
        }
        if self.scheduler is not None:
            state["scheduler_state_dict"] = self.scheduler.state_dict()
        return state

    def save_checkpoint(self, loss=None):
        if loss is not None:
            self.check_finite(loss)
        if not self.dist.is_main:
            return None
        path = self.run_dir / "checkpoints" / f"checkpoint_{self.step:08d}.pt"
        ckpt.atomic_torch_save(self.checkpoint_state(), path)
        ckpt.prune_checkpoints(self.run_dir, self.settings.keep_checkpoints)
        return path

    def restore(self, path: Path):
        state = ckpt.load_checkpoint(path, map_location=self.device)
        if state.get("format_version") != ckpt.FORMAT_VERSION:
            raise UserError(f"{path}: checkpoint format {state.get('format_version')} is not "
                                 f"{ckpt.FORMAT_VERSION}")
        self.objective.load_model_state(state, lambda m, sd, what: ckpt.load_model_state(m, sd, what, path))
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        if self.scheduler is not None and "scheduler_state_dict" in state:
            self.scheduler.load_state_dict(state["scheduler_state_dict"])
        ckpt.restore_rng_state(state["rng"], {"train": self.generator})
        self.step = int(state["step"])
        return state

    # ------------------------------------------------------------------ loop
    def add_hook(self, interval, fn, at_end=True):
        self.hooks.append(Hook(interval, fn, at_end))

    def _autocast(self):
        if self.settings.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self, resume_from: Path = None, resumed=False):
        """Train to ``total_steps``. ``resume_from``: restore that checkpoint first;
        ``resumed``: it was restored already (``restore``). Returns the last step."""
        s = self.settings
        self._heap = cpu_heap_policy(self.device)
        if resume_from is not None:
            self.restore(resume_from)
            resumed = True
        self.log = RunLog(self.run_dir, enabled=self.dist.is_main, resume_step=self.step if resumed else None)
        sampler = StepBatchSampler(len(self.batches), s.batch_size, s.seed, self.step, s.total_steps,
                                   self.dist.rank, self.dist.world_size)
        placed = self._place_data()
        self.objective.train()
        bar = tqdm(total=s.total_steps, initial=self.step, desc=self.desc, dynamic_ncols=True,
                   disable=not self.dist.is_main, unit="step")
        self._window = (time.perf_counter(), 0, 0.0)  # start, images, seconds waiting for data
        start_step = self.step
        try:
            fetch_start = time.perf_counter()
            # Images come on self.device: gathered there when resident, else copied by step_batches.
            for images, _labels, indices in step_batches(self.batches, sampler, self.device, s.num_workers):
                self._count_window(0, time.perf_counter() - fetch_start)
                loss, logs = self._train_step(images, indices)
                self._count_window(images.shape[0] * self.dist.world_size, 0.0)
                bar.update(1)
                if self.step % s.log_interval == 0 or self.step == s.total_steps:
                    self._log_step(bar, loss, logs)
                if self.step % s.save_interval == 0 and self.step != s.total_steps:
                    self.save_checkpoint(loss)
                self._run_hooks(final=self.step == s.total_steps)
                fetch_start = time.perf_counter()
            if self.step > start_step:
                self.save_checkpoint(loss)
            if self.dist.enabled:
                self.check_ranks_in_sync()
        finally:
            bar.close()
            self.log.close()
            if placed:
                self.batches.resident = None  # not held past the run (a toy VQ-VAE run precedes VCT's)
        return self.step

    def _place_data(self):
        """Hold the dataset's images resident as the settings say (get_args.resident_data);
        True when this call loaded them. The choice is logged (and printed when it took time)."""
        make_resident = getattr(self.batches, "make_resident", None)
        if make_resident is None:  # scene datasets: read per batch
            return False
        s = self.settings
        mode, fraction = s.resident_data, s.resident_memory_fraction
        before = self.batches.resident
        note = make_resident(mode, self.device, fraction, processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                             progress=self.dist.is_main)
        loaded = self.batches.resident is not None and self.batches.resident is not before
        if self.dist.is_main:
            self.log.text("data/placement", note, self.step)
            if loaded and self.batches.resident.load_seconds >= 1.0:
                tqdm.write(note)
        return loaded

    def _train_step(self, images, indices):
        # Free the last step's gradients before this step's activations are allocated.
        self.optimizer.zero_grad(set_to_none=True)
        at_step = getattr(self.objective, "at_step", None)
        if at_step is not None:
            at_step(self.step)
        loss, logs = self._forward_backward(images, indices)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        return loss, logs

    def _forward_backward(self, images, indices):
        """(loss, logs) of one step, its gradients accumulated: by loss stages in one process
        (staged_forward_backward); under torchrun the loss goes through DistributedDataParallel
        whole, as its gradient all-reduce belongs to one backward pass per forward."""
        if self.dist.enabled or not hasattr(self.objective, "loss_stages"):
            with self._autocast():
                loss, logs = self.model(images, self.generator, indices)
            loss.backward()
            return loss, logs
        return staged_forward_backward(self.objective, images, self.generator, indices, self._autocast,
                                       self._heap.between_stages)

    def _count_window(self, images, data_seconds):
        start, count, waited = self._window
        self._window = (start, count + images, waited + data_seconds)

    def _log_step(self, bar, loss, logs):
        self.check_finite(loss)
        start, count, waited = self._window
        values = {k: v.item() for k, v in logs.items()}  # one sync per log step
        elapsed = max(time.perf_counter() - start, 1e-9)
        values.update(lr=self.optimizer.param_groups[0]["lr"], images_per_s=count / elapsed,
                      data_wait_fraction=waited / elapsed, **self._memory_use())
        self.log.scalars(self.step, values)
        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()
                         if k in ("loss", "im_loss", "dis_loss", "images_per_s")}, refresh=False)
        self._window = (time.perf_counter(), 0, 0.0)

    def check_finite(self, loss):
        """Stop, keeping the checkpoints there are, when the loss is NaN or infinite: saving
        would replace a good checkpoint with a broken one (and rotate the good ones out)."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UserError(f"the loss is {value} at step {self.step} (learning rate too high?); stopped "
                            f"before saving, the newest checkpoint in {self.run_dir / 'checkpoints'} is kept")

    def _memory_use(self):
        """Peak resident memory of this process (and peak CUDA memory), in GiB."""
        use = {}
        peak_mb = peak_rss_mb()
        if peak_mb is not None:
            use["peak_rss_gb"] = peak_mb / 1024
        if self.device.type == "cuda":
            use["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return use

    def check_ranks_in_sync(self):
        """All-gather a checksum of the trained parameters; rank 0 records them in
        ``distributed_check.json`` and every rank fails loudly if the replicas diverged."""
        with torch.no_grad():
            params = [p.detach().double().flatten() for p in self.objective.parameters() if p.requires_grad]
            flat = torch.cat(params)
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
            local = torch.stack([flat.sum(), (flat * weights.remainder(9973)).sum()])
        gathered = [torch.zeros_like(local) for _ in range(self.dist.world_size)]
        torch.distributed.all_gather(gathered, local)
        sums = [g.tolist() for g in gathered]
        if self.dist.is_main:
            (self.run_dir / "distributed_check.json").write_text(
                json.dumps({"world_size": self.dist.world_size, "step": self.step, "checksums": sums}))
        if any(s != sums[0] for s in sums):
            raise RuntimeError(f"distributed replicas diverged: parameter checksums {sums}")

    def _run_hooks(self, final):
        if not self.dist.is_main:
            return
        for hook in self.hooks:
            due = hook.interval and self.step % hook.interval == 0
            if due or (final and hook.at_end):
                self.objective.eval()
                hook.fn(self.step)
                self.objective.train()
