"""Training data: the dataset by name (synthetic worlds made on demand) and a deterministic,
resumable batch order.

The order of images is a pure function of (seed, epoch, step, rank), so a run resumed from a
checkpoint at step s reads exactly the batches an uninterrupted run reads after s, and the
processes of a distributed run read disjoint parts of every global batch.

A factor-grid dataset's images can be held resident (``get_args.resident_data``): loaded once
as uint8 (N, C, H, W) in RAM or on the CUDA device, each batch is then a gather and a float
conversion where the step runs, with the same float values as the file path, bit for bit.
"""
import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from datasets import get_dataset, resolve_data_dir
from datasets.ground_truth import GroundTruthData, IndexedGroundTruthData
from datasets.synthetic import make_synthetic_mpi3d, make_synthetic_scenes, make_synthetic_shapes3d
from training.config import RESIDENT_MODES
from training.errors import UserError

SYNTHETIC = {
    # config name -> (maker, the real-format loader it writes for)
    "synthetic_shapes3d": (make_synthetic_shapes3d, "shapes3d"),
    # mpi3d files carry no labels: configs bind get_dataset.factor_sizes to the maker's grid
    "synthetic_mpi3d": (make_synthetic_mpi3d, "mpi3d_toy"),
    "synthetic_scenes": (make_synthetic_scenes, "clevr"),
}


def build_dataset(name: str, data_dir: str, rank: int = 0):
    """The dataset ``name`` under ``data_dir`` (``$VCT_DATA`` when it is left at the ``'data'``
    default); a ``synthetic_*`` name renders its files under ``data_dir`` itself first (gin
    binds the renderer's size and factor grid) unless they are already there."""
    if name in SYNTHETIC:
        maker, loader_name = SYNTHETIC[name]
        if rank == 0:
            maker(data_dir)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        return get_dataset(loader_name, data_dir)
    return get_dataset(name, resolve_data_dir(data_dir))


def _model_range(unit):
    """float32 images in [0, 1] (numpy) -> the model's [-1, 1] (the ops every path reproduces)."""
    return torch.from_numpy(unit) * 2.0 - 1.0


class GroundTruthBatches(Dataset):
    """Item = a whole batch: index array -> (images float32 (B, C, H, W) in [-1, 1], factors,
    indices int64 (B,)). The indices let a setting cache per-image work (CLIP features).

    One read per batch (the h5/npy readers fetch sorted unique rows in one go), or, once
    ``make_resident`` has placed the images, a gather from memory (same values)."""

    def __init__(self, data):
        self.data = data
        self.resident = None  # ResidentImages, while held

    def __len__(self):
        return self.data.num_observations

    def __getitem__(self, indices):
        return self.fetch(indices, CPU)

    def fetch(self, indices, device):
        """The batch of ``indices`` with its images on ``device`` (factors and indices on the CPU)."""
        indices = np.asarray(indices, dtype=np.int64)
        factors = self.data.index_to_factors(indices)
        if self.resident is not None:
            images = self.resident.gather(indices, device)
        else:
            images = self.data.sample_observations_from_factors(factors, np.random.RandomState(0))
            images = _model_range(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        return images, torch.from_numpy(factors), torch.from_numpy(indices)

    def make_resident(self, mode, device, fraction, processes=1, progress=True):
        """Hold the images where ``mode`` (get_args.resident_data) and the memory budget say, or
        release them; returns a line saying where they are and why."""
        where, why = plan_residency(mode, *_resident_inputs(self.data, device, processes), fraction)
        if where is None:
            self.resident = None
            return f"data: read from the dataset's files per batch ({why})"
        target = CPU if where == "ram" else _with_index(device)
        if self.resident is None or self.resident.device != target:
            self.resident = None  # free the old copy before loading the new one
            self.resident = ResidentImages.load(self.data, target, progress)
        r = self.resident
        return (f"data: {r.num_images:,} images ({_size(r.nbytes)} uint8) resident "
                f"{'in RAM' if where == 'ram' else f'on {target}'}, loaded in {r.load_seconds:.1f} s ({why})")


class SceneBatches(Dataset):
    """Item = a whole batch of a multi-object scene dataset: index array -> (images float32
    (B, 3, H, W) in [-1, 1], instance masks bool (B, K, H, W), indices int64 (B,))."""

    def __init__(self, scenes):
        self.scenes = scenes

    def __len__(self):
        return len(self.scenes)

    def __getitem__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        items = [self.scenes[int(i)] for i in indices]
        return (torch.stack([image for image, _ in items]), torch.stack([masks for _, masks in items]),
                torch.from_numpy(indices))


CPU = torch.device("cpu")
_BLOCK_BYTES = 64 << 20  # rows read per block while loading (a few thousand 64 px images)


def _size(nbytes):
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def available_ram_bytes():
    """Bytes of RAM this process could still take: MemAvailable (else the free pages), capped
    by a cgroup v2 memory limit; None when neither can be read (then 'auto' keeps the files)."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            pass
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit != "max":
            room = int(limit) - int(open("/sys/fs/cgroup/memory.current").read())
            available = room if available is None else min(available, room)
    except (OSError, ValueError):
        pass
    return available


def _with_index(device):
    """cuda -> cuda:<current> (a tensor's device always has its index)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def free_device_bytes(device):
    """Free memory of a CUDA device (None elsewhere)."""
    if device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def _resident_inputs(data, device, processes):
    """(bytes the images take, or None if they cannot be held; device; RAM and device bytes
    free to each of ``processes`` processes on this machine)."""
    nbytes = None
    if isinstance(data, IndexedGroundTruthData):
        rows, dtype = data.stored_rows()
        if dtype == np.uint8 and rows == data.num_observations:
            nbytes = rows * int(np.prod(data.observation_shape))
    ram = available_ram_bytes()
    return nbytes, device, None if ram is None else ram // max(processes, 1), free_device_bytes(device)


def plan_residency(mode, nbytes, device, ram_bytes, device_bytes, fraction):
    """Where to hold ``nbytes`` of images: ('ram' | 'device' | None, why).

    'auto': on the CUDA device when the run is on CUDA and they take at most ``fraction`` of
    its free memory, else in RAM when they take at most ``fraction`` of the available RAM,
    else (or when a budget cannot be read) read from the files. 'ram' and 'device' insist
    (a user error when impossible); 'off' always reads from the files."""
    if mode not in RESIDENT_MODES:
        raise UserError(f"get_args.resident_data = {mode!r}: expected one of {', '.join(RESIDENT_MODES)}")
    if mode == "off":
        return None, "get_args.resident_data = 'off'"
    if nbytes is None:
        if mode != "auto":
            raise UserError(f"get_args.resident_data = {mode!r}: this dataset cannot be held resident (only "
                            f"factor-grid datasets stored as uint8 images can); use 'auto' or 'off'")
        return None, "only factor-grid datasets of uint8 images are held resident"
    gb = _size(nbytes)
    if mode == "device":
        if device.type != "cuda":
            raise UserError(f"get_args.resident_data = 'device' needs a CUDA run (this one is on {device}); "
                            f"use 'auto' or 'ram'")
        if nbytes > device_bytes:
            raise UserError(f"get_args.resident_data = 'device': the images take {gb}, {device} has "
                            f"{_size(device_bytes)} free; use 'auto', 'ram' or 'off'")
        return "device", "get_args.resident_data = 'device'"
    if mode == "ram":
        if ram_bytes is not None and nbytes > ram_bytes:
            raise UserError(f"get_args.resident_data = 'ram': the images take {gb}, {_size(ram_bytes)} "
                            f"of RAM is available; use 'auto' or 'off'")
        return "ram", "get_args.resident_data = 'ram'"
    if device_bytes is not None and nbytes <= fraction * device_bytes:
        return "device", f"auto: {gb} <= {fraction:g} of {_size(device_bytes)} free on {device}"
    if ram_bytes is not None and nbytes <= fraction * ram_bytes:
        return "ram", f"auto: {gb} <= {fraction:g} of {_size(ram_bytes)} of available RAM"
    budget = "unknown" if ram_bytes is None else _size(ram_bytes)
    return None, f"auto: {gb} is over {fraction:g} of the free memory (RAM available: {budget})"


class ResidentImages:
    """A dataset's stored uint8 rows as one (N, C, H, W) array in RAM (numpy) or on a CUDA
    device. ``gather`` gives the float images of the file path bit for bit: on the CPU the same
    float32 arithmetic (numpy: one thread, unlike torch's ops on a busy machine), on CUDA a
    256-entry table of those values (CUDA divides by a scalar as a multiply by its inverse)."""

    def __init__(self, rows, pixel_max, load_seconds=0.0):
        self.rows = rows
        self.pixel_max = np.float32(pixel_max)
        self.device = CPU if isinstance(rows, np.ndarray) else rows.device
        self.num_images, self.nbytes = int(rows.shape[0]), int(rows.size if self.device == CPU else rows.numel())
        self.load_seconds = load_seconds
        self._tables = {}
        reference = _model_range(np.arange(256, dtype=np.uint8).astype(np.float32) / self.pixel_max)
        for device in {CPU, self.device}:
            if not torch.equal(self._convert(np.arange(256, dtype=np.uint8), device).cpu(), reference):
                raise RuntimeError(f"resident images: the conversion on {device} differs from the file path")

    @classmethod
    def load(cls, data, device, progress=True):
        """Read every stored row of ``data`` (an IndexedGroundTruthData) in contiguous blocks."""
        start_time = time.perf_counter()
        height, width, channels = data.observation_shape
        count = data.num_observations
        shape = (count, channels, height, width)
        rows = np.empty(shape, np.uint8) if device == CPU else torch.empty(shape, dtype=torch.uint8, device=device)
        block = max(1, _BLOCK_BYTES // (height * width * channels))
        big = rows.nbytes if device == CPU else rows.numel()
        with tqdm(total=count, unit="img", unit_scale=True, desc="loading images", dynamic_ncols=True,
                  disable=not progress or big < (256 << 20)) as bar:
            for start in range(0, count, block):
                stop = min(count, start + block)
                chunk = data.read_rows(start, stop)  # (n, H, W, C)
                if device == CPU:
                    for channel in range(channels):  # a plane at a time: 8x faster than one transpose
                        rows[start:stop, channel] = chunk[..., channel]
                else:  # transpose on the device
                    rows[start:stop] = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2)
                bar.update(stop - start)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return cls(rows, data.pixel_max, time.perf_counter() - start_time)

    def gather(self, indices, device):
        """float32 (B, C, H, W) in [-1, 1] of rows ``indices`` (int64 numpy), on ``device``."""
        if self.device == CPU:
            if device.type != "cuda":
                return self._convert(self.rows[indices], device)
            raw = torch.empty((len(indices),) + self.rows.shape[1:], dtype=torch.uint8, pin_memory=True)
            np.take(self.rows, indices, axis=0, out=raw.numpy())
            return self._convert(raw, device)
        raw = self.rows.index_select(0, torch.from_numpy(indices).to(self.device, non_blocking=True))
        return self._convert(raw, device)

    def _convert(self, raw, device):
        """uint8 rows (numpy, or a tensor) -> float32 in [-1, 1] on ``device``."""
        if device.type != "cuda":
            if isinstance(raw, torch.Tensor):
                raw = raw.cpu().numpy()
            unit = raw.astype(np.float32)
            unit /= self.pixel_max
            unit *= np.float32(2.0)
            unit -= np.float32(1.0)
            return torch.from_numpy(unit).to(device)
        if device not in self._tables:
            table = _model_range(np.arange(256, dtype=np.uint8).astype(np.float32) / self.pixel_max)
            self._tables[device] = table.to(device)
        raw = torch.from_numpy(raw) if isinstance(raw, np.ndarray) else raw
        return self._tables[device][raw.to(device, non_blocking=True).long()]


def step_batches(batches, sampler, device, num_workers=0):
    """(images float32 on ``device``, labels, indices) of every step of ``sampler``: resident
    images are gathered in this process, already where the step runs; other data comes through
    a DataLoader (pinned memory and asynchronous copies on CUDA). What the trainer iterates."""
    if getattr(batches, "resident", None) is not None:
        # Iterating a DataLoader draws one seed from the global generator: draw it here too, so
        # the global RNG is in the same state whether the images are resident or not.
        torch.empty((), dtype=torch.int64).random_()
        for indices in sampler:
            yield batches.fetch(indices, device)
        return
    loader = make_loader(batches, sampler, num_workers, pin_memory=device.type == "cuda")
    for images, labels, indices in loader:
        yield images.to(device, non_blocking=True), labels, indices


def seed_everything(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed)


def fixed_batch(batches, count, seed=0):
    """The same ``count`` images every time (for image grids)."""
    gen = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(batches), generator=gen)[:count].numpy()
    return batches[np.sort(indices)][0]


def batches_for(data):
    """The batch view for a ground-truth (factors) or a scene (masks) dataset."""
    return GroundTruthBatches(data) if isinstance(data, GroundTruthData) else SceneBatches(data)


def image_shape_of(data):
    """(H, W, C) of the dataset's images."""
    if isinstance(data, GroundTruthData):
        return tuple(data.observation_shape)
    image, _ = data[0]
    return (image.shape[1], image.shape[2], image.shape[0])


def steps_per_epoch(num_items, batch_size, world_size=1):
    """Whole global batches per epoch (the remainder of an epoch is skipped, as with
    drop_last); a dataset smaller than one global batch is a user error."""
    steps = num_items // (batch_size * world_size)
    if steps < 1:
        raise UserError(f"dataset of {num_items} images is smaller than one global batch "
                        f"({batch_size} x {world_size} processes)")
    return steps


class StepBatchSampler(Sampler):
    """Yields the index array of every step from ``start_step`` to ``total_steps``."""

    def __init__(self, num_items, batch_size, seed, start_step, total_steps, rank=0, world_size=1):
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = steps_per_epoch(num_items, batch_size, world_size)
        self._epoch, self._perm = None, None

    def __len__(self):
        return max(self.total_steps - self.start_step, 0)

    def _permutation(self, epoch):
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.num_items, generator=gen).numpy()
            self._epoch = epoch
        return self._perm

    def batch_indices(self, step):
        epoch, position = divmod(step, self.steps_per_epoch)
        start = (position * self.world_size + self.rank) * self.batch_size
        return self._permutation(epoch)[start:start + self.batch_size]

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            yield self.batch_indices(step)


def make_loader(batches: Dataset, sampler: StepBatchSampler, num_workers=0, pin_memory=False):
    return DataLoader(batches, sampler=sampler, batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False,
                      prefetch_factor=4 if num_workers > 0 else None)
